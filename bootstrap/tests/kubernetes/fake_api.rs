//! The fake API server: a wiremock responder with the core/v1 Secret shapes of the Kubernetes API
//! reference.

use super::*;

#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: String,
    pub(crate) path: String,
    /// The Secret's name (from the URL, or the body of a POST).
    pub(crate) name: String,
    pub(crate) status: u16,
    /// `metadata.resourceVersion` sent in the body (PUT).
    pub(crate) sent_rv: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// (namespace, name) -> stored Secret object.
    pub(crate) secrets: BTreeMap<(String, String), Value>,
    pub(crate) next_rv: u64,
    pub(crate) calls: Vec<Call>,
    /// (verb, name or "*") pairs RBAC refuses.
    pub(crate) denied: Vec<(&'static str, String)>,
    /// Names whose next PUT loses a race: another writer updates the object first.
    pub(crate) conflict_on_put: Vec<String>,
    /// Names whose next POST loses a race: another writer creates the object first.
    pub(crate) race_on_create: Vec<String>,
}

#[derive(Clone, Default)]
pub(crate) struct FakeApi {
    pub(crate) state: Arc<Mutex<State>>,
}

pub(crate) fn status(
    code: u16,
    reason: &str,
    message: String,
    name: Option<&str>,
) -> ResponseTemplate {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    });
    if let Some(n) = name {
        body["details"] = json!({"name": n, "kind": "secrets"});
    }
    ResponseTemplate::new(code).set_body_json(body)
}

impl FakeApi {
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }
    pub(crate) fn writes(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method != "GET")
            .collect()
    }
    pub(crate) fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }
    pub(crate) fn secret(&self, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .secrets
            .get(&(NS.to_string(), name.to_string()))
            .cloned()
    }
    pub(crate) fn data(&self, name: &str, key: &str) -> Vec<u8> {
        let s = self
            .secret(name)
            .unwrap_or_else(|| panic!("no Secret {name}"));
        let b64 = s["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("Secret {name} has no {key}"));
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }
    pub(crate) fn remove(&self, name: &str) {
        self.state
            .lock()
            .unwrap()
            .secrets
            .remove(&(NS.to_string(), name.to_string()));
    }
    pub(crate) fn deny(&self, verb: &'static str, name: &str) {
        self.state
            .lock()
            .unwrap()
            .denied
            .push((verb, name.to_string()));
    }

    pub(crate) fn stored(st: &mut State, mut obj: Value, ns: &str) -> Value {
        st.next_rv += 1;
        let rv = (1000 + st.next_rv).to_string();
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.insert("namespace".into(), json!(ns));
        meta.insert("resourceVersion".into(), json!(rv));
        meta.entry("uid")
            .or_insert(json!(format!("6f1b7c0e-0000-4000-8000-{:012}", st.next_rv)));
        meta.entry("creationTimestamp")
            .or_insert(json!("2026-11-26T10:00:00Z"));
        if obj.get("type").is_none() {
            obj["type"] = json!("Opaque");
        }
        obj
    }

    /// What the API server's validation says about a Secret body (None: valid).
    pub(crate) fn invalid(obj: &Value, name: &str) -> Option<ResponseTemplate> {
        if obj["kind"] != "Secret" || obj["apiVersion"] != "v1" {
            return Some(status(
                400,
                "BadRequest",
                "the object provided is unrecognized (must be of type Secret)".into(),
                None,
            ));
        }
        if let Some(d) = obj.get("data").and_then(Value::as_object) {
            for v in d.values() {
                if v.as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .is_none()
                {
                    return Some(status(
                        400,
                        "BadRequest",
                        "illegal base64 data".into(),
                        None,
                    ));
                }
            }
        }
        if obj["type"] == "kubernetes.io/tls" {
            for k in ["tls.crt", "tls.key"] {
                if obj["data"].get(k).is_none() {
                    return Some(status(
                        422,
                        "Invalid",
                        format!("Secret \"{name}\" is invalid: data[{k}]: Required value"),
                        Some(name),
                    ));
                }
            }
        }
        None
    }
}

