//! Contract tests of the `search` adapter (the `visibility` step on Elasticsearch/OpenSearch).
//!
//! No Elasticsearch or OpenSearch runs on this machine or in CI, so these tests run the real step
//! against `FakeCluster`, a wiremock responder that answers every call the adapter makes with the
//! request and response shapes of Elasticsearch 7, 8 (and 9, which keeps the 8.x shapes) and
//! OpenSearch 2 as documented in their REST API references (root info, cluster health incl. the 408 timeout body, flat
//! cluster settings, legacy `_template` with string settings and `scaling_factor` returned as
//! `10000.0`, `HEAD` index, `resource_already_exists_exception`, put-mapping conflicts,
//! `_has_privileges`, the OpenSearch account API, `security_exception` 401s). It also rejects
//! malformed requests the way the servers do (missing JSON content type, missing health
//! parameters, typed template mappings), so it checks what we send, not only what we parse.
//!
//! `real_cluster_*` runs the same scenarios against a real cluster when `TB_ES_URL` is set
//! (optional `TB_ES_USERNAME`/`TB_ES_PASSWORD`, `TB_ES_CA`) at build time (cfg `tb_es_url`, see
//! `build.rs`), and is listed as ignored otherwise, also in CI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use temporal_bootstrap::config::load_str;
use temporal_bootstrap::reconcile::{Action, Change, Context, ErrorClass, Step, StepError};
use temporal_bootstrap::search::SearchVisibilityStep;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

