//! Step `alert-rules`: the platform's rule files in Prometheus' `rules_dir`, loaded and verified.
//!
//! Flow: observe the files in `rules_dir` (and, online, the groups Prometheus reports at
//! `/api/v1/rules`); diff against the rendered rules; apply writes changed files atomically (temp
//! file + rename), `POST /-/reload` when `reload` is on, then polls `/api/v1/rules` until every
//! group is loaded.
//!
//! Guarantees: files other than ours (`temporal-*.yaml`) are never touched; a converged step
//! writes nothing and does not reload; a rule file Prometheus rejects fails the step with the
//! reload error (the previous rules stay loaded, Prometheus keeps its old config on a failed reload).
//!
//! Assumptions: Prometheus loads `rules_dir/*.yaml` (its `rule_files`), and runs with
//! `--web.enable-lifecycle` when `reload: true`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::rules::{self, RuleFile};
use crate::config::PrometheusConfig;
use crate::reconcile::{Action, Change, Context, ErrorKind, Step, StepError, StepFuture, StepName};

/// How long to wait for Prometheus to report the new groups after a reload.
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);

pub struct AlertRulesStep;

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("{0}")]
    Render(#[from] rules::RulesError),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("Prometheus at {url} is unreachable: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("Prometheus rejected the reload ({status}): {body}")]
    ReloadRejected { status: u16, body: String },
    #[error(
        "Prometheus did not load the groups {missing:?} within {secs}s after the reload; check its log and `promtool check rules`"
    )]
    NotLoaded { missing: Vec<String>, secs: u64 },
}

impl PrometheusError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Render(_) => ErrorKind::Invalid,
            Self::Io { .. } | Self::ReloadRejected { .. } => ErrorKind::Failed,
            Self::Unreachable { .. } => ErrorKind::Unreachable,
            Self::NotLoaded { .. } => ErrorKind::Timeout,
        }
    }
}

impl From<PrometheusError> for StepError {
    fn from(e: PrometheusError) -> Self {
        StepError::from_error(e.kind(), e)
    }
}

impl Step for AlertRulesStep {
    fn name(&self) -> StepName {
        StepName::AlertRules
    }
    fn enabled(&self, ctx: &Context) -> Result<bool, StepError> {
        Ok(ctx.config.observability.prometheus.is_some())
    }
    fn works_offline(&self) -> bool {
        true
    }
    fn plan<'a>(&'a self, ctx: &'a Context) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move { Ok(plan(ctx).await?) })
    }
    fn apply<'a>(&'a self, ctx: &'a Context, pending: &'a [Change]) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move { Ok(apply(ctx, pending).await?) })
    }
}

fn settings(ctx: &Context) -> Result<(&PrometheusConfig, PathBuf), PrometheusError> {
    // Invariant: the runner only calls plan/apply when `enabled` returned true.
    let p = ctx
        .config
        .observability
        .prometheus
        .as_ref()
        .expect("alert-rules runs only with observability.prometheus");
    Ok((p, ctx.resolve_path(&p.rules_dir)))
}

async fn plan(ctx: &Context) -> Result<Vec<Change>, PrometheusError> {
    let (prom, dir) = settings(ctx)?;
    let files = rules::render(&ctx.config.observability)?;
    let mut changes = file_changes(&dir, &files)?;
    if changes.is_empty() && prom.reload && !ctx.offline {
        let loaded = loaded_groups(prom).await?;
        let missing: Vec<String> = files
            .iter()
            .flat_map(|f| f.groups.iter())
            .filter(|g| !loaded.contains(*g))
            .cloned()
            .collect();
        if !missing.is_empty() {
            changes.push(Change::new(
                Action::Update,
                "prometheus reload",
                format!("groups not loaded: {}", missing.join(", ")),
            ));
        }
    }
    Ok(changes)
}

fn file_changes(dir: &std::path::Path, files: &[RuleFile]) -> Result<Vec<Change>, PrometheusError> {
    let mut changes = Vec::new();
    for f in files {
        let path = dir.join(&f.file_name);
        match crate::fsutil::read_limited_string(&path, crate::fsutil::FileKind::State) {
            Ok(current) if current == f.content => {}
            Ok(_) => changes.push(Change::new(
                Action::Update,
                format!("rule file {}", path.display()),
                "content differs from the rendered rules",
            )),
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => {
                changes.push(Change::new(
                    Action::Create,
                    format!("rule file {}", path.display()),
                    format!("groups {}", f.groups.join(", ")),
                ))
            }
            Err(e) => {
                return Err(PrometheusError::Io {
                    what: "read",
                    path: path.display().to_string(),
                    source: std::io::Error::other(e),
                });
            }
        }
    }
    Ok(changes)
}

