//! The `visibility` step (`bootstrap/src/search/`) against real OpenSearch, next to the real
//! `temporal-elasticsearch-tool` of the same Temporal release.
//!
//! What the tests prove:
//! - `private_node_step_converges_matches_the_release_tool_and_coexists_with_it` (one private
//!   OpenSearch 2 node started by the test):
//!   (a) on a fresh node the step writes exactly the cluster setting, the template and the index,
//!   and a second plan is empty and a second apply makes zero writes (counted by a recording
//!   proxy in front of the node; template, mapping, settings and index uuid are unchanged);
//!   (b) the tool's `setup-schema` + `create-index` on a fresh state issue the same three writes
//!   and leave the same cluster settings, the same template and the same index settings; the index
//!   mappings differ only in `_meta` (our `temporal_bootstrap` record);
//!   (c) our step after the tool writes only the `_meta` record; the tool's `setup-schema`,
//!   `update-schema --index` and `create-index` after our step exit 0, keep our `_meta`, and our
//!   next plan is empty; with a configured replica count the tool resets the template to the
//!   release's replica settings and our next plan shows exactly that template update.
//! - `private_node_older_release_index_is_upgraded_and_changed_field_is_drift` (a second private
//!   node): an index made from the release folder's `versioned/v9` template (schema v9: Temporal
//!   1.27 to 1.29) gets exactly the missing fields, the template and the `_meta` record of the
//!   current schema version, in place (same uuid, old fields kept); an index whose `WorkflowType`
//!   was created as `text` is reported as drift, that field is never written, and once converged
//!   otherwise the step writes nothing.
//! - `shared_stack_plan_is_empty_and_records_the_release_schema_version`: read-only on the
//!   `scripts/dev-services` node: the production runner's `visibility` plan for
//!   `examples/local.yaml` is empty and makes no write (through the recording proxy), and the
//!   `_meta` of the stack's index records the release's schema version and the sha256 of the
//!   template the step would write today.
//! - `opensearch3_private_node_converges` (only with `TB_OPENSEARCH3=1`, OpenSearch 3 on the
//!   Java 25 JDK): the same fresh-node convergence as on 2.x, and the release tool's
//!   `setup-schema` + `create-index` on another index store exactly the template and fields our
//!   step wants.
//!
//! Environment: `scripts/dev-services start`, then `eval "$(scripts/dev-services env)"`
//! (TB_OPENSEARCH_URL, TB_TEMPORAL_SCHEMA_DIR, TB_TEMPORAL_ES_TOOL, TB_TEMPORAL_VERSION); the
//! private nodes need what `scripts/lib/opensearch.sh` needs (a JDK 17 and Maven, or its cached
//! launcher build; OpenSearch 3 needs the JDK at `/usr/lib/jvm/temurin-25-jdk-amd64`). Each
//! private node listens on free loopback ports, keeps its data in a temporary directory and is
//! stopped when its test ends, so the shared stack's template and index are never written.
//! The tests are ignored unless the stack is meant to be there (`TB_REPO_LOCAL` or `CI=true` at
//! build time, see `build.rs`); the OpenSearch 3 one also needs `TB_OPENSEARCH3=1`. When they
//! run, a missing variable is a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use temporal_bootstrap::config::{VisibilityConfig, load_str};
use temporal_bootstrap::reconcile::{Action, Change, Context, Mode, Step, StepName, StepStatus};
use temporal_bootstrap::search::{self, IndexSizing, SearchVisibilityStep, schema};

const TEMPLATE: &str = "temporal_visibility_v1_template";
/// The schema version of Temporal 1.27 to 1.29 (see `versions::RELEASES`), read from the current
/// release's `versioned/` folder (1.32.2's copy has one field more than 1.27.3's own v9:
/// `TemporalReportedProblems`, added to v9 later).
const OLDER_SCHEMA: &str = "v9";
/// Index settings OpenSearch sets per index (identity and creation), left out of comparisons.
const PER_INDEX_SETTINGS: &[&str] = &[
    "index.uuid",
    "index.creation_date",
    "index.provided_name",
    "index.version.created",
];

// ------------------------------------------------------------------------------------------------
// Scenario 1: fresh private node, our step and the release tool
// ------------------------------------------------------------------------------------------------

