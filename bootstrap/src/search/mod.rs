//! The `search` adapter: Temporal's visibility store on Elasticsearch 7/8/9 or OpenSearch 2, over
//! the REST API with reqwest (one code path for every flavour).
//!
//! Flow (the `visibility` step when `visibility.elasticsearch` is configured):
//! 1. read the release's schema folder (`schema_dir`): template, cluster settings, schema version;
//! 2. `GET /`: detect flavour and version, refuse unsupported ones, warn when the flavour differs
//!    from the configuration;
//! 3. `GET /_cluster/health?wait_for_status=yellow&timeout=...`, bounded by `health_timeout`;
//! 4. privileges: one Elasticsearch `_has_privileges` call (or the OpenSearch account API);
//!    read privileges are required at once, skipped with a warning without security;
//! 5. observe: persistent cluster settings, the stored legacy template
//!    `temporal_visibility_v1_template`, the index (`HEAD`), its mapping, settings and `_meta`;
//! 6. diff (no writes) -> changes, and require the privileges the pending writes need; `plan`
//!    stops here. `apply` writes in order: cluster setting, template, index (or missing fields,
//!    replicas), `_meta` record;
//! 7. verify: observe and diff again; anything but drift left pending is an error.
//!
//! Guarantees: a write happens only when the observed state differs (canonical JSON comparison),
//! so a converged cluster gets no write; a field is never removed or changed (reported as drift);
//! the index `_meta` records the template sha256 and schema version we applied, under
//! `temporal_bootstrap`, keeping other keys; secrets never appear in messages or logs.
//!
//! Assumptions: the release's `schema/elasticsearch` folder is available locally; the legacy
//! `_template` API exists (Elasticsearch 7-9, OpenSearch 2); the index name matches the template
//! pattern (validated in config).
//!
//! Caveats: the primary shard count comes from [`SearchVisibilityStep::with_shard_hook`] or
//! [`SearchVisibilityStep::with_primary_shards`] (1 until the capacity planner provides it) and
//! only affects new indices (an existing index with another count is reported as drift); a
//! configured `replicas` is enforced on the existing index too; on OpenSearch the account API
//! proves authentication, not fine-grained permissions; AWS SigV4 is not supported (see
//! docs/visibility-elasticsearch.md).

pub mod client;
pub mod diff;
pub mod schema;

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::config::{ElasticsearchConfig, SearchFlavor, VisibilityConfig};
use crate::reconcile::{Action, Change, Context, ErrorKind, Step, StepError, StepFuture, StepName};

pub use client::SearchClient;
pub use diff::{Diff, IndexState, Observed, Op};
pub use schema::{DesiredTemplate, IndexSizing, SchemaFolder};

/// Everything that can go wrong here. Messages never hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    Config(String),
    #[error("schema folder: {0}")]
    Schema(String),
    #[error("{0}")]
    Unsupported(String),
    /// A secret reference that cannot be resolved: the environment differs from what the
    /// configuration says (a runtime failure, exit 1).
    #[error("{0}")]
    Secret(String),
    #[error("{call}: {message}")]
    Transport { call: String, message: String },
    #[error("{call} returned {status}: {detail}")]
    Api {
        call: String,
        status: u16,
        detail: String,
    },
    #[error("{0}")]
    Health(String),
    #[error("{0}")]
    Privileges(String),
    #[error("verification after apply failed: {0}")]
    Verify(String),
}

impl SearchError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) | Self::Schema(_) | Self::Unsupported(_) => ErrorKind::Invalid,
            Self::Transport { .. } => ErrorKind::Unreachable,
            Self::Api { status, .. } => match status {
                401 | 403 => ErrorKind::Denied,
                408 | 504 => ErrorKind::Timeout,
                409 => ErrorKind::Conflict,
                _ => ErrorKind::Failed,
            },
            Self::Privileges(_) => ErrorKind::Denied,
            Self::Secret(_) | Self::Health(_) | Self::Verify(_) => ErrorKind::Failed,
        }
    }
}

impl From<SearchError> for StepError {
    fn from(e: SearchError) -> Self {
        StepError::from_error(e.kind(), e)
    }
}

/// The supported servers, for messages.
pub const SUPPORTED: &str = "Elasticsearch 7.x, 8.x, 9.x and OpenSearch 2.x, 3.x";

