//! The command line: argument parsing, logging, output and exit codes.
//!
//! Exit codes (stable, scripts rely on them): 0 success or nothing to do; 1 runtime failure (a
//! system unreachable, a step failed); 2 invalid input or a refused change; 3 `plan
//! --detailed-exitcode` with pending changes. Results go to stdout, logs to stderr.

mod capacity;
mod certs;
mod commands;
pub mod output;
pub mod progress;
mod upgrade;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes of the CLI contract.
pub mod exit {
    pub const OK: u8 = 0;
    pub const RUNTIME: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const CHANGES_PENDING: u8 = 3;
    /// `audit --fail-on`: a finding at or above the given severity.
    pub const FINDINGS: u8 = 4;
}

/// A failure at the edge, with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    /// The configuration problems behind it, each with its position (for `--output json`).
    pub issues: Vec<crate::config::ConfigIssue>,
    /// The command already printed its result document (the step reports): stdout must stay
    /// one JSON document, so the error goes to stderr only.
    pub result_printed: bool,
}

impl CliError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: exit::INVALID,
            message: message.into(),
            issues: Vec::new(),
            result_printed: false,
        }
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: exit::RUNTIME,
            message: message.into(),
            issues: Vec::new(),
            result_printed: false,
        }
    }
    /// Exit 2 or 1 as the kind's class says.
    pub fn of_kind(kind: crate::error::ErrorKind, message: impl Into<String>) -> Self {
        match kind.class() {
            crate::error::ErrorClass::Invalid => Self::invalid(message),
            crate::error::ErrorClass::Runtime => Self::runtime(message),
        }
    }

    /// The error as one JSON document, printed on stdout with `--output json` so a pipeline
    /// gets a structured result whatever failed.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": false,
            "exit_code": self.code,
            "error": self.message,
            "issues": self.issues,
        })
    }
}

