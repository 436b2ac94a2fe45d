//! The fake cluster: a wiremock responder with the shapes of Elasticsearch 7/8/9 and OpenSearch 2.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    Es7,
    Es8,
    Es9,
    Os2,
    /// Refused versions.
    Es6,
    Os1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Security {
    /// Elasticsearch security on; `_has_privileges` grants everything except `denied`
    /// (`cluster:NAME` or `index:NAME`).
    Es { denied: Vec<&'static str> },
    /// Elasticsearch without security (basic license, `xpack.security.enabled: false`).
    EsDisabled,
    /// OpenSearch security plugin present.
    OsAccount,
    /// OpenSearch without the security plugin.
    OsAbsent,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// Persistent cluster settings, flat keys, string values.
    pub(crate) persistent: BTreeMap<String, Value>,
    /// Stored template as Elasticsearch keeps it (flat string settings).
    pub(crate) template: Option<Value>,
    /// index -> mappings (as returned by GET _mapping).
    pub(crate) indices: BTreeMap<String, Value>,
    /// index -> flat settings (as returned by GET _settings?flat_settings=true).
    pub(crate) index_settings: BTreeMap<String, Map<String, Value>>,
    /// The next index creation loses a race: someone else creates it first.
    pub(crate) race_on_create: bool,
}

#[derive(Clone)]
pub(crate) struct FakeCluster {
    pub(crate) flavour: Flavour,
    pub(crate) security: Security,
    /// Authorization header value the cluster accepts (None: no auth configured).
    pub(crate) accept_auth: Option<String>,
    pub(crate) health_times_out: bool,
    /// A misbehaving proxy that echoes the Authorization header in its 401 body.
    pub(crate) echo_auth_on_401: bool,
    pub(crate) state: Arc<Mutex<State>>,
}

pub(crate) const TEMPLATE: &str = "temporal_visibility_v1_template";

pub(crate) fn root_body(f: Flavour) -> Value {
    match f {
        Flavour::Es7 => json!({
            "name": "es7-node-1", "cluster_name": "docker-cluster",
            "cluster_uuid": "p2Zb2yM1TiS4bK6NnS9xFw",
            "version": {"number": "7.17.25", "build_flavor": "default", "build_type": "docker",
                "build_hash": "f9b6b57d1d0f76e2d14291c04fb50abeb642cfbf",
                "build_date": "2024-10-16T22:06:36.904732810Z", "build_snapshot": false,
                "lucene_version": "8.11.3", "minimum_wire_compatibility_version": "6.8.0",
                "minimum_index_compatibility_version": "6.0.0-beta1"},
            "tagline": "You Know, for Search"
        }),
        Flavour::Es8 => json!({
            "name": "es8-node-1", "cluster_name": "docker-cluster",
            "cluster_uuid": "ASdPYRtjS6yr-a8i9qE08A",
            "version": {"number": "8.15.3", "build_flavor": "default", "build_type": "docker",
                "build_hash": "f97532e680b555c3a05e73a74c28afb666923018",
                "build_date": "2024-10-09T22:08:00.328917561Z", "build_snapshot": false,
                "lucene_version": "9.11.1", "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"},
            "tagline": "You Know, for Search"
        }),
        Flavour::Es9 => json!({
            "name": "es9-node-1", "cluster_name": "docker-cluster",
            "cluster_uuid": "Zq0oZ3bDQ2yYwKx5vN3pAg",
            "version": {"number": "9.1.5", "build_flavor": "default", "build_type": "docker",
                "build_hash": "90ee222e7e0136dd8ddbb34015538f3a00c129b7",
                "build_date": "2025-10-02T22:07:12.966975992Z", "build_snapshot": false,
                "lucene_version": "10.2.2", "minimum_wire_compatibility_version": "8.19.0",
                "minimum_index_compatibility_version": "8.0.0"},
            "tagline": "You Know, for Search"
        }),
        Flavour::Os2 => json!({
            "name": "opensearch-node1", "cluster_name": "opensearch-cluster",
            "cluster_uuid": "1vbTN7ROS4Sw-8mHbTAIVQ",
            "version": {"distribution": "opensearch", "number": "2.17.1", "build_type": "tar",
                "build_hash": "1893d20797e30110e5877170e44d42275ce5951e",
                "build_date": "2024-09-26T21:59:52.691008096Z", "build_snapshot": false,
                "lucene_version": "9.11.1", "minimum_wire_compatibility_version": "7.10.0",
                "minimum_index_compatibility_version": "7.0.0"},
            "tagline": "The OpenSearch Project: https://opensearch.org/"
        }),
        Flavour::Es6 => json!({
            "name": "es6", "cluster_name": "old", "cluster_uuid": "x",
            "version": {"number": "6.8.23", "build_flavor": "default", "build_type": "tar",
                "build_hash": "4f67856", "build_date": "2022-01-06T23:43:02.825887787Z",
                "build_snapshot": false, "lucene_version": "7.7.3",
                "minimum_wire_compatibility_version": "5.6.0",
                "minimum_index_compatibility_version": "5.0.0"},
            "tagline": "You Know, for Search"
        }),
        Flavour::Os1 => json!({
            "name": "os1", "cluster_name": "old", "cluster_uuid": "y",
            "version": {"distribution": "opensearch", "number": "1.3.19", "build_type": "tar",
                "build_hash": "0e3a4e0", "build_date": "2024-08-19T19:12:14.108373Z",
                "build_snapshot": false, "lucene_version": "8.10.1",
                "minimum_wire_compatibility_version": "6.8.0",
                "minimum_index_compatibility_version": "6.0.0-beta1"},
            "tagline": "The OpenSearch Project: https://opensearch.org/"
        }),
    }
}

pub(crate) fn health_body(f: Flavour, timed_out: bool) -> Value {
    let mut b = json!({
        "cluster_name": "docker-cluster",
        "status": if timed_out { "red" } else { "yellow" },
        "timed_out": timed_out,
        "number_of_nodes": 1, "number_of_data_nodes": 1,
        "active_primary_shards": if timed_out { 0 } else { 3 },
        "active_shards": if timed_out { 0 } else { 3 },
        "relocating_shards": 0, "initializing_shards": 0,
        "unassigned_shards": if timed_out { 2 } else { 1 },
        "delayed_unassigned_shards": 0, "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0, "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": if timed_out { 0.0 } else { 75.0 }
    });
    if matches!(f, Flavour::Os2 | Flavour::Os1) {
        b["discovered_master"] = json!(true);
        b["discovered_cluster_manager"] = json!(true);
    }
    b
}

pub(crate) fn es_error(status: u16, kind: &str, reason: &str, extra: Value) -> Value {
    let mut cause = json!({"type": kind, "reason": reason});
    if let (Some(c), Some(e)) = (cause.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    let mut top = cause.clone();
    top["root_cause"] = json!([cause]);
    json!({"error": top, "status": status})
}

pub(crate) fn no_handler(method: &str, path: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "error": format!("no handler found for uri [{path}] and method [{method}]")
    }))
}