/// What `GET /` told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub flavor: SearchFlavor,
    pub version: String,
    pub major: u32,
}

impl ServerInfo {
    pub fn product(&self) -> &'static str {
        match self.flavor {
            SearchFlavor::Elasticsearch => "Elasticsearch",
            SearchFlavor::Opensearch => "OpenSearch",
        }
    }
}

/// Reads the root endpoint body; refuses unsupported servers.
pub fn parse_server_info(body: &Value) -> Result<ServerInfo, SearchError> {
    let number = body
        .pointer("/version/number")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            SearchError::Unsupported(format!(
                "GET / did not return version.number; is this Elasticsearch or OpenSearch? Supported: {SUPPORTED}"
            ))
        })?;
    let flavor = match body
        .pointer("/version/distribution")
        .and_then(Value::as_str)
    {
        Some(d) if d.eq_ignore_ascii_case("opensearch") => SearchFlavor::Opensearch,
        _ => SearchFlavor::Elasticsearch,
    };
    let major: u32 = number
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| {
            SearchError::Unsupported(format!(
                "cannot read the version `{number}`; supported: {SUPPORTED}"
            ))
        })?;
    let info = ServerInfo {
        flavor,
        version: number.to_string(),
        major,
    };
    let ok = match flavor {
        SearchFlavor::Elasticsearch => (7..=9).contains(&major),
        // Temporal supports OpenSearch 2 and 3 (server 1.30.1+; its own CI runs 3).
        SearchFlavor::Opensearch => (2..=3).contains(&major),
    };
    if !ok {
        return Err(SearchError::Unsupported(format!(
            "{} {number} is not supported for Temporal visibility; supported: {SUPPORTED}",
            info.product()
        )));
    }
    Ok(info)
}

/// Where the primary shard count of new visibility indices comes from.
pub type ShardHook = fn(&Context) -> u32;

/// The `visibility` step for `visibility.elasticsearch` (Flow, Guarantees, Assumptions and
/// Caveats: see the [module documentation](self)). `enabled()` is false for other visibility
/// stores, so it can be merged with the PostgreSQL visibility step into one `visibility` step
/// that dispatches on the configuration.
#[derive(Debug, Clone)]
pub struct SearchVisibilityStep {
    primary_shards: u32,
    shard_hook: Option<ShardHook>,
    /// `Some(n)`: the template of schema vN instead of the release's current one.
    schema_version: Option<u32>,
}

impl Default for SearchVisibilityStep {
    fn default() -> Self {
        Self::new()
    }
}

impl SearchVisibilityStep {
    /// One primary shard until the capacity planner provides the count.
    pub fn new() -> Self {
        Self {
            primary_shards: 1,
            shard_hook: None,
            schema_version: None,
        }
    }

    /// Aims at the template of Elasticsearch schema `version` (`versioned/vN/` of the configured
    /// schema folder) instead of the release's current one: one hop of an upgrade.
    pub fn at_schema_version(mut self, version: u32) -> Self {
        self.schema_version = Some(version);
        self
    }

    /// A fixed primary shard count for new visibility indices (at least 1).
    pub fn with_primary_shards(mut self, n: u32) -> Self {
        self.primary_shards = n.max(1);
        self
    }

    /// Hook for the capacity planner: computes the primary shard count from the configuration at
    /// plan time (e.g. `|ctx| capacity::plan(&ctx.config).visibility_primary_shards`). Wins over
    /// [`Self::with_primary_shards`]; a result of 0 is treated as 1.
    pub fn with_shard_hook(mut self, hook: ShardHook) -> Self {
        self.shard_hook = Some(hook);
        self
    }

    /// The primary shard count used for `ctx`.
    pub fn primary_shards(&self, ctx: &Context) -> u32 {
        self.shard_hook
            .map(|h| h(ctx))
            .unwrap_or(self.primary_shards)
            .max(1)
    }

