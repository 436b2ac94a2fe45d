//! Step `search-attributes`: add the custom search attributes each namespace declares.
//!
//! Flow: GetClusterInfo (visibility store) -> ListSearchAttributes per namespace -> refuse type
//! mismatches and SQL per-type caps for ALL namespaces before any write -> per namespace ONE
//! AddSearchAttributes call with every missing name (with Elasticsearch visibility, where
//! attributes are cluster-wide, each name is added once, through the first namespace that
//! declares it) -> poll ListSearchAttributes until all are
//! visible with the right type (bounded by [`super::SEARCH_ATTRIBUTES_VISIBLE_TIMEOUT`]).
//!
//! Guarantees: a type mismatch or an exceeded cap is refused (exit 2) and nothing is written,
//! for any namespace; never two AddSearchAttributes calls at once for one namespace in this
//! process (a per-namespace lock, and one task per namespace); with Elasticsearch visibility
//! (attributes are cluster-wide) namespaces are handled one after the other; a converged run
//! writes nothing; attributes in the cluster but not in platform.yaml are reported as Drift and
//! never removed.
//!
//! Assumptions: the server accepts an existing name silently even with another type and keeps the
//! old type, so types are compared first; SQL visibility caps custom attributes per type and
//! namespace (Bool 3, Datetime 3, Double 3, Int 3, Keyword 10, KeywordList 3, Text 3), counting
//! the attributes already in the cluster.
//!
//! Caveats: another process adding attributes at the same moment can still race with us (the
//! lock is per process). With Elasticsearch visibility the server (1.32.2) saves the list it
//! read before updating the mapping, so of two overlapping adds only the last one's view
//! survives: the final poll catches a loss that happens before it ends, not one that happens
//! after; the next run (or the daemon's next pass) adds what is missing again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::types::{SearchAttributeName, SearchAttributeType};
use crate::reconcile::{Action, Change, Context, Step, StepError, StepFuture, StepName};

use super::api::{ObservedAttributes, TemporalApi};
use super::namespaces::with_namespace;
use super::{
    APPLY_CONCURRENCY, Lazy, SEARCH_ATTRIBUTES_POLL_INITIAL, SEARCH_ATTRIBUTES_VISIBLE_TIMEOUT,
    TemporalError, combine_errors, run_bounded,
};

/// What one namespace needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePlan {
    pub namespace: String,
    /// Whether the namespace exists yet (a plan before `namespaces` ran may see it missing).
    pub exists: bool,
    pub missing: BTreeMap<String, SearchAttributeType>,
    /// All configured attributes (for the visibility poll).
    pub wanted: BTreeMap<String, SearchAttributeType>,
    /// Attributes in the cluster that no namespace declares.
    pub extra: BTreeMap<String, Option<SearchAttributeType>>,
}

fn type_name(t: Option<SearchAttributeType>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "unknown".into())
}