/// Settings as Elasticsearch stores them: flat `index.`-prefixed keys, string values.
pub(crate) fn es_settings(v: &Value) -> Map<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
        match v {
            Value::Object(m) => {
                for (k, inner) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, inner, out);
                }
            }
            Value::Array(a) => {
                out.insert(
                    prefix.to_string(),
                    Value::Array(a.iter().map(stringify).collect()),
                );
            }
            other => {
                out.insert(prefix.to_string(), stringify(other));
            }
        }
    }
    let mut out = Map::new();
    walk("", v, &mut out);
    out.into_iter()
        .map(|(k, v)| {
            if k.starts_with("index.") {
                (k, v)
            } else {
                (format!("index.{k}"), v)
            }
        })
        .collect()
}

pub(crate) fn stringify(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    }
}

/// Mappings as Elasticsearch returns them: `dynamic` as a string, `scaling_factor` as a double.
pub(crate) fn es_mapping(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("scaling_factor", Value::Number(n)) => {
                            json!(n.as_f64().unwrap_or_default())
                        }
                        ("dynamic", Value::Bool(b)) => Value::String(b.to_string()),
                        _ => es_mapping(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Nested form of flat settings (what GET returns without `flat_settings=true`).
pub(crate) fn nest(flat: &Map<String, Value>) -> Value {
    let mut root = Map::new();
    for (k, v) in flat {
        let parts: Vec<&str> = k.split('.').collect();
        let mut cur = &mut root;
        for p in &parts[..parts.len() - 1] {
            cur = cur
                .entry(p.to_string())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap();
        }
        cur.insert(parts[parts.len() - 1].to_string(), v.clone());
    }
    Value::Object(root)
}

pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((pre, post)) => {
            name.starts_with(pre) && name[pre.len()..].ends_with(post.trim_end_matches('*'))
        }
    }
}

impl Respond for FakeCluster {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let r = self.handle(req);
        self.decorate(r)
    }
}

pub(crate) async fn start(fake: &FakeCluster) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    server
}

/// Writes among the received requests (`_has_privileges` is a read despite being a POST).
pub(crate) fn writes(reqs: &[Request]) -> Vec<String> {
    reqs.iter()
        .filter(|r| {
            let m = r.method.as_str();
            (m == "PUT" || m == "POST" || m == "DELETE")
                && !r.url.path().ends_with("/_has_privileges")
        })
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect()
}

pub(crate) async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}