#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn private_node_step_converges_matches_the_release_tool_and_coexists_with_it() {
    let release = Release::required();
    let node = PrivateNode::start(NodeVersion::OpenSearch2).await;
    let proxy = RecordingProxy::start(&node.url).await;
    let raw = Raw::new(&node.url);
    let tool = ReleaseTool::new(&release, &proxy.url);
    let index = "temporal_visibility_v1_private";
    let step = SearchVisibilityStep::new();
    let ctx = release.context(&proxy.url, index, None);

    // (a) Fresh node: converges, then a second run plans nothing and writes nothing.
    let ours = converge_fresh_node_then_write_nothing(&step, &ctx, &proxy, &raw, index).await;

    // (b) The release tool on a fresh state: same writes, same template, same index but `_meta`.
    raw.reset(index).await;
    proxy.clear();
    tool.run(&["setup-schema"]).await;
    tool.run(&["create-index", "--index", index]).await;
    let tool_writes = proxy.take_writes();
    eprintln!("the tool's setup writes: {:?}", request_lines(&tool_writes));
    assert_eq!(
        write_targets(&tool_writes),
        vec![
            "PUT /_cluster/settings".to_string(),
            format!("PUT /_template/{TEMPLATE}"),
            format!("PUT /{index}"),
        ],
        "the tool's writes: {tool_writes:#?}"
    );
    let by_tool = NodeState::read(&raw, index).await;
    assert_eq!(by_tool.cluster, ours.cluster, "persistent cluster settings");
    assert_eq!(
        differing_paths(&ours.template, &by_tool.template),
        Vec::<String>::new(),
        "the template the tool stores differs from ours"
    );
    assert_eq!(
        differing_paths(&ours.index_settings(), &by_tool.index_settings()),
        Vec::<String>::new(),
        "index settings (without {PER_INDEX_SETTINGS:?})"
    );
    // Expected and only: our record of what we applied.
    assert_eq!(
        differing_paths(&ours.mapping, &by_tool.mapping),
        vec!["_meta".to_string()],
        "index mappings: ours {:#} vs the tool's {:#}",
        ours.mapping,
        by_tool.mapping
    );
    assert_eq!(
        ours.mapping
            .pointer("/_meta")
            .and_then(Value::as_object)
            .map(|m| m.keys().collect::<Vec<_>>()),
        Some(vec![&schema::META_KEY.to_string()]),
        "our _meta holds only the temporal_bootstrap record"
    );

    // (c1) Our step after the tool's setup: converges and writes only the `_meta` record.
    proxy.clear();
    let done = apply_like_the_runner(&step, &ctx).await;
    assert_eq!(
        summary(&done),
        vec![format!("update index {index} _meta")],
        "what the step does after the tool"
    );
    let writes = proxy.take_writes();
    assert_eq!(
        write_targets(&writes),
        vec![format!("PUT /{index}/_mapping")],
        "{writes:#?}"
    );
    assert_eq!(
        keys(&writes[0].body),
        vec!["_meta"],
        "only _meta is written: {:#}",
        writes[0].body
    );
    assert_eq!(plan(&step, &ctx).await, Vec::<Change>::new());
    let after_ours = NodeState::read(&raw, index).await;
    assert_eq!(
        after_ours.mapping, ours.mapping,
        "same mapping as our fresh run"
    );
    assert_eq!(
        after_ours.uuid(),
        by_tool.uuid(),
        "the tool's index is kept"
    );

    // (c2) The tool after our step: every command exits 0, keeps our `_meta`, and our next plan
    // is empty (the tool writes the same template and fields again).
    proxy.clear();
    tool.run(&["setup-schema"]).await;
    tool.run(&["update-schema", "--index", index]).await;
    tool.run(&["create-index", "--index", index]).await;
    let tool_writes = proxy.take_writes();
    eprintln!(
        "the tool's writes after our step: {:?}",
        request_lines(&tool_writes)
    );
    assert_eq!(
        write_targets(&tool_writes),
        vec![
            "PUT /_cluster/settings".to_string(),
            format!("PUT /_template/{TEMPLATE}"),
            format!("PUT /_template/{TEMPLATE}"),
            format!("PUT /{index}/_mapping"),
            format!("PUT /{index}"),
        ],
        "{tool_writes:#?}"
    );
    let after_tool = NodeState::read(&raw, index).await;
    assert_eq!(
        after_tool, after_ours,
        "the tool changed what our step converged"
    );
    assert_eq!(plan(&step, &ctx).await, Vec::<Change>::new());

    // (c3) With a configured replica count (as examples/local.yaml), the template is ours, not the
    // release's: the tool resets it, and our next plan shows exactly that template update.
    let sized = release.context(&proxy.url, index, Some(0));
    let done = apply_like_the_runner(&step, &sized).await;
    assert_eq!(
        summary(&done),
        vec![
            format!("update index template {TEMPLATE}"),
            format!("update index {index} settings"),
            format!("update index {index} _meta"),
        ]
    );
    assert_eq!(plan(&step, &sized).await, Vec::<Change>::new());
    tool.run(&["setup-schema"]).await;
    let pending = plan(&step, &sized).await;
    assert_eq!(
        summary(&pending),
        vec![format!("update index template {TEMPLATE}")],
        "{pending:#?}"
    );
    assert!(
        pending[0].detail.contains("index.auto_expand_replicas"),
        "{}",
        pending[0].detail
    );
    apply_like_the_runner(&step, &sized).await;
    assert_eq!(plan(&step, &sized).await, Vec::<Change>::new());
}

