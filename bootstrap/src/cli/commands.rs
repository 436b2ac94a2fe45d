//! One function per subcommand. Each loads and validates the configuration first, so bad input
//! exits 2 before anything is contacted or changed.

use std::sync::Arc;

use serde_json::json;

use super::output::Table;
use super::{
    ApplyArgs, Cli, CliError, Command, OutputFormat, PlanArgs, Profile, RenderArgs, RenderTarget,
    RunArgs, exit,
};
use crate::capacity;
use crate::config::{self, LoadedConfig};
use crate::reconcile::{self, Context, Mode, StepName, StepReport, StepStatus};

/// The local example (targets scripts/dev-services); embedded so `init` needs no files.
pub const LOCAL_EXAMPLE: &str = include_str!("../../../examples/local.yaml");
/// The production example: every section.
pub const PRODUCTION_EXAMPLE: &str = include_str!("../../../examples/production.yaml");

pub(super) async fn dispatch(cli: &Cli) -> Result<u8, CliError> {
    match &cli.command {
        Command::Validate(a) => validate(cli, &a.file),
        Command::Plan(a) => plan(cli, a).await,
        Command::Apply(a) => apply(cli, a).await,
        Command::Init { profile } => {
            print!(
                "{}",
                match profile {
                    Profile::Local => LOCAL_EXAMPLE,
                    Profile::Production => PRODUCTION_EXAMPLE,
                }
            );
            Ok(exit::OK)
        }
        Command::ConfigSchema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&config::json_schema()).unwrap_or_default()
            );
            Ok(exit::OK)
        }
        Command::Run(a) => run_daemon(a).await,
        Command::Status(a) => status(cli, &a.file).await,
        Command::Certs { action } => super::certs::run(cli, action),
        Command::Render(a) => render(cli, a),
        Command::CodecServer(a) => codec_server(&a.file).await,
        Command::Audit(a) => audit(cli, a).await,
        Command::Codec {
            action: super::CodecAction::Keygen { out, kms, file },
        } => match (kms, file) {
            (true, Some(f)) => codec_keygen_wrapped(cli, f, out).await,
            _ => codec_keygen(cli, out),
        },
        Command::Upgrade {
            action: super::UpgradeAction::Releases,
        } => {
            super::upgrade::print_releases(cli.output);
            Ok(exit::OK)
        }
        Command::Upgrade { action } => {
            let file = match action {
                super::UpgradeAction::Plan(a) | super::UpgradeAction::Apply(a) => &a.config.file,
                super::UpgradeAction::Releases => unreachable!("handled above"),
            };
            super::upgrade::run(cli.output, action, load(file)?).await
        }
    }
}

/// Loads the configuration and prints its warnings on stderr: the validator's and the capacity
/// planner's (pure, so `validate` and `plan` report the same warnings).
pub(super) fn load(file: &std::path::Path) -> Result<LoadedConfig, CliError> {
    let mut loaded = config::load_file(file)?;
    if let Ok(sizing) = capacity::plan(&loaded.config) {
        loaded.warn(
            sizing
                .warnings
                .into_iter()
                .map(|w| config::Finding::new(w.path, w.message)),
        );
    }
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(loaded)
}

fn validate(cli: &Cli, file: &std::path::Path) -> Result<u8, CliError> {
    let loaded = load(file)?;
    let c = &loaded.config;
    match cli.output {
        OutputFormat::Json => println!(
            "{}",
            json!({"valid": true, "file": file.display().to_string(), "warnings": loaded.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>()})
        ),
        OutputFormat::Table => println!(
            "OK: {} is valid (cluster {}, Temporal {}, {} namespaces, {} worker pools, {} warnings)",
            file.display(),
            c.cluster.name,
            c.cluster.temporal_version,
            c.namespaces.len(),
            c.workers.len(),
            loaded.warnings.len()
        ),
    }
    Ok(exit::OK)
}

pub(super) fn context(loaded: LoadedConfig, offline: bool) -> Context {
    context_with(loaded, offline, false)
}

fn context_with(loaded: LoadedConfig, offline: bool, force: bool) -> Context {
    let base_dir = loaded
        .path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    Context {
        config: Arc::new(loaded.config),
        base_dir,
        offline,
        force,
    }
}

fn parse_only(only: &Option<String>) -> Result<Vec<StepName>, CliError> {
    match only {
        None => Ok(vec![]),
        Some(s) => StepName::parse_list(s).map_err(|e| CliError::invalid(format!("--only: {e}"))),
    }
}

