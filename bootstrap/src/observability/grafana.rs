//! Step `dashboards`: the platform's Grafana dashboards in a folder, through Grafana's HTTP API.
//!
//! Flow: observe the folder and each dashboard (`GET /api/folders`, `GET /api/dashboards/uid/X`);
//! diff by checksum; apply creates the folder and posts changed dashboards
//! (`POST /api/dashboards/db`); a datasource check reports a missing Prometheus datasource.
//!
//! Guarantees: every dashboard we upload carries `temporalBootstrap.sha256`, the checksum of what
//! we uploaded. A dashboard whose content no longer matches that checksum was edited in Grafana and
//! is never overwritten unless `apply --force`; it is reported as drift instead. A converged step
//! posts nothing.
//!
//! Caveats: Grafana does not run on this project's CI machine; this module is verified by contract
//! tests that encode Grafana's documented request/response shapes, and against a real Grafana when
//! `TB_GRAFANA_URL` is set.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::GrafanaConfig;
use crate::reconcile::{Action, Change, Context, ErrorKind, Step, StepError, StepFuture, StepName};

/// The dashboards we ship, embedded: file name and JSON text.
pub const DASHBOARDS: &[(&str, &str)] = &[
    (
        "temporal-overview.json",
        include_str!("../../../dashboards/temporal-overview.json"),
    ),
    (
        "temporal-task-queues.json",
        include_str!("../../../dashboards/temporal-task-queues.json"),
    ),
    (
        "temporal-workflows.json",
        include_str!("../../../dashboards/temporal-workflows.json"),
    ),
    (
        "temporal-persistence.json",
        include_str!("../../../dashboards/temporal-persistence.json"),
    ),
    (
        "temporal-bootstrap.json",
        include_str!("../../../dashboards/temporal-bootstrap.json"),
    ),
];

/// Keys Grafana sets or we set, excluded from the content checksum.
const VOLATILE: &[&str] = &["id", "version", "iteration", "temporalBootstrap"];

pub struct DashboardsStep;

#[derive(Debug, thiserror::Error)]
pub enum GrafanaError {
    #[error("embedded dashboard {0} is not valid JSON: {1}")]
    BadDashboard(String, serde_json::Error),
    #[error("the Grafana token could not be read: {0}")]
    Token(#[from] crate::config::types::SecretError),
    #[error("Grafana at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error(
        "Grafana refused the token (HTTP {status}) for {what}; check observability.grafana.token (a service account token with Editor rights on the folder)"
    )]
    Auth { status: u16, what: String },
    #[error("Grafana answered HTTP {status} to {what}: {body}")]
    Api {
        status: u16,
        what: String,
        body: String,
    },
}

impl GrafanaError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::BadDashboard(..) => ErrorKind::Invalid,
            // A token that cannot be resolved is the environment's fault, not the config's
            // (README: exit 1).
            Self::Token(_) | Self::Api { .. } => ErrorKind::Failed,
            Self::Unreachable { .. } => ErrorKind::Unreachable,
            Self::Auth { .. } => ErrorKind::Denied,
        }
    }
}

impl From<GrafanaError> for StepError {
    fn from(e: GrafanaError) -> Self {
        StepError::from_error(e.kind(), e)
    }
}

/// A dashboard as we want it, with its checksum.
#[derive(Debug, Clone)]
pub struct Desired {
    pub uid: String,
    pub title: String,
    pub json: Value,
    pub sha256: String,
}

pub fn desired() -> Result<Vec<Desired>, GrafanaError> {
    DASHBOARDS
        .iter()
        .map(|(file, text)| {
            let json: Value = serde_json::from_str(text)
                .map_err(|e| GrafanaError::BadDashboard((*file).into(), e))?;
            let uid = json["uid"]
                .as_str()
                .unwrap_or(file.trim_end_matches(".json"))
                .to_string();
            let title = json["title"].as_str().unwrap_or(&uid).to_string();
            let sha256 = content_sha(&json);
            Ok(Desired {
                uid,
                title,
                json,
                sha256,
            })
        })
        .collect()
}