/// Scenario 1(a) on a node without any visibility state; returns the converged state.
async fn converge_fresh_node_then_write_nothing(
    step: &SearchVisibilityStep,
    ctx: &Context,
    proxy: &RecordingProxy,
    raw: &Raw,
    index: &str,
) -> NodeState {
    proxy.clear();
    let done = apply_like_the_runner(step, ctx).await;
    assert_eq!(
        summary(&done),
        vec![
            "update cluster setting action.auto_create_index".to_string(),
            format!("create index template {TEMPLATE}"),
            format!("create index {index}"),
        ]
    );
    let writes = proxy.take_writes();
    eprintln!(
        "our step's writes on a fresh node: {:?}",
        request_lines(&writes)
    );
    assert_eq!(
        write_targets(&writes),
        vec![
            "PUT /_cluster/settings".to_string(),
            format!("PUT /_template/{TEMPLATE}"),
            format!("PUT /{index}"),
        ],
        "{writes:#?}"
    );
    let converged = NodeState::read(raw, index).await;
    let meta = &converged.mapping["_meta"][schema::META_KEY];
    assert_eq!(meta["schema_version"], json!(ctx_schema_version(ctx)));
    assert_eq!(meta["managed_by"], json!("temporal-bootstrap"));

    // Second run: nothing planned, and apply (called even so) writes nothing.
    assert_eq!(plan(step, ctx).await, Vec::<Change>::new());
    let again = step.apply(ctx, &[]).await.expect("second apply");
    assert_eq!(again, Vec::<Change>::new());
    assert!(
        proxy.requests() > 0,
        "the second run went through the proxy"
    );
    let writes = proxy.take_writes();
    assert!(
        writes.is_empty(),
        "a converged node got writes: {writes:#?}"
    );
    let unchanged = NodeState::read(raw, index).await;
    assert_eq!(unchanged, converged);
    converged
}

// ------------------------------------------------------------------------------------------------
// Scenario 2: an index of an older release
// ------------------------------------------------------------------------------------------------