// ------------------------------------------------------------------------------------------------
// The fake cluster
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Es7,
    Es8,
    Es9,
    Os2,
    /// Refused versions.
    Es6,
    Os1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Security {
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
struct State {
    /// Persistent cluster settings, flat keys, string values.
    persistent: BTreeMap<String, Value>,
    /// Stored template as Elasticsearch keeps it (flat string settings).
    template: Option<Value>,
    /// index -> mappings (as returned by GET _mapping).
    indices: BTreeMap<String, Value>,
    /// index -> flat settings (as returned by GET _settings?flat_settings=true).
    index_settings: BTreeMap<String, Map<String, Value>>,
    /// The next index creation loses a race: someone else creates it first.
    race_on_create: bool,
}

#[derive(Clone)]
struct FakeCluster {
    flavour: Flavour,
    security: Security,
    /// Authorization header value the cluster accepts (None: no auth configured).
    accept_auth: Option<String>,
    health_times_out: bool,
    /// A misbehaving proxy that echoes the Authorization header in its 401 body.
    echo_auth_on_401: bool,
    state: Arc<Mutex<State>>,
}

const TEMPLATE: &str = "temporal_visibility_v1_template";

fn root_body(f: Flavour) -> Value {
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

fn health_body(f: Flavour, timed_out: bool) -> Value {
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

fn es_error(status: u16, kind: &str, reason: &str, extra: Value) -> Value {
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

fn no_handler(method: &str, path: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "error": format!("no handler found for uri [{path}] and method [{method}]")
    }))
}

/// Settings as Elasticsearch stores them: flat `index.`-prefixed keys, string values.
fn es_settings(v: &Value) -> Map<String, Value> {
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

fn stringify(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    }
}

/// Mappings as Elasticsearch returns them: `dynamic` as a string, `scaling_factor` as a double.
fn es_mapping(v: &Value) -> Value {
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
fn nest(flat: &Map<String, Value>) -> Value {
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

fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((pre, post)) => {
            name.starts_with(pre) && name[pre.len()..].ends_with(post.trim_end_matches('*'))
        }
    }
}

impl FakeCluster {
    fn new(flavour: Flavour, security: Security) -> Self {
        Self {
            flavour,
            security,
            accept_auth: None,
            health_times_out: false,
            echo_auth_on_401: false,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn is_os(&self) -> bool {
        matches!(self.flavour, Flavour::Os2 | Flavour::Os1)
    }

    fn decorate(&self, mut r: ResponseTemplate) -> ResponseTemplate {
        if matches!(self.flavour, Flavour::Es8 | Flavour::Es9) {
            r = r.insert_header("X-elastic-product", "Elasticsearch");
        }
        r
    }

    fn unauthorized(&self, req: &Request) -> ResponseTemplate {
        let got = req
            .headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if self.echo_auth_on_401 {
            return ResponseTemplate::new(401).set_body_json(es_error(
                401,
                "security_exception",
                &format!("rejected credentials [{got}]"),
                json!({}),
            ));
        }
        if self.is_os() {
            // The OpenSearch security plugin answers 401 with a plain-text body.
            return ResponseTemplate::new(401)
                .insert_header("WWW-Authenticate", "Basic realm=\"OpenSearch Security\"")
                .set_body_string("Unauthorized");
        }
        let path = req.url.path();
        ResponseTemplate::new(401)
            .insert_header("WWW-Authenticate", "Basic realm=\"security\" charset=\"UTF-8\"")
            .set_body_json(es_error(
                401,
                "security_exception",
                &format!("unable to authenticate user [temporal_admin] for REST request [{path}]"),
                json!({"header": {"WWW-Authenticate": ["Basic realm=\"security\" charset=\"UTF-8\"", "ApiKey"]}}),
            ))
    }

    fn handle(&self, req: &Request) -> ResponseTemplate {
        let method = req.method.as_str().to_string();
        let path = req.url.path().to_string();
        let query: BTreeMap<String, String> = req.url.query_pairs().into_owned().collect();
        if let Some(want) = &self.accept_auth {
            let got = req
                .headers
                .get("authorization")
                .and_then(|h| h.to_str().ok());
            if got != Some(want.as_str()) {
                return self.unauthorized(req);
            }
        }
        if !req.body.is_empty() {
            let ct = req
                .headers
                .get("content-type")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !ct.starts_with("application/json") {
                return ResponseTemplate::new(406).set_body_json(json!({
                    "error": format!("Content-Type header [{ct}] is not supported"), "status": 406
                }));
            }
        }
        let body: Value = if req.body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(e) => {
                    return ResponseTemplate::new(400).set_body_json(es_error(
                        400,
                        "json_parse_exception",
                        &e.to_string(),
                        json!({}),
                    ));
                }
            }
        };
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut st = self.state.lock().unwrap();
        match (method.as_str(), segs.as_slice()) {
            ("GET", [""]) => ResponseTemplate::new(200).set_body_json(root_body(self.flavour)),
            ("GET", ["_cluster", "health"]) => {
                if query.get("wait_for_status").map(String::as_str) != Some("yellow")
                    || !query.get("timeout").is_some_and(|t| t.ends_with('s'))
                {
                    return ResponseTemplate::new(400).set_body_json(es_error(
                        400,
                        "illegal_argument_exception",
                        "the adapter must wait for yellow with a timeout",
                        json!({}),
                    ));
                }
                if self.health_times_out {
                    ResponseTemplate::new(408).set_body_json(health_body(self.flavour, true))
                } else {
                    ResponseTemplate::new(200).set_body_json(health_body(self.flavour, false))
                }
            }
            ("GET", ["_cluster", "settings"]) => {
                let flat = Value::Object(st.persistent.clone().into_iter().collect());
                let persistent = if query.get("flat_settings").map(String::as_str) == Some("true") {
                    flat
                } else {
                    nest(flat.as_object().unwrap())
                };
                ResponseTemplate::new(200)
                    .set_body_json(json!({"persistent": persistent, "transient": {}}))
            }
            ("PUT", ["_cluster", "settings"]) => {
                let Some(p) = body.get("persistent").and_then(Value::as_object) else {
                    return ResponseTemplate::new(400).set_body_json(es_error(
                        400,
                        "action_request_validation_exception",
                        "Validation Failed: 1: no settings to update;",
                        json!({}),
                    ));
                };
                let mut echo = Map::new();
                for (k, v) in p {
                    st.persistent.insert(k.clone(), stringify(v));
                    echo.insert(k.clone(), stringify(v));
                }
                ResponseTemplate::new(200).set_body_json(json!({
                    "acknowledged": true, "persistent": nest(&echo), "transient": {}
                }))
            }
            ("GET", ["_template", name]) => {
                let warn = matches!(self.flavour, Flavour::Es8 | Flavour::Es9);
                let r = match (&st.template, *name == TEMPLATE) {
                    (Some(t), true) => {
                        let mut t = t.clone();
                        if query.get("flat_settings").map(String::as_str) != Some("true") {
                            t["settings"] = nest(t["settings"].as_object().unwrap());
                        }
                        ResponseTemplate::new(200).set_body_json(json!({ TEMPLATE: t }))
                    }
                    _ => ResponseTemplate::new(404).set_body_json(json!({})),
                };
                if warn {
                    r.insert_header("Warning", "299 Elasticsearch-8.15.3-f97532e680b555c3a05e73a74c28afb666923018 \"Legacy index templates are deprecated in favor of composable templates.\"")
                } else {
                    r
                }
            }
            ("PUT", ["_template", name]) => {
                let patterns = body.get("index_patterns").and_then(Value::as_array);
                if patterns.is_none_or(|p| p.is_empty()) {
                    return ResponseTemplate::new(400).set_body_json(es_error(
                        400,
                        "action_request_validation_exception",
                        "Validation Failed: 1: index patterns are missing;",
                        json!({}),
                    ));
                }
                let mappings = body.get("mappings").cloned().unwrap_or(json!({}));
                if mappings.get("_doc").is_some() && self.flavour != Flavour::Es7 {
                    return ResponseTemplate::new(400).set_body_json(es_error(
                        400,
                        "mapper_parsing_exception",
                        "Root mapping definition has unsupported parameters:  [_doc : {...}]",
                        json!({}),
                    ));
                }
                let stored = json!({
                    "order": body.get("order").and_then(Value::as_i64).unwrap_or(0),
                    "index_patterns": patterns.unwrap(),
                    "settings": Value::Object(es_settings(body.get("settings").unwrap_or(&json!({})))),
                    "mappings": es_mapping(&mappings),
                    "aliases": body.get("aliases").cloned().unwrap_or(json!({})),
                });
                assert_eq!(*name, TEMPLATE, "the adapter writes Temporal's template name");
                st.template = Some(stored);
                let r = ResponseTemplate::new(200).set_body_json(json!({"acknowledged": true}));
                if matches!(self.flavour, Flavour::Es8 | Flavour::Es9) {
                    r.insert_header("Warning", "299 Elasticsearch-8.15.3-f97532e680b555c3a05e73a74c28afb666923018 \"Legacy index templates are deprecated in favor of composable templates.\"")
                } else {
                    r
                }
            }
            ("POST", ["_security", "user", "_has_privileges"]) => match &self.security {
                Security::Es { denied } => {
                    let mut has_all = true;
                    let mut cluster = Map::new();
                    for p in body["cluster"].as_array().cloned().unwrap_or_default() {
                        let p = p.as_str().unwrap().to_string();
                        let ok = !denied.contains(&format!("cluster:{p}").as_str());
                        has_all &= ok;
                        cluster.insert(p, json!(ok));
                    }
                    let mut index = Map::new();
                    for entry in body["index"].as_array().cloned().unwrap_or_default() {
                        for name in entry["names"].as_array().unwrap() {
                            let mut privs = Map::new();
                            for p in entry["privileges"].as_array().unwrap() {
                                let p = p.as_str().unwrap().to_string();
                                let ok = !denied.contains(&format!("index:{p}").as_str());
                                has_all &= ok;
                                privs.insert(p, json!(ok));
                            }
                            index.insert(name.as_str().unwrap().to_string(), Value::Object(privs));
                        }
                    }
                    ResponseTemplate::new(200).set_body_json(json!({
                        "username": "temporal_admin", "has_all_requested": has_all,
                        "cluster": cluster, "index": index, "application": {}
                    }))
                }
                Security::EsDisabled => ResponseTemplate::new(500).set_body_json(es_error(
                    500,
                    "exception",
                    "Security must be explicitly enabled when using a [basic] license. Enable security by setting [xpack.security.enabled] to [true] in the elasticsearch.yml file and restart the node.",
                    json!({}),
                )),
                _ => no_handler(&method, &path),
            },
            ("GET", ["_plugins", "_security", "api", "account"]) => match &self.security {
                Security::OsAccount => ResponseTemplate::new(200).set_body_json(json!({
                    "user_name": "temporal_admin", "is_reserved": false, "is_hidden": false,
                    "is_internal_user": true, "user_requested_tenant": null,
                    "backend_roles": [], "custom_attribute_names": [],
                    "tenants": {"global_tenant": true, "temporal_admin": true},
                    "roles": ["temporal_visibility_admin", "own_index"]
                })),
                _ => no_handler(&method, &path),
            },
            ("HEAD", [index]) => {
                if st.indices.contains_key(*index) {
                    ResponseTemplate::new(200)
                } else {
                    ResponseTemplate::new(404)
                }
            }
            ("PUT", [index]) if !index.starts_with('_') => {
                let exists_error = |index: &str| {
                    ResponseTemplate::new(400).set_body_json(es_error(
                        400,
                        "resource_already_exists_exception",
                        &format!("index [{index}/rVw9qS4eS5iTOf5Zc2soZA] already exists"),
                        json!({"index_uuid": "rVw9qS4eS5iTOf5Zc2soZA", "index": index}),
                    ))
                };
                let from_template = st
                    .template
                    .as_ref()
                    .filter(|t| {
                        t["index_patterns"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|p| glob(p.as_str().unwrap(), index))
                    })
                    .map(|t| t["mappings"].clone())
                    .unwrap_or(json!({}));
                let mut settings = st
                    .template
                    .as_ref()
                    .filter(|_| from_template != json!({}))
                    .and_then(|t| t["settings"].as_object().cloned())
                    .unwrap_or_default();
                for (k, v) in es_settings(body.get("settings").unwrap_or(&json!({}))) {
                    settings.insert(k, v);
                }
                settings
                    .entry("index.number_of_shards".to_string())
                    .or_insert(json!("1"));
                settings
                    .entry("index.number_of_replicas".to_string())
                    .or_insert(json!("1"));
                settings.insert("index.creation_date".into(), json!("1732611600000"));
                settings.insert("index.uuid".into(), json!("rVw9qS4eS5iTOf5Zc2soZA"));
                settings.insert("index.version.created".into(), json!("8512000"));
                settings.insert("index.provided_name".into(), json!(index));
                if st.race_on_create {
                    st.race_on_create = false;
                    st.indices.insert(index.to_string(), from_template);
                    st.index_settings.insert(index.to_string(), settings);
                    return exists_error(index);
                }
                if st.indices.contains_key(*index) {
                    return exists_error(index);
                }
                let mut mappings = from_template;
                if let Some(m) = body.get("mappings").and_then(Value::as_object) {
                    for (k, v) in m {
                        mappings[k] = es_mapping(v);
                    }
                }
                st.indices.insert(index.to_string(), mappings);
                st.index_settings.insert(index.to_string(), settings);
                ResponseTemplate::new(200).set_body_json(json!({
                    "acknowledged": true, "shards_acknowledged": true, "index": index
                }))
            }
            ("GET", [index, "_mapping"]) => match st.indices.get(*index) {
                Some(m) => ResponseTemplate::new(200).set_body_json(json!({ *index: {"mappings": m} })),
                None => ResponseTemplate::new(404).set_body_json(es_error(
                    404,
                    "index_not_found_exception",
                    &format!("no such index [{index}]"),
                    json!({"resource.type": "index_or_alias", "resource.id": index, "index": index}),
                )),
            },
            ("GET", [index, "_settings"]) => match st.index_settings.get(*index) {
                Some(flat) => {
                    let settings = if query.get("flat_settings").map(String::as_str) == Some("true")
                    {
                        Value::Object(flat.clone())
                    } else {
                        nest(flat)
                    };
                    ResponseTemplate::new(200)
                        .set_body_json(json!({ *index: {"settings": settings} }))
                }
                None => ResponseTemplate::new(404).set_body_json(es_error(
                    404,
                    "index_not_found_exception",
                    &format!("no such index [{index}]"),
                    json!({}),
                )),
            },
            ("PUT", [index, "_settings"]) => {
                let Some(flat) = st.index_settings.get_mut(*index) else {
                    return ResponseTemplate::new(404).set_body_json(es_error(
                        404,
                        "index_not_found_exception",
                        &format!("no such index [{index}]"),
                        json!({}),
                    ));
                };
                let update = es_settings(&body);
                if update.contains_key("index.number_of_shards") {
                    return ResponseTemplate::new(400).set_body_json(es_error(
                        400,
                        "illegal_argument_exception",
                        &format!("Can't update non dynamic settings [[index.number_of_shards]] for open indices [[{index}/rVw9qS4eS5iTOf5Zc2soZA]]"),
                        json!({}),
                    ));
                }
                for (k, v) in update {
                    flat.insert(k, v);
                }
                ResponseTemplate::new(200).set_body_json(json!({"acknowledged": true}))
            }
            ("PUT", [index, "_mapping"]) => {
                let Some(m) = st.indices.get_mut(*index) else {
                    return ResponseTemplate::new(404).set_body_json(es_error(
                        404,
                        "index_not_found_exception",
                        &format!("no such index [{index}]"),
                        json!({}),
                    ));
                };
                if let Some(props) = body.get("properties").and_then(Value::as_object) {
                    for (field, def) in props {
                        let def = es_mapping(def);
                        if let Some(have) = m["properties"].get(field)
                            && have["type"] != def["type"]
                        {
                            return ResponseTemplate::new(400).set_body_json(es_error(
                                400,
                                "illegal_argument_exception",
                                &format!(
                                    "mapper [{field}] cannot be changed from type [{}] to [{}]",
                                    have["type"].as_str().unwrap_or(""),
                                    def["type"].as_str().unwrap_or("")
                                ),
                                json!({}),
                            ));
                        }
                        if m.get("properties").is_none() {
                            m["properties"] = json!({});
                        }
                        m["properties"][field] = def;
                    }
                }
                if let Some(meta) = body.get("_meta") {
                    // `_meta` is replaced as a whole by a put-mapping.
                    m["_meta"] = meta.clone();
                }
                ResponseTemplate::new(200).set_body_json(json!({"acknowledged": true}))
            }
            _ => no_handler(&method, &path),
        }
    }
}

impl Respond for FakeCluster {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let r = self.handle(req);
        self.decorate(r)
    }
}