/// Checksum of a dashboard's content: canonical JSON without the volatile keys.
pub fn content_sha(dashboard: &Value) -> String {
    let mut v = dashboard.clone();
    if let Some(obj) = v.as_object_mut() {
        for k in VOLATILE {
            obj.remove(*k);
        }
    }
    let canonical = canonical(&v);
    hex(&Sha256::digest(canonical.as_bytes()))
}

fn canonical(v: &Value) -> String {
    // serde_json keeps object keys sorted (no preserve_order feature), so to_string is canonical.
    serde_json::to_string(v).unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Step for DashboardsStep {
    fn name(&self) -> StepName {
        StepName::Dashboards
    }
    fn enabled(&self, ctx: &Context) -> Result<bool, StepError> {
        Ok(ctx.config.observability.grafana.is_some())
    }
    fn plan<'a>(&'a self, ctx: &'a Context) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move { Ok(Grafana::new(grafana(ctx))?.plan(ctx.force).await?) })
    }
    fn apply<'a>(&'a self, ctx: &'a Context, pending: &'a [Change]) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move {
            Ok(Grafana::new(grafana(ctx))?
                .apply(ctx.force, pending)
                .await?)
        })
    }
}

fn grafana(ctx: &Context) -> &GrafanaConfig {
    // Invariant: the runner only calls plan/apply when `enabled` returned true.
    ctx.config
        .observability
        .grafana
        .as_ref()
        .expect("dashboards runs only with observability.grafana")
}

/// What we found for one dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Observed {
    Missing,
    /// Present; `marker` is the checksum we recorded on upload, `content` the checksum now.
    Present {
        marker: Option<String>,
        content: String,
    },
}

/// A Grafana API client for one instance.
pub struct Grafana<'a> {
    cfg: &'a GrafanaConfig,
    token: crate::config::types::Secret,
    http: reqwest::Client,
}