impl Respond for FakeApi {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let method = req.method.as_str().to_string();
        let path = req.url.path().to_string();
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let sent_rv = body["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        let mut st = self.state.lock().unwrap();
        let name = path
            .rsplit_once("/secrets/")
            .map(|(_, n)| n.to_string())
            .or_else(|| body["metadata"]["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        let resp = self.answer(&mut st, &method, &path, req, body);
        // The status code of a ResponseTemplate is not readable back; record it from a probe.
        let code = resp.1;
        st.calls.push(Call {
            method,
            path,
            name,
            status: code,
            sent_rv,
        });
        resp.0
    }
}

impl FakeApi {
    pub(crate) fn answer(
        &self,
        st: &mut State,
        method: &str,
        path: &str,
        req: &Request,
        body: Value,
    ) -> (ResponseTemplate, u16) {
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {TOKEN}")) {
            return (
                status(401, "Unauthorized", "Unauthorized".into(), None),
                401,
            );
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (ns, name) = match parts.as_slice() {
            ["api", "v1", "namespaces", ns, "secrets"] => (ns.to_string(), None),
            ["api", "v1", "namespaces", ns, "secrets", n] => (ns.to_string(), Some(n.to_string())),
            _ => {
                return (
                    status(
                        404,
                        "NotFound",
                        "the server could not find the requested resource".into(),
                        None,
                    ),
                    404,
                );
            }
        };
        let verb = match (method, &name) {
            ("GET", Some(_)) => "get",
            ("GET", None) => "list",
            ("POST", None) => "create",
            ("PUT", Some(_)) => "update",
            ("DELETE", Some(_)) => "delete",
            _ => {
                return (
                    status(
                        405,
                        "MethodNotAllowed",
                        format!("{method} is not supported here"),
                        None,
                    ),
                    405,
                );
            }
        };
        let target = name
            .clone()
            .or_else(|| body["metadata"]["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        if st
            .denied
            .iter()
            .any(|(v, n)| *v == verb && (n == "*" || *n == target))
        {
            let what = match &name {
                Some(n) => format!("secrets \"{n}\" is forbidden"),
                None => "secrets is forbidden".into(),
            };
            return (
                status(
                    403,
                    "Forbidden",
                    format!(
                        "{what}: User \"system:serviceaccount:{ns}:temporal-bootstrap\" cannot {verb} resource \"secrets\" in API group \"\" in the namespace \"{ns}\""
                    ),
                    name.as_deref(),
                ),
                403,
            );
        }
        let key = |n: &str| (ns.clone(), n.to_string());
        match verb {
            "get" => {
                let n = name.unwrap_or_default();
                match st.secrets.get(&key(&n)) {
                    Some(obj) => (ResponseTemplate::new(200).set_body_json(obj), 200),
                    None => (
                        status(
                            404,
                            "NotFound",
                            format!("secrets \"{n}\" not found"),
                            Some(&n),
                        ),
                        404,
                    ),
                }
            }
            "create" => {
                if let Some(r) = Self::invalid(&body, &target) {
                    return (r, 400);
                }
                if body["metadata"]["namespace"]
                    .as_str()
                    .is_some_and(|b| b != ns)
                {
                    return (
                        status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request".into(), None),
                        400,
                    );
                }
                if body["metadata"].get("resourceVersion").is_some() {
                    return (
                        status(
                            500,
                            "InternalError",
                            "resourceVersion should not be set on objects to be created".into(),
                            None,
                        ),
                        500,
                    );
                }
                if let Some(i) = st.race_on_create.iter().position(|n| *n == target) {
                    st.race_on_create.remove(i);
                    let other = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": target, "annotations": {"created-by": "someone-else"}},
                        "type": "kubernetes.io/tls",
                        "data": {"tls.crt": "b3RoZXI=", "tls.key": "b3RoZXI="}});
                    let obj = Self::stored(st, other, &ns);
                    st.secrets.insert(key(&target), obj);
                }
                if st.secrets.contains_key(&key(&target)) {
                    return (
                        status(
                            409,
                            "AlreadyExists",
                            format!("secrets \"{target}\" already exists"),
                            Some(&target),
                        ),
                        409,
                    );
                }
                let obj = Self::stored(st, body, &ns);
                st.secrets.insert(key(&target), obj.clone());
                (ResponseTemplate::new(201).set_body_json(obj), 201)
            }
            "delete" => {
                let n = name.unwrap_or_default();
                match st.secrets.remove(&key(&n)) {
                    Some(_) => (
                        ResponseTemplate::new(200).set_body_json(json!({
                            "kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Success", "details": {"name": n, "kind": "secrets"}
                        })),
                        200,
                    ),
                    None => (
                        status(
                            404,
                            "NotFound",
                            format!("secrets \"{n}\" not found"),
                            Some(&n),
                        ),
                        404,
                    ),
                }
            }
            "update" => {
                let n = name.unwrap_or_default();
                if let Some(r) = Self::invalid(&body, &n) {
                    return (r, 400);
                }
                if body["metadata"]["name"].as_str() != Some(n.as_str()) {
                    return (
                        status(
                            400,
                            "BadRequest",
                            "the name of the object does not match the name on the URL".into(),
                            None,
                        ),
                        400,
                    );
                }
                if let Some(i) = st.conflict_on_put.iter().position(|x| *x == n) {
                    st.conflict_on_put.remove(i);
                    // Another writer (e.g. an operator adding an annotation) updates it first.
                    if let Some(mut cur) = st.secrets.get(&key(&n)).cloned() {
                        cur["metadata"]["annotations"] = json!({"touched-by": "another-writer"});
                        let obj = Self::stored(st, cur, &ns);
                        st.secrets.insert(key(&n), obj);
                    }
                }
                let Some(cur) = st.secrets.get(&key(&n)).cloned() else {
                    return (
                        status(
                            404,
                            "NotFound",
                            format!("secrets \"{n}\" not found"),
                            Some(&n),
                        ),
                        404,
                    );
                };
                if body["metadata"]["resourceVersion"] != cur["metadata"]["resourceVersion"] {
                    return (
                        status(
                            409,
                            "Conflict",
                            format!(
                                "Operation cannot be fulfilled on secrets \"{n}\": the object has been modified; please apply your changes to the latest version and try again"
                            ),
                            Some(&n),
                        ),
                        409,
                    );
                }
                if body["type"] != cur["type"] {
                    return (
                        status(
                            422,
                            "Invalid",
                            format!(
                                "Secret \"{n}\" is invalid: type: Invalid value: \"{}\": field is immutable",
                                body["type"].as_str().unwrap_or_default()
                            ),
                            Some(&n),
                        ),
                        422,
                    );
                }
                let obj = Self::stored(st, body, &ns);
                st.secrets.insert(key(&n), obj.clone());
                (ResponseTemplate::new(200).set_body_json(obj), 200)
            }
            _ => (
                status(
                    403,
                    "Forbidden",
                    format!("{verb} is not granted to the bootstrap"),
                    None,
                ),
                403,
            ),
        }
    }
}

pub(crate) async fn start(fake: &FakeApi) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    server
}
