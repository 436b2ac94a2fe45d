//! The `platform.yaml` model: one struct per section, unknown fields rejected everywhere.
//!
//! Defaults are the production-safe choice; anything a user must decide has no default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::*;

/// The whole platform description.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// The Temporal cluster: identity, release, how to reach its frontend.
    pub cluster: ClusterConfig,
    /// Projected load; the capacity planner sizes shards, services and storage from it.
    pub capacity: CapacityConfig,
    /// Where Temporal keeps workflow state.
    pub persistence: PersistenceConfig,
    /// Where Temporal keeps the visibility (search) index.
    pub visibility: VisibilityConfig,
    /// mTLS certificates issued by the bootstrap. Omit to manage certificates elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pki: Option<PkiConfig>,
    /// Namespaces to register, with their search attributes. At least one.
    pub namespaces: Vec<NamespaceConfig>,
    /// Worker pools, sized by the capacity planner and rendered into the Helm chart.
    #[serde(default)]
    pub workers: Vec<WorkerPoolConfig>,
    /// Prometheus rules, Grafana dashboards and the SLO thresholds used by alerts.
    #[serde(default)]
    pub observability: ObservabilityConfig,
    /// The remote codec server for end-to-end payload encryption (`codec-server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<super::codec::CodecConfig>,
    /// The daemon's periodic read-only audit (`temporal-bootstrap audit`). Omit to audit only on
    /// demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditConfig>,
}

/// `audit:`: how often the daemon audits and how much it reads each time.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Time between audits (default 30m; at least 1m).
    #[serde(default = "default_audit_interval")]
    pub interval: HumanDuration,
    /// Executions started within this window are sampled (default 24h).
    #[serde(default = "default_audit_since")]
    pub since: HumanDuration,
    /// Histories read per namespace and audit (default 50; 1 to 10000): the sample budget.
    #[serde(default = "default_audit_sample")]
    pub sample: u32,
}
fn default_audit_interval() -> HumanDuration {
    HumanDuration::from_secs(30 * 60)
}
fn default_audit_since() -> HumanDuration {
    HumanDuration::from_secs(24 * 3600)
}
fn default_audit_sample() -> u32 {
    50
}

// ---------------------------------------------------------------------------------------------
// cluster
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster name, a DNS label (e.g. prod-eu1).
    pub name: DnsLabel,
    /// The Temporal server release to run, quoted (e.g. "1.31.2").
    pub temporal_version: TemporalVersion,
    /// `production` enforces high-availability minimums (3+ history replicas); `development` does not.
    #[serde(default)]
    pub environment: Environment,
    /// How the bootstrap reaches the frontend.
    pub frontend: FrontendConfig,
    /// Who may call what: Temporal's JWT authorizer and claim mapper. Without it every client
    /// that completes the mTLS handshake may do anything in every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationConfig>,
}

/// `global.authorization` of the server: the default authorizer with the default JWT claim
/// mapper, which reads permissions such as `payments:write` or `temporal-system:admin` from a
/// claim of the caller's token.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// JWKS URLs the server loads the token signing keys from (the identity provider's).
    pub jwt_key_sources: Vec<HttpUrl>,
    /// How often the server reloads the keys.
    #[serde(default = "default_key_refresh")]
    pub key_refresh_interval: HumanDuration,
    /// The claim holding the permissions list.
    #[serde(default = "default_permissions_claim")]
    pub permissions_claim: String,
    /// Audience the tokens must carry; unset accepts any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The bootstrap's own token (permission `temporal-system:admin`), sent as
    /// `authorization: Bearer` to the frontend (secret reference).
    pub token: SecretRef,
}

/// Default claim name of Temporal's JWT claim mapper.
pub const DEFAULT_PERMISSIONS_CLAIM: &str = "permissions";

fn default_permissions_claim() -> String {
    DEFAULT_PERMISSIONS_CLAIM.into()
}
fn default_key_refresh() -> HumanDuration {
    HumanDuration::from_secs(60)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Production,
    Development,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrontendConfig {
    /// gRPC address of the frontend, host:port (e.g. temporal-frontend:7233).
    pub address: HostPort,
    /// HTTP API address (host:port), used only for read-only health checks when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_address: Option<HostPort>,
    /// TLS to the frontend. Omit for plaintext (development only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsConfig>,
}

/// TLS settings of a client connection. Paths are files; the key is a path to a 0600 file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// CA bundle (PEM) that signed the server certificate.
    pub ca: PathBuf,
    /// Client certificate (PEM) for mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM) for mTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Name expected in the server certificate, when it differs from the address host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<DnsName>,
}