    fn config<'c>(&self, ctx: &'c Context) -> Result<&'c ElasticsearchConfig, SearchError> {
        match &ctx.config.visibility {
            VisibilityConfig::Elasticsearch(es) => Ok(es),
            _ => Err(SearchError::Config(
                "visibility is not elasticsearch; this step does not apply".into(),
            )),
        }
    }

    /// Everything up to the diff, shared by plan and apply.
    async fn prepare<'c>(&self, ctx: &'c Context) -> Result<Session<'c>, SearchError> {
        let cfg = self.config(ctx)?;
        let schema_dir = cfg.schema_dir.as_ref().ok_or_else(|| {
            SearchError::Config(
                "visibility.elasticsearch.schema_dir is not set: point it at the release's schema/elasticsearch folder (it holds visibility/index_template_v7.json)".into(),
            )
        })?;
        let folder = schema::load_folder_at(&ctx.resolve_path(schema_dir), self.schema_version)?;
        if self.schema_version.is_none()
            && let Ok(release) =
                crate::versions::SupportedRelease::of(ctx.config.cluster.temporal_version)
            && let Some(found) = folder
                .schema_version
                .as_deref()
                .and_then(schema::version_number)
            && found != release.schemas().elasticsearch
        {
            tracing::warn!(
                "schema folder holds Elasticsearch schema v{found} but Temporal {} expects v{}; check visibility.elasticsearch.schema_dir",
                ctx.config.cluster.temporal_version,
                release.schemas().elasticsearch
            );
        }
        let sizing = IndexSizing {
            primary_shards: self.primary_shards(ctx),
            replicas: cfg.replicas,
        };
        let desired = schema::desired_template(&folder, &cfg.index, sizing);
        let health_timeout = cfg.health_timeout.as_duration();
        let client = SearchClient::new(
            cfg,
            &ctx.base_dir,
            Duration::from_secs(30).max(health_timeout / 2),
        )?;
        let session = Session {
            cfg,
            client,
            folder,
            desired,
            server: None,
            grants: None,
        };
        Ok(session)
    }
}

/// One run against one cluster.
struct Session<'c> {
    cfg: &'c ElasticsearchConfig,
    client: SearchClient,
    folder: SchemaFolder,
    desired: DesiredTemplate,
    server: Option<ServerInfo>,
    /// What `_has_privileges` granted (Elasticsearch with security only).
    grants: Option<Grants>,
}

/// Privileges granted to the configured user, as `_has_privileges` reported them.
#[derive(Debug, Clone)]
struct Grants {
    user: String,
    cluster: std::collections::BTreeMap<String, bool>,
    index: std::collections::BTreeMap<String, bool>,
}

/// Reads every run: `GET _cluster/settings` (monitor), `GET _template` (manage_index_templates).
const READ_CLUSTER_PRIVILEGES: &[&str] = &["monitor", "manage_index_templates"];
/// Reads every run: `HEAD /<index>`, `GET _mapping`, `GET _settings`.
const READ_INDEX_PRIVILEGES: &[&str] = &["view_index_metadata"];
/// Everything the step may need, asked for in one `_has_privileges` call.
const ALL_CLUSTER_PRIVILEGES: &[&str] = &["monitor", "manage_index_templates", "manage"];
const ALL_INDEX_PRIVILEGES: &[&str] = &["view_index_metadata", "create_index", "manage"];