async fn apply(ctx: &Context, pending: &[Change]) -> Result<Vec<Change>, PrometheusError> {
    let (prom, dir) = settings(ctx)?;
    let files = rules::render(&ctx.config.observability)?;
    std::fs::create_dir_all(&dir).map_err(|source| PrometheusError::Io {
        what: "create",
        path: dir.display().to_string(),
        source,
    })?;
    for f in &files {
        let path = dir.join(&f.file_name);
        if crate::fsutil::read_limited_string(&path, crate::fsutil::FileKind::State)
            .ok()
            .as_deref()
            == Some(f.content.as_str())
        {
            continue;
        }
        crate::fsutil::write_atomic(&path, f.content.as_bytes(), 0o644).map_err(|source| {
            PrometheusError::Io {
                what: "write",
                path: path.display().to_string(),
                source,
            }
        })?;
        tracing::info!(file = %path.display(), "rule file written");
    }
    if prom.reload {
        reload(prom).await?;
        let wanted: Vec<String> = files.iter().flat_map(|f| f.groups.clone()).collect();
        let started = Instant::now();
        loop {
            let loaded = loaded_groups(prom).await?;
            let missing: Vec<String> = wanted
                .iter()
                .filter(|g| !loaded.contains(*g))
                .cloned()
                .collect();
            if missing.is_empty() {
                break;
            }
            if started.elapsed() > LOAD_TIMEOUT {
                return Err(PrometheusError::NotLoaded {
                    missing,
                    secs: LOAD_TIMEOUT.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(pending.to_vec())
}

fn client() -> reqwest::Client {
    crate::ensure_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

async fn reload(prom: &PrometheusConfig) -> Result<(), PrometheusError> {
    let url = format!("{}/-/reload", prom.url);
    let resp = client()
        .post(&url)
        .send()
        .await
        .map_err(|source| PrometheusError::Unreachable {
            url: url.clone(),
            source,
        })?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let body = resp.text().await.unwrap_or_default();
        return Err(PrometheusError::ReloadRejected {
            status,
            body: body.trim().chars().take(2000).collect(),
        });
    }
    Ok(())
}

/// Names of the rule groups Prometheus has loaded.
pub async fn loaded_groups(prom: &PrometheusConfig) -> Result<BTreeSet<String>, PrometheusError> {
    let body = get_json(prom, "rules", &[]).await?;
    Ok(body["data"]["groups"]
        .as_array()
        .map(|gs| {
            gs.iter()
                .filter_map(|g| g["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

/// One sample of an instant query: its labels and value.
pub type VectorSample = (BTreeMap<String, String>, f64);

/// Evaluates `expr` now (GET /api/v1/query); a vector result as labels and values. Read-only.
pub async fn query_vector(
    prom: &PrometheusConfig,
    expr: &str,
) -> Result<Vec<VectorSample>, PrometheusError> {
    let body = get_json(prom, "query", &[("query", expr)]).await?;
    Ok(body["data"]["result"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| {
                    let labels = r["metric"]
                        .as_object()?
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect();
                    let value = r["value"][1].as_str()?.parse::<f64>().ok()?;
                    Some((labels, value))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// An active scrape target (GET /api/v1/targets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    pub job: String,
    pub instance: String,
    pub up: bool,
}

pub async fn scrape_targets(prom: &PrometheusConfig) -> Result<Vec<ScrapeTarget>, PrometheusError> {
    let body = get_json(prom, "targets", &[("state", "active")]).await?;
    Ok(body["data"]["activeTargets"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| ScrapeTarget {
                    job: t["labels"]["job"].as_str().unwrap_or_default().to_string(),
                    instance: t["labels"]["instance"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    up: t["health"].as_str() == Some("up"),
                })
                .collect()
        })
        .unwrap_or_default())
}

async fn get_json(
    prom: &PrometheusConfig,
    api: &str,
    params: &[(&str, &str)],
) -> Result<serde_json::Value, PrometheusError> {
    let mut url = prom.url.as_url().clone();
    let path = format!("{}/api/v1/{api}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    let unreachable = |source| PrometheusError::Unreachable {
        url: format!("{}/api/v1/{api}", prom.url),
        source,
    };
    client()
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(unreachable)?
        .json()
        .await
        .map_err(unreachable)
}
