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
//!
//! One module per topic; the fake and the shared setup are in their own modules, imported
//! here for every module (`use super::*`).

mod cli;
mod convergence;
mod failures;
mod fake;
mod fake_routes;
mod helpers;
mod real_cluster;
mod tls;
mod upgrade_and_drift;

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

use fake::*;
use helpers::*;