impl From<crate::config::ConfigErrors> for CliError {
    fn from(e: crate::config::ConfigErrors) -> Self {
        let mut err = Self::invalid(e.to_string());
        err.issues = e.issues;
        err
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "temporal-bootstrap",
    version,
    about = "Provision and keep converged a self-hosted Temporal platform",
    long_about = "Provision and keep converged a self-hosted Temporal platform: PostgreSQL persistence, \
                  Elasticsearch or SQL visibility, history shards sized from projected load, mTLS \
                  certificates, namespaces and search attributes, dashboards and alert rules.",
    after_help = "Exit codes: 0 ok, 1 runtime failure, 2 invalid input or refused change, 3 changes pending (plan --detailed-exitcode)."
)]
pub struct Cli {
    /// Result format on stdout (markdown and html: `audit` only).
    #[arg(long = "output", global = true, value_enum, default_value_t = OutputArg::Table)]
    pub output_arg: OutputArg,
    /// `--output` for every command but `audit`: table or json (set by [`main`]).
    #[arg(skip)]
    pub output: OutputFormat,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More logs (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

/// What `--output` accepts: the audit report also prints as Markdown or HTML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    Table,
    Json,
    Markdown,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Namespace to audit (repeat for several); default: every namespace of platform.yaml.
    #[arg(long = "namespace", value_name = "NAME")]
    pub namespaces: Vec<crate::config::types::NamespaceName>,
    /// Only executions started within this window (e.g. 24h, 7d).
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Histories read per namespace (1 to 10000).
    #[arg(long, default_value_t = 200)]
    pub sample: u32,
    /// Also write the report to FILE: HTML (one self-contained file), Markdown or JSON, chosen by
    /// the extension (.html, .md, .json) unless --report-format says.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub report_format: Option<ReportFormat>,
    /// Exit 4 when a finding is at least this severe (for CI gates).
    #[arg(long, value_enum)]
    pub fail_on: Option<FailOn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Html,
    Markdown,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Warning,
    Critical,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The platform description.
    #[arg(
        short = 'f',
        long = "file",
        env = "TEMPORAL_BOOTSTRAP_CONFIG",
        value_name = "FILE"
    )]
    pub file: PathBuf,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check platform.yaml without contacting anything.
    #[command(after_help = "Example: temporal-bootstrap validate -f platform.yaml")]
    Validate(ConfigArg),
    /// Show what apply would change, step by step, and the capacity plan.
    #[command(
        after_help = "Example: temporal-bootstrap plan -f platform.yaml --offline --output json"
    )]
    Plan(PlanArgs),
    /// Bring the platform to the described state.
    #[command(
        after_help = "Example: temporal-bootstrap apply -f platform.yaml --only namespaces,search-attributes"
    )]
    Apply(ApplyArgs),
    /// Run as a daemon: reconcile every interval, serve /healthz, /readyz and /metrics.
    #[command(
        after_help = "Example: temporal-bootstrap run -f platform.yaml --interval 60s --listen 127.0.0.1:9464"
    )]
    Run(RunArgs),
    /// Show the platform's health in one table.
    #[command(after_help = "Example: temporal-bootstrap status -f platform.yaml")]
    Status(ConfigArg),
    /// Issue, renew or inspect the mTLS certificates.
    #[command(after_help = "Example: temporal-bootstrap certs inspect -f platform.yaml")]
    Certs {
        #[command(subcommand)]
        action: CertsAction,
    },
    /// Render deployment artefacts (Helm values, k3s manifests, Grafana provisioning, Prometheus rules).
    #[command(
        after_help = "Example: temporal-bootstrap render helm-values -f platform.yaml --out deploy/"
    )]
    Render(RenderArgs),
    /// Plan or apply a Temporal upgrade, one minor version at a time.
    #[command(after_help = "Example: temporal-bootstrap upgrade plan --to 1.31.2 -f platform.yaml")]
    Upgrade {
        #[command(subcommand)]
        action: UpgradeAction,
    },
    /// Print a commented example platform.yaml that validates.
    #[command(after_help = "Example: temporal-bootstrap init --profile production > platform.yaml")]
    Init {
        /// `local` targets the dev stack of scripts/dev-services; `production` shows every section.
        #[arg(long, value_enum, default_value_t = Profile::Local)]
        profile: Profile,
    },
    /// Audit a live deployment read-only: sampled histories checked for plaintext payloads,
    /// oversized payloads and histories, and activity timeout and retry traps.
    #[command(
        after_help = "Example: temporal-bootstrap audit -f platform.yaml --since 24h --sample 200 --report audit.html --fail-on critical\nExit codes: 0 done (no finding at or above --fail-on), 4 findings at or above --fail-on, 1 the audit could not run, 2 bad input."
    )]
    Audit(AuditArgs),
    /// Serve Temporal's remote codec protocol (/encode, /decode) for the Web UI and the CLI.
    #[command(
        after_help = "Example: temporal-bootstrap codec-server -f platform.yaml   (see docs/payload-encryption.md)"
    )]
    CodecServer(ConfigArg),
    /// Payload encryption keys.
    Codec {
        #[command(subcommand)]
        action: CodecAction,
    },
    /// Print the JSON Schema of platform.yaml (for editors and CI).
    #[command(
        after_help = "Example: temporal-bootstrap config-schema > schemas/platform.schema.json"
    )]
    ConfigSchema,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    Local,
    Production,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Contact nothing; plan only what files and the capacity model can tell.
    #[arg(long)]
    pub offline: bool,
    /// Only these steps (comma-separated), in their fixed order.
    #[arg(long, value_name = "STEP,...")]
    pub only: Option<String>,
    /// Exit 3 when changes are pending (0 when converged).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Show what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only these steps (comma-separated), in their fixed order.
    #[arg(long, value_name = "STEP,...")]
    pub only: Option<String>,
    /// Overwrite what was changed outside the bootstrap (e.g. dashboards edited in Grafana).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Time between reconciliations (e.g. 60s, 5m).
    #[arg(long, default_value = "60s")]
    pub interval: String,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
}

#[derive(Debug, Subcommand)]
pub enum CodecAction {
    /// Write a new random AES-256 key (32 bytes, base64) to a new 0600 file; with --kms, a new
    /// data key generated by codec.kms, written only in its wrapped form.
    #[command(
        after_help = "Examples:\n  temporal-bootstrap codec keygen --out keys/codec-2026-11.key\n  temporal-bootstrap codec keygen --kms -f platform.yaml --out keys/k-2026-11.wrapped   (then `wrapped: file:keys/k-2026-11.wrapped`)"
    )]
    Keygen {
        /// The key file to create (an existing file is never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Generate the key inside the KMS of `codec.kms` (vault-transit or aws-kms) and write
        /// it wrapped; needs -f.
        #[arg(long, requires = "file")]
        kms: bool,
        /// platform.yaml (or a codec-only file) whose `codec.kms` wraps the key.
        #[arg(short = 'f', long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertsAction {
    /// Issue the CA and every certificate that is missing.
    Issue(ConfigArg),
    /// Re-issue certificates that expire within pki.renew_before.
    Renew(ConfigArg),
    /// List every certificate with its expiry and status.
    Inspect(ConfigArg),
    /// Rotate the CA: start (new CA trusted alongside the old), promote (re-issue under it), finish (drop the old).
    #[command(
        after_help = "Procedure: runbooks/certificate-rotation-ca.md. Example: temporal-bootstrap certs rotate-ca start -f platform.yaml"
    )]
    RotateCa(RotateCaArgs),
}

