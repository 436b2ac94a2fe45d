//! `temporal-bootstrap upgrade plan|apply`: flags -> plan -> output and exit code (the edge of
//! [`crate::upgrade`], which returns typed results).
//!
//! Exit codes: 0 planned / applied / nothing to do; 1 a system failed (cluster unreachable,
//! schema or roll failure, timeout, schema adapter not wired); 2 refused (downgrade, unknown or
//! known-broken target, failed offline pre-flight check, skipped minor, bad flags).

use std::path::Path;
use std::time::Duration;

use super::output::Table;
use super::{CliError, OutputFormat, UpgradeAction, UpgradeArgs, exit};
use crate::config::LoadedConfig;
use crate::config::types::{HumanDuration, TemporalVersion};
use crate::upgrade::apply::{self, ApplyReport, ApplyRequest};
use crate::upgrade::executor::{ExecutorKind, Helm, K3s, Manual};
use crate::upgrade::plan::{
    self, CheckStatus, FromSource, SCHEMA_AND_ROLL_MINUTES, UpgradePlan, VisibilityStore,
};
use crate::upgrade::probe::HttpClusterProbe;
use crate::upgrade::process::Process;
use crate::upgrade::{ClusterProbe, SchemaMigrator, SystemClock, UpgradeError, migrator, state};
use crate::versions::HopOptions;

/// Poll interval while waiting for a version and during the soak.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

fn to_cli(e: UpgradeError) -> CliError {
    CliError::of_kind(e.kind(), e.to_string())
}

fn version(flag: &str, raw: &str) -> Result<TemporalVersion, CliError> {
    raw.parse()
        .map_err(|e: String| CliError::invalid(format!("{flag}: {e}")))
}

fn duration(flag: &str, raw: &str) -> Result<Duration, CliError> {
    raw.parse::<HumanDuration>()
        .map(|d| d.as_duration())
        .map_err(|e| CliError::invalid(format!("{flag}: {e}")))
}

fn base_dir(loaded: &LoadedConfig) -> &Path {
    match loaded.path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `--allow-insecure-release` and `--via`.
fn hop_options(a: &UpgradeArgs) -> Result<HopOptions, CliError> {
    let via = match &a.via {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|v| version("--via", v.trim()))
            .collect::<Result<_, _>>()?,
    };
    Ok(HopOptions {
        allow_insecure_release: a.allow_insecure_release,
        via,
    })
}

/// Builds the plan: `--from` offline, otherwise the running version from the cluster. The
/// database checks run when `read_databases` (a plan with `--from` contacts nothing; an apply
/// always reads them before its first write).
async fn make_plan(
    a: &UpgradeArgs,
    loaded: &LoadedConfig,
    read_databases: bool,
) -> Result<UpgradePlan, CliError> {
    let to = version("--to", &a.to)?;
    let soak = duration("--soak", &a.soak)?;
    let (from, source) = match &a.from {
        Some(f) => (version("--from", f)?, FromSource::Flag),
        None => {
            let probe =
                HttpClusterProbe::from_config(&loaded.config.cluster.frontend, base_dir(loaded))
                    .map_err(to_cli)?;
            match probe.server_version().await {
                Ok(v) => (v, FromSource::Cluster(probe.address())),
                // An interrupted roll may have left nothing answering: an unfinished upgrade to
                // the same target continues from its state file (apply checks the version again).
                Err(e) => {
                    let path = a
                        .state
                        .clone()
                        .unwrap_or_else(|| state::default_path(&loaded.path));
                    match state::load(&path).ok().flatten() {
                        Some(s) if !s.is_done() && s.to == to => {
                            eprintln!(
                                "upgrade: the cluster does not answer ({e}); continuing the unfinished upgrade in {}",
                                path.display()
                            );
                            (s.from, FromSource::StateFile(path.display().to_string()))
                        }
                        _ => return Err(to_cli(e)),
                    }
                }
            }
        }
    };
    let mut p = plan::build(
        &loaded.config,
        from,
        source,
        to,
        soak.as_secs() / 60,
        &hop_options(a)?,
    )
    .map_err(|r| to_cli(r.into()))?;
    if plan::needs_gin_check(&p) {
        let check = if read_databases {
            let found = crate::postgres::gin_for_character(&context(loaded))
                .await
                .map_err(|e| e.to_string());
            plan::gin_check(found)
        } else {
            plan::gin_check_not_evaluated(if a.from.is_some() {
                "--from contacts nothing"
            } else {
                "checked by the apply before its first write"
            })
        };
        p.preflight.push(check);
    }
    if read_databases
        && p.visibility_store == VisibilityStore::Postgres
        && p.hops.iter().any(|h| h.hop.visibility_rewrite)
        && let Some(rows) = crate::postgres::visibility_rows(&context(loaded))
            .await
            .map_err(|e| CliError::of_kind(e.kind(), e.to_string()))?
    {
        plan::add_rewrite_estimates(&mut p, &rows);
    }
    Ok(p)
}

