//! Kubernetes Secrets as the durable copy of `pki.dir` (`pki.kubernetes_secrets`).
//!
//! Flow: observe = GET every configured Secret (one call each, by name: the bootstrap's Role has
//! no `list`); restore = when `pki.dir` lacks the CA (or a leaf's certificate and key) and its
//! Secret holds them, they are put back into `pki.dir` before the certificates are planned, so a
//! restarted Pod (its `pki.dir` is an emptyDir) renews instead of issuing a new CA; publish =
//! each certificate becomes a `kubernetes.io/tls` Secret with `tls.crt` (certificate + chain),
//! `tls.key`, `ca.crt` (the trust bundle); the CA Secret has the root CA as `tls.crt`/`tls.key`,
//! the key again as `ca.key`, and with an intermediate `intermediate.crt`/`intermediate.key`.
//! Only Secrets whose content, type or `app.kubernetes.io/managed-by` label differ are written
//! (create on 404, replace with the `resourceVersion` read, re-read and retry on 409).
//!
//! Guarantees: a converged run makes GETs only; the CA Secret is written before any leaf Secret;
//! when the CA Secret holds a different CA key than `pki.dir`, nothing is written (not a file,
//! not a Secret) and the step fails as invalid (exit 2), unless the Secret holds the CA that
//! `certs rotate-ca` just retired (`ca-previous.pem`) or `--force` is given; keys and data
//! values never reach a log line, a change or an error.
//!
//! Assumptions: one bootstrap writes these Secrets. Caveats: with `pki.ca.bring_your_own` the CA
//! Secret is not written (the key stays behind its reference); rotation state (`ca-next*.pem`)
//! lives in `pki.dir` only, so finish a CA rotation before the Pod restarts.

use std::collections::BTreeMap;

use crate::config::KubernetesSecretsConfig;
use crate::kubernetes::{KubeClient, KubeError, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Secret};
use crate::reconcile::{Action, Change, ErrorKind, StepError};

use super::PkiError;
use super::certinfo;
use super::engine::Pki;
use super::fsio::{CERT_MODE, KEY_MODE, Writer};
use super::layout::{self, FileName, LeafKind};

pub const TLS_TYPE: &str = "kubernetes.io/tls";
const CONFLICT_RETRIES: usize = 5;

/// What one Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Holds {
    Ca,
    Leaf(LeafKind),
}

#[derive(Debug, Clone)]
pub(super) struct Target {
    pub name: String,
    pub holds: Holds,
}

/// The Secrets to keep, CA first.
pub(super) fn targets(pki: &Pki, ks: &KubernetesSecretsConfig) -> Vec<Target> {
    let mut out = Vec::new();
    if pki.config().ca.bring_your_own.is_none() {
        out.push(Target {
            name: ks.ca.clone(),
            holds: Holds::Ca,
        });
    }
    for kind in layout::leaves(pki.config()) {
        let name = match &kind {
            LeafKind::Frontend => Some(ks.frontend.clone()),
            LeafKind::Internode => Some(ks.internode.clone()),
            LeafKind::Client(c) => ks.clients.get(c).cloned(),
        };
        if let Some(name) = name {
            out.push(Target {
                name,
                holds: Holds::Leaf(kind),
            });
        }
    }
    out
}

/// Secret key -> file under `pki.dir` it comes from.
fn sources(pki: &Pki, t: &Target) -> Vec<(&'static str, String)> {
    let bundle = FileName::CaBundle.as_str().to_string();
    match &t.holds {
        Holds::Ca => {
            let mut v = vec![
                ("tls.crt", FileName::CaCert.as_str().to_string()),
                ("tls.key", FileName::CaKey.as_str().to_string()),
                ("ca.crt", bundle),
                ("ca.key", FileName::CaKey.as_str().to_string()),
            ];
            if pki.config().ca.intermediate {
                v.push((
                    "intermediate.crt",
                    FileName::IntermediateCert.as_str().into(),
                ));
                v.push((
                    "intermediate.key",
                    FileName::IntermediateKey.as_str().into(),
                ));
            }
            v
        }
        Holds::Leaf(k) => vec![
            ("tls.crt", k.cert_rel()),
            ("tls.key", k.key_rel()),
            ("ca.crt", bundle),
        ],
    }
}