impl<'a> Grafana<'a> {
    pub fn new(cfg: &'a GrafanaConfig) -> Result<Self, GrafanaError> {
        let token = cfg.token.resolve()?;
        crate::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Ok(Self { cfg, token, http })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), GrafanaError> {
        let url = format!("{}{}", self.cfg.url, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(self.token.expose());
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| GrafanaError::Unreachable {
            url: self.cfg.url.to_string(),
            message: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let what = format!("{method} {path}");
        if status == 401 || status == 403 {
            return Err(GrafanaError::Auth { status, what });
        }
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 && status != 404 {
            let body = value["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| text.chars().take(500).collect());
            return Err(GrafanaError::Api { status, what, body });
        }
        Ok((status, value))
    }

    async fn folder_uid(&self) -> Result<Option<String>, GrafanaError> {
        let (_, folders) = self
            .call(reqwest::Method::GET, "/api/folders", None)
            .await?;
        Ok(folders
            .as_array()
            .and_then(|fs| {
                fs.iter()
                    .find(|f| f["title"].as_str() == Some(self.cfg.folder.as_str()))
            })
            .and_then(|f| f["uid"].as_str().map(String::from)))
    }

    async fn observe(&self, uid: &str) -> Result<Observed, GrafanaError> {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/dashboards/uid/{uid}"),
                None,
            )
            .await?;
        if status == 404 {
            return Ok(Observed::Missing);
        }
        let dashboard = &body["dashboard"];
        Ok(Observed::Present {
            marker: dashboard["temporalBootstrap"]["sha256"]
                .as_str()
                .map(String::from),
            content: content_sha(dashboard),
        })
    }

    async fn datasource_change(&self) -> Result<Option<Change>, GrafanaError> {
        let ok = match &self.cfg.datasource_uid {
            Some(uid) => {
                self.call(
                    reqwest::Method::GET,
                    &format!("/api/datasources/uid/{uid}"),
                    None,
                )
                .await?
                .0 != 404
            }
            None => {
                let (_, list) = self
                    .call(reqwest::Method::GET, "/api/datasources", None)
                    .await?;
                list.as_array()
                    .is_some_and(|ds| ds.iter().any(|d| d["type"].as_str() == Some("prometheus")))
            }
        };
        Ok((!ok).then(|| {
            Change::new(
                Action::Drift,
                "grafana datasource",
                match &self.cfg.datasource_uid {
                    Some(uid) => format!(
                        "datasource `{uid}` does not exist; the dashboards will show no data"
                    ),
                    None => "no Prometheus datasource; the dashboards will show no data".into(),
                },
            )
        }))
    }

    pub async fn plan(&self, force: bool) -> Result<Vec<Change>, GrafanaError> {
        let mut changes = Vec::new();
        if self.folder_uid().await?.is_none() {
            changes.push(Change::new(
                Action::Create,
                format!("grafana folder {}", self.cfg.folder),
                "missing",
            ));
        }
        for d in desired()? {
            let resource = format!("dashboard {}", d.uid);
            match self.observe(&d.uid).await? {
                Observed::Missing => {
                    changes.push(Change::new(Action::Create, resource, d.title.clone()))
                }
                Observed::Present { marker, content } => {
                    let edited = marker.as_deref() != Some(content.as_str());
                    let ours_changed = marker.as_deref() != Some(d.sha256.as_str());
                    match (edited, ours_changed, force) {
                        (false, false, _) => {}
                        (false, true, _) => changes.push(Change::new(Action::Update, resource, "new version of the dashboard")),
                        (true, _, true) => changes.push(Change::new(Action::Update, resource, "edited in Grafana; overwriting (--force)")),
                        (true, _, false) => changes.push(Change::new(
                            Action::Drift,
                            resource,
                            if marker.is_none() { "exists but was not uploaded by temporal-bootstrap; not overwritten (use apply --force)" } else { "edited in Grafana; not overwritten (use apply --force)" },
                        )),
                    }
                }
            }
        }
        if let Some(c) = self.datasource_change().await? {
            changes.push(c);
        }
        Ok(changes)
    }

    pub async fn apply(
        &self,
        force: bool,
        pending: &[Change],
    ) -> Result<Vec<Change>, GrafanaError> {
        let folder_uid = match self.folder_uid().await? {
            Some(uid) => uid,
            None => {
                let body =
                    json!({"uid": folder_uid_for(&self.cfg.folder), "title": self.cfg.folder});
                let (_, created) = self
                    .call(reqwest::Method::POST, "/api/folders", Some(&body))
                    .await?;
                created["uid"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| folder_uid_for(&self.cfg.folder))
            }
        };
        let wanted: BTreeMap<String, &Change> = pending
            .iter()
            .filter(|c| c.action != Action::Drift)
            .filter_map(|c| {
                c.resource
                    .strip_prefix("dashboard ")
                    .map(|uid| (uid.to_string(), c))
            })
            .collect();
        for d in desired()? {
            if !wanted.contains_key(&d.uid) {
                continue;
            }
            let mut dashboard = d.json.clone();
            if let Some(obj) = dashboard.as_object_mut() {
                obj.insert("id".into(), Value::Null);
                obj.insert("temporalBootstrap".into(), json!({"sha256": d.sha256}));
            }
            let body = json!({
                "dashboard": dashboard,
                "folderUid": folder_uid,
                "overwrite": true,
                "message": if force { "temporal-bootstrap apply --force" } else { "temporal-bootstrap apply" },
            });
            self.call(reqwest::Method::POST, "/api/dashboards/db", Some(&body))
                .await?;
            tracing::info!(uid = %d.uid, "dashboard uploaded");
        }
        Ok(pending.to_vec())
    }
}

/// A stable folder UID derived from its title (Grafana UIDs: at most 40 characters).
fn folder_uid_for(title: &str) -> String {
    let slug: String = title
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("tb-{}", slug.chars().take(36).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_ignores_volatile_keys_only() {
        let a = json!({"title": "x", "panels": [1, 2], "version": 3, "id": 9});
        let b = json!({"panels": [1, 2], "title": "x", "version": 7, "temporalBootstrap": {"sha256": "z"}});
        assert_eq!(content_sha(&a), content_sha(&b));
        let c = json!({"title": "x", "panels": [1, 2, 3]});
        assert_ne!(content_sha(&a), content_sha(&c));
    }

    #[test]
    fn embedded_dashboards_parse_and_have_uids() {
        let ds = desired().unwrap();
        assert_eq!(ds.len(), 5);
        assert!(ds.iter().all(|d| !d.uid.is_empty() && d.uid.len() <= 40));
    }
}