/// The reconcile context of `loaded` (what the schema adapter reads its configuration from).
fn context(loaded: &LoadedConfig) -> crate::reconcile::Context {
    crate::reconcile::Context {
        config: std::sync::Arc::new(loaded.config.clone()),
        base_dir: base_dir(loaded).to_path_buf(),
        offline: false,
        force: false,
    }
}

fn print_plan(output: OutputFormat, p: &UpgradePlan, dry_run: bool) {
    match output {
        OutputFormat::Json => {
            let mut doc = serde_json::to_value(p).unwrap_or_default();
            if let Some(o) = doc.as_object_mut() {
                o.insert("dry_run".into(), serde_json::Value::Bool(dry_run));
            }
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        OutputFormat::Table => {
            print!("{}", render_table(p));
            if dry_run {
                println!("Dry run: nothing was changed.");
            }
        }
    }
}

fn refuse_failed_checks(p: &UpgradePlan) -> Result<(), CliError> {
    let failed = p.failed_checks();
    if failed.is_empty() {
        return Ok(());
    }
    Err(CliError::invalid(format!(
        "pre-flight check(s) failed: {}",
        failed
            .iter()
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// Entry point of `upgrade plan|apply`.
pub async fn run(
    output: OutputFormat,
    action: &UpgradeAction,
    loaded: LoadedConfig,
) -> Result<u8, CliError> {
    match action {
        UpgradeAction::Plan(a) => {
            let p = make_plan(a, &loaded, a.from.is_none()).await?;
            print_plan(output, &p, false);
            refuse_failed_checks(&p)?;
            Ok(exit::OK)
        }
        UpgradeAction::Apply(a) if a.dry_run => {
            let p = make_plan(a, &loaded, a.from.is_none()).await?;
            print_plan(output, &p, true);
            refuse_failed_checks(&p)?;
            Ok(exit::OK)
        }
        UpgradeAction::Releases => {
            print_releases(output);
            Ok(exit::OK)
        }
        UpgradeAction::Apply(a) => {
            // apply_with plans and refuses (exit 2) before anything is changed.
            let migrator = migrator::StoreMigrator {
                ctx: context(&loaded),
                progress: super::progress::schema_bar(),
            };
            apply_with(output, a, &loaded, &migrator).await
        }
    }
}

/// `upgrade apply` with a given schema adapter (the real one from [`run`], a fake in tests).
pub async fn apply_with<M: SchemaMigrator>(
    output: OutputFormat,
    a: &UpgradeArgs,
    loaded: &LoadedConfig,
    migrator: &M,
) -> Result<u8, CliError> {
    // The database checks run inside the apply, after the cluster answered, before any write.
    let p = make_plan(a, loaded, false).await?;
    refuse_failed_checks(&p)?;
    let probe = HttpClusterProbe::from_config(&loaded.config.cluster.frontend, base_dir(loaded))
        .map_err(to_cli)?;
    let req = ApplyRequest {
        cluster: loaded.config.cluster.name.to_string(),
        to: p.to,
        from_hint: match &a.from {
            Some(f) => Some(version("--from", f)?),
            None => None,
        },
        store: VisibilityStore::of(&loaded.config),
        soak: duration("--soak", &a.soak)?,
        wait_timeout: duration("--wait-timeout", &a.wait_timeout)?,
        poll_interval: POLL_INTERVAL,
        state_path: a
            .state
            .clone()
            .unwrap_or_else(|| state::default_path(&loaded.path)),
        hops: hop_options(a)?,
    };
    let clock = SystemClock;
    let report = match a.executor {
        ExecutorKind::Manual => apply::apply(&req, migrator, &probe, &Manual, &clock).await,
        ExecutorKind::Helm => {
            let ex = Helm {
                release: a.release.clone(),
                chart: a.chart.clone(),
                namespace: a.namespace.clone().unwrap_or_else(|| "temporal".into()),
            };
            apply::apply(&req, migrator, &probe, &ex, &clock).await
        }
        ExecutorKind::K3s => {
            let ex = K3s {
                helmchart: a.release.clone(),
                namespace: a.namespace.clone().unwrap_or_else(|| "kube-system".into()),
            };
            apply::apply(&req, migrator, &probe, &ex, &clock).await
        }
        ExecutorKind::Process => {
            let ex = process_executor(a)?;
            apply::apply(&req, migrator, &probe, &ex, &clock).await
        }
    }
    .map_err(to_cli)?;
    print_apply(output, &report);
    Ok(exit::OK)
}

/// `--executor process`: its three paths, all required.
fn process_executor(a: &UpgradeArgs) -> Result<Process, CliError> {
    let need = |v: &Option<std::path::PathBuf>, flag: &str| {
        v.clone().ok_or_else(|| {
            CliError::invalid(format!(
                "--executor process needs {flag} (the running server's PID file, the folder of <release>/bin/temporal-server binaries, and the server log)"
            ))
        })
    };
    let pid_file = need(&a.pid_file, "--pid-file")?;
    let binaries = need(&a.server_binaries, "--server-binaries")?;
    if !binaries.is_dir() {
        return Err(CliError::invalid(format!(
            "--server-binaries {}: not a folder; give the folder holding <release>/bin/temporal-server for each hop",
            binaries.display()
        )));
    }
    let log_file = a
        .server_log
        .clone()
        .unwrap_or_else(|| pid_file.with_extension("log"));
    Ok(Process {
        pid_file,
        binaries,
        log_file,
    })
}

fn print_apply(output: OutputFormat, r: &ApplyReport) {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(r).unwrap_or_default()),
        OutputFormat::Table => {
            if r.converged {
                println!("Cluster {} is at {}: nothing to do.", r.cluster, r.to);
                return;
            }
            for h in &r.hops {
                println!("{} -> {}: {}", h.from, h.to, h.actions.join("; "));
            }
            println!(
                "Cluster {} upgraded to {}{} (state: {}).",
                r.cluster,
                r.to,
                if r.resumed { " (resumed)" } else { "" },
                r.state_file
            );
        }
    }
}

fn status_str(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Pass => "pass",
        CheckStatus::Warn => "warn",
        CheckStatus::Fail => "FAIL",
        CheckStatus::NotEvaluated => "not evaluated",
    }
}

/// `upgrade releases`: every patch of the exact lines, and the latest patch of each older line.
pub fn print_releases(output: OutputFormat) {
    let releases = crate::versions::known_releases();
    match output {
        OutputFormat::Json => {
            let doc = serde_json::json!({ "releases": releases });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        OutputFormat::Table => {
            let mut t = Table::new([
                "release",
                "pg temporal",
                "pg visibility",
                "es",
                "exact",
                "status",
            ]);
            for r in &releases {
                t.row([
                    r.version.to_string(),
                    r.schemas.postgres_temporal.to_string(),
                    r.schemas.postgres_visibility.to_string(),
                    format!("v{}", r.schemas.elasticsearch),
                    if r.patch_known { "yes" } else { "line" }.to_string(),
                    r.status(),
                ]);
            }
            print!("{}", t.render());
        }
    }
}

/// The plan as text tables (stdout of `upgrade plan`).
pub fn render_table(plan: &UpgradePlan) -> String {
    let mut out = String::new();
    let source = match &plan.from_source {
        FromSource::Flag => "--from".to_string(),
        FromSource::Cluster(url) => url.clone(),
        FromSource::StateFile(path) => format!("the unfinished upgrade in {path}"),
    };
    out.push_str(&format!(
        "Upgrade plan for cluster {}: {} -> {} (running version from {source}; visibility store: {})\n",
        plan.cluster,
        plan.from,
        plan.to,
        serde_json::to_value(plan.visibility_store)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    ));
    if plan.hops.is_empty() {
        out.push_str("Nothing to do: the cluster already runs the target release.\n");
        return out;
    }
    out.push('\n');
    let mut t = Table::new([
        "hop",
        "from",
        "to",
        "pg temporal",
        "pg visibility",
        "es",
        "this platform",
        "server image",
        "admin-tools image",
        "estimate",
    ]);
    for h in &plan.hops {
        t.row([
            h.index.to_string(),
            h.hop.from.to_string(),
            h.hop.to.to_string(),
            format!(
                "{} -> {}",
                h.hop.schemas_before.postgres_temporal, h.hop.schemas.postgres_temporal
            ),
            format!(
                "{} -> {}",
                h.hop.schemas_before.postgres_visibility, h.hop.schemas.postgres_visibility
            ),
            format!(
                "v{} -> v{}",
                h.hop.schemas_before.elasticsearch, h.hop.schemas.elasticsearch
            ),
            h.visibility_target.to_string(),
            h.hop.server_image.clone(),
            h.hop.admin_tools_image.clone(),
            format!(
                "{}{} min",
                if h.estimate_is_lower_bound {
                    ">= "
                } else {
                    "~"
                },
                h.estimated_minutes
            ),
        ]);
    }
    out.push_str(&t.render());
    let any_lower = plan.hops.iter().any(|h| h.estimate_is_lower_bound);
    out.push_str(&format!(
        "\nEstimated total: {}{} min ({} hop(s) x ({} min schema + roll, {} min soak)){}\n",
        if any_lower { ">= " } else { "~" },
        plan.estimated_minutes_total,
        plan.hops.len(),
        SCHEMA_AND_ROLL_MINUTES,
        plan.soak_minutes,
        if any_lower {
            "; table rewrites add time proportional to executions_visibility"
        } else {
            ""
        }
    ));
    let mut notes = String::new();
    for h in &plan.hops {
        for n in &h.hop.notes {
            notes.push_str(&format!("  hop {} ({}): note: {n}\n", h.index, h.hop.to));
        }
        for w in &h.hop.warnings {
            notes.push_str(&format!("  hop {} ({}): WARNING: {w}\n", h.index, h.hop.to));
        }
        for z in &h.hop.hazards {
            notes.push_str(&format!(
                "  hop {} ({}): HAZARD {}: {}\n",
                h.index, h.hop.to, z.issue, z.summary
            ));
        }
    }
    if !notes.is_empty() {
        out.push_str("\nNotes, warnings and known hazards:\n");
        out.push_str(&notes);
    }
    out.push_str("\nPre-flight checks:\n");
    let mut c = Table::new(["check", "status", "offline", "detail"]);
    for ch in &plan.preflight {
        c.row([
            ch.name.to_string(),
            status_str(ch.status).to_string(),
            if ch.offline { "yes" } else { "no" }.to_string(),
            ch.detail.clone(),
        ]);
    }
    out.push_str(&c.render());
    out.push_str(
        "\nPer hop: schema to the exact versions first, then roll the services, wait for the version, soak.\n",
    );
    for a in &plan.afterwards {
        out.push_str(&format!("Afterwards: {a}\n"));
    }
    out
}
