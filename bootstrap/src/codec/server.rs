//! The HTTP side: Temporal's remote codec protocol, CORS for the Web UI, audit and metrics.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::json;

use super::auth::{Authenticator, Caller, Operation};
use super::crypto::Keyring;
use super::payload::{PayloadJson, PayloadsJson};

/// Largest request body: a page of history with large payloads.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Bodies up to this size are processed on the async worker; larger ones on the blocking pool.
const INLINE_BODY_BYTES: usize = 64 * 1024;
/// Headers a browser may send (preflight answer).
const ALLOWED_HEADERS: &str = "authorization, content-type, x-namespace";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub caller: String,
    pub namespace: String,
    pub operation: String,
    pub outcome: String,
}

/// `temporal_bootstrap_codec_requests_total` and `temporal_bootstrap_codec_payloads_total`.
pub struct CodecMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    payloads: Family<RequestLabels, Counter>,
    encode_lock: Mutex<()>,
}

impl Default for CodecMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("temporal_bootstrap");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "codec_requests",
            "Codec server requests by caller, namespace, operation and outcome",
            requests.clone(),
        );
        let payloads = Family::<RequestLabels, Counter>::default();
        registry.register(
            "codec_payloads",
            "Payloads in codec server requests by caller, namespace, operation and outcome",
            payloads.clone(),
        );
        Self {
            registry,
            requests,
            payloads,
            encode_lock: Mutex::new(()),
        }
    }
}

impl CodecMetrics {
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let _guard = self.encode_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Everything a request needs; built once at start.
pub struct CodecState {
    pub keyring: Keyring,
    pub auth: Authenticator,
    pub origins: BTreeSet<String>,
    pub metrics: CodecMetrics,
}

pub fn router(state: Arc<CodecState>) -> Router {
    Router::new()
        .route(
            "/encode",
            post(|s: State<Arc<CodecState>>, h: HeaderMap, b: Bytes| {
                handle(s, h, b, Operation::Encode)
            })
            .options(preflight),
        )
        .route(
            "/decode",
            post(|s: State<Arc<CodecState>>, h: HeaderMap, b: Bytes| {
                handle(s, h, b, Operation::Decode)
            })
            .options(preflight),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_handler))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The outcome of one request, for the response, the audit line and the metric.
struct Outcome {
    status: StatusCode,
    outcome: &'static str,
    body: serde_json::Value,
    reason: Option<String>,
}

impl Outcome {
    fn error(status: StatusCode, outcome: &'static str, reason: String) -> Self {
        Self {
            status,
            outcome,
            body: json!({ "error": reason }),
            reason: Some(reason),
        }
    }
}

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Printable, bounded copy of an untrusted header value for logs.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(255).collect()
}

async fn handle(
    State(st): State<Arc<CodecState>>,
    headers: HeaderMap,
    body: Bytes,
    op: Operation,
) -> Response {
    let origin = header_str(&headers, header::ORIGIN).map(String::from);
    let namespace = header_str(&headers, "x-namespace")
        .map(clean)
        .unwrap_or_default();
    // Decrypting a large body is CPU work: keep it off the async workers.
    let processed = if body.len() > INLINE_BODY_BYTES {
        let (st2, h, o, ns) = (
            st.clone(),
            headers.clone(),
            origin.clone(),
            namespace.clone(),
        );
        tokio::task::spawn_blocking(move || process(&st2, &h, &body, op, o.as_deref(), &ns))
            .await
            .unwrap_or_else(|_| {
                Processed::new(Outcome::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "error",
                    "internal error while processing the request".into(),
                ))
            })
    } else {
        process(&st, &headers, &body, op, origin.as_deref(), &namespace)
    };
    let Processed {
        outcome: result,
        caller_name,
        count,
        key_ids,
    } = processed;

    // The namespace label only for authenticated callers: unauthenticated input must not create
    // metric series.
    let ns_label = if result.outcome == "unauthenticated" || result.outcome == "forbidden_origin" {
        String::new()
    } else {
        namespace.clone()
    };
    let labels = RequestLabels {
        caller: caller_name.clone(),
        namespace: ns_label,
        operation: op.as_str().into(),
        outcome: result.outcome.into(),
    };
    st.metrics.requests.get_or_create(&labels).inc();
    st.metrics
        .payloads
        .get_or_create(&labels)
        .inc_by(count as u64);
    let key_ids: Vec<&str> = key_ids.iter().map(String::as_str).collect();
    tracing::info!(
        target: "audit",
        caller = %caller_name,
        namespace = %namespace,
        operation = op.as_str(),
        payloads = count,
        outcome = result.outcome,
        status = result.status.as_u16(),
        key_ids = %key_ids.join(","),
        origin = %origin.as_deref().map(clean).unwrap_or_default(),
        reason = %result.reason.as_deref().unwrap_or(""),
        "codec request"
    );

    let mut resp = (result.status, axum::Json(result.body)).into_response();
    if result.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(o) = origin
        && st.origins.contains(&o)
    {
        add_cors(resp.headers_mut(), &o);
    }
    resp
}