impl Session<'_> {
    fn index(&self) -> &str {
        &self.cfg.index
    }

    /// `GET /`, then the health wait.
    async fn connect(&mut self) -> Result<(), SearchError> {
        let reply = self.client.expect_ok(Method::GET, "/", None).await?;
        let info = parse_server_info(&reply.body)?;
        if info.flavor != self.cfg.flavor {
            let configured = match self.cfg.flavor {
                SearchFlavor::Elasticsearch => "elasticsearch",
                SearchFlavor::Opensearch => "opensearch",
            };
            tracing::warn!(
                "visibility.elasticsearch.flavor is `{configured}` but {} answers {} {}; continuing with one code path (set flavor to match)",
                self.client.base_url(),
                info.product(),
                info.version
            );
        }
        tracing::info!(server = %info.product(), version = %info.version, "search cluster");
        self.server = Some(info);
        self.wait_for_health().await
    }

    async fn wait_for_health(&self) -> Result<(), SearchError> {
        let timeout = self.cfg.health_timeout.as_duration();
        let secs = timeout.as_secs().max(1);
        let path = format!("/_cluster/health?wait_for_status=yellow&timeout={secs}s");
        let reply = self
            .client
            .send(
                Method::GET,
                &path,
                None,
                Some(timeout + Duration::from_secs(15)),
            )
            .await?;
        let timed_out = reply
            .body
            .get("timed_out")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let status = reply
            .body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        // Elasticsearch answers a health timeout with 408 and the health body.
        if reply.status == 408 || (reply.ok() && timed_out) {
            let unassigned = reply
                .body
                .get("unassigned_shards")
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into());
            return Err(SearchError::Health(format!(
                "cluster health is still {status} after waiting {secs}s for yellow ({unassigned} unassigned shards); fix the cluster or raise visibility.elasticsearch.health_timeout"
            )));
        }
        if !reply.ok() {
            return Err(self.client.api_error(&format!("GET {path}"), &reply));
        }
        if status == "red" {
            return Err(SearchError::Health(
                "cluster health is red; fix the cluster first".into(),
            ));
        }
        Ok(())
    }

    /// Reads what the step manages. No writes.
    async fn observe(&self) -> Result<Observed, SearchError> {
        let mut obs = Observed::default();
        let settings = self
            .client
            .expect_ok(Method::GET, "/_cluster/settings?flat_settings=true", None)
            .await?;
        for (scope, into) in [
            ("persistent", &mut obs.persistent),
            ("transient", &mut obs.transient),
        ] {
            if let Some(m) = settings.body.get(scope).and_then(Value::as_object) {
                for (k, v) in m {
                    into.insert(k.clone(), schema::canonical_scalars(v));
                }
            }
        }

        let tpath = format!("/_template/{}?flat_settings=true", schema::TEMPLATE_NAME);
        let t = self.client.send(Method::GET, &tpath, None, None).await?;
        match t.status {
            200 => {
                obs.template = t
                    .body
                    .get(schema::TEMPLATE_NAME)
                    .map(schema::canonical_template);
            }
            404 => {}
            _ => return Err(self.client.api_error(&format!("GET {tpath}"), &t)),
        }

        let ipath = format!("/{}", self.index());
        let head = self.client.send(Method::HEAD, &ipath, None, None).await?;
        match head.status {
            404 => {}
            200 => {
                let mpath = format!("/{}/_mapping", self.index());
                let m = self.client.expect_ok(Method::GET, &mpath, None).await?;
                let mut state = index_state(&m.body);
                let spath = format!("/{}/_settings?flat_settings=true", self.index());
                let s = self.client.expect_ok(Method::GET, &spath, None).await?;
                state.settings = index_settings(&s.body);
                obs.index = Some(state);
            }
            _ => return Err(self.client.api_error(&format!("HEAD {ipath}"), &head)),
        }
        Ok(obs)
    }

    fn diff(&self, obs: &Observed) -> Diff {
        diff::diff(
            obs,
            &self.desired,
            &self.folder.cluster_settings,
            self.index(),
        )
    }

    /// Asks once, before observing, for every privilege the step may use (Elasticsearch
    /// `_has_privileges`; OpenSearch account API). Fails at once when a read privilege is
    /// missing; write privileges are required later only for the writes that are pending.
    /// Skipped (with a warning) when the cluster runs without security.
    async fn load_privileges(&mut self) -> Result<(), SearchError> {
        let flavor = self
            .server
            .as_ref()
            .map(|s| s.flavor)
            .unwrap_or(self.cfg.flavor);
        match flavor {
            SearchFlavor::Elasticsearch => self.load_es_privileges().await?,
            SearchFlavor::Opensearch => self.check_opensearch_account().await?,
        }
        self.require(&[])
    }

    async fn load_es_privileges(&mut self) -> Result<(), SearchError> {
        let body = json!({
            "cluster": ALL_CLUSTER_PRIVILEGES,
            "index": [{"names": [self.index()], "privileges": ALL_INDEX_PRIVILEGES}],
        });
        let path = "/_security/user/_has_privileges";
        let reply = self
            .client
            .send(Method::POST, path, Some(&body), None)
            .await?;
        if !reply.ok() {
            if security_disabled(&reply) {
                tracing::warn!(
                    "Elasticsearch security is not enabled on {}: privilege check skipped (anyone who reaches the cluster can read and change visibility data)",
                    self.client.base_url()
                );
                return Ok(());
            }
            return Err(self.client.api_error(&format!("POST {path}"), &reply));
        }
        let granted = |v: Option<&Value>| -> std::collections::BTreeMap<String, bool> {
            v.and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_bool().unwrap_or(false)))
                        .collect()
                })
                .unwrap_or_default()
        };
        self.grants = Some(Grants {
            user: reply
                .body
                .get("username")
                .and_then(Value::as_str)
                .unwrap_or("the configured user")
                .to_string(),
            cluster: granted(reply.body.get("cluster")),
            index: granted(reply.body.get("index").and_then(|i| i.get(self.index()))),
        });
        Ok(())
    }

    /// Requires the read privileges plus those `ops` need (no-op without security).
    fn require(&self, ops: &[Op]) -> Result<(), SearchError> {
        let Some(g) = &self.grants else {
            return Ok(());
        };
        let mut cluster: Vec<&str> = READ_CLUSTER_PRIVILEGES.to_vec();
        let mut index: Vec<&str> = READ_INDEX_PRIVILEGES.to_vec();
        for op in ops {
            let (c, i) = op.privileges();
            cluster.extend(
                c.iter()
                    .filter(|p| !cluster.contains(p))
                    .collect::<Vec<_>>(),
            );
            index.extend(i.iter().filter(|p| !index.contains(p)).collect::<Vec<_>>());
        }
        let mut missing = Vec::new();
        for p in cluster {
            if g.cluster.get(p) != Some(&true) {
                missing.push(format!("cluster privilege `{p}`"));
            }
        }
        for p in index {
            if g.index.get(p) != Some(&true) {
                missing.push(format!("index privilege `{p}` on `{}`", self.index()));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let why = if ops.is_empty() {
            "needed to read the visibility setup"
        } else {
            "needed for the pending changes"
        };
        Err(SearchError::Privileges(format!(
            "{} lacks {} {why}; grant them (see docs/visibility-elasticsearch.md) and re-run",
            g.user,
            missing.join(", ")
        )))
    }

    async fn check_opensearch_account(&self) -> Result<(), SearchError> {
        let path = "/_plugins/_security/api/account";
        let reply = self.client.send(Method::GET, path, None, None).await?;
        if reply.ok() {
            let user = reply
                .body
                .get("user_name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let roles = reply
                .body
                .get("roles")
                .map(schema::canonical_string)
                .unwrap_or_default();
            tracing::info!(
                user,
                roles = %roles,
                "OpenSearch account (authentication checked; fine-grained permissions are checked by the writes themselves)"
            );
            return Ok(());
        }
        if security_disabled(&reply) {
            tracing::warn!(
                "the OpenSearch security plugin is absent on {}: account check skipped",
                self.client.base_url()
            );
            return Ok(());
        }
        Err(self.client.api_error(&format!("GET {path}"), &reply))
    }

    /// Performs the writes; returns whether an index-creation race was absorbed.
    async fn execute(&self, ops: &[Op]) -> Result<bool, SearchError> {
        let mut raced = false;
        for op in ops {
            match op {
                Op::ClusterSettings(m) => {
                    let body = json!({ "persistent": m });
                    self.client
                        .expect_ok(Method::PUT, "/_cluster/settings", Some(&body))
                        .await?;
                }
                Op::PutTemplate => {
                    let path = format!("/_template/{}", schema::TEMPLATE_NAME);
                    self.client
                        .expect_ok(Method::PUT, &path, Some(&self.desired.body))
                        .await?;
                }
                Op::CreateIndex => {
                    let path = format!("/{}", self.index());
                    let body = json!({
                        "mappings": {"_meta": {schema::META_KEY: self.desired.meta_record()}}
                    });
                    let reply = self
                        .client
                        .send(Method::PUT, &path, Some(&body), None)
                        .await?;
                    if !reply.ok() {
                        if reply.error_type() == Some("resource_already_exists_exception") {
                            tracing::info!(
                                index = self.index(),
                                "index created concurrently by someone else; continuing"
                            );
                            raced = true;
                        } else {
                            return Err(self.client.api_error(&format!("PUT {path}"), &reply));
                        }
                    }
                }
                Op::AddFields(props) => {
                    let path = format!("/{}/_mapping", self.index());
                    let body = json!({ "properties": props });
                    self.client
                        .expect_ok(Method::PUT, &path, Some(&body))
                        .await?;
                }
                Op::IndexSettings(settings) => {
                    let path = format!("/{}/_settings", self.index());
                    self.client
                        .expect_ok(Method::PUT, &path, Some(&Value::Object(settings.clone())))
                        .await?;
                }
                Op::RecordMeta(meta) => {
                    let path = format!("/{}/_mapping", self.index());
                    let body = json!({ "_meta": meta });
                    self.client
                        .expect_ok(Method::PUT, &path, Some(&body))
                        .await?;
                }
            }
        }
        Ok(raced)
    }
}

/// Reads `GET /<index>/_mapping` (keyed by the concrete index name, also behind an alias).
pub fn index_state(body: &Value) -> IndexState {
    let raw = body
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(|v| v.get("mappings"))
        .cloned()
        .unwrap_or(Value::Null);
    let raw = schema::unwrap_type(&raw).clone();
    let canon = schema::canonical_template(&json!({ "mappings": raw }));
    let properties = canon
        .pointer("/mappings/properties")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let dynamic = canon.pointer("/mappings/dynamic").cloned();
    // The stored `_meta` as stored (not canonicalised), so a merge preserves other keys.
    let meta = raw
        .get("_meta")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    IndexState {
        properties,
        dynamic,
        meta,
        settings: Default::default(),
    }
}

/// Reads `GET /<index>/_settings?flat_settings=true` (keyed by the concrete index name).
pub fn index_settings(body: &Value) -> std::collections::BTreeMap<String, Value> {
    body.as_object()
        .and_then(|m| m.values().next())
        .and_then(|v| v.get("settings"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), schema::canonical_scalars(v)))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether an error reply means "this cluster has no security layer" rather than a failure.
pub fn security_disabled(reply: &client::Reply) -> bool {
    if !matches!(reply.status, 400 | 404 | 405 | 500) {
        return false;
    }
    let text = reply.text.to_ascii_lowercase();
    text.contains("security must be explicitly enabled")
        || text.contains("security is not enabled")
        || text.contains("security not enabled")
        || text.contains("no handler found")
        || (reply.error_type() == Some("invalid_index_name_exception")
            && text.contains("_security"))
        || (reply.status == 404 && text.trim().is_empty())
}

impl Step for SearchVisibilityStep {
    fn name(&self) -> StepName {
        StepName::Visibility
    }

    fn enabled(&self, ctx: &Context) -> Result<bool, StepError> {
        Ok(matches!(
            ctx.config.visibility,
            VisibilityConfig::Elasticsearch(_)
        ))
    }

    fn plan<'a>(&'a self, ctx: &'a Context) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move {
            let mut s = self.prepare(ctx).await?;
            s.connect().await?;
            s.load_privileges().await?;
            let obs = s.observe().await?;
            let d = s.diff(&obs);
            // A plan that apply could not carry out says so now.
            s.require(&d.ops)?;
            Ok(d.changes)
        })
    }

    /// Re-observes rather than trusting `pending` (the cluster may have moved since the plan),
    /// writes, then verifies.
    fn apply<'a>(&'a self, ctx: &'a Context, pending: &'a [Change]) -> StepFuture<'a, Vec<Change>> {
        let _ = pending;
        Box::pin(async move {
            let mut s = self.prepare(ctx).await?;
            s.connect().await?;
            s.load_privileges().await?;
            let obs = s.observe().await?;
            let first = s.diff(&obs);
            s.require(&first.ops)?;
            let mut done = first.changes.clone();
            if s.execute(&first.ops).await? {
                // Someone created the index between our HEAD and PUT: finish on what exists.
                let again = s.diff(&s.observe().await?);
                s.require(&again.ops)?;
                s.execute(&again.ops).await?;
                for c in again.changes {
                    if !done.contains(&c) {
                        done.push(c);
                    }
                }
            }
            let after = s.diff(&s.observe().await?);
            let left: Vec<String> = after
                .changes
                .iter()
                .filter(|c| c.action != Action::Drift)
                .map(|c| format!("{} ({})", c.resource, c.detail))
                .collect();
            if !left.is_empty() {
                return Err(
                    SearchError::Verify(format!("still pending: {}", left.join("; "))).into(),
                );
            }
            Ok(done)
        })
    }
}