async fn plan(cli: &Cli, a: &PlanArgs) -> Result<u8, CliError> {
    let loaded = load(&a.config.file)?;
    let only = parse_only(&a.only)?;
    // The sizing is pure and needs no network: computed first, so bad load figures exit 2 early.
    let sizing = capacity::plan(&loaded.config)
        .map_err(|e| CliError::invalid(format!("{}: {e}", a.config.file.display())))?;
    let ctx = context(loaded, a.offline);
    let reports = crate::steps::run(&ctx, Mode::Plan, &only).await;
    print_reports(cli, "plan", &reports, Some(&sizing));
    let pending = reports.iter().any(|r| r.status == StepStatus::Pending);
    finish(
        &reports,
        if a.detailed_exitcode && pending {
            exit::CHANGES_PENDING
        } else {
            exit::OK
        },
    )
}

async fn apply(cli: &Cli, a: &ApplyArgs) -> Result<u8, CliError> {
    let loaded = load(&a.config.file)?;
    let only = parse_only(&a.only)?;
    let ctx = context_with(loaded, false, a.force);
    let mode = if a.dry_run { Mode::Plan } else { Mode::Apply };
    // Schema migrations draw a progress bar when stderr is a terminal.
    let reports =
        crate::steps::run_with_progress(&ctx, mode, &only, super::progress::schema_bar()).await;
    print_reports(
        cli,
        if a.dry_run {
            "apply --dry-run"
        } else {
            "apply"
        },
        &reports,
        None,
    );
    finish(&reports, exit::OK)
}

/// A failed step decides the exit code: invalid input (2) beats runtime failure (1).
fn finish(reports: &[StepReport], ok_code: u8) -> Result<u8, CliError> {
    let failed: Vec<&StepReport> = reports
        .iter()
        .filter(|r| r.status == StepStatus::Failed)
        .collect();
    if failed.is_empty() {
        return Ok(ok_code);
    }
    let invalid = failed
        .iter()
        .any(|r| r.error_class == Some(reconcile::ErrorClass::Invalid));
    let names: Vec<&str> = failed.iter().map(|r| r.step.as_str()).collect();
    let message = format!("{} step(s) failed: {}", failed.len(), names.join(", "));
    let mut e = if invalid {
        CliError::invalid(message)
    } else {
        CliError::runtime(message)
    };
    // Every caller printed the step reports before calling finish.
    e.result_printed = true;
    Err(e)
}

