//! The fake cluster's request handling: every call the adapter makes, answered (or refused) as the
//! real servers do.

use super::*;

impl FakeCluster {
    pub(crate) fn new(flavour: Flavour, security: Security) -> Self {
        Self {
            flavour,
            security,
            accept_auth: None,
            health_times_out: false,
            echo_auth_on_401: false,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    pub(crate) fn is_os(&self) -> bool {
        matches!(self.flavour, Flavour::Os2 | Flavour::Os1)
    }

    pub(crate) fn decorate(&self, mut r: ResponseTemplate) -> ResponseTemplate {
        if matches!(self.flavour, Flavour::Es8 | Flavour::Es9) {
            r = r.insert_header("X-elastic-product", "Elasticsearch");
        }
        r
    }

    pub(crate) fn unauthorized(&self, req: &Request) -> ResponseTemplate {
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

    pub(crate) fn handle(&self, req: &Request) -> ResponseTemplate {
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