#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn private_node_older_release_index_is_upgraded_and_changed_field_is_drift() {
    let release = Release::required();
    let node = PrivateNode::start(NodeVersion::OpenSearch2).await;
    let proxy = RecordingProxy::start(&node.url).await;
    let raw = Raw::new(&node.url);
    let step = SearchVisibilityStep::new();
    let older = release.versioned_template(OLDER_SCHEMA);
    let current_props = template_properties(&release.current_template());
    let older_props = template_properties(&older);
    let missing: BTreeSet<String> = current_props
        .keys()
        .filter(|f| !older_props.contains_key(*f))
        .cloned()
        .collect();
    assert!(
        missing.contains("TemporalExternalPayloadSizeBytes") && missing.len() > 10,
        "{OLDER_SCHEMA} should lack the newer fields: {missing:?}"
    );

    // What an older release's setup left: its template, the cluster setting, its index.
    raw.put(
        "/_cluster/settings",
        json!({"persistent": {"action.auto_create_index": "false"}}),
    )
    .await;
    raw.put(&format!("/_template/{TEMPLATE}"), older.clone())
        .await;
    let index = "temporal_visibility_v1_from_v9";
    raw.put(&format!("/{index}"), json!({})).await;
    let before = NodeState::read(&raw, index).await;
    assert_eq!(
        before.mapping["properties"].as_object().unwrap().len(),
        older_props.len()
    );

    // Upgrade: template, exactly the missing fields, the version record; in place.
    let ctx = release.context(&proxy.url, index, None);
    let pending = plan(&step, &ctx).await;
    let added: BTreeSet<String> = pending
        .iter()
        .filter_map(|c| c.resource.strip_prefix(&format!("index {index} field ")))
        .map(String::from)
        .collect();
    assert_eq!(added, missing, "fields planned for addition");
    assert!(
        pending.iter().all(|c| c.action == Action::Update),
        "{pending:#?}"
    );
    proxy.clear();
    apply_like_the_runner(&step, &ctx).await;
    let writes = proxy.take_writes();
    assert_eq!(
        write_targets(&writes),
        vec![
            format!("PUT /_template/{TEMPLATE}"),
            format!("PUT /{index}/_mapping"),
            format!("PUT /{index}/_mapping"),
        ],
        "{writes:#?}"
    );
    assert_eq!(
        keys(&writes[1].body["properties"]),
        missing.iter().map(String::as_str).collect::<Vec<_>>(),
        "only the missing fields are written"
    );
    let after = NodeState::read(&raw, index).await;
    assert_eq!(after.uuid(), before.uuid(), "upgraded in place");
    for (field, want) in &current_props {
        assert_eq!(
            field_type(&after.mapping["properties"][field]),
            field_type(want),
            "field {field}"
        );
    }
    let desired = release.desired(index, None);
    let meta = &after.mapping["_meta"][schema::META_KEY];
    assert_eq!(meta["schema_version"], json!(desired.0));
    assert_eq!(meta["template_sha256"], json!(desired.1));
    assert_eq!(
        schema::canonical_template(&after.template),
        schema::canonical_template(&release.current_template()),
        "the stored template is the current release's"
    );
    assert_eq!(plan(&step, &ctx).await, Vec::<Change>::new());

    // Drift: an index (made under the older release) whose WorkflowType was created as text.
    let drifted = "temporal_visibility_v1_drift";
    raw.put(&format!("/_template/{TEMPLATE}"), older).await;
    raw.put(
        &format!("/{drifted}"),
        json!({"mappings": {"properties": {"WorkflowType": {"type": "text"}}}}),
    )
    .await;
    let dctx = release.context(&proxy.url, drifted, None);
    proxy.clear();
    let done = apply_like_the_runner(&step, &dctx).await;
    let drift: Vec<&Change> = done.iter().filter(|c| c.action == Action::Drift).collect();
    assert_eq!(drift.len(), 1, "{done:#?}");
    assert_eq!(
        drift[0].resource,
        format!("index {drifted} field WorkflowType")
    );
    assert!(
        drift[0].detail.contains("text") && drift[0].detail.contains("keyword"),
        "{}",
        drift[0].detail
    );
    let writes = proxy.take_writes();
    assert!(
        writes
            .iter()
            .all(|w| w.body.pointer("/properties/WorkflowType").is_none()),
        "WorkflowType was written: {writes:#?}"
    );
    let state = NodeState::read(&raw, drifted).await;
    assert_eq!(
        field_type(&state.mapping["properties"]["WorkflowType"]),
        "text"
    );
    assert_eq!(
        state.mapping["_meta"][schema::META_KEY]["schema_version"],
        json!(desired.0)
    );
    // Converged apart from the drift: the plan holds only it, and apply writes nothing.
    let pending = plan(&step, &dctx).await;
    assert_eq!(
        summary(&pending),
        vec![format!("drift index {drifted} field WorkflowType")]
    );
    let again = step
        .apply(&dctx, &pending)
        .await
        .expect("apply with drift only");
    assert_eq!(summary(&again), summary(&pending));
    assert!(proxy.take_writes().is_empty(), "drift alone caused writes");
    assert_eq!(NodeState::read(&raw, drifted).await, state);
}

// ------------------------------------------------------------------------------------------------
// Scenario 3: the shared stack, read-only
// ------------------------------------------------------------------------------------------------

#[tokio::test]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn shared_stack_plan_is_empty_and_records_the_release_schema_version() {
    let (url, release) = (required("TB_OPENSEARCH_URL"), Release::required());
    temporal_bootstrap::ensure_crypto_provider();
    let proxy = RecordingProxy::start(&url).await;
    let config_path = repo_root().join("examples/local.yaml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let configured = format!("url: {}\n", url.trim_end_matches('/'));
    assert!(
        text.contains(&configured),
        "examples/local.yaml does not point at TB_OPENSEARCH_URL ({url})"
    );
    // The same configuration, read through the recording proxy.
    let text = text.replace(&configured, &format!("url: {}\n", proxy.url));
    let loaded = load_str(&text, &config_path.display().to_string())
        .unwrap_or_else(|e| panic!("examples/local.yaml: {e}"));
    let ctx = Context {
        config: Arc::new(loaded.config),
        base_dir: config_path.parent().unwrap().to_path_buf(),
        offline: false,
        force: false,
    };
    let VisibilityConfig::Elasticsearch(es) = &ctx.config.visibility else {
        panic!("examples/local.yaml has no elasticsearch visibility");
    };

    // The production runner's plan, as `temporal-bootstrap plan --only visibility`.
    let reports = temporal_bootstrap::steps::run(&ctx, Mode::Plan, &[StepName::Visibility]).await;
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(
        reports[0].status,
        StepStatus::UpToDate,
        "the stack's index is not converged: {:#?}",
        reports[0]
    );
    assert!(reports[0].changes.is_empty());
    assert!(proxy.requests() > 0, "the plan went through the proxy");
    assert_eq!(proxy.take_writes(), Vec::<Recorded>::new(), "plan wrote");

    // What the index records: the release's schema version, the template the step writes today.
    let raw = Raw::new(&url);
    let (status, body) = raw.get(&format!("/{}/_mapping", es.index)).await;
    assert_eq!(status, 200, "{body}");
    let meta = body
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(|i| i.pointer(&format!("/mappings/_meta/{}", schema::META_KEY)))
        .cloned()
        .unwrap_or_else(|| panic!("no _meta record on {}: {body:#}", es.index));
    let expected =
        temporal_bootstrap::versions::SupportedRelease::of(ctx.config.cluster.temporal_version)
            .map(|r| format!("v{}", r.schemas().elasticsearch))
            .expect("a known release");
    assert_eq!(
        ctx.config.cluster.temporal_version.to_string(),
        release.version,
        "examples/local.yaml and TB_TEMPORAL_VERSION name the same release"
    );
    assert_eq!(meta["schema_version"], json!(expected), "{meta:#}");
    let sizing = IndexSizing {
        primary_shards: temporal_bootstrap::capacity::visibility_primary_shards(&ctx.config),
        replicas: es.replicas,
    };
    let schema_dir = ctx.resolve_path(es.schema_dir.as_ref().unwrap());
    let (folder, desired) = search::desired_from_dir(&schema_dir, &es.index, sizing).unwrap();
    assert_eq!(folder.schema_version.as_deref(), Some(expected.as_str()));
    assert_eq!(meta["template_sha256"], json!(desired.sha256));
    eprintln!(
        "{} records schema {} (template sha256 {})",
        es.index, meta["schema_version"], meta["template_sha256"]
    );
}

