//! `temporal-bootstrap upgrade plan|apply`: flags -> plan -> output and exit code.
//!
//! Exit codes: 0 planned / applied / nothing to do; 1 a system failed (cluster unreachable,
//! schema or roll failure, timeout, schema adapter not wired); 2 refused (downgrade, unknown or
//! known-broken target, failed offline pre-flight check, skipped minor, bad flags).

use std::path::Path;
use std::time::Duration;

use super::apply::{self, ApplyReport, ApplyRequest};
use super::executor::{ExecutorKind, Helm, K3s, Manual};
use super::plan::{self, FromSource, UpgradePlan, VisibilityStore};
use super::probe::HttpClusterProbe;
use super::{ClusterProbe, SchemaMigrator, SystemClock, UpgradeError};
use crate::cli::{CliError, OutputFormat, UpgradeAction, UpgradeArgs, exit};
use crate::config::LoadedConfig;
use crate::config::types::{HumanDuration, TemporalVersion};

/// Poll interval while waiting for a version and during the soak.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

fn to_cli(e: UpgradeError) -> CliError {
    if e.is_invalid() {
        CliError::invalid(e.to_string())
    } else {
        CliError::runtime(e.to_string())
    }
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

/// Builds the plan: `--from` offline, otherwise the running version from the cluster.
async fn make_plan(a: &UpgradeArgs, loaded: &LoadedConfig) -> Result<UpgradePlan, CliError> {
    let to = version("--to", &a.to)?;
    let soak = duration("--soak", &a.soak)?;
    let (from, source) = match &a.from {
        Some(f) => (version("--from", f)?, FromSource::Flag),
        None => {
            let probe =
                HttpClusterProbe::from_config(&loaded.config.cluster.frontend, base_dir(loaded))
                    .map_err(to_cli)?;
            let v = probe.server_version().await.map_err(to_cli)?;
            (v, FromSource::Cluster(probe.address()))
        }
    };
    plan::build(&loaded.config, from, source, to, soak.as_secs() / 60).map_err(|r| to_cli(r.into()))
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
            print!("{}", plan::render_table(p));
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
            let p = make_plan(a, &loaded).await?;
            print_plan(output, &p, false);
            refuse_failed_checks(&p)?;
            Ok(exit::OK)
        }
        UpgradeAction::Apply(a) if a.dry_run => {
            let p = make_plan(a, &loaded).await?;
            print_plan(output, &p, true);
            refuse_failed_checks(&p)?;
            Ok(exit::OK)
        }
        UpgradeAction::Apply(a) => {
            // apply_with plans and refuses (exit 2) before anything is changed.
            let ctx = crate::reconcile::Context {
                config: std::sync::Arc::new(loaded.config.clone()),
                base_dir: base_dir(&loaded).to_path_buf(),
                offline: false,
                force: false,
            };
            let migrator = super::migrator::PostgresMigrator { ctx };
            apply_with(output, a, &loaded, &migrator).await
        }
    }
}

/// `upgrade apply` with a schema adapter: for the lead to call once the adapters are merged.
pub async fn apply_with<M: SchemaMigrator>(
    output: OutputFormat,
    a: &UpgradeArgs,
    loaded: &LoadedConfig,
    migrator: &M,
) -> Result<u8, CliError> {
    let p = make_plan(a, loaded).await?;
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
            .unwrap_or_else(|| super::state::default_path(&loaded.path)),
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
    }
    .map_err(to_cli)?;
    print_apply(output, &report);
    Ok(exit::OK)
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