async fn start(fake: &FakeCluster) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    server
}

/// Writes among the received requests (`_has_privileges` is a read despite being a POST).
fn writes(reqs: &[Request]) -> Vec<String> {
    reqs.iter()
        .filter(|r| {
            let m = r.method.as_str();
            (m == "PUT" || m == "POST" || m == "DELETE")
                && !r.url.path().ends_with("/_has_privileges")
        })
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect()
}

async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

// ------------------------------------------------------------------------------------------------
// Configuration helpers
// ------------------------------------------------------------------------------------------------

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema_dir() -> PathBuf {
    crate_dir().join("tests/fixtures/elasticsearch/schema/elasticsearch")
}

struct Setup {
    url: String,
    flavor: &'static str,
    index: String,
    auth: Option<String>,
    replicas: Option<u32>,
    ca: Option<PathBuf>,
    schema_dir: PathBuf,
}

impl Setup {
    fn new(url: &str, flavor: &'static str) -> Self {
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

    fn yaml(&self) -> String {
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

    fn context(&self) -> Context {
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
fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn plan(step: &SearchVisibilityStep, ctx: &Context) -> Result<Vec<Change>, StepError> {
    step.plan(ctx).await
}

/// What the runner does on `apply`: plan, then apply when something other than drift is pending.
async fn apply(step: &SearchVisibilityStep, ctx: &Context) -> Result<Vec<Change>, StepError> {
    let pending = step.plan(ctx).await?;
    if pending.iter().any(|c| c.action != Action::Drift) {
        step.apply(ctx, &pending).await
    } else {
        Ok(pending)
    }
}

fn resources(changes: &[Change]) -> Vec<String> {
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

// ------------------------------------------------------------------------------------------------
// Convergence and idempotency, per flavour
// ------------------------------------------------------------------------------------------------

async fn converge_then_no_write(fake: FakeCluster, setup: impl FnOnce(&mut Setup)) {
    let server = start(&fake).await;
    let mut s = Setup::new(
        &server.uri(),
        if fake.is_os() {
            "opensearch"
        } else {
            "elasticsearch"
        },
    );
    setup(&mut s);
    let ctx = s.context();
    let step = SearchVisibilityStep::new();

    let pending = plan(&step, &ctx).await.expect("plan");
    assert_eq!(
        resources(&pending),
        vec![
            "update cluster setting action.auto_create_index",
            "create index template temporal_visibility_v1_template",
            "create index temporal_visibility_v1_test",
        ]
    );
    assert!(writes(&received(&server).await).is_empty(), "plan wrote");

    let done = apply(&step, &ctx).await.expect("apply");
    assert_eq!(done, pending, "apply reports what plan showed");
    assert_eq!(
        writes(&received(&server).await),
        vec![
            "PUT /_cluster/settings",
            "PUT /_template/temporal_visibility_v1_template",
            "PUT /temporal_visibility_v1_test",
        ]
    );

    // What the next run relies on: the index records the template digest and schema version.
    let st = fake.state.lock().unwrap().indices["temporal_visibility_v1_test"].clone();
    let meta = &st["_meta"]["temporal_bootstrap"];
    assert_eq!(meta["schema_version"], "v14");
    assert_eq!(meta["template_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        st["properties"]["TemporalExternalPayloadCount"]["type"],
        "long"
    );

    // Second run: nothing pending, no write at all.
    let before = received(&server).await.len();
    let again = apply(&step, &ctx).await.expect("second apply");
    assert!(again.is_empty(), "converged run reported {again:?}");
    let reqs = received(&server).await;
    assert!(
        writes(&reqs[before..]).is_empty(),
        "second run wrote: {:?}",
        writes(&reqs[before..])
    );
}

#[tokio::test]
async fn es7_basic_auth_converges_and_second_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pw = secret_file(dir.path(), "pw", "es7-Pa55word");
    let mut fake = FakeCluster::new(Flavour::Es7, Security::Es { denied: vec![] });
    fake.accept_auth = Some(basic("temporal_admin", "es7-Pa55word"));
    converge_then_no_write(fake, |s| {
        s.auth = Some(format!(
            "    auth:\n      basic:\n        username: temporal_admin\n        password: file:{}\n",
            pw.display()
        ))
    })
    .await;
}

#[tokio::test]
async fn es8_api_key_converges_and_second_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";
    let k = secret_file(dir.path(), "key", key);
    let mut fake = FakeCluster::new(Flavour::Es8, Security::Es { denied: vec![] });
    fake.accept_auth = Some(format!("ApiKey {key}"));
    converge_then_no_write(fake, |s| {
        s.auth = Some(format!(
            "    auth:\n      api_key:\n        key: file:{}\n",
            k.display()
        ))
    })
    .await;
}

#[tokio::test]
async fn es9_without_auth_converges_and_second_run_writes_nothing() {
    // Legacy `_template` is deprecated but still served by 9.x; same code path.
    converge_then_no_write(
        FakeCluster::new(Flavour::Es9, Security::Es { denied: vec![] }),
        |_| {},
    )
    .await;
}

#[tokio::test]
async fn opensearch2_converges_and_second_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pw = secret_file(dir.path(), "pw", "os2-Pa55word");
    let mut fake = FakeCluster::new(Flavour::Os2, Security::OsAccount);
    fake.accept_auth = Some(basic("temporal_admin", "os2-Pa55word"));
    converge_then_no_write(fake, |s| {
        s.auth = Some(format!(
            "    auth:\n      basic:\n        username: temporal_admin\n        password: file:{}\n",
            pw.display()
        ))
    })
    .await;
}

#[tokio::test]
async fn security_disabled_or_absent_skips_the_privilege_check() {
    converge_then_no_write(FakeCluster::new(Flavour::Es7, Security::EsDisabled), |_| {}).await;
    converge_then_no_write(FakeCluster::new(Flavour::Os2, Security::OsAbsent), |_| {}).await;
}

// ------------------------------------------------------------------------------------------------
// Upgrade path, drift, race, sizing
// ------------------------------------------------------------------------------------------------

fn fixture_template(version: &str) -> Value {
    let p = schema_dir().join(format!(
        "visibility/versioned/{version}/index_template_v7.json"
    ));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A cluster set up by Temporal's own tooling at schema v13: template and index, no `_meta`.
fn v13_cluster(fake: &FakeCluster) {
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

#[tokio::test]
async fn v13_index_gets_exactly_the_missing_fields_and_a_meta_record() {
    let fake = FakeCluster::new(Flavour::Es8, Security::Es { denied: vec![] });
    v13_cluster(&fake);
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "elasticsearch").context();
    let step = SearchVisibilityStep::new();

    let pending = plan(&step, &ctx).await.unwrap();
    assert_eq!(
        resources(&pending),
        vec![
            "update index template temporal_visibility_v1_template",
            "update index temporal_visibility_v1_test field TemporalExternalPayloadCount",
            "update index temporal_visibility_v1_test field TemporalExternalPayloadSizeBytes",
            "update index temporal_visibility_v1_test _meta",
        ]
    );
    assert!(
        pending[0]
            .detail
            .contains("mappings.properties.TemporalExternalPayloadCount: missing"),
        "{}",
        pending[0].detail
    );
    assert!(pending[3].detail.contains("was: nothing recorded"));

    apply(&step, &ctx).await.unwrap();
    let reqs = received(&server).await;
    assert_eq!(
        writes(&reqs),
        vec![
            "PUT /_template/temporal_visibility_v1_template",
            "PUT /temporal_visibility_v1_test/_mapping",
            "PUT /temporal_visibility_v1_test/_mapping",
        ],
        "no cluster-setting write (already false), no index creation"
    );
    let add: Value = reqs
        .iter()
        .find(|r| r.url.path().ends_with("/_mapping") && r.method.as_str() == "PUT")
        .unwrap()
        .body_json()
        .unwrap();
    assert_eq!(
        add,
        json!({"properties": {
            "TemporalExternalPayloadCount": {"type": "long"},
            "TemporalExternalPayloadSizeBytes": {"type": "long"}
        }})
    );
    let before = reqs.len();
    assert!(apply(&step, &ctx).await.unwrap().is_empty());
    assert!(writes(&received(&server).await[before..]).is_empty());
}

#[tokio::test]
async fn drift_is_reported_and_never_written() {
    let fake = FakeCluster::new(Flavour::Es7, Security::Es { denied: vec![] });
    v13_cluster(&fake);
    {
        let mut st = fake.state.lock().unwrap();
        let idx = st.indices.get_mut("temporal_visibility_v1_test").unwrap();
        idx["properties"]["WorkflowType"] = json!({"type": "text"});
        // A custom search attribute Temporal added: not ours, left alone, not drift.
        idx["properties"]["CustomerId"] = json!({"type": "keyword"});
    }
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "elasticsearch").context();
    let step = SearchVisibilityStep::new();
    let done = apply(&step, &ctx).await.unwrap();
    let drift: Vec<&Change> = done.iter().filter(|c| c.action == Action::Drift).collect();
    assert_eq!(drift.len(), 1, "{done:?}");
    assert_eq!(
        drift[0].resource,
        "index temporal_visibility_v1_test field WorkflowType"
    );
    assert!(drift[0].detail.contains("index has {\"type\":\"text\"}"));
    for r in received(&server).await {
        if r.method.as_str() == "PUT" && r.url.path().ends_with("/_mapping") {
            let b: Value = r.body_json().unwrap();
            assert!(
                b.pointer("/properties/WorkflowType").is_none(),
                "a drifted field was written: {b}"
            );
        }
    }
    // Converged apart from the drift: the next plan shows only the drift and nothing is written.
    let before = received(&server).await.len();
    let again = apply(&step, &ctx).await.unwrap();
    assert_eq!(
        resources(&again),
        vec!["drift index temporal_visibility_v1_test field WorkflowType"]
    );
    assert!(writes(&received(&server).await[before..]).is_empty());
    let st = fake.state.lock().unwrap();
    assert_eq!(
        st.indices["temporal_visibility_v1_test"]["properties"]["WorkflowType"],
        json!({"type": "text"})
    );
}

#[tokio::test]
async fn index_created_concurrently_is_success() {
    let fake = FakeCluster::new(Flavour::Os2, Security::OsAccount);
    fake.state.lock().unwrap().race_on_create = true;
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "opensearch").context();
    let step = SearchVisibilityStep::new();
    let done = apply(&step, &ctx)
        .await
        .expect("a lost creation race is not an error");
    assert!(
        resources(&done).contains(&"update index temporal_visibility_v1_test _meta".to_string())
    );
    let st = fake.state.lock().unwrap();
    assert_eq!(
        st.indices["temporal_visibility_v1_test"]["_meta"]["temporal_bootstrap"]["schema_version"],
        "v14",
        "the index someone else created still gets our record"
    );
}

#[tokio::test]
async fn shards_from_the_plan_and_configured_replicas_go_into_the_template() {
    let fake = FakeCluster::new(Flavour::Es8, Security::Es { denied: vec![] });
    let server = start(&fake).await;
    let mut s = Setup::new(&server.uri(), "elasticsearch");
    s.replicas = Some(2);
    let ctx = s.context();
    let step = SearchVisibilityStep::new().with_primary_shards(3);
    apply(&step, &ctx).await.unwrap();
    let put = received(&server)
        .await
        .into_iter()
        .find(|r| r.method.as_str() == "PUT" && r.url.path().starts_with("/_template/"))
        .unwrap();
    let body: Value = put.body_json().unwrap();
    assert_eq!(body["settings"]["index.number_of_shards"], "3");
    assert_eq!(body["settings"]["index.number_of_replicas"], "2");
    assert!(body["settings"].get("index.auto_expand_replicas").is_none());
    assert_eq!(body["index_patterns"], json!(["temporal_visibility_v1*"]));
    assert_eq!(body["mappings"]["dynamic"], "false");
    // A different shard count later is a template update, reported before it happens.
    let step1 = SearchVisibilityStep::new();
    let pending = plan(&step1, &ctx).await.unwrap();
    assert!(
        pending.iter().any(|c| c
            .detail
            .contains("settings.index.number_of_shards: \"3\" -> \"1\"")),
        "{pending:?}"
    );
}

#[tokio::test]
async fn existing_index_gets_configured_replicas_and_a_shard_change_is_drift() {
    let fake = FakeCluster::new(Flavour::Os2, Security::OsAccount);
    v13_cluster(&fake);
    let server = start(&fake).await;
    let mut s = Setup::new(&server.uri(), "opensearch");
    s.replicas = Some(1);
    let ctx = s.context();
    // The capacity planner's hook decides the primary shard count at plan time.
    let step = SearchVisibilityStep::new().with_shard_hook(|_ctx| 4);
    assert_eq!(step.primary_shards(&ctx), 4);
    let done = apply(&step, &ctx).await.unwrap();
    let r = resources(&done);
    assert!(
        r.contains(&"drift index temporal_visibility_v1_test primary shards".to_string()),
        "{r:?}"
    );
    assert!(
        r.contains(&"update index temporal_visibility_v1_test settings".to_string()),
        "{r:?}"
    );
    let reqs = received(&server).await;
    let put: Value = reqs
        .iter()
        .find(|r| r.method.as_str() == "PUT" && r.url.path().ends_with("/_settings"))
        .unwrap()
        .body_json()
        .unwrap();
    assert_eq!(
        put,
        json!({"index.auto_expand_replicas": "false", "index.number_of_replicas": "1"})
    );
    let template: Value = reqs
        .iter()
        .find(|r| r.method.as_str() == "PUT" && r.url.path().starts_with("/_template/"))
        .unwrap()
        .body_json()
        .unwrap();
    assert_eq!(template["settings"]["index.number_of_shards"], "4");
    // Converged apart from the shard drift: no write on the next run.
    let before = reqs.len();
    let again = apply(&step, &ctx).await.unwrap();
    assert_eq!(
        resources(&again),
        vec!["drift index temporal_visibility_v1_test primary shards"]
    );
    assert!(writes(&received(&server).await[before..]).is_empty());
}

// ------------------------------------------------------------------------------------------------
// Failures: each a clear message, right class, and no write
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_timeout_408_is_a_runtime_error_naming_the_state() {
    let mut fake = FakeCluster::new(Flavour::Es7, Security::Es { denied: vec![] });
    fake.health_times_out = true;
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "elasticsearch").context();
    let err = apply(&SearchVisibilityStep::new(), &ctx).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Runtime);
    assert!(
        err.message.contains("still red after waiting 5s")
            && err.message.contains("2 unassigned shards")
            && err.message.contains("health_timeout"),
        "{}",
        err.message
    );
    assert!(writes(&received(&server).await).is_empty());
}