// ---------------------------------------------------------------------------------------------
// capacity
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    /// Workflow starts per second at the normal daily peak.
    pub peak_workflow_starts_per_second: Positive,
    /// Activities each workflow runs on average.
    pub activities_per_workflow: NonNegative,
    /// Timers and signals each workflow handles on average.
    #[serde(default)]
    pub timers_and_signals_per_workflow: NonNegative,
    /// How long a workflow stays open on average (e.g. 2h).
    pub average_workflow_duration: HumanDuration,
    /// Short spikes above the daily peak (e.g. 50 for a 50x Black Friday hour). At least 1.
    #[serde(default = "default_burst")]
    pub burst_multiplier: Positive,
    /// Growth of the load over the planning horizon.
    #[serde(default)]
    pub growth: GrowthConfig,
    /// p99 write latency of the persistence database (e.g. 5ms); bounds each shard's throughput.
    #[serde(default = "default_write_latency")]
    pub persistence_write_latency: HumanDuration,
    /// `auto` or a pinned shard count. Immutable once the cluster exists.
    #[serde(default)]
    pub history_shards: ShardSetting,
    /// Retention used for storage sizing; defaults to the longest namespace retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<HumanDuration>,
    /// Overrides of the planner's named constants (see docs/capacity-model.md), name -> value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, f64>,
}