/// The Elasticsearch schema version recorded in the visibility index's `_meta` by the last
/// apply (`None`: no index yet, or an index this tool never wrote). Reads only.
pub async fn recorded_schema_version(ctx: &Context) -> Result<Option<u32>, SearchError> {
    let VisibilityConfig::Elasticsearch(cfg) = &ctx.config.visibility else {
        return Ok(None);
    };
    let client = SearchClient::new(cfg, &ctx.base_dir, Duration::from_secs(30))?;
    let path = format!("/{}/_mapping", cfg.index);
    let reply = client.send(Method::GET, &path, None, None).await?;
    match reply.status {
        404 => Ok(None),
        200 => Ok(index_state(&reply.body)
            .meta
            .get(schema::META_KEY)
            .and_then(|m| m.get("schema_version"))
            .and_then(Value::as_str)
            .and_then(schema::version_number)),
        _ => Err(client.api_error(&format!("GET {path}"), &reply)),
    }
}

/// Loads only the schema folder and builds the desired template (no network); used by tests
/// and tools that want to show what would be written.
pub fn desired_from_dir(
    schema_dir: &Path,
    index: &str,
    sizing: IndexSizing,
) -> Result<(SchemaFolder, DesiredTemplate), SearchError> {
    let folder = schema::load_folder(schema_dir)?;
    let desired = schema::desired_template(&folder, index, sizing);
    Ok((folder, desired))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_info_detects_flavour_and_refuses_unsupported() {
        let es8 = json!({"version": {"number": "8.15.0", "build_flavor": "default"}});
        let info = parse_server_info(&es8).unwrap();
        assert_eq!((info.flavor, info.major), (SearchFlavor::Elasticsearch, 8));
        let os = json!({"version": {"distribution": "opensearch", "number": "2.17.1"}});
        assert_eq!(
            parse_server_info(&os).unwrap().flavor,
            SearchFlavor::Opensearch
        );
        for (body, what) in [
            (
                json!({"version": {"number": "6.8.23"}}),
                "Elasticsearch 6.8.23",
            ),
            (
                json!({"version": {"distribution": "opensearch", "number": "1.3.19"}}),
                "OpenSearch 1.3.19",
            ),
            (
                json!({"version": {"distribution": "opensearch", "number": "4.0.0"}}),
                "OpenSearch 4.0.0",
            ),
        ] {
            let err = parse_server_info(&body).unwrap_err().to_string();
            assert!(err.contains(what) && err.contains(SUPPORTED), "{err}");
        }
        assert!(parse_server_info(&json!({"ok": true})).is_err());
    }

    #[test]
    fn index_state_reads_mapping_and_meta() {
        let body = json!({"temporal_visibility_v1_x-000001": {"mappings": {
            "dynamic": "false",
            "_meta": {"temporal_bootstrap": {"schema_version": "v14"}, "other": 1},
            "properties": {"D": {"type": "scaled_float", "scaling_factor": 10000.0}}
        }}});
        let s = index_state(&body);
        assert_eq!(s.dynamic, Some(json!("false")));
        assert_eq!(s.meta["other"], json!(1));
        assert_eq!(
            s.properties["D"],
            json!({"type": "scaled_float", "scaling_factor": "10000"})
        );
    }

    fn reply(status: u16, text: &str) -> client::Reply {
        client::Reply {
            status,
            body: serde_json::from_str(text).unwrap_or(Value::Null),
            text: text.into(),
        }
    }

    #[test]
    fn security_disabled_is_recognised_and_nothing_else() {
        assert!(security_disabled(&reply(
            500,
            r#"{"error":{"root_cause":[{"type":"exception","reason":"Security must be explicitly enabled when using a [basic] license. Enable security by setting [xpack.security.enabled] to [true] in the elasticsearch.yml file and restart the node."}],"type":"exception","reason":"Security must be explicitly enabled when using a [basic] license. Enable security by setting [xpack.security.enabled] to [true] in the elasticsearch.yml file and restart the node."},"status":500}"#
        )));
        assert!(security_disabled(&reply(
            400,
            r#"{"error":"no handler found for uri [/_plugins/_security/api/account] and method [GET]"}"#
        )));
        assert!(!security_disabled(&reply(
            401,
            r#"{"error":{"type":"security_exception","reason":"unable to authenticate user"},"status":401}"#
        )));
        assert!(!security_disabled(&reply(
            500,
            r#"{"error":{"type":"exception","reason":"node disconnected"},"status":500}"#
        )));
    }
}