#[tokio::test]
async fn unsupported_versions_are_refused_with_the_supported_list() {
    for (flavour, name) in [
        (Flavour::Es6, "Elasticsearch 6.8.23"),
        (Flavour::Os1, "OpenSearch 1.3.19"),
    ] {
        let fake = FakeCluster::new(flavour, Security::EsDisabled);
        let server = start(&fake).await;
        let ctx = Setup::new(&server.uri(), "elasticsearch").context();
        let err = plan(&SearchVisibilityStep::new(), &ctx).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Invalid, "{}", err.message);
        assert!(
            err.message.contains(name)
                && err
                    .message
                    .contains("Elasticsearch 7.x, 8.x, 9.x and OpenSearch 2.x"),
            "{}",
            err.message
        );
        assert!(writes(&received(&server).await).is_empty());
    }
}

#[tokio::test]
async fn missing_privileges_are_named_before_any_write() {
    let fake = FakeCluster::new(
        Flavour::Es8,
        Security::Es {
            denied: vec!["cluster:manage", "index:create_index"],
        },
    );
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "elasticsearch").context();
    let err = apply(&SearchVisibilityStep::new(), &ctx).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Runtime);
    assert!(
        err.message
            .contains("temporal_admin lacks cluster privilege `manage`")
            && err
                .message
                .contains("index privilege `create_index` on `temporal_visibility_v1_test`"),
        "{}",
        err.message
    );
    assert!(writes(&received(&server).await).is_empty());
}