// ------------------------------------------------------------------------------------------------
// OpenSearch 3 (opt-in)
// ------------------------------------------------------------------------------------------------

#[tokio::test]
#[cfg_attr(
    all(tb_stack, not(tb_opensearch3)),
    ignore = "needs TB_OPENSEARCH3=1 (a private OpenSearch 3 node on the Java 25 JDK)"
)]
#[cfg_attr(
    not(tb_stack),
    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
)]
async fn opensearch3_private_node_converges() {
    assert_eq!(
        std::env::var("TB_OPENSEARCH3").as_deref(),
        Ok("1"),
        "built with TB_OPENSEARCH3=1 (cfg tb_opensearch3) but run without it: set TB_OPENSEARCH3=1 to start a private OpenSearch {OPENSEARCH3_VERSION} node (needs {OPENSEARCH3_JAVA_HOME})"
    );
    let release = Release::required();
    let node = PrivateNode::start(NodeVersion::OpenSearch3).await;
    let proxy = RecordingProxy::start(&node.url).await;
    let raw = Raw::new(&node.url);
    let step = SearchVisibilityStep::new();
    let ctx = release.context(&proxy.url, "temporal_visibility_v1_os3_ours", None);
    converge_fresh_node_then_write_nothing(
        &step,
        &ctx,
        &proxy,
        &raw,
        "temporal_visibility_v1_os3_ours",
    )
    .await;
    let index = "temporal_visibility_v1_os3";

    // What the step relies on works on 3.x: the legacy template API stores exactly the template
    // the step wants, and an index made from it has exactly the fields the step wants.
    let tool = ReleaseTool::new(&release, &node.url);
    tool.run(&["setup-schema"]).await;
    tool.run(&["create-index", "--index", index]).await;
    let (_, desired) = search::desired_from_dir(
        &release.elasticsearch_dir(),
        index,
        IndexSizing {
            primary_shards: 1,
            replicas: None,
        },
    )
    .unwrap();
    let state = NodeState::read(&raw, index).await;
    assert_eq!(
        schema::canonical_template(&state.template),
        desired.canonical
    );
    let (_, mapping) = raw.get(&format!("/{index}/_mapping")).await;
    assert_eq!(
        search::index_state(&mapping).properties,
        desired.properties()
    );
}

// ------------------------------------------------------------------------------------------------
// Helpers: environment and configuration
// ------------------------------------------------------------------------------------------------

/// A variable of `scripts/dev-services env`. Only tests marked to need the stack call it (they
/// are ignored without it, see `build.rs`), so a missing one is a failure.
fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set; run `eval \"$(scripts/dev-services env)\"` after `scripts/dev-services start`"
        ),
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Temporal release of the stack: its schema folder, its elasticsearch tool, its version.
struct Release {
    schema_dir: PathBuf,
    es_tool: PathBuf,
    version: String,
}

impl Release {
    fn required() -> Self {
        let schema_dir = required("TB_TEMPORAL_SCHEMA_DIR");
        let es_tool = required("TB_TEMPORAL_ES_TOOL");
        let version = required("TB_TEMPORAL_VERSION");
        temporal_bootstrap::ensure_crypto_provider();
        Self {
            schema_dir: schema_dir.into(),
            es_tool: es_tool.into(),
            version,
        }
    }