/// What `process` found out, for the response, the audit line and the metric.
struct Processed {
    outcome: Outcome,
    caller_name: String,
    count: usize,
    key_ids: BTreeSet<String>,
}

impl Processed {
    fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            caller_name: "anonymous".into(),
            count: 0,
            key_ids: BTreeSet::new(),
        }
    }
}

/// Origin check, authentication, authorisation, then the payloads. Synchronous (CPU only).
fn process(
    st: &CodecState,
    headers: &HeaderMap,
    body: &[u8],
    op: Operation,
    origin: Option<&str>,
    namespace: &str,
) -> Processed {
    let mut caller_name = "anonymous".to_string();
    let mut count = 0usize;
    let mut key_ids: BTreeSet<String> = BTreeSet::new();
    let outcome = (|| -> Outcome {
        if let Some(o) = origin
            && !st.origins.contains(o)
        {
            return Outcome::error(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!("origin `{}` is not in codec.cors_origins", clean(o)),
            );
        }
        let caller: Caller = match st
            .auth
            .authenticate(header_str(headers, header::AUTHORIZATION), now_secs())
        {
            Ok(c) => c,
            Err(e) => {
                return Outcome::error(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string());
            }
        };
        caller_name = caller.name.clone();
        if namespace.is_empty() {
            return Outcome::error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the X-Namespace header is required".into(),
            );
        }
        if !caller.rights.allows(op, namespace) {
            return Outcome::error(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "caller `{}` may not {} payloads of namespace `{namespace}`",
                    caller.name,
                    op.as_str()
                ),
            );
        }
        let req: PayloadsJson = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                let mut o = Outcome::error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("the body is not {{\"payloads\": [...]}} in proto JSON: {e}"),
                );
                // serde messages can quote input values (payload data): the audit line gets only
                // the position.
                o.reason = Some(format!(
                    "the body is not {{\"payloads\": [...]}} in proto JSON ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ));
                return o;
            }
        };
        count = req.payloads.len();
        let mut out = Vec::with_capacity(count);
        for (i, pj) in req.payloads.iter().enumerate() {
            let p = match pj.to_payload() {
                Ok(p) => p,
                Err(e) => {
                    return Outcome::error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        format!("payloads[{i}]: {e}"),
                    );
                }
            };
            let converted = match op {
                Operation::Encode => match st.keyring.encrypt(&p) {
                    Ok(p) => {
                        key_ids.insert(st.keyring.current_id().to_string());
                        p
                    }
                    Err(e) => {
                        return Outcome::error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "error",
                            format!("payloads[{i}]: {e}"),
                        );
                    }
                },
                Operation::Decode => match st.keyring.decrypt(&p) {
                    Ok((p, id)) => {
                        key_ids.extend(id);
                        p
                    }
                    Err(e) => {
                        return Outcome::error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "undecryptable",
                            format!("payloads[{i}]: {e}"),
                        );
                    }
                },
            };
            out.push(PayloadJson::from_payload(&converted));
        }
        Outcome {
            status: StatusCode::OK,
            outcome: "ok",
            body: json!({ "payloads": out }),
            reason: None,
        }
    })();
    Processed {
        outcome,
        caller_name,
        count,
        key_ids,
    }
}

fn add_cors(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// CORS preflight: only configured origins, only POST.
async fn preflight(State(st): State<Arc<CodecState>>, headers: HeaderMap) -> Response {
    let origin = header_str(&headers, header::ORIGIN);
    let method_ok = header_str(&headers, header::ACCESS_CONTROL_REQUEST_METHOD)
        .is_none_or(|m| m.eq_ignore_ascii_case("POST"));
    match origin {
        Some(o) if st.origins.contains(o) && method_ok => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            let h = resp.headers_mut();
            add_cors(h, o);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOWED_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            resp
        }
        _ => (StatusCode::FORBIDDEN, "origin or method not allowed\n").into_response(),
    }
}

async fn metrics_handler(State(st): State<Arc<CodecState>>) -> Response {
    crate::serve::metrics_response(st.metrics.encode())
}