#[derive(Debug, Args)]
pub struct RotateCaArgs {
    /// Which phase of the rotation to run.
    #[arg(value_enum)]
    pub phase: RotateCaPhase,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RotateCaPhase {
    Start,
    Promote,
    Finish,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    pub target: RenderTarget,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Output directory (created if missing).
    #[arg(short = 'o', long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderTarget {
    HelmValues,
    K3s,
    GrafanaProvisioning,
    PrometheusRules,
    /// EKS node groups sized from the plan (node-groups.auto.tfvars.json) and the chart values
    /// placing pods on them (placement-values.yaml), for terraform/examples/aws-complete.
    TerraformVars,
}

#[derive(Debug, Subcommand)]
pub enum UpgradeAction {
    /// Show the hops from the running version to the target.
    Plan(UpgradeArgs),
    /// Perform the hops, schema first, one minor version at a time.
    Apply(UpgradeArgs),
    /// List the releases this build knows: schema versions of every patch, retracted and
    /// known-broken releases, patches without the authorization fixes.
    #[command(after_help = "Example: temporal-bootstrap upgrade releases --output json")]
    Releases,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Target release, e.g. 1.31.2.
    #[arg(long, value_name = "VERSION")]
    pub to: String,
    /// Plan from this release instead of asking the running cluster.
    #[arg(long, value_name = "VERSION")]
    pub from: Option<String>,
    /// Change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Soak time after each hop, before the next one (history reloads its shards).
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub soak: String,
    /// Progress file of `upgrade apply` [default: <config stem>.upgrade-state.json beside the config].
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// How `upgrade apply` rolls the services.
    #[arg(long, value_enum, default_value_t = crate::upgrade::executor::ExecutorKind::Manual)]
    pub executor: crate::upgrade::executor::ExecutorKind,
    /// How long to wait for the cluster to report a hop's version after rolling (manual: at least 1h).
    #[arg(long, default_value = "15m", value_name = "DURATION")]
    pub wait_timeout: String,
    /// Helm release (helm) or HelmChart resource (k3s) name.
    #[arg(long, default_value = "temporal", value_name = "NAME")]
    pub release: String,
    /// Chart reference for `helm upgrade`.
    #[arg(long, default_value = "temporalio/temporal", value_name = "CHART")]
    pub chart: String,
    /// Kubernetes namespace [default: temporal for helm, kube-system for k3s].
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Allow a target below its line's authorization-fix patch (1.28.4, 1.29.6, 1.30.4, 1.31.2).
    #[arg(long)]
    pub allow_insecure_release: bool,
    /// Land intermediate hops on these patches instead of their line's latest (comma-separated,
    /// one per line), e.g. when a registry mirror lacks the latest patch.
    #[arg(long, value_name = "VERSION,...")]
    pub via: Option<String>,
    /// process executor: the PID file of the running Temporal server.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// process executor: the folder holding <release>/bin/temporal-server for every hop.
    #[arg(long, value_name = "DIR")]
    pub server_binaries: Option<PathBuf>,
    /// process executor: where the new server's output goes [default: the PID file with .log].
    #[arg(long, value_name = "FILE")]
    pub server_log: Option<PathBuf>,
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    cli.output = match cli.output_arg {
        OutputArg::Json => OutputFormat::Json,
        OutputArg::Table => OutputFormat::Table,
        OutputArg::Markdown | OutputArg::Html if matches!(cli.command, Command::Audit(_)) => {
            OutputFormat::Table
        }
        other => {
            eprintln!(
                "error: --output {}: only `audit` prints Markdown or HTML; valid here: table, json",
                if other == OutputArg::Html {
                    "html"
                } else {
                    "markdown"
                }
            );
            return ExitCode::from(exit::INVALID);
        }
    };
    init_logging(cli.log_format, cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    match runtime.block_on(commands::dispatch(&cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if cli.output == OutputFormat::Json && !e.result_printed {
                println!("{}", e.to_json());
            }
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

fn init_logging(format: LogFormat, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // Audit lines (target `audit`, the codec server) are always on unless the filter is set.
    let filter = EnvFilter::try_from_env("TEMPORAL_BOOTSTRAP_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},audit=info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