    /// The release's `schema/elasticsearch` (what `visibility.elasticsearch.schema_dir` names).
    fn elasticsearch_dir(&self) -> PathBuf {
        self.schema_dir.join("elasticsearch")
    }

    fn versioned_template(&self, version: &str) -> Value {
        let path = self.elasticsearch_dir().join(format!(
            "visibility/versioned/{version}/index_template_v7.json"
        ));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// The template the step loads as current (the newest versioned one).
    fn current_template(&self) -> Value {
        let folder = schema::load_folder(&self.elasticsearch_dir()).unwrap();
        folder.template
    }

    /// (schema version, template sha256) the step records for `index` with default sizing.
    fn desired(&self, index: &str, replicas: Option<u32>) -> (String, String) {
        let sizing = IndexSizing {
            primary_shards: 1,
            replicas,
        };
        let (_, d) = search::desired_from_dir(&self.elasticsearch_dir(), index, sizing).unwrap();
        (d.schema_version.expect("a known schema version"), d.sha256)
    }

    /// A platform configuration whose visibility is `index` on `url`, with this release.
    fn context(&self, url: &str, index: &str, replicas: Option<u32>) -> Context {
        let replicas = replicas
            .map(|r| format!("    replicas: {r}\n"))
            .unwrap_or_default();
        let yaml = format!(
            r#"cluster:
  name: visibility-opensearch-test
  temporal_version: "{version}"
  environment: development
  frontend:
    address: 127.0.0.1:7233
capacity:
  peak_workflow_starts_per_second: 1
  activities_per_workflow: 1
  average_workflow_duration: 1m
persistence:
  sqlite:
    path: /tmp/temporal-bootstrap-visibility-opensearch-test.db
visibility:
  elasticsearch:
    url: {url}
    flavor: opensearch
    index: {index}
    schema_dir: {schema_dir}
    health_timeout: 30s
{replicas}namespaces:
  - name: default-ns
    retention: 1d
"#,
            version = self.version,
            schema_dir = self.elasticsearch_dir().display(),
        );
        let loaded = load_str(&yaml, "visibility-opensearch-test.yaml")
            .unwrap_or_else(|e| panic!("test configuration: {e}\n{yaml}"));
        Context {
            config: Arc::new(loaded.config),
            base_dir: repo_root(),
            offline: false,
            force: false,
        }
    }
}

/// The schema version the step will record for `ctx` (from its schema folder).
fn ctx_schema_version(ctx: &Context) -> String {
    let VisibilityConfig::Elasticsearch(es) = &ctx.config.visibility else {
        unreachable!("test contexts use elasticsearch visibility")
    };
    let folder = schema::load_folder(es.schema_dir.as_ref().unwrap()).unwrap();
    folder.schema_version.expect("a known schema version")
}

// ------------------------------------------------------------------------------------------------
// Helpers: running the step and the release tool
// ------------------------------------------------------------------------------------------------

async fn plan(step: &SearchVisibilityStep, ctx: &Context) -> Vec<Change> {
    step.plan(ctx).await.unwrap_or_else(|e| panic!("plan: {e}"))
}

/// What `temporal-bootstrap apply` does: plan, then apply when more than drift is pending.
async fn apply_like_the_runner(step: &SearchVisibilityStep, ctx: &Context) -> Vec<Change> {
    let pending = plan(step, ctx).await;
    if pending.iter().all(|c| c.action == Action::Drift) {
        return pending;
    }
    step.apply(ctx, &pending)
        .await
        .unwrap_or_else(|e| panic!("apply: {e}\npending: {pending:#?}"))
}

/// `action resource` of each change, e.g. `create index temporal_visibility_v1_x`.
fn summary(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            let action = match c.action {
                Action::Create => "create",
                Action::Update => "update",
                Action::Drift => "drift",
            };
            format!("{action} {}", c.resource)
        })
        .collect()
}

/// `temporal-elasticsearch-tool --endpoint URL ...` of the release.
struct ReleaseTool {
    path: PathBuf,
    endpoint: String,
}

impl ReleaseTool {
    fn new(release: &Release, endpoint: &str) -> Self {
        Self {
            path: release.es_tool.clone(),
            endpoint: endpoint.to_string(),
        }
    }