#[tokio::test]
async fn privileges_are_asked_once_and_only_what_is_pending_is_required() {
    // One `_has_privileges` call per run, asking for everything the step may use.
    let fake = FakeCluster::new(
        Flavour::Es7,
        Security::Es {
            denied: vec!["cluster:manage"],
        },
    );
    v13_cluster(&fake);
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "elasticsearch").context();
    // The upgrade needs no cluster-setting write, so a user without cluster `manage` is enough.
    apply(&SearchVisibilityStep::new(), &ctx)
        .await
        .expect("cluster manage is not needed here");
    let asked: Vec<Value> = received(&server)
        .await
        .iter()
        .filter(|r| r.url.path() == "/_security/user/_has_privileges")
        .map(|r| r.body_json().unwrap())
        .collect();
    assert_eq!(
        asked[0],
        json!({"cluster": ["monitor", "manage_index_templates", "manage"],
               "index": [{"names": ["temporal_visibility_v1_test"],
                          "privileges": ["view_index_metadata", "create_index", "manage"]}]})
    );

    // A read privilege missing: refused before anything is read.
    let fake = FakeCluster::new(
        Flavour::Es8,
        Security::Es {
            denied: vec!["cluster:manage_index_templates"],
        },
    );
    let server = start(&fake).await;
    let ctx = Setup::new(&server.uri(), "elasticsearch").context();
    let err = plan(&SearchVisibilityStep::new(), &ctx).await.unwrap_err();
    assert!(
        err.message
            .contains("lacks cluster privilege `manage_index_templates` needed to read"),
        "{}",
        err.message
    );
    assert!(
        !received(&server)
            .await
            .iter()
            .any(|r| r.url.path().starts_with("/_template")),
        "read the template without the privilege"
    );
}