/// Files as a pending plan would write them (relative path -> content).
pub(super) type Planned = BTreeMap<String, Vec<u8>>;

/// The data a Secret must hold: from `planned` where the plan writes the file, else from the
/// files (overlay included); `None` when a file is missing.
fn desired(
    pki: &Pki,
    t: &Target,
    planned: &Planned,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, PkiError> {
    let mut data = BTreeMap::new();
    for (key, rel) in sources(pki, t) {
        let content = match planned.get(&rel) {
            Some(b) => Some(b.clone()),
            None => pki.read(&rel)?,
        };
        match content {
            Some(b) => {
                data.insert(key.to_string(), b);
            }
            None => return Ok(None),
        }
    }
    Ok(Some(data))
}

/// What in `have` differs from what we want; empty when it matches. Key names only.
fn differences(have: &Secret, want: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut out: Vec<String> = want
        .iter()
        .filter(|(k, v)| have.data.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    if have.labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY_VALUE) {
        out.push(format!("label {MANAGED_BY_LABEL}"));
    }
    out
}

/// The Secrets as they are now, by name (`None`: does not exist).
pub(super) type Observed = BTreeMap<String, Option<Secret>>;

pub(super) struct SecretSync<'a> {
    pub client: KubeClient,
    pub cfg: &'a KubernetesSecretsConfig,
    /// Overwrite a CA Secret holding another CA.
    pub force: bool,
}

/// A file to put back into `pki.dir`.
pub(super) struct Restore {
    pub rel: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
    pub from: String,
}

impl<'a> SecretSync<'a> {
    fn resource(&self, name: &str) -> String {
        format!("secret {}/{}", self.cfg.namespace, name)
    }

    pub async fn observe(&self, targets: &[Target]) -> Result<Observed, KubeError> {
        let mut out = BTreeMap::new();
        for t in targets {
            let s = self.client.get_secret(&self.cfg.namespace, &t.name).await?;
            tracing::debug!(secret = %self.resource(&t.name), exists = s.is_some(), "observed");
            out.insert(t.name.clone(), s);
        }
        Ok(out)
    }

    /// Files of `pki.dir` that are missing and that the Secrets hold.
    pub fn restores(&self, pki: &Pki, targets: &[Target], observed: &Observed) -> Vec<Restore> {
        let mut out = Vec::new();
        let missing = |rel: &str| !pki.layout.path(rel).exists();
        for t in targets {
            let Some(Some(secret)) = observed.get(&t.name) else {
                continue;
            };
            if secret.type_ != TLS_TYPE {
                continue; // drift, reported by diff; not ours to read from
            }
            let from = self.resource(&t.name);
            let mut pairs: Vec<(String, &str, String, &str)> = Vec::new();
            match &t.holds {
                Holds::Ca => {
                    // The key under `ca.key` (our layout), else `tls.key` (a pre-created TLS Secret).
                    let key = if secret.data.contains_key("ca.key") {
                        "ca.key"
                    } else {
                        "tls.key"
                    };
                    pairs.push((
                        FileName::CaCert.as_str().into(),
                        "tls.crt",
                        FileName::CaKey.as_str().into(),
                        key,
                    ));
                    if pki.config().ca.intermediate {
                        pairs.push((
                            FileName::IntermediateCert.as_str().into(),
                            "intermediate.crt",
                            FileName::IntermediateKey.as_str().into(),
                            "intermediate.key",
                        ));
                    }
                }
                Holds::Leaf(k) => pairs.push((k.cert_rel(), "tls.crt", k.key_rel(), "tls.key")),
            }
            for (cert_rel, cert_key, key_rel, key_key) in pairs {
                if !(missing(&cert_rel) && missing(&key_rel)) {
                    continue;
                }
                if let (Some(c), Some(k)) = (secret.data.get(cert_key), secret.data.get(key_key)) {
                    out.push(Restore {
                        rel: cert_rel,
                        bytes: c.clone(),
                        mode: CERT_MODE,
                        from: from.clone(),
                    });
                    out.push(Restore {
                        rel: key_rel,
                        bytes: k.clone(),
                        mode: KEY_MODE,
                        from: from.clone(),
                    });
                }
            }
        }
        out
    }

