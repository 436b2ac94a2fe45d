//! Step `namespaces`: register missing namespaces and correct drifted settings. Never deletes.
//!
//! Flow: ListNamespaces (all pages) -> diff with `namespaces:` -> RegisterNamespace for missing
//! ones, UpdateNamespace for drifted retention / description / owner email / data (at most
//! [`super::APPLY_CONCURRENCY`] at a time) -> DescribeNamespace each touched namespace to verify.
//!
//! Guarantees: a namespace in the cluster but not in platform.yaml is reported as Drift and left
//! alone; a converged run sends no mutating RPC; ALREADY_EXISTS (another process registered the
//! namespace between our list and our register) is handled by describing it and updating what
//! differs; apply verifies every namespace it touched.
//!
//! Assumptions: UpdateNamespace merges `data` and ignores an empty description / owner email
//! (server behaviour), so those cannot be removed or cleared: such differences are Drift.
//!
//! Caveats: namespaces are registered as local (not global) namespaces; a namespace in the
//! Deprecated or Deleted state is reported, not revived.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::reconcile::{Action, Change, Context, Step, StepError, StepFuture, StepName};

use super::api::{NamespaceSpec, NamespaceState, NamespaceUpdate, TemporalApi, human};
use super::{
    APPLY_CONCURRENCY, Lazy, SYSTEM_NAMESPACES, TemporalError, combine_errors, run_bounded,
};

/// The namespaces platform.yaml asks for.
pub fn desired(ctx: &Context) -> Vec<NamespaceSpec> {
    ctx.config
        .namespaces
        .iter()
        .map(|n| NamespaceSpec {
            name: n.name.as_str().to_string(),
            retention: n.retention.as_duration(),
            description: n.description.clone(),
            owner_email: n
                .owner_email
                .as_ref()
                .map(|e| e.as_str().to_string())
                .unwrap_or_default(),
            data: n.data.clone(),
        })
        .collect()
}

/// One write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceOp {
    Register(NamespaceSpec),
    Update(NamespaceUpdate),
}

/// The difference between platform.yaml and the cluster.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NamespaceDiff {
    pub ops: Vec<NamespaceOp>,
    /// Creates and updates (one per op, same order) followed by drift.
    pub changes: Vec<Change>,
}

fn quoted(s: &str) -> String {
    if s.is_empty() {
        "(empty)".into()
    } else {
        format!("{s:?}")
    }
}