#[tokio::test]
async fn auth_failure_is_clear_and_never_shows_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "Wr0ng-but-Secret-Pw";
    let pw = secret_file(dir.path(), "pw", secret);
    let encoded = basic("temporal_admin", secret);
    for (flavour, echo) in [
        (Flavour::Es8, false),
        (Flavour::Os2, false),
        (Flavour::Es7, true),
    ] {
        let mut fake = FakeCluster::new(flavour, Security::Es { denied: vec![] });
        fake.accept_auth = Some(basic("temporal_admin", "the-right-one"));
        fake.echo_auth_on_401 = echo;
        let server = start(&fake).await;
        let mut s = Setup::new(&server.uri(), "elasticsearch");
        s.auth = Some(format!(
            "    auth:\n      basic:\n        username: temporal_admin\n        password: file:{}\n",
            pw.display()
        ));
        let ctx = s.context();
        let err = plan(&SearchVisibilityStep::new(), &ctx).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Runtime);
        assert!(
            err.message.contains("GET / returned 401")
                && err.message.contains("authentication failed"),
            "{}",
            err.message
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(secret), "{flavour:?}: {shown}");
        assert!(
            !shown.contains(encoded.trim_start_matches("Basic ")),
            "{flavour:?}: {shown}"
        );
    }
}

