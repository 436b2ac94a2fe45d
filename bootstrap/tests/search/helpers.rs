//! Configuration helpers: the platform.yaml around a `visibility.elasticsearch` section, the step,
//! the CLI.

use super::*;

pub(crate) fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn schema_dir() -> PathBuf {
    crate_dir().join("tests/fixtures/elasticsearch/schema/elasticsearch")
}

pub(crate) struct Setup {
    pub(crate) url: String,
    pub(crate) flavor: &'static str,
    pub(crate) index: String,
    pub(crate) auth: Option<String>,
    pub(crate) replicas: Option<u32>,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) schema_dir: PathBuf,
}

impl Setup {
    pub(crate) fn new(url: &str, flavor: &'static str) -> Self {
        Self {
            url: url.to_string(),
            flavor,
            index: "temporal_visibility_v1_test".into(),
            auth: None,
            replicas: None,
            ca: None,
            schema_dir: schema_dir(),
        }
    }

    pub(crate) fn yaml(&self) -> String {
        let mut es = format!(
            "    url: {}\n    flavor: {}\n    index: {}\n    schema_dir: {}\n    health_timeout: 5s\n",
            self.url,
            self.flavor,
            self.index,
            self.schema_dir.display()
        );
        if let Some(a) = &self.auth {
            es.push_str(a);
        }
        if let Some(r) = self.replicas {
            es.push_str(&format!("    replicas: {r}\n"));
        }
        if let Some(ca) = &self.ca {
            es.push_str(&format!("    ca: {}\n", ca.display()));
        }
        format!(
            r#"cluster:
  name: search-test
  temporal_version: "1.31.2"
  environment: development
  frontend:
    address: 127.0.0.1:7233
capacity:
  peak_workflow_starts_per_second: 1
  activities_per_workflow: 1
  average_workflow_duration: 1m
persistence:
  sqlite:
    path: /tmp/temporal-bootstrap-search-test.db
visibility:
  elasticsearch:
{es}namespaces:
  - name: default-ns
    retention: 1d
"#
        )
    }

    pub(crate) fn context(&self) -> Context {
        // main() installs the one crypto provider; in-process tests do it here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let loaded = load_str(&self.yaml(), "platform.yaml")
            .unwrap_or_else(|e| panic!("test config is valid: {e}\n{}", self.yaml()));
        Context {
            config: Arc::new(loaded.config),
            base_dir: crate_dir(),
            offline: false,
            force: false,
        }
    }
}

/// A `file:` secret (no process-wide env mutation in tests).
pub(crate) fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub(crate) async fn plan(
    step: &SearchVisibilityStep,
    ctx: &Context,
) -> Result<Vec<Change>, StepError> {
    step.plan(ctx).await
}

/// What the runner does on `apply`: plan, then apply when something other than drift is pending.
pub(crate) async fn apply(
    step: &SearchVisibilityStep,
    ctx: &Context,
) -> Result<Vec<Change>, StepError> {
    let pending = step.plan(ctx).await?;
    if pending.iter().any(|c| c.action != Action::Drift) {
        step.apply(ctx, &pending).await
    } else {
        Ok(pending)
    }
}

pub(crate) fn resources(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                serde_json::to_value(c.action).unwrap().as_str().unwrap(),
                c.resource
            )
        })
        .collect()
}

pub(crate) fn fixture_template(version: &str) -> Value {
    let p = schema_dir().join(format!(
        "visibility/versioned/{version}/index_template_v7.json"
    ));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A cluster set up by Temporal's own tooling at schema v13: template and index, no `_meta`.
pub(crate) fn v13_cluster(fake: &FakeCluster) {
    let t = fixture_template("v13");
    let mut st = fake.state.lock().unwrap();
    st.persistent
        .insert("action.auto_create_index".into(), json!("false"));
    st.template = Some(json!({
        "order": 0,
        "index_patterns": t["index_patterns"],
        "settings": Value::Object(es_settings(&t["settings"])),
        "mappings": es_mapping(&t["mappings"]),
        "aliases": {}
    }));
    st.indices.insert(
        "temporal_visibility_v1_test".into(),
        es_mapping(&t["mappings"]),
    );
    let mut settings = es_settings(&t["settings"]);
    settings.insert("index.uuid".into(), json!("rVw9qS4eS5iTOf5Zc2soZA"));
    st.index_settings
        .insert("temporal_visibility_v1_test".into(), settings);
}