    pub fn restore_changes(&self, pki: &Pki, restores: &[Restore]) -> Vec<Change> {
        restores
            .iter()
            .map(|r| {
                Change::new(
                    Action::Create,
                    format!("file {}", pki.layout.show(&r.rel)),
                    format!(
                        "restore from {} (pki.dir is a working copy{})",
                        r.from,
                        if r.mode == KEY_MODE {
                            ", mode 0600"
                        } else {
                            ""
                        }
                    ),
                )
            })
            .collect()
    }

    /// Writes the restored files (keys 0600, atomically).
    pub fn write_restores(&self, pki: &Pki, restores: &[Restore]) -> Result<usize, PkiError> {
        if restores.is_empty() {
            return Ok(0);
        }
        let mut w = Writer::new(false);
        for dir in [pki.layout.dir.clone(), pki.layout.clients_dir()] {
            w.ensure_dir(&dir)
                .map_err(|e| PkiError::Runtime(format!("cannot create {}: {e}", dir.display())))?;
        }
        for r in restores {
            tracing::info!(file = %pki.layout.show(&r.rel), from = %r.from, "restoring from Secret");
            pki.write(&mut w, &r.rel, &r.bytes, r.mode)?;
        }
        w.sync()
            .map_err(|e| PkiError::Runtime(format!("cannot sync pki.dir: {e}")))?;
        Ok(w.writes())
    }