#[tokio::test]
async fn missing_schema_dir_is_invalid_input_before_any_request() {
    let server = MockServer::start().await;
    let mut s = Setup::new(&server.uri(), "elasticsearch");
    s.schema_dir = PathBuf::from("/nonexistent/schema/elasticsearch");
    let err = plan(&SearchVisibilityStep::new(), &s.context())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Invalid);
    assert!(
        err.message.contains("index_template_v7.json"),
        "{}",
        err.message
    );
    assert!(received(&server).await.is_empty());
}

#[test]
fn step_is_disabled_for_other_visibility_stores() {
    let yaml = Setup::new("http://127.0.0.1:9", "elasticsearch")
        .yaml()
        .split("visibility:")
        .next()
        .unwrap()
        .to_string()
        + "visibility:\n  sqlite:\n    path: /tmp/v.db\nnamespaces:\n  - name: default-ns\n    retention: 1d\n";
    let loaded = load_str(&yaml, "platform.yaml").unwrap();
    let ctx = Context {
        config: Arc::new(loaded.config),
        base_dir: crate_dir(),
        offline: false,
        force: false,
    };
    assert!(!SearchVisibilityStep::new().enabled(&ctx).unwrap());
}

// ------------------------------------------------------------------------------------------------
// TLS with a private CA: a TLS front (rustls) to the fake cluster
// ------------------------------------------------------------------------------------------------

struct TlsFront {
    url: String,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

async fn tls_front(backend: &MockServer) -> TlsFront {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "search test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend_addr = *backend.address();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(backend_addr).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    TlsFront {
        url: format!("https://localhost:{port}"),
        ca_file,
        _dir: dir,
    }
}

#[tokio::test]
async fn tls_with_a_private_ca_works_and_an_unknown_ca_is_refused() {
    let fake = FakeCluster::new(Flavour::Es8, Security::Es { denied: vec![] });
    let server = start(&fake).await;
    let front = tls_front(&server).await;

    let mut s = Setup::new(&front.url, "elasticsearch");
    s.ca = Some(front.ca_file.clone());
    let ctx = s.context();
    let step = SearchVisibilityStep::new();
    apply(&step, &ctx)
        .await
        .expect("apply over TLS with the CA");
    assert!(plan(&step, &ctx).await.unwrap().is_empty());

    let without = Setup::new(&front.url, "elasticsearch").context();
    let err = plan(&step, &without).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Runtime);
    assert!(
        err.message.contains("GET /") && err.message.to_lowercase().contains("certificate"),
        "{}",
        err.message
    );
}

// ------------------------------------------------------------------------------------------------
// The CLI: plan shows pending changes, apply --dry-run writes nothing, secrets stay out of output
// ------------------------------------------------------------------------------------------------

fn cli(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_temporal-bootstrap"));
    c.env_remove("TEMPORAL_BOOTSTRAP_CONFIG")
        .env_remove("TEMPORAL_BOOTSTRAP_LOG")
        .args(args)
        .arg("-f")
        .arg(config);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("binary runs")
}