    /// Runs one command; it must exit 0.
    async fn run(&self, args: &[&str]) {
        let out = tokio::process::Command::new(&self.path)
            .arg("--endpoint")
            .arg(&self.endpoint)
            .args(args)
            // Only the flags configure it.
            .env_remove("ES_SERVER")
            .env_remove("ES_USER")
            .env_remove("ES_PWD")
            .env_remove("ES_VISIBILITY_INDEX")
            .output()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()));
        assert!(
            out.status.success(),
            "temporal-elasticsearch-tool {} exited with {}:\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Helpers: reading the node
// ------------------------------------------------------------------------------------------------

/// Direct REST calls to a node (not through the proxy).
struct Raw {
    http: reqwest::Client,
    base: String,
}

impl Raw {
    fn new(url: &str) -> Self {
        temporal_bootstrap::ensure_crypto_provider();
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .unwrap(),
            base: url.trim_end_matches('/').to_string(),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, None).await
    }

    /// A write that must succeed.
    async fn put(&self, path: &str, body: Value) -> Value {
        let (status, reply) = self.send(Method::PUT, path, Some(body)).await;
        assert!((200..300).contains(&status), "PUT {path}: {status} {reply}");
        reply
    }

    /// Back to a node without visibility state (private nodes only).
    async fn reset(&self, index: &str) {
        for path in [format!("/{index}"), format!("/_template/{TEMPLATE}")] {
            let (status, body) = self.send(Method::DELETE, &path, None).await;
            assert!(
                matches!(status, 200 | 404),
                "DELETE {path}: {status} {body}"
            );
        }
        self.put(
            "/_cluster/settings",
            json!({"persistent": {"action.auto_create_index": null}}),
        )
        .await;
        let state = self.get("/_cluster/settings?flat_settings=true").await.1;
        assert_eq!(state["persistent"], json!({}), "reset");
    }
}

/// What the step manages on a node, as the node returns it.
#[derive(Debug, Clone, PartialEq)]
struct NodeState {
    /// Persistent cluster settings, flat.
    cluster: Value,
    /// `GET _template/temporal_visibility_v1_template?flat_settings=true`, the template itself.
    template: Value,
    /// `GET <index>/_mapping`, the mappings.
    mapping: Value,
    /// `GET <index>/_settings?flat_settings=true`, the settings.
    settings: Value,
}

impl NodeState {
    async fn read(raw: &Raw, index: &str) -> Self {
        let (_, cluster) = raw.get("/_cluster/settings?flat_settings=true").await;
        let (status, template) = raw
            .get(&format!("/_template/{TEMPLATE}?flat_settings=true"))
            .await;
        assert_eq!(status, 200, "template: {template}");
        let (status, mapping) = raw.get(&format!("/{index}/_mapping")).await;
        assert_eq!(status, 200, "mapping of {index}: {mapping}");
        let (_, settings) = raw
            .get(&format!("/{index}/_settings?flat_settings=true"))
            .await;
        Self {
            cluster: cluster["persistent"].clone(),
            template: template[TEMPLATE].clone(),
            mapping: mapping[index]["mappings"].clone(),
            settings: settings[index]["settings"].clone(),
        }
    }

    fn uuid(&self) -> &str {
        self.settings["index.uuid"].as_str().expect("index.uuid")
    }

    /// The index settings without those OpenSearch sets per index.
    fn index_settings(&self) -> Value {
        let mut s = self.settings.as_object().cloned().unwrap_or_default();
        for key in PER_INDEX_SETTINGS {
            s.remove(*key);
        }
        Value::Object(s)
    }
}