    /// Whether replacing the CA Secret `have` with `want` would lose a CA key nobody retired.
    fn ca_guard(
        &self,
        pki: &Pki,
        have: &Secret,
        want: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Option<String>, PkiError> {
        let have_key = have.data.get("ca.key").or_else(|| have.data.get("tls.key"));
        let Some(have_key) = have_key else {
            return Ok(None);
        };
        if Some(have_key) == want.get("ca.key") || self.force {
            return Ok(None);
        }
        // A promoted rotation (certs rotate-ca) keeps the old root as ca-previous.pem.
        // Compared as DER: the two files may differ in PEM formatting.
        let first_der = |pem: &[u8]| certinfo::parse_pem_chain(pem).ok().map(|c| c[0].clone());
        if let (Some(prev), Some(have_cert)) = (
            pki.read(FileName::CaPreviousCert.as_str())?,
            have.data.get("tls.crt"),
        ) && first_der(&prev).is_some()
            && first_der(&prev) == first_der(have_cert)
        {
            return Ok(None);
        }
        Ok(Some(format!(
            "holds a different CA than {}: refusing to publish (a CA key cannot be recovered, and leaves of another CA would break mTLS across the cluster); to keep the Secret's CA, move the CA files out of pki.dir so it is restored from the Secret; to replace it, run apply --force",
            pki.layout.show(FileName::CaCert.as_str()),
        )))
    }

    /// Secret changes, comparing each Secret with the files as `planned` leaves them (empty
    /// after an apply: the files on disk). A refused CA replacement is an error.
    pub fn diff(
        &self,
        pki: &Pki,
        targets: &[Target],
        observed: &Observed,
        planned: &Planned,
    ) -> Result<Vec<Change>, PkiError> {
        let mut out = Vec::new();
        for t in targets {
            let resource = self.resource(&t.name);
            let have = observed.get(&t.name).and_then(Option::as_ref);
            if let Some(h) = have
                && h.type_ != TLS_TYPE
            {
                out.push(Change::new(
                    Action::Drift,
                    resource,
                    format!("type is {}, expected {TLS_TYPE}; the type of a Secret cannot change: delete it and the next run recreates it", h.type_),
                ));
                continue;
            }
            let srcs = sources(pki, t);
            let want = desired(pki, t, planned)?;
            let what = describe(&t.holds);
            let (action, detail) = match (have, want) {
                (None, _) => (
                    Action::Create,
                    format!("{TLS_TYPE} with the {what}: {}", keys_of(&srcs)),
                ),
                (Some(_), None) => (
                    Action::Update,
                    format!("{what}: after the files are issued"),
                ),
                (Some(h), Some(w)) => {
                    let diffs = differences(h, &w);
                    if diffs.is_empty() {
                        continue;
                    }
                    if t.holds == Holds::Ca
                        && let Some(why) = self.ca_guard(pki, h, &w)?
                    {
                        // Publishing leaves of another CA would swap the cluster's CA without a
                        // rotation: refuse the whole step (exit 2) until the operator decides.
                        return Err(PkiError::Invalid(format!("{resource} {why}")));
                    }
                    (
                        Action::Update,
                        format!("{what}: {} differ", diffs.join(", ")),
                    )
                }
            };
            out.push(Change::new(action, resource, detail));
        }
        Ok(out)
    }

    /// Writes every Secret whose content differs (CA first); returns what was written.
    pub async fn publish(
        &self,
        pki: &Pki,
        targets: &[Target],
        observed: &mut Observed,
    ) -> Result<Vec<Change>, StepError> {
        let mut done = Vec::new();
        for t in targets {
            let Some(want) = desired(pki, t, &Planned::new())? else {
                return Err(StepError::new(
                    ErrorKind::Internal,
                    format!(
                        "{}: a file of the {} is missing after issuing",
                        self.resource(&t.name),
                        describe(&t.holds)
                    ),
                ));
            };
            let mut have = observed.get(&t.name).cloned().flatten();
            for attempt in 0..=CONFLICT_RETRIES {
                let result = match &have {
                    None => {
                        let mut s = Secret::new(&self.cfg.namespace, &t.name, TLS_TYPE);
                        s.labels
                            .insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
                        s.data = want.clone();
                        self.client
                            .create_secret(&s)
                            .await
                            .map(|s| (Action::Create, s))
                    }
                    Some(h) => {
                        if h.type_ != TLS_TYPE {
                            break; // drift, reported by diff
                        }
                        let diffs = differences(h, &want);
                        if diffs.is_empty() {
                            break;
                        }
                        if t.holds == Holds::Ca
                            && let Some(why) = self.ca_guard(pki, h, &want)?
                        {
                            return Err(StepError::new(
                                ErrorKind::Refused,
                                format!("{} {why}", self.resource(&t.name)),
                            ));
                        }
                        let mut s = h.clone();
                        s.labels
                            .insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
                        for (k, v) in &want {
                            s.data.insert(k.clone(), v.clone());
                        }
                        self.client
                            .replace_secret(&s)
                            .await
                            .map(|s| (Action::Update, s))
                    }
                };
                match result {
                    Ok((action, written)) => {
                        let keys: Vec<&str> = want.keys().map(String::as_str).collect();
                        tracing::info!(secret = %self.resource(&t.name), action = ?action, "written");
                        done.push(Change::new(
                            action,
                            self.resource(&t.name),
                            format!("{} ({})", describe(&t.holds), keys.join(", ")),
                        ));
                        have = Some(written);
                        break;
                    }
                    Err(KubeError::Conflict { call, message }) if attempt < CONFLICT_RETRIES => {
                        tracing::info!(request = %call, %message, "conflict; reading the Secret again");
                        have = self.client.get_secret(&self.cfg.namespace, &t.name).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            observed.insert(t.name.clone(), have);
        }
        Ok(done)
    }
}

fn describe(h: &Holds) -> String {
    match h {
        Holds::Ca => "root CA (certificate and key)".into(),
        Holds::Leaf(k) => k.describe(),
    }
}

fn keys_of(srcs: &[(&'static str, String)]) -> String {
    srcs.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
}