fn out_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn cli_plan_shows_pending_changes_and_dry_run_writes_nothing() {
    let mut fake = FakeCluster::new(Flavour::Es8, Security::Es { denied: vec![] });
    fake.accept_auth = Some(basic("temporal_admin", "cli-Secret-Pw-42"));
    let server = start(&fake).await;
    let mut s = Setup::new(&server.uri(), "elasticsearch");
    s.auth = Some(
        "    auth:\n      basic:\n        username: temporal_admin\n        password: env:TB_TEST_ES_PASSWORD\n"
            .into(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("platform.yaml");
    std::fs::write(&file, s.yaml()).unwrap();
    let env = [("TB_TEST_ES_PASSWORD", "cli-Secret-Pw-42")];

    let o = cli(
        &file,
        &[
            "plan",
            "--only",
            "visibility",
            "--output",
            "json",
            "--detailed-exitcode",
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(3), "{}", out_text(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let step = &doc["steps"][0];
    assert_eq!(step["step"], "visibility");
    assert_eq!(step["status"], "pending");
    let changes: Vec<String> = step["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["action"].as_str().unwrap(),
                c["resource"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            "update cluster setting action.auto_create_index",
            "create index template temporal_visibility_v1_template",
            "create index temporal_visibility_v1_test",
        ]
    );

    let o = cli(&file, &["apply", "--dry-run", "--only", "visibility"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    assert!(out_text(&o).contains("pending"), "{}", out_text(&o));
    assert!(
        writes(&received(&server).await).is_empty(),
        "dry-run wrote: {:?}",
        writes(&received(&server).await)
    );

    let o = cli(&file, &["apply", "--only", "visibility", "-vvv"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    assert!(out_text(&o).contains("applied"), "{}", out_text(&o));
    assert_eq!(writes(&received(&server).await).len(), 3);

    let o = cli(
        &file,
        &["plan", "--only", "visibility", "--detailed-exitcode"],
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "converged: {}", out_text(&o));
    assert!(out_text(&o).contains("up-to-date"), "{}", out_text(&o));
}

#[tokio::test]
async fn cli_never_prints_secrets_even_at_trace_level() {
    let password = "cli-Trace-Secret-77";
    let key = "c2VjcmV0LWFwaS1rZXktaWQ6c2VjcmV0LWFwaS1rZXk=";
    for (auth, right) in [
        (
            "    auth:\n      basic:\n        username: temporal_admin\n        password: env:TB_TEST_ES_SECRET\n",
            true,
        ),
        (
            "    auth:\n      basic:\n        username: temporal_admin\n        password: env:TB_TEST_ES_SECRET\n",
            false,
        ),
        (
            "    auth:\n      api_key:\n        key: env:TB_TEST_ES_KEY\n",
            true,
        ),
    ] {
        let mut fake = FakeCluster::new(Flavour::Es7, Security::Es { denied: vec![] });
        fake.accept_auth = Some(if !right {
            basic("temporal_admin", "something-else")
        } else if auth.contains("api_key") {
            format!("ApiKey {key}")
        } else {
            basic("temporal_admin", password)
        });
        fake.echo_auth_on_401 = !right;
        let server = start(&fake).await;
        let mut s = Setup::new(&server.uri(), "elasticsearch");
        s.auth = Some(auth.into());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("platform.yaml");
        std::fs::write(&file, s.yaml()).unwrap();
        let env = [("TB_TEST_ES_SECRET", password), ("TB_TEST_ES_KEY", key)];
        for args in [
            vec!["apply", "--only", "visibility", "-vvv"],
            vec![
                "plan",
                "--only",
                "visibility",
                "-vvv",
                "--log-format",
                "json",
                "--output",
                "json",
            ],
        ] {
            let o = cli(&file, &args, &env);
            let t = out_text(&o);
            assert_eq!(o.status.code(), Some(if right { 0 } else { 1 }), "{t}");
            for secret in [
                password.to_string(),
                key.to_string(),
                basic("temporal_admin", password)
                    .trim_start_matches("Basic ")
                    .to_string(),
            ] {
                assert!(!t.contains(&secret), "{args:?} printed a secret:\n{t}");
            }
        }
    }
}

#[tokio::test]
async fn cli_warns_when_the_detected_flavour_differs_from_the_config() {
    let fake = FakeCluster::new(Flavour::Os2, Security::OsAccount);
    let server = start(&fake).await;
    let s = Setup::new(&server.uri(), "elasticsearch");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("platform.yaml");
    std::fs::write(&file, s.yaml()).unwrap();
    let o = cli(&file, &["plan", "--only", "visibility"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out_text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("flavor is `elasticsearch`") && stderr.contains("OpenSearch 2.17.1"),
        "{stderr}"
    );
}

// ------------------------------------------------------------------------------------------------
// A real cluster, when one is given
// ------------------------------------------------------------------------------------------------

/// Runs the scenarios against a real, disposable Elasticsearch/OpenSearch at `TB_ES_URL`.
/// It writes the cluster setting `action.auto_create_index: false` and the template
/// `temporal_visibility_v1_template`, creates and deletes indices `temporal_visibility_v1_tbtest_*`.
#[tokio::test]
#[cfg_attr(
    not(tb_es_url),
    ignore = "needs a disposable Elasticsearch/OpenSearch cluster: TB_ES_URL (none runs in CI)"
)]
async fn real_cluster_converges_is_idempotent_and_reports_drift() {
    let url = std::env::var("TB_ES_URL").expect(
        "built with TB_ES_URL (cfg tb_es_url) but run without it: set TB_ES_URL, optionally TB_ES_USERNAME/TB_ES_PASSWORD and TB_ES_CA, to run against a disposable cluster",
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let suffix = std::process::id();
    let index = format!("temporal_visibility_v1_tbtest_{suffix}");
    let drift_index = format!("temporal_visibility_v1_tbtest_drift_{suffix}");

    let http = {
        let mut b = reqwest::Client::builder();
        if let Ok(ca) = std::env::var("TB_ES_CA") {
            let pem = std::fs::read(ca).unwrap();
            b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap());
        }
        b.build().unwrap()
    };
    let user = std::env::var("TB_ES_USERNAME").ok();
    let pass = std::env::var("TB_ES_PASSWORD").ok();
    let raw = |m: reqwest::Method, p: &str| {
        let mut r = http.request(m, format!("{}{p}", url.trim_end_matches('/')));
        if let (Some(u), Some(pw)) = (&user, &pass) {
            r = r.basic_auth(u, Some(pw));
        }
        r
    };
    let flavor = {
        let root: Value = raw(reqwest::Method::GET, "/")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if root.pointer("/version/distribution") == Some(&json!("opensearch")) {
            "opensearch"
        } else {
            "elasticsearch"
        }
    };
    let setup = |index: &str| {
        let mut s = Setup::new(&url, flavor);
        s.index = index.to_string();
        if let (Some(u), Some(p)) = (&user, &pass) {
            let pw = secret_file(dir.path(), "pw", p);
            s.auth = Some(format!(
                "    auth:\n      basic:\n        username: {u}\n        password: file:{}\n",
                pw.display()
            ));
        }
        if let Ok(ca) = std::env::var("TB_ES_CA") {
            s.ca = Some(PathBuf::from(ca));
        }
        s.context()
    };
    let step = SearchVisibilityStep::new();

    // Fresh index: converge, then nothing pending.
    let ctx = setup(&index);
    apply(&step, &ctx).await.expect("apply on the real cluster");
    let again = plan(&step, &ctx).await.unwrap();
    assert!(
        again.is_empty(),
        "not converged on the real cluster: {again:?}"
    );

    // Drift: an index whose WorkflowType was created as text.
    let r = raw(reqwest::Method::PUT, &format!("/{drift_index}"))
        .json(&json!({"mappings": {"properties": {"WorkflowType": {"type": "text"}}}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let dctx = setup(&drift_index);
    let done = apply(&step, &dctx).await.unwrap();
    assert!(
        done.iter()
            .any(|c| c.action == Action::Drift && c.resource.ends_with("field WorkflowType")),
        "{done:?}"
    );
    let again = plan(&step, &dctx).await.unwrap();
    assert!(again.iter().all(|c| c.action == Action::Drift), "{again:?}");

    for i in [&index, &drift_index] {
        let _ = raw(reqwest::Method::DELETE, &format!("/{i}")).send().await;
    }
}