fn default_burst() -> Positive {
    // Invariant: 1.0 is finite and positive.
    Positive::new(1.0).expect("1.0 is positive")
}
fn default_write_latency() -> HumanDuration {
    HumanDuration::from_millis(5)
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrowthConfig {
    /// Yearly growth of the load, e.g. 60%.
    pub annual: Percent,
    /// Years the cluster must last without resharding (0 to 10).
    pub years: u32,
}

impl Default for GrowthConfig {
    fn default() -> Self {
        Self {
            annual: Percent::from_fraction(0.0),
            years: 0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// persistence and visibility
// ---------------------------------------------------------------------------------------------

/// Exactly one store: `postgres` (production) or `sqlite` (development only).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
// Loaded once per process; boxing would only complicate pattern matching in every adapter.
#[allow(clippy::large_enum_variant)]
pub enum PersistenceConfig {
    Postgres(PostgresConfig),
    Sqlite(SqliteConfig),
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// Database holding workflow state.
    #[serde(default = "default_pg_database")]
    pub database: String,
    /// Application role Temporal connects as (least privilege, created if missing).
    #[serde(default = "default_pg_user")]
    pub user: String,
    /// Password of the application role (secret reference).
    pub password: SecretRef,
    /// Admin credentials used only to create databases and the role. Omit when they exist already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<PostgresAdminConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<PostgresTlsConfig>,
    /// The release's `schema/postgresql/v12` folder (with `temporal/` and `visibility/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_dir: Option<PathBuf>,
}

fn default_pg_port() -> u16 {
    5432
}
fn default_pg_database() -> String {
    "temporal".into()
}
fn default_pg_user() -> String {
    "temporal".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresAdminConfig {
    pub user: String,
    pub password: SecretRef,
    /// Database to connect to for administration.
    #[serde(default = "default_admin_db")]
    pub database: String,
}
fn default_admin_db() -> String {
    "postgres".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresTlsConfig {
    pub mode: PostgresTlsMode,
    /// CA certificate (PEM); required for verify-full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresTlsMode {
    Disable,
    Require,
    VerifyFull,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// Database file (the dev server manages its own).
    pub path: PathBuf,
}

/// Exactly one store: `elasticsearch` (OpenSearch too), `postgres` or `sqlite`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
#[allow(clippy::large_enum_variant)] // see PersistenceConfig
pub enum VisibilityConfig {
    Elasticsearch(ElasticsearchConfig),
    /// SQL visibility on the persistence PostgreSQL server, in its own database.
    Postgres(PostgresVisibilityConfig),
    Sqlite(SqliteConfig),
}

impl VisibilityConfig {
    /// SQL visibility caps custom search attributes per type and namespace.
    pub fn is_sql(&self) -> bool {
        !matches!(self, Self::Elasticsearch(_))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresVisibilityConfig {
    #[serde(default = "default_visibility_db")]
    pub database: String,
}
fn default_visibility_db() -> String {
    "temporal_visibility".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    pub url: HttpUrl,
    #[serde(default)]
    pub flavor: SearchFlavor,
    /// Index name; must match the template pattern `temporal_visibility_v1*`.
    #[serde(default = "default_index")]
    pub index: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SearchAuth>,
    /// CA certificate (PEM) for a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// The release's `schema/elasticsearch` folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_dir: Option<PathBuf>,
    /// How long to wait for the cluster to be green/yellow.
    #[serde(default = "default_health_timeout")]
    pub health_timeout: HumanDuration,
    /// Replicas per primary shard (primary shard count comes from the capacity plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
}
fn default_index() -> String {
    "temporal_visibility_v1".into()
}
fn default_health_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchFlavor {
    #[default]
    Elasticsearch,
    Opensearch,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SearchAuth {
    Basic {
        username: String,
        password: SecretRef,
    },
    ApiKey {
        key: SecretRef,
    },
}

// ---------------------------------------------------------------------------------------------
// pki
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PkiConfig {
    /// Directory for certificates and keys (created 0700).
    pub dir: PathBuf,
    #[serde(default)]
    pub ca: CaConfig,
    /// Renew a leaf certificate when less than this remains.
    #[serde(default = "default_renew_before")]
    pub renew_before: HumanDuration,
    pub frontend: LeafConfig,
    #[serde(default)]
    pub internode: LeafConfig,
    /// One client certificate per entry (workers, the bootstrap itself, operators).
    #[serde(default)]
    pub clients: Vec<ClientCertConfig>,
    /// Publish every certificate into a Kubernetes Secret (`kubernetes.io/tls`) and restore the
    /// CA from its Secret when `dir` is empty (in-cluster: `dir` is only a working copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_secrets: Option<KubernetesSecretsConfig>,
}

/// Kubernetes Secrets the `certificates` step writes, one per certificate. Each holds `tls.crt`
/// (certificate and chain), `tls.key` and `ca.crt` (the trust bundle); the CA Secret also holds
/// `ca.key`. The API server is found from the in-cluster ServiceAccount (or `TB_KUBE_API_URL`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSecretsConfig {
    /// Namespace of the Secrets (a DNS-1123 label, e.g. temporal).
    pub namespace: String,
    /// Secret holding the CA certificate and its private key (restored from on start).
    pub ca: String,
    /// Secret of the frontend server certificate.
    pub frontend: String,
    /// Secret of the internode certificate.
    pub internode: String,
    /// Client name (from `pki.clients`) -> Secret name. Clients not listed stay in `dir` only.
    #[serde(default)]
    pub clients: BTreeMap<String, String>,
}
fn default_renew_before() -> HumanDuration {
    HumanDuration::from_days(30)
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    #[serde(default = "default_ca_validity")]
    pub validity: HumanDuration,
    #[serde(default)]
    pub key_algorithm: KeyAlgorithm,
    /// Subject common name; defaults to "<cluster> Temporal CA".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Use an existing CA instead of generating one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bring_your_own: Option<ByoCaConfig>,
    /// Issue leaves from an intermediate signed by the root (the root key can then stay offline).
    #[serde(default)]
    pub intermediate: bool,
}
impl Default for CaConfig {
    fn default() -> Self {
        Self {
            validity: default_ca_validity(),
            key_algorithm: KeyAlgorithm::default(),
            common_name: None,
            bring_your_own: None,
            intermediate: false,
        }
    }
}
fn default_ca_validity() -> HumanDuration {
    HumanDuration::from_days(5 * 365)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ByoCaConfig {
    /// CA certificate (PEM).
    pub cert: PathBuf,
    /// CA private key (secret reference, e.g. file:/secure/ca-key.pem).
    pub key: SecretRef,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeafConfig {
    #[serde(default)]
    pub dns_names: Vec<DnsName>,
    #[serde(default)]
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// Defaults to 90d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<HumanDuration>,
}

pub const DEFAULT_LEAF_VALIDITY: HumanDuration = HumanDuration::from_days(90);

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCertConfig {
    /// Client identity; becomes the certificate CN and DNS SAN.
    pub name: DnsLabel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<HumanDuration>,
}

// ---------------------------------------------------------------------------------------------
// namespaces
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    pub name: NamespaceName,
    /// How long closed workflow histories are kept (at least 1d).
    pub retention: HumanDuration,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_email: Option<Email>,
    /// Free-form key/value data stored on the namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Custom search attributes, name -> type. Types can never change once created.
    #[serde(default)]
    pub search_attributes: BTreeMap<SearchAttributeName, SearchAttributeType>,
    /// Payloads here are regulated or personal data: `temporal-bootstrap audit` reports a
    /// plaintext payload as critical (elsewhere as a warning).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

// ---------------------------------------------------------------------------------------------
// workers
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerPoolConfig {
    pub name: DnsLabel,
    pub task_queue: TaskQueueName,
    /// Namespace the pool polls; defaults to the first namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<NamespaceName>,
    /// Workload profile: cpu (concurrency = cores), io (2-5x cores), gpu (1-2 per GPU).
    pub profile: WorkerProfile,
    /// CPU cores per worker replica.
    pub cpu_cores: Positive,
    /// GPUs per replica (gpu profile only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    #[serde(default)]
    pub priority: Priority,
    pub replicas: ReplicaRange,
    /// Peak activity tasks per second on this queue, when known (sizes partitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_tasks_per_second: Option<Positive>,
    /// Average time one activity of this pool runs (start to completion), when known. With
    /// `peak_tasks_per_second` it gives the replicas the pool needs at the burst (busy slots =
    /// tasks/s x duration), which the plan checks against `replicas.max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_duration: Option<HumanDuration>,
    /// Container image of the worker (rendered into the Helm chart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
    /// Worker Deployment the pool's workers register with (Worker Versioning): the audit
    /// checks that executions on the pool's task queue ran on it (`worker-versioning-unused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DnsLabel>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerProfile {
    Cpu,
    Io,
    Gpu,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaRange {
    pub min: u32,
    pub max: u32,
}

// ---------------------------------------------------------------------------------------------
// observability
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObservabilityConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana: Option<GrafanaConfig>,
    #[serde(default)]
    pub slo: SloConfig,
    /// Overrides of alert thresholds by name (see alerts/thresholds.yaml).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alert_thresholds: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    pub url: HttpUrl,
    /// Directory Prometheus loads rule files from (`rule_files` glob).
    pub rules_dir: PathBuf,
    /// POST /-/reload after writing rules (needs --web.enable-lifecycle).
    #[serde(default = "yes")]
    pub reload: bool,
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrafanaConfig {
    pub url: HttpUrl,
    /// Service account token (secret reference).
    pub token: SecretRef,
    #[serde(default = "default_folder")]
    pub folder: String,
    /// Prometheus datasource UID the dashboards use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasource_uid: Option<String>,
}
fn default_folder() -> String {
    "Temporal".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    #[serde(default = "default_s2s_warning")]
    pub schedule_to_start_warning: HumanDuration,
    #[serde(default = "default_s2s_critical")]
    pub schedule_to_start_critical: HumanDuration,
    /// Worker pools scale up when schedule-to-start (p95, or the oldest backlog task's age) is
    /// above this: below the critical alert, so scaling starts before users notice.
    #[serde(default = "default_s2s_scale_up")]
    pub scale_up_schedule_to_start: HumanDuration,
}
impl Default for SloConfig {
    fn default() -> Self {
        Self {
            schedule_to_start_warning: default_s2s_warning(),
            schedule_to_start_critical: default_s2s_critical(),
            scale_up_schedule_to_start: default_s2s_scale_up(),
        }
    }
}
fn default_s2s_scale_up() -> HumanDuration {
    HumanDuration::from_millis(300)
}
fn default_s2s_warning() -> HumanDuration {
    HumanDuration::from_millis(200)
}
fn default_s2s_critical() -> HumanDuration {
    HumanDuration::from_millis(500)
}

impl PlatformConfig {
    /// The namespace a worker pool polls: its own, else the first namespace.
    pub fn pool_namespace<'a>(&'a self, pool: &'a WorkerPoolConfig) -> Option<&'a str> {
        pool.namespace
            .as_ref()
            .map(|n| n.as_str())
            .or_else(|| self.namespaces.first().map(|n| n.name.as_str()))
    }

    /// The retention used for storage sizing: explicit, else the longest namespace retention.
    pub fn sizing_retention(&self) -> HumanDuration {
        self.capacity
            .retention
            .or_else(|| self.namespaces.iter().map(|n| n.retention).max())
            .unwrap_or(HumanDuration::from_days(30))
    }
}
