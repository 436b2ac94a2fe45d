//! Contract tests of `pki.kubernetes_secrets`: the `certificates` step publishing certificates
//! into Kubernetes Secrets and restoring the CA from them.
//!
//! No Kubernetes API server runs on this machine or in CI, so these tests run the real binary
//! against `FakeApi`, a wiremock responder that answers the core/v1 Secret calls with the
//! request and response shapes documented in the Kubernetes API reference: the Secret object
//! (`metadata.resourceVersion`, `type`, base64 `data`), `Status` objects for 401 Unauthorized,
//! 403 Forbidden, 404 NotFound, 409 AlreadyExists / Conflict (stale `resourceVersion`) and 422
//! Invalid. It also refuses requests a real server refuses (a `kubernetes.io/tls` Secret without
//! `tls.crt`/`tls.key`, a type change, a namespace mismatch, non-base64 data, a `resourceVersion`
//! on create, a missing bearer token), so it checks what we send, not only what we parse.
//!
//! `real_api_server_*` runs against a real API server when `TB_KUBE_API_URL` is set (see its doc
//! comment) at build time (cfg `tb_kube_api`, see `build.rs`), and is listed as ignored
//! otherwise, also in CI (no API server exists there).
//!
//! One module per topic; the fake and the shared setup are in their own modules, imported
//! here for every module (`use super::*`).

mod ca_restore;
mod configuration;
mod fake_api;
mod helpers;
mod in_cluster;
mod publish;
mod real_api_server;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
use temporal_bootstrap::config::load_str;
use temporal_bootstrap::pki;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const BIN: &str = env!("CARGO_BIN_EXE_temporal-bootstrap");
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.test-sa-token-DO-NOT-LOG.c2lnbmF0dXJl";
const NS: &str = "temporal";

use fake_api::*;
use helpers::*;