fn print_reports(
    cli: &Cli,
    title: &str,
    reports: &[StepReport],
    sizing: Option<&capacity::Sizing>,
) {
    match cli.output {
        OutputFormat::Json => {
            let mut doc = json!({ "command": title, "steps": reports });
            if let (Some(s), Some(obj)) = (sizing, doc.as_object_mut()) {
                obj.insert(
                    "capacity".into(),
                    serde_json::to_value(s).unwrap_or_default(),
                );
            }
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        OutputFormat::Table => {
            if let Some(s) = sizing {
                print!("{}", super::capacity::table(s));
                println!();
            }
            let mut t = Table::new(["step", "status", "changes", "duration", "detail"]);
            for r in reports {
                let status = serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                t.row([
                    r.step.to_string(),
                    status,
                    r.changes.len().to_string(),
                    format!("{}ms", r.duration_ms),
                    r.message.clone().unwrap_or_default(),
                ]);
            }
            print!("{}", t.render());
            let mut changes = Table::new(["step", "action", "resource", "detail"]);
            for r in reports {
                for c in &r.changes {
                    let action = serde_json::to_value(c.action)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    changes.row([
                        r.step.to_string(),
                        action,
                        c.resource.clone(),
                        c.detail.clone(),
                    ]);
                }
            }
            if !changes.is_empty() {
                println!();
                print!("{}", changes.render());
            }
        }
    }
}

/// The capacity plan as text: inputs, load levels, the shard count with its arithmetic, services,
/// task queues, storage, worker pools, key assumptions and warnings.
async fn run_daemon(a: &RunArgs) -> Result<u8, CliError> {
    let loaded = load(&a.config.file)?;
    let interval: crate::config::types::HumanDuration = a
        .interval
        .parse()
        .map_err(|e| CliError::invalid(format!("--interval: {e}")))?;
    if interval.as_millis() < 1000 {
        return Err(CliError::invalid("--interval: must be at least 1s"));
    }
    let listen: std::net::SocketAddr = a.listen.parse().map_err(|_| {
        CliError::invalid(format!(
            "--listen: `{}` is not an address; expected IP:PORT such as 127.0.0.1:9464",
            a.listen
        ))
    })?;
    let ctx = context(loaded, false);
    crate::daemon::run(ctx, interval.as_duration(), listen)
        .await
        .map_err(|e| match e {
            crate::daemon::DaemonError::Listen { .. } => CliError::invalid(e.to_string()),
            other => CliError::runtime(other.to_string()),
        })?;
    Ok(exit::OK)
}

/// The platform's health: every step observed (no writes). Exit 1 when a step failed or the
/// platform differs from its description.
async fn status(cli: &Cli, file: &std::path::Path) -> Result<u8, CliError> {
    let loaded = load(file)?;
    let ctx = context(loaded, false);
    let reports = crate::steps::run(&ctx, Mode::Plan, &[]).await;
    let health = |r: &StepReport| match r.status {
        StepStatus::UpToDate => "ok",
        StepStatus::Drift => "drift",
        StepStatus::Pending => "pending",
        StepStatus::Failed => "error",
        StepStatus::Skipped | StepStatus::NotImplemented | StepStatus::Applied => "-",
    };
    match cli.output {
        OutputFormat::Json => {
            let steps: Vec<_> = reports
                .iter()
                .map(|r| json!({"step": r.step, "health": health(r), "status": r.status, "changes": r.changes, "message": r.message}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"command": "status", "steps": steps}))
                    .unwrap_or_default()
            );
        }
        OutputFormat::Table => {
            let mut t = Table::new(["component", "health", "detail"]);
            for r in &reports {
                let detail = match (&r.message, r.changes.as_slice()) {
                    (Some(m), _) => m.clone(),
                    (None, []) => "converged".to_string(),
                    (None, changes) => {
                        // A table cell, not a report: the first few, then a count (JSON has all).
                        let shown: Vec<String> = changes
                            .iter()
                            .take(3)
                            .map(|c| format!("{}: {}", c.resource, c.detail))
                            .collect();
                        let more = changes.len().saturating_sub(shown.len());
                        if more > 0 {
                            format!(
                                "{}; and {more} more (--output json lists all)",
                                shown.join("; ")
                            )
                        } else {
                            shown.join("; ")
                        }
                    }
                };
                t.row([r.step.to_string(), health(r).to_string(), detail]);
            }
            print!("{}", t.render());
        }
    }
    let unhealthy = reports
        .iter()
        .any(|r| matches!(r.status, StepStatus::Failed | StepStatus::Pending));
    Ok(if unhealthy { exit::RUNTIME } else { exit::OK })
}

fn render(cli: &Cli, a: &RenderArgs) -> Result<u8, CliError> {
    use crate::render::{self as r, RenderError};
    let loaded = load(&a.config.file)?;
    let artefacts = match a.target {
        RenderTarget::PrometheusRules => r::prometheus_rules(&loaded.config),
        RenderTarget::GrafanaProvisioning => r::grafana_provisioning(&loaded.config),
        RenderTarget::HelmValues => r::helm_values(&loaded.config, &a.config.file),
        RenderTarget::K3s => r::k3s(&loaded.config, &a.config.file),
        RenderTarget::TerraformVars => r::terraform_vars(&loaded.config, &a.config.file),
    }
    .map_err(|e| match e {
        RenderError::Io { .. } => CliError::runtime(e.to_string()),
        other => CliError::invalid(other.to_string()),
    })?;
    let report = r::write_all(&a.out, &artefacts).map_err(|e| CliError::runtime(e.to_string()))?;
    match cli.output {
        OutputFormat::Json => {
            let files: Vec<_> = report
                .iter()
                .map(|(p, w)| json!({"path": p.display().to_string(), "result": w}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"command": "render", "files": files}))
                    .unwrap_or_default()
            );
        }
        OutputFormat::Table => {
            let mut t = Table::new(["file", "result"]);
            for (p, w) in &report {
                t.row([p.display().to_string(), format!("{w:?}").to_lowercase()]);
            }
            print!("{}", t.render());
        }
    }
    Ok(exit::OK)
}

fn codec_error(e: crate::codec::CodecError) -> CliError {
    CliError::of_kind(e.kind(), e.to_string())
}

/// A complete platform.yaml or a file with only `codec:`: the section and the directory that
/// relative paths resolve against.
fn load_codec(
    file: &std::path::Path,
) -> Result<(config::codec::CodecFile, std::path::PathBuf), CliError> {
    let loaded = config::codec::load_codec_file(file)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
        eprintln!("warning: {w}");
    }
    if loaded.codec.is_none() {
        return Err(codec_error(crate::codec::CodecError::NotConfigured));
    }
    let base_dir = match loaded.path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    Ok((loaded, base_dir))
}