/// What to update on `have` to match `want`, and the drift that cannot be corrected.
pub fn diff_one(
    want: &NamespaceSpec,
    have: &NamespaceState,
) -> (NamespaceUpdate, Vec<String>, Vec<String>) {
    let mut update = NamespaceUpdate {
        name: want.name.clone(),
        ..Default::default()
    };
    let mut details = Vec::new();
    let mut drift = Vec::new();
    if have.retention != Some(want.retention) {
        details.push(format!(
            "retention {} -> {}",
            have.retention
                .map(human)
                .unwrap_or_else(|| "(unset)".into()),
            human(want.retention)
        ));
        update.retention = Some(want.retention);
    }
    for (field, want_v, have_v, slot) in [
        (
            "description",
            &want.description,
            &have.description,
            &mut update.description,
        ),
        (
            "owner_email",
            &want.owner_email,
            &have.owner_email,
            &mut update.owner_email,
        ),
    ] {
        if want_v == have_v {
            continue;
        }
        if want_v.is_empty() {
            drift.push(format!(
                "{field} {} in the cluster, empty in platform.yaml (Temporal cannot clear it; set it in platform.yaml to manage it)",
                quoted(have_v)
            ));
        } else {
            details.push(format!("{field} {} -> {}", quoted(have_v), quoted(want_v)));
            *slot = Some(want_v.clone());
        }
    }
    for (k, v) in &want.data {
        if have.data.get(k) != Some(v) {
            details.push(format!(
                "data {k}: {} -> {}",
                have.data
                    .get(k)
                    .map(|s| quoted(s))
                    .unwrap_or_else(|| "(unset)".into()),
                quoted(v)
            ));
            update.data.insert(k.clone(), v.clone());
        }
    }
    let extra: Vec<&str> = have
        .data
        .keys()
        .filter(|k| !want.data.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !extra.is_empty() {
        drift.push(format!(
            "data keys {} in the cluster only (Temporal cannot remove data keys)",
            extra.join(", ")
        ));
    }
    (update, details, drift)
}

fn register_detail(s: &NamespaceSpec) -> String {
    let mut d = format!("register with retention {}", human(s.retention));
    if !s.description.is_empty() {
        d.push_str(&format!(", description {}", quoted(&s.description)));
    }
    if !s.owner_email.is_empty() {
        d.push_str(&format!(", owner_email {}", s.owner_email));
    }
    if !s.data.is_empty() {
        let kv: Vec<String> = s.data.iter().map(|(k, v)| format!("{k}={v}")).collect();
        d.push_str(&format!(", data {}", kv.join(" ")));
    }
    d
}

/// Pure diff: what to register, what to update, what to report.
pub fn diff(want: &[NamespaceSpec], have: &[NamespaceState]) -> NamespaceDiff {
    let by_name: BTreeMap<&str, &NamespaceState> =
        have.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut out = NamespaceDiff::default();
    let mut drift = Vec::new();
    for w in want {
        let resource = format!("namespace {}", w.name);
        match by_name.get(w.name.as_str()) {
            None => {
                out.changes.push(Change::new(Action::Create, resource, register_detail(w)));
                out.ops.push(NamespaceOp::Register(w.clone()));
            }
            Some(h) if h.state != "Registered" => drift.push(Change::new(
                Action::Drift,
                resource,
                format!("state {} in the cluster; not changed (a {} namespace is not revived automatically)", h.state, h.state.to_lowercase()),
            )),
            Some(h) => {
                let (update, details, d) = diff_one(w, h);
                if !update.is_empty() {
                    out.changes.push(Change::new(Action::Update, resource.clone(), details.join("; ")));
                    out.ops.push(NamespaceOp::Update(update));
                }
                for d in d {
                    drift.push(Change::new(Action::Drift, resource.clone(), d));
                }
            }
        }
    }
    for h in have {
        if h.state == "Deleted"
            || SYSTEM_NAMESPACES.contains(&h.name.as_str())
            || want.iter().any(|w| w.name == h.name)
        {
            continue;
        }
        drift.push(Change::new(
            Action::Drift,
            format!("namespace {}", h.name),
            "in the cluster but not in platform.yaml; left alone (namespaces are never deleted)",
        ));
    }
    out.changes.extend(drift);
    out
}

/// Whether the cluster now holds what was asked (description/owner only when asked for).
fn matches(want: &NamespaceSpec, have: &NamespaceState) -> Result<(), String> {
    let (update, details, _) = diff_one(want, have);
    if update.is_empty() {
        Ok(())
    } else {
        Err(details.join("; "))
    }
}

/// Applies one op; returns the namespace name for verification.
async fn apply_op(api: Arc<dyn TemporalApi>, op: NamespaceOp) -> Result<(), TemporalError> {
    match op {
        NamespaceOp::Register(spec) => {
            if api.register_namespace(&spec).await? {
                return Ok(());
            }
            // ALREADY_EXISTS: registered meanwhile by someone else (or by our own earlier attempt
            // whose response was lost). Make it match.
            tracing::info!(namespace = %spec.name, "namespace appeared concurrently; reconciling it");
            let have = api.describe_namespace(&spec.name).await?;
            if have.state != "Registered" {
                return Err(TemporalError::Verify(format!(
                    "namespace `{}` exists in state {}; it cannot be registered again until the server removes it",
                    spec.name, have.state
                )));
            }
            let (update, _, _) = diff_one(&spec, &have);
            if !update.is_empty() {
                api.update_namespace(&update).await?;
            }
            Ok(())
        }
        NamespaceOp::Update(update) => api.update_namespace(&update).await,
    }
}

/// Prefixes the namespace to an error that does not name it, keeping its class.
pub(crate) fn with_namespace(name: &str, e: TemporalError) -> TemporalError {
    let msg = e.to_string();
    if msg.contains(&format!("`{name}`")) {
        return e;
    }
    let msg = format!("namespace `{name}`: {msg}");
    if e.is_invalid() {
        TemporalError::Refused(msg)
    } else {
        TemporalError::Verify(msg)
    }
}

pub struct NamespacesStep {
    api: Lazy,
}

impl NamespacesStep {
    pub fn new() -> Self {
        Self {
            api: Lazy::default(),
        }
    }
    /// With a given adapter (tests).
    pub fn with_api(api: Arc<dyn TemporalApi>) -> Self {
        Self {
            api: Lazy::with(api),
        }
    }

    async fn observe(
        &self,
        ctx: &Context,
    ) -> Result<(Arc<dyn TemporalApi>, NamespaceDiff), TemporalError> {
        let api = self.api.get(ctx).await?;
        let have = api.list_namespaces().await?;
        Ok((api, diff(&desired(ctx), &have)))
    }

    async fn apply_all(&self, ctx: &Context) -> Result<Vec<Change>, StepError> {
        let (api, d) = self.observe(ctx).await?;
        let names: Vec<String> = d
            .ops
            .iter()
            .map(|op| match op {
                NamespaceOp::Register(s) => s.name.clone(),
                NamespaceOp::Update(u) => u.name.clone(),
            })
            .collect();
        let results = run_bounded(d.ops.clone(), APPLY_CONCURRENCY, |op| {
            apply_op(Arc::clone(&api), op)
        })
        .await;
        let mut errors: Vec<TemporalError> = Vec::new();
        for (name, r) in names.iter().zip(results) {
            if let Err(e) = r {
                errors.push(with_namespace(name, e));
            }
        }
        if !errors.is_empty() {
            return Err(combine_errors(errors));
        }
        // Verify what we touched.
        let want = desired(ctx);
        let mut problems = Vec::new();
        for name in &names {
            let Some(w) = want.iter().find(|w| &w.name == name) else {
                continue;
            };
            match api.describe_namespace(name).await {
                Ok(have) => {
                    if let Err(diff) = matches(w, &have) {
                        problems.push(TemporalError::Verify(format!(
                            "namespace `{name}` still differs after apply: {diff}"
                        )));
                    }
                }
                Err(e) => problems.push(e),
            }
        }
        if !problems.is_empty() {
            return Err(combine_errors(problems));
        }
        Ok(d.changes)
    }
}

impl Default for NamespacesStep {
    fn default() -> Self {
        Self::new()
    }
}

impl Step for NamespacesStep {
    fn name(&self) -> StepName {
        StepName::Namespaces
    }

    fn plan<'a>(&'a self, ctx: &'a Context) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move {
            let (_, d) = self.observe(ctx).await?;
            Ok(d.changes)
        })
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a Context,
        _pending: &'a [Change],
    ) -> StepFuture<'a, Vec<Change>> {
        Box::pin(self.apply_all(ctx))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::temporal::fake::FakeTemporal;
    use std::time::Duration;

    /// A minimal valid platform.yaml with the given shard setting and extra namespace YAML
    /// (each line indented by two spaces under `namespaces:`).
    pub(crate) fn config_yaml(shards: &str, namespaces: &str) -> String {
        let ns = if namespaces.is_empty() {
            "  - name: orders\n    retention: 3d\n".to_string()
        } else {
            namespaces.to_string()
        };
        format!(
            "cluster:\n  name: test\n  temporal_version: \"1.31.2\"\n  environment: development\n  frontend:\n    address: 127.0.0.1:7233\n\
capacity:\n  peak_workflow_starts_per_second: 1\n  activities_per_workflow: 1\n  average_workflow_duration: 1m\n  history_shards: {shards}\n\
persistence:\n  sqlite:\n    path: dev.db\n\
visibility:\n  sqlite:\n    path: dev.db\n\
namespaces:\n{ns}"
        )
    }

    pub(crate) fn ctx_with(namespaces: &str) -> Context {
        let text = config_yaml("auto", namespaces);
        let loaded = crate::config::load_str(&text, "test.yaml")
            .unwrap_or_else(|e| panic!("invalid test config: {e}\n{text}"));
        Context {
            config: Arc::new(loaded.config),
            base_dir: ".".into(),
            offline: false,
            force: false,
        }
    }

    const TWO: &str = "  - name: orders\n    retention: 3d\n    description: Orders\n    owner_email: a@example.com\n    data: { team: shop }\n  - name: billing\n    retention: 30d\n";

    #[tokio::test]
    async fn registers_missing_then_converges_without_writes() {
        let ctx = ctx_with(TWO);
        let fake = Arc::new(FakeTemporal::new(1, "sqlite"));
        fake.insert_namespace("default", 1);
        let step = NamespacesStep::with_api(fake.clone());
        let plan = step.plan(&ctx).await.unwrap();
        let creates: Vec<_> = plan.iter().filter(|c| c.action == Action::Create).collect();
        assert_eq!(creates.len(), 2, "{plan:?}");
        assert!(
            creates[0].detail.contains("retention 3d"),
            "{:?}",
            creates[0]
        );
        assert!(
            plan.iter()
                .any(|c| c.action == Action::Drift && c.resource == "namespace default"),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|c| c.resource.contains("temporal-system")));
        assert_eq!(fake.writes(), 0, "plan must not write");

        step.apply(&ctx, &plan).await.unwrap();
        assert_eq!(fake.state.lock().unwrap().registers, 2);
        let orders = fake.state.lock().unwrap().namespaces["orders"].clone();
        assert_eq!(orders.retention, Some(Duration::from_secs(3 * 86_400)));
        assert_eq!(orders.owner_email, "a@example.com");
        assert_eq!(orders.data.get("team").map(String::as_str), Some("shop"));

        let writes = fake.writes();
        let again = NamespacesStep::with_api(fake.clone())
            .plan(&ctx)
            .await
            .unwrap();
        assert!(again.iter().all(|c| c.action == Action::Drift), "{again:?}");
        assert_eq!(fake.writes(), writes);
    }

    #[tokio::test]
    async fn corrects_drift_and_reports_what_it_cannot_fix() {
        let ctx = ctx_with(TWO);
        let fake = Arc::new(FakeTemporal::new(1, "sqlite"));
        fake.insert_namespace("orders", 1);
        fake.insert_namespace("billing", 30);
        {
            let mut s = fake.state.lock().unwrap();
            let o = s.namespaces.get_mut("orders").unwrap();
            o.data.insert("legacy".into(), "x".into());
            let b = s.namespaces.get_mut("billing").unwrap();
            b.description = "old text".into();
        }
        let step = NamespacesStep::with_api(fake.clone());
        let plan = step.plan(&ctx).await.unwrap();
        let update = plan.iter().find(|c| c.action == Action::Update).unwrap();
        assert_eq!(update.resource, "namespace orders");
        for want in [
            "retention 1d -> 3d",
            "description (empty) -> \"Orders\"",
            "data team: (unset) -> \"shop\"",
        ] {
            assert!(
                update.detail.contains(want),
                "{want} not in {}",
                update.detail
            );
        }
        let drift: Vec<_> = plan
            .iter()
            .filter(|c| c.action == Action::Drift)
            .map(|c| c.detail.clone())
            .collect();
        assert!(drift.iter().any(|d| d.contains("legacy")), "{drift:?}");
        assert!(drift.iter().any(|d| d.contains("old text")), "{drift:?}");
        step.apply(&ctx, &plan).await.unwrap();
        assert_eq!(fake.state.lock().unwrap().updates, 1);
        assert_eq!(fake.state.lock().unwrap().registers, 0);
        assert_eq!(
            fake.state.lock().unwrap().namespaces["orders"].retention,
            Some(Duration::from_secs(3 * 86_400))
        );
    }

    #[tokio::test]
    async fn already_exists_race_is_reconciled() {
        let ctx = ctx_with(TWO);
        let fake = Arc::new(FakeTemporal::new(1, "sqlite"));
        // Simulate another process registering `orders` (with other settings) between our list
        // and our register: apply_op sees ALREADY_EXISTS.
        let spec = desired(&ctx)
            .into_iter()
            .find(|s| s.name == "orders")
            .unwrap();
        fake.insert_namespace("orders", 1);
        apply_op(fake.clone(), NamespaceOp::Register(spec))
            .await
            .unwrap();
        let s = fake.state.lock().unwrap();
        assert_eq!((s.registers, s.updates), (1, 1));
        assert_eq!(
            s.namespaces["orders"].retention,
            Some(Duration::from_secs(3 * 86_400))
        );
    }

    #[test]
    fn deprecated_namespaces_are_reported_not_revived() {
        let want = vec![NamespaceSpec {
            name: "orders".into(),
            retention: Duration::from_secs(86_400),
            description: String::new(),
            owner_email: String::new(),
            data: BTreeMap::new(),
        }];
        let have = vec![NamespaceState {
            name: "orders".into(),
            state: "Deprecated".into(),
            retention: Some(Duration::from_secs(86_400)),
            description: String::new(),
            owner_email: String::new(),
            data: BTreeMap::new(),
            history_archival: false,
        }];
        let d = diff(&want, &have);
        assert!(d.ops.is_empty());
        assert_eq!(d.changes.len(), 1);
        assert_eq!(d.changes[0].action, Action::Drift);
    }
}