/// `mappings.properties` of a template file.
fn template_properties(template: &Value) -> BTreeMap<String, Value> {
    template["mappings"]["properties"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn field_type(definition: &Value) -> &str {
    definition["type"].as_str().unwrap_or("<none>")
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The dotted paths where `a` and `b` differ (the highest differing level; key order ignored).
fn differing_paths(a: &Value, b: &Value) -> Vec<String> {
    fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a.as_object(), b.as_object()) {
            (Some(x), Some(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match (x.get(k), y.get(k)) {
                        (Some(l), Some(r)) => walk(&p, l, r, out),
                        _ => out.push(p),
                    }
                }
            }
            _ if a != b => out.push(path.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", a, b, &mut out);
    out
}

// ------------------------------------------------------------------------------------------------
// Helpers: the recording proxy
// ------------------------------------------------------------------------------------------------

/// One request that went through the proxy.
#[derive(Debug, Clone, PartialEq)]
struct Recorded {
    method: String,
    /// Path and query.
    path: String,
    /// The JSON body (`Null` when empty, encoded or not JSON).
    body: Value,
}

/// `METHOD /path?query` of each request.
fn request_lines(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// `METHOD /path` of each write, without the query.
fn write_targets(writes: &[Recorded]) -> Vec<String> {
    writes
        .iter()
        .map(|w| format!("{} {}", w.method, w.path.split('?').next().unwrap_or("")))
        .collect()
}

/// A loopback HTTP proxy in front of a node that records every request, so a test can count the
/// writes a step or tool makes (the step has no write counter of its own).
struct RecordingProxy {
    url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl RecordingProxy {
    async fn start(upstream: &str) -> Self {
        temporal_bootstrap::ensure_crypto_provider();
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            log: log.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, log, server }
    }

    fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    /// How many requests were seen since the last clear.
    fn requests(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The writes (anything but GET and HEAD) since the last clear; clears.
    fn take_writes(&self) -> Vec<Recorded> {
        let mut log = self.log.lock().unwrap();
        let writes = log
            .iter()
            .filter(|r| r.method != "GET" && r.method != "HEAD")
            .cloned()
            .collect();
        log.clear();
        writes
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(
    axum::extract::State(state): axum::extract::State<ProxyState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    // The release tool gzips its bodies: those are forwarded as they are, recorded as `Null`.
    let body = match parts.headers.get(CONTENT_ENCODING) {
        None => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Some(_) => Value::Null,
    };
    state.log.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: path.clone(),
        body,
    });
    let mut upstream = state
        .http
        .request(parts.method.clone(), format!("{}{path}", state.upstream));
    for name in [CONTENT_TYPE, CONTENT_ENCODING, AUTHORIZATION] {
        if let Some(v) = parts.headers.get(&name) {
            upstream = upstream.header(name, v.clone());
        }
    }
    if !bytes.is_empty() {
        upstream = upstream.body(bytes.to_vec());
    }
    let mut response = axum::response::Response::default();
    match upstream.send().await {
        Ok(reply) => {
            *response.status_mut() = reply.status();
            if let Some(v) = reply.headers().get(CONTENT_TYPE) {
                response.headers_mut().insert(CONTENT_TYPE, v.clone());
            }
            *response.body_mut() = reply.bytes().await.unwrap_or_default().into();
        }
        Err(e) => {
            *response.status_mut() = axum::http::StatusCode::BAD_GATEWAY;
            *response.body_mut() = format!("recording proxy: {e}").into();
        }
    }
    response
}

// ------------------------------------------------------------------------------------------------
// Helpers: the private OpenSearch node
// ------------------------------------------------------------------------------------------------

const OPENSEARCH3_VERSION: &str = "3.3.2";
const OPENSEARCH3_JAVA_HOME: &str = "/usr/lib/jvm/temurin-25-jdk-amd64";

#[derive(Debug, Clone, Copy)]
enum NodeVersion {
    /// The version `scripts/lib/opensearch.sh` defaults to (the stack's).
    OpenSearch2,
    OpenSearch3,
}

/// A single-node OpenSearch of this test alone: free loopback ports, data in a temporary
/// directory, stopped (SIGTERM, then SIGKILL) on drop.
struct PrivateNode {
    url: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl PrivateNode {
    async fn start(version: NodeVersion) -> Self {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let (http_port, transport_port) = free_ports();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(
                r#"source "$0/scripts/lib/opensearch.sh" && opensearch_ensure_built && opensearch_command "$1" "$2" "$3" && exec "${OPENSEARCH_CMD[@]}""#,
            )
            .arg(repo_root())
            .arg(dir.path().join("node"))
            .arg(http_port.to_string())
            .arg(transport_port.to_string())
            .stdin(Stdio::null())
            .stdout(log("stdout.log"))
            .stderr(log("stderr.log"));
        if let NodeVersion::OpenSearch3 = version {
            command
                .env("OPENSEARCH_VERSION", OPENSEARCH3_VERSION)
                .env("JAVA_HOME", OPENSEARCH3_JAVA_HOME);
        }
        let child = command.spawn().expect("bash");
        let mut node = Self {
            url: format!("http://127.0.0.1:{http_port}"),
            child,
            dir,
        };
        // The first start may build the launcher (Maven); later starts take seconds.
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            if node.log("stdout.log").contains("started:") {
                break;
            }
            if let Some(status) = node.child.try_wait().unwrap() {
                panic!(
                    "the private OpenSearch node exited with {status}:\n{}",
                    node.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the private OpenSearch node did not start:\n{}",
                node.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (status, health) = Raw::new(&node.url)
            .get("/_cluster/health?wait_for_status=yellow&timeout=60s")
            .await;
        assert!(
            status == 200 && health["timed_out"] == json!(false),
            "private node health: {status} {health}"
        );
        eprintln!(
            "private node {version:?} at {} ready in {:.1}s",
            node.url,
            started.elapsed().as_secs_f64()
        );
        node
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        for name in ["stdout.log", "stderr.log"] {
            let log = self.log(name);
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            text.push_str(&format!("--- {name}\n{}\n", tail.join("\n")));
        }
        text
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        // `exec` made the JVM the child itself: SIGTERM closes the node cleanly.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two distinct loopback ports that were free a moment ago (bound to 127.0.0.1:0 together,
/// then released).
fn free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (bind(), bind());
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}