async fn audit(cli: &Cli, a: &super::AuditArgs) -> Result<u8, CliError> {
    use crate::audit::findings::Severity;
    let since: crate::config::types::HumanDuration = a
        .since
        .parse()
        .map_err(|e| CliError::invalid(format!("--since `{}`: {e}; e.g. 24h or 7d", a.since)))?;
    if !(1..=10_000).contains(&a.sample) {
        return Err(CliError::invalid(format!(
            "--sample {}: expected 1 to 10000 histories per namespace",
            a.sample
        )));
    }
    let format = match (a.report_format, &a.report) {
        (Some(f), _) => Some(f),
        (None, Some(path)) => Some(match path.extension().and_then(|e| e.to_str()) {
            Some("html" | "htm") => super::ReportFormat::Html,
            Some("md" | "markdown") => super::ReportFormat::Markdown,
            Some("json") => super::ReportFormat::Json,
            _ => {
                return Err(CliError::invalid(format!(
                    "--report {}: cannot tell the format from the extension; use .html, .md or .json, or --report-format",
                    path.display()
                )));
            }
        }),
        (None, None) => None,
    };
    let loaded = load(&a.config.file)?;
    let ctx = context(loaded, false);
    let opts = crate::audit::AuditOptions {
        namespaces: a
            .namespaces
            .iter()
            .map(|n| n.as_str().to_string())
            .collect(),
        since: since.as_duration(),
        sample: a.sample,
    };
    let report = crate::audit::run(&ctx, &opts, &a.config.file.display().to_string())
        .await
        .map_err(|e| CliError::of_kind(e.kind(), e.to_string()))?;
    if let (Some(path), Some(f)) = (&a.report, format) {
        let text = match f {
            super::ReportFormat::Html => report.to_html(),
            super::ReportFormat::Markdown => report.to_markdown(),
            super::ReportFormat::Json => report.to_json(),
        };
        std::fs::write(path, text).map_err(|e| {
            CliError::runtime(format!(
                "cannot write the report to {}: {e}",
                path.display()
            ))
        })?;
    }
    match cli.output_arg {
        super::OutputArg::Json => println!("{}", report.to_json()),
        super::OutputArg::Table => print!("{}", report.to_table()),
        super::OutputArg::Markdown => print!("{}", report.to_markdown()),
        super::OutputArg::Html => print!("{}", report.to_html()),
    }
    let threshold = a.fail_on.map(|f| match f {
        super::FailOn::Warning => Severity::Warning,
        super::FailOn::Critical => Severity::Critical,
    });
    Ok(match (threshold, report.worst()) {
        (Some(t), Some(w)) if w >= t => exit::FINDINGS,
        _ => exit::OK,
    })
}

async fn codec_keygen_wrapped(
    cli: &Cli,
    file: &std::path::Path,
    out: &std::path::Path,
) -> Result<u8, CliError> {
    let (loaded, base_dir) = load_codec(file)?;
    let Some(codec) = loaded.codec.as_ref() else {
        return Err(codec_error(crate::codec::CodecError::NotConfigured));
    };
    let kind = crate::codec::keygen_wrapped(codec, &base_dir, out)
        .await
        .map_err(codec_error)?;
    match cli.output {
        OutputFormat::Json => println!(
            "{}",
            json!({"command": "codec keygen", "file": out.display().to_string(), "kms": kind, "wrapped": true, "mode": "0600"})
        ),
        OutputFormat::Table => println!(
            "wrote a new AES-256 data key, generated and wrapped by {kind}, to {} (mode 0600; the file holds only the wrapped form); reference it as `wrapped: file:{}`",
            out.display(),
            out.display()
        ),
    }
    Ok(exit::OK)
}

async fn codec_server(file: &std::path::Path) -> Result<u8, CliError> {
    let (loaded, base_dir) = load_codec(file)?;
    let Some(codec) = loaded.codec.as_ref() else {
        return Err(codec_error(crate::codec::CodecError::NotConfigured));
    };
    crate::codec::serve(codec, file, &base_dir, &loaded.namespaces)
        .await
        .map_err(codec_error)?;
    Ok(exit::OK)
}

fn codec_keygen(cli: &Cli, out: &std::path::Path) -> Result<u8, CliError> {
    crate::codec::keygen(out).map_err(codec_error)?;
    match cli.output {
        OutputFormat::Json => println!(
            "{}",
            json!({"command": "codec keygen", "file": out.display().to_string(), "bytes": 32, "mode": "0600"})
        ),
        OutputFormat::Table => println!(
            "wrote a new AES-256 key (32 random bytes, base64) to {} (mode 0600); reference it as `secret: file:{}`",
            out.display(),
            out.display()
        ),
    }
    Ok(exit::OK)
}