/// Pure diff of one namespace. `observed` is `None` when the namespace does not exist yet;
/// `declared_anywhere` are the attribute names declared by any namespace (for Elasticsearch,
/// where attributes are cluster-wide and show up in every namespace).
pub fn diff_namespace(
    namespace: &str,
    wanted: &BTreeMap<SearchAttributeName, SearchAttributeType>,
    observed: Option<&ObservedAttributes>,
    sql: bool,
    declared_anywhere: &BTreeSet<String>,
) -> Result<NamespacePlan, Vec<TemporalError>> {
    let empty = ObservedAttributes::new();
    let have = observed.unwrap_or(&empty);
    let mut problems = Vec::new();
    let mut missing = BTreeMap::new();
    for (name, want) in wanted {
        match have.get(name.as_str()) {
            None => {
                missing.insert(name.as_str().to_string(), *want);
            }
            Some(Some(t)) if t == want => {}
            Some(other) => problems.push(TemporalError::Refused(format!(
                "namespace `{namespace}`: search attribute `{name}` exists as {} in the cluster but platform.yaml declares {want}. \
                 Search attribute types can never change. Fix: declare `{name}: {}` in platform.yaml, or use a new name \
                 (e.g. `{name}{want}`) for the {want} attribute and update the workflows that set it.",
                type_name(*other),
                type_name(*other),
            ))),
        }
    }
    if sql {
        for ty in SearchAttributeType::ALL {
            let existing: Vec<&str> = have
                .iter()
                .filter(|(_, t)| **t == Some(ty))
                .map(|(n, _)| n.as_str())
                .collect();
            let adding: Vec<&str> = missing
                .iter()
                .filter(|(_, t)| **t == ty)
                .map(|(n, _)| n.as_str())
                .collect();
            let cap = ty.sql_visibility_cap();
            if !adding.is_empty() && existing.len() + adding.len() > cap {
                problems.push(TemporalError::Refused(format!(
                    "namespace `{namespace}`: adding {} {ty} search attribute(s) ({}) to the {} already in the cluster ({}) \
                     would make {}, but SQL visibility allows at most {cap} {ty} attributes per namespace. Remove {} of them \
                     from platform.yaml, use another type where it fits, or move visibility to Elasticsearch.",
                    adding.len(),
                    adding.join(", "),
                    existing.len(),
                    if existing.is_empty() { "none".to_string() } else { existing.join(", ") },
                    existing.len() + adding.len(),
                    existing.len() + adding.len() - cap,
                )));
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let extra = have
        .iter()
        .filter(|(n, t)| {
            !wanted.keys().any(|w| w.as_str() == n.as_str())
                && (sql || (!declared_anywhere.contains(*n) && !is_preallocated_slot(n, **t)))
        })
        .map(|(n, t)| (n.clone(), *t))
        .collect();
    Ok(NamespacePlan {
        namespace: namespace.to_string(),
        exists: observed.is_some(),
        missing,
        wanted: wanted
            .iter()
            .map(|(n, t)| (n.as_str().to_string(), *t))
            .collect(),
        extra,
    })
}

/// The server's own pre-allocated slots (`Bool01`..`Bool03`, `Keyword01`..`Keyword10`, ...): a
/// cluster created on Elasticsearch visibility (seen on 1.32.2 with OpenSearch) lists them as
/// custom attributes of every namespace although nobody declared them, so they are not drift.
fn is_preallocated_slot(name: &str, ty: Option<SearchAttributeType>) -> bool {
    let Some(ty) = ty else { return false };
    name.strip_prefix(ty.to_string().as_str())
        .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_digit()) && n != "00")
}

/// The report lines of a plan.
pub fn changes(plans: &[NamespacePlan]) -> Vec<Change> {
    let mut out = Vec::new();
    let mut drift = Vec::new();
    for p in plans {
        for (name, ty) in &p.missing {
            let mut detail = format!("add as {ty}");
            if !p.exists {
                detail.push_str(" (after the namespace is registered)");
            }
            out.push(Change::new(
                Action::Create,
                format!("search attribute {}/{name}", p.namespace),
                detail,
            ));
        }
        for (name, ty) in &p.extra {
            drift.push(Change::new(
                Action::Drift,
                format!("search attribute {}/{name}", p.namespace),
                format!(
                    "{} in the cluster but not in platform.yaml; left alone (never removed automatically)",
                    type_name(*ty)
                ),
            ));
        }
    }
    out.extend(drift);
    out
}

/// One async lock per namespace for the whole process: never two adds at once for a namespace.
fn namespace_lock(namespace: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut map = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    Arc::clone(map.entry(namespace.to_string()).or_default())
}

/// Adds what is missing in one namespace (one call), then waits until everything is visible.
async fn apply_namespace(
    api: Arc<dyn TemporalApi>,
    plan: NamespacePlan,
    timeout: Duration,
) -> Result<usize, TemporalError> {
    if plan.missing.is_empty() {
        return Ok(0);
    }
    let lock = namespace_lock(&plan.namespace);
    let _guard = lock.lock().await;
    if !plan.exists {
        return Err(TemporalError::Verify(format!(
            "namespace `{}` does not exist; the namespaces step registers it first (run apply without --only, or with --only namespaces,search-attributes)",
            plan.namespace
        )));
    }
    api.add_search_attributes(&plan.namespace, &plan.missing)
        .await?;
    let started = Instant::now();
    let mut wait = SEARCH_ATTRIBUTES_POLL_INITIAL;
    loop {
        let have = api.list_search_attributes(&plan.namespace).await?;
        let mut not_visible = Vec::new();
        for (name, want) in &plan.wanted {
            match have.get(name) {
                None => not_visible.push(name.clone()),
                Some(Some(t)) if t == want => {}
                Some(other) => {
                    return Err(TemporalError::Refused(format!(
                        "namespace `{}`: search attribute `{name}` appeared as {} instead of {want} (added concurrently by someone else?); \
                         types can never change: declare `{name}: {}` or choose a new name",
                        plan.namespace,
                        type_name(*other),
                        type_name(*other)
                    )));
                }
            }
        }
        if not_visible.is_empty() {
            return Ok(plan.missing.len());
        }
        if started.elapsed() >= timeout {
            return Err(TemporalError::Verify(format!(
                "namespace `{}`: search attribute(s) {} not visible {:.1}s after AddSearchAttributes was accepted; \
                 re-run apply (it adds only what is missing); if it persists, check the server log for visibility errors",
                plan.namespace,
                not_visible.join(", "),
                timeout.as_secs_f64()
            )));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

/// For a namespace ListSearchAttributes does not know: `None` if it really does not exist
/// (DescribeNamespace says so), else its attributes once the server's cache knows it.
async fn wait_until_listable(
    api: &dyn TemporalApi,
    namespace: &str,
    timeout: Duration,
) -> Result<Option<ObservedAttributes>, TemporalError> {
    match api.describe_namespace(namespace).await {
        Err(TemporalError::NamespaceNotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let started = Instant::now();
    let mut wait = SEARCH_ATTRIBUTES_POLL_INITIAL;
    loop {
        tokio::time::sleep(wait).await;
        match api.list_search_attributes(namespace).await {
            Ok(a) => return Ok(Some(a)),
            Err(TemporalError::NamespaceNotFound(_)) if started.elapsed() < timeout => {}
            Err(TemporalError::NamespaceNotFound(_)) => {
                return Err(TemporalError::Verify(format!(
                    "namespace `{namespace}` exists but ListSearchAttributes still does not know it after {:.1}s; re-run apply",
                    timeout.as_secs_f64()
                )));
            }
            Err(e) => return Err(e),
        }
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

pub struct SearchAttributesStep {
    api: Lazy,
    visible_timeout: Duration,
}

impl SearchAttributesStep {
    pub fn new() -> Self {
        Self {
            api: Lazy::default(),
            visible_timeout: SEARCH_ATTRIBUTES_VISIBLE_TIMEOUT,
        }
    }
    /// With a given adapter and poll timeout (tests).
    pub fn with_api(api: Arc<dyn TemporalApi>, visible_timeout: Duration) -> Self {
        Self {
            api: Lazy::with(api),
            visible_timeout,
        }
    }

    /// Observes every namespace and validates everything; `Err` before any write. With
    /// `wait_for_new`, a namespace that exists (DescribeNamespace) but is not yet known to
    /// ListSearchAttributes (the server's namespace cache, including a short negative cache after
    /// a lookup of a missing name) is polled until it is, within the visibility timeout.
    async fn observe(
        &self,
        ctx: &Context,
        wait_for_new: bool,
    ) -> Result<(Arc<dyn TemporalApi>, bool, Vec<NamespacePlan>), StepError> {
        let api = self.api.get(ctx).await?;
        let info = api.cluster_info().await?;
        let sql = info
            .visibility_is_sql()
            .unwrap_or_else(|| ctx.config.visibility.is_sql());
        let names: Vec<String> = ctx
            .config
            .namespaces
            .iter()
            .map(|n| n.name.as_str().to_string())
            .collect();
        let timeout = self.visible_timeout;
        let observed = run_bounded(names.clone(), APPLY_CONCURRENCY, |ns| {
            let api = Arc::clone(&api);
            async move {
                match api.list_search_attributes(&ns).await {
                    Ok(a) => Ok(Some(a)),
                    Err(TemporalError::NamespaceNotFound(_)) if wait_for_new => {
                        wait_until_listable(api.as_ref(), &ns, timeout)
                            .await
                            .map_err(|e| with_namespace(&ns, e))
                    }
                    Err(TemporalError::NamespaceNotFound(_)) => Ok(None),
                    Err(e) => Err(with_namespace(&ns, e)),
                }
            }
        })
        .await;
        let declared: BTreeSet<String> = ctx
            .config
            .namespaces
            .iter()
            .flat_map(|n| n.search_attributes.keys().map(|k| k.as_str().to_string()))
            .collect();
        let mut plans = Vec::new();
        let mut problems = Vec::new();
        for (ns, obs) in ctx.config.namespaces.iter().zip(observed) {
            match obs {
                Err(e) => problems.push(e),
                Ok(obs) => match diff_namespace(
                    ns.name.as_str(),
                    &ns.search_attributes,
                    obs.as_ref(),
                    sql,
                    &declared,
                ) {
                    Ok(p) => plans.push(p),
                    Err(mut e) => problems.append(&mut e),
                },
            }
        }
        if !problems.is_empty() {
            return Err(combine_errors(problems));
        }
        Ok((api, sql, plans))
    }

    async fn apply_all(&self, ctx: &Context) -> Result<Vec<Change>, StepError> {
        let (api, sql, plans) = self.observe(ctx, true).await?;
        let report = changes(&plans);
        // Elasticsearch attributes are cluster-wide: concurrent adds from several namespaces
        // would be concurrent updates of one index mapping, so go one at a time there.
        let limit = if sql { APPLY_CONCURRENCY } else { 1 };
        let timeout = self.visible_timeout;
        let plans = if sql {
            plans
        } else {
            add_once_cluster_wide(plans)
        };
        let todo: Vec<NamespacePlan> = plans
            .into_iter()
            .filter(|p| !p.missing.is_empty())
            .collect();
        let names: Vec<String> = todo.iter().map(|p| p.namespace.clone()).collect();
        let results = run_bounded(todo, limit, |p| {
            apply_namespace(Arc::clone(&api), p, timeout)
        })
        .await;
        let errors: Vec<TemporalError> = names
            .iter()
            .zip(results)
            .filter_map(|(ns, r)| r.err().map(|e| with_namespace(ns, e)))
            .collect();
        if !errors.is_empty() {
            return Err(combine_errors(errors));
        }
        Ok(report)
    }
}

/// With cluster-wide attributes (Elasticsearch), an attribute added through one namespace is
/// there for all: only the first namespace that declares it adds it (one AddSearchAttributes
/// call instead of one per namespace for the same mapping change).
fn add_once_cluster_wide(mut plans: Vec<NamespacePlan>) -> Vec<NamespacePlan> {
    let mut added = BTreeSet::new();
    for p in &mut plans {
        p.missing.retain(|name, _| added.insert(name.clone()));
    }
    plans
}

impl Default for SearchAttributesStep {
    fn default() -> Self {
        Self::new()
    }
}

impl Step for SearchAttributesStep {
    fn name(&self) -> StepName {
        StepName::SearchAttributes
    }

    fn plan<'a>(&'a self, ctx: &'a Context) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move {
            let (_, _, plans) = self.observe(ctx, false).await?;
            Ok(changes(&plans))
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
mod tests {
    use super::*;
    use crate::reconcile::ErrorClass;
    use crate::temporal::fake::FakeTemporal;
    use crate::temporal::namespaces::tests::ctx_with;
    use SearchAttributeType::*;

    const NS: &str = "  - name: orders\n    retention: 3d\n    search_attributes: { CustomerId: Keyword, Priority: Int, Total: Double }\n  - name: billing\n    retention: 3d\n    search_attributes: { InvoiceId: Keyword }\n";

    fn fake() -> Arc<FakeTemporal> {
        let f = Arc::new(FakeTemporal::new(1, "sqlite"));
        f.insert_namespace("orders", 3);
        f.insert_namespace("billing", 3);
        f
    }

    #[tokio::test]
    async fn one_add_per_namespace_then_no_writes() {
        let ctx = ctx_with(NS);
        let f = fake();
        f.insert_attribute("orders", "Legacy", Text);
        f.state.lock().unwrap().visible_after_lists = 2;
        let step = SearchAttributesStep::with_api(f.clone(), Duration::from_secs(5));
        let plan = step.plan(&ctx).await.unwrap();
        let creates = plan.iter().filter(|c| c.action == Action::Create).count();
        assert_eq!(creates, 4, "{plan:?}");
        assert!(
            plan.iter().any(
                |c| c.action == Action::Drift && c.resource == "search attribute orders/Legacy"
            )
        );
        assert_eq!(f.writes(), 0);
        step.apply(&ctx, &plan).await.unwrap();
        assert_eq!(
            f.state.lock().unwrap().adds,
            2,
            "one AddSearchAttributes per namespace"
        );
        let again = SearchAttributesStep::with_api(f.clone(), Duration::from_secs(5))
            .plan(&ctx)
            .await
            .unwrap();
        assert!(again.iter().all(|c| c.action == Action::Drift), "{again:?}");
        assert_eq!(f.state.lock().unwrap().adds, 2);
    }

    #[tokio::test]
    async fn type_mismatch_is_refused_before_any_write() {
        let ctx = ctx_with(NS);
        let f = fake();
        f.insert_attribute("orders", "Priority", Keyword);
        let step = SearchAttributesStep::with_api(f.clone(), Duration::from_secs(1));
        let err = step.apply(&ctx, &[]).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Invalid);
        for want in [
            "`Priority`",
            "exists as Keyword",
            "declares Int",
            "can never change",
            "Priority: Keyword",
        ] {
            assert!(err.message.contains(want), "{want} not in {}", err.message);
        }
        assert_eq!(f.writes(), 0, "billing must not be touched either");
    }

    #[tokio::test]
    async fn sql_cap_counts_existing_attributes() {
        let ctx = ctx_with(NS);
        let f = fake();
        for n in ["A1", "A2", "A3"] {
            f.insert_attribute("orders", n, Int);
        }
        let step = SearchAttributesStep::with_api(f.clone(), Duration::from_secs(1));
        let err = step.plan(&ctx).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Invalid);
        assert!(err.message.contains("at most 3 Int"), "{}", err.message);
        assert!(err.message.contains("A1, A2, A3"), "{}", err.message);
        assert_eq!(f.writes(), 0);

        // Elasticsearch has no cap.
        let es = Arc::new(FakeTemporal::new(1, "elasticsearch"));
        es.insert_namespace("orders", 3);
        es.insert_namespace("billing", 3);
        for n in ["A1", "A2", "A3"] {
            es.insert_attribute("orders", n, Int);
        }
        let plan = SearchAttributesStep::with_api(es.clone(), Duration::from_secs(1))
            .plan(&ctx)
            .await
            .unwrap();
        assert!(
            plan.iter()
                .any(|c| c.resource == "search attribute orders/Priority")
        );
    }

    #[test]
    fn cluster_wide_attributes_are_added_through_the_first_namespace_only() {
        let plan = |ns: &str, names: &[&str]| NamespacePlan {
            namespace: ns.into(),
            exists: true,
            missing: names.iter().map(|n| (n.to_string(), Keyword)).collect(),
            wanted: BTreeMap::new(),
            extra: BTreeMap::new(),
        };
        let out = add_once_cluster_wide(vec![
            plan("a", &["X", "Y"]),
            plan("b", &["X", "Z"]),
            plan("c", &["Y"]),
        ]);
        let missing: Vec<Vec<&str>> = out
            .iter()
            .map(|p| p.missing.keys().map(String::as_str).collect())
            .collect();
        assert_eq!(missing, [vec!["X", "Y"], vec!["Z"], vec![]]);
    }

    #[test]
    fn preallocated_slots_on_elasticsearch_are_not_drift() {
        let observed: ObservedAttributes = [
            ("Keyword01", Some(SearchAttributeType::Keyword)),
            ("KeywordList03", Some(SearchAttributeType::KeywordList)),
            ("Int03", Some(SearchAttributeType::Int)),
            // Not slots: wrong type for the name, three digits, 00, and a user's attribute.
            ("Int04x", Some(SearchAttributeType::Int)),
            ("Bool01", Some(SearchAttributeType::Int)),
            ("Text001", Some(SearchAttributeType::Text)),
            ("Double00", Some(SearchAttributeType::Double)),
            ("Legacy", Some(SearchAttributeType::Keyword)),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
        let none = BTreeMap::new();
        let es = diff_namespace("orders", &none, Some(&observed), false, &BTreeSet::new()).unwrap();
        assert_eq!(
            es.extra.keys().map(String::as_str).collect::<Vec<_>>(),
            ["Bool01", "Double00", "Int04x", "Legacy", "Text001"]
        );
        // SQL visibility never lists the slots by these names: everything extra is drift.
        let sql = diff_namespace("orders", &none, Some(&observed), true, &BTreeSet::new()).unwrap();
        assert_eq!(sql.extra.len(), observed.len());
    }

    #[tokio::test]
    async fn invisible_attributes_time_out_clearly() {
        let ctx = ctx_with(NS);
        let f = fake();
        f.state.lock().unwrap().visible_after_lists = 1_000_000;
        let step = SearchAttributesStep::with_api(f.clone(), Duration::from_millis(300));
        let err = step.apply(&ctx, &[]).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Runtime);
        assert!(err.message.contains("not visible"), "{}", err.message);
        assert!(err.message.contains("CustomerId"), "{}", err.message);
    }

    #[tokio::test]
    async fn missing_namespace_is_planned_but_not_applied() {
        let ctx = ctx_with(NS);
        let f = Arc::new(FakeTemporal::new(1, "sqlite"));
        let step = SearchAttributesStep::with_api(f.clone(), Duration::from_secs(1));
        let plan = step.plan(&ctx).await.unwrap();
        assert!(
            plan.iter()
                .all(|c| c.detail.contains("after the namespace is registered"))
        );
        let err = step.apply(&ctx, &plan).await.unwrap_err();
        assert!(err.message.contains("does not exist"), "{}", err.message);
        assert_eq!(f.writes(), 0);
    }
}
