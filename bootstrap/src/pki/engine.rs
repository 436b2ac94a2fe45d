//! Observe -> diff -> apply for the files under `pki.dir`.
//!
//! Flow: one pass walks root CA -> intermediate -> bundle -> leaves -> Temporal TLS snippet.
//! Everything is computed in memory (new keys and certificates included) before the file is
//! written, so a plan (dry run) and an apply take exactly the same decisions; an apply first runs
//! a dry pass so that bad input fails before the first write.
//!
//! Guarantees: existing files are never overwritten by [`Policy::CreateMissing`] (`certs
//! issue`): anything that would need a replacement is reported as drift with the reason; the
//! derived files (`ca-bundle.pem`, `temporal-tls.yaml`) are always brought up to date. A
//! converged directory produces no change and no write. A key is always written before its
//! certificate and an existing key without certificate is reused, so a crash between the two
//! converges on the next run. No key material is ever formatted into a message.
//!
//! Assumptions: one process manages a `pki.dir` at a time (no lock file).

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::PkiConfig;
use crate::config::types::SecretRef;

use super::PkiError;
use super::certinfo::{self, CertInfo};
use super::fsio::{self, CERT_MODE, KEY_MODE, Writer};
use super::issue::{self, Key, LeafProfile};
use super::layout::{self, FileName, Layout, LeafKind};
use super::tls_config;

/// What may be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `certs issue`: create what is missing; report everything else.
    CreateMissing,
    /// `certs renew`, the `certificates` step: also replace expiring and mismatched leaves.
    Converge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Create,
    Replace,
    Update,
    Remove,
    /// Reported, not changed (needs `certs renew`, a rotation, or the operator).
    Drift,
}

/// One change of a run; `detail` never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PkiChange {
    pub kind: ChangeKind,
    pub file: String,
    pub detail: String,
}

/// File contents by path relative to `pki.dir`.
pub(super) type FileContents = std::collections::BTreeMap<String, Vec<u8>>;

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    pub changes: Vec<PkiChange>,
    pub writes: usize,
}

/// A CA certificate with its key.
pub(super) struct Ca {
    pub pem: String,
    pub der: CertificateDer<'static>,
    pub info: CertInfo,
    pub key: Key,
}

/// The PKI of one configuration.
pub struct Pki {
    pub(super) cfg: PkiConfig,
    pub(super) cluster: String,
    pub(super) base_dir: PathBuf,
    pub layout: Layout,
    pub(super) now: OffsetDateTime,
    /// Contents that stand in for missing files (a plan over files restored from Kubernetes
    /// Secrets, without writing them). Empty except during such a plan.
    pub(super) overlay: std::collections::BTreeMap<String, Vec<u8>>,
}

impl Pki {
    /// `base_dir` is the directory of platform.yaml; relative paths resolve against it.
    pub fn new(cfg: &PkiConfig, cluster: &str, base_dir: &Path) -> Self {
        let dir = if cfg.dir.is_absolute() {
            cfg.dir.clone()
        } else {
            base_dir.join(&cfg.dir)
        };
        Self {
            cfg: cfg.clone(),
            cluster: cluster.to_string(),
            base_dir: base_dir.to_path_buf(),
            layout: Layout::new(dir, cfg.dir.clone()),
            // Certificates store whole seconds; so do our comparisons and messages.
            now: OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or_else(|_| OffsetDateTime::now_utc()),
            overlay: Default::default(),
        }
    }

    /// Plan as if the files in `overlay` (path relative to `pki.dir` -> content) existed where
    /// the directory has none.
    pub(super) fn with_overlay(
        mut self,
        overlay: std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Self {
        self.overlay = overlay;
        self
    }

    /// Evaluate as if the clock read `now` (tests, and `inspect --at` style checks).
    pub fn with_now(mut self, now: OffsetDateTime) -> Self {
        self.now = now;
        self
    }

    pub fn config(&self) -> &PkiConfig {
        &self.cfg
    }

    /// What a run with `policy` would change; writes nothing.
    pub fn plan(&self, policy: Policy) -> Result<Vec<PkiChange>, PkiError> {
        let mut w = Writer::new(true);
        self.run(policy, &mut w)
    }

    /// Like [`Pki::plan`], also returning the content every written file would get (path
    /// relative to `pki.dir` -> bytes; new keys included: keep it in memory only).
    pub(super) fn plan_with_content(
        &self,
        policy: Policy,
    ) -> Result<(Vec<PkiChange>, FileContents), PkiError> {
        let mut w = Writer::capturing();
        let changes = self.run(policy, &mut w)?;
        let files = w
            .take_captured()
            .into_iter()
            .filter_map(|(p, b)| {
                let rel = p.strip_prefix(&self.layout.dir).ok()?.to_str()?.to_string();
                Some((rel, b))
            })
            .collect();
        Ok((changes, files))
    }

    /// Applies `policy`: a dry pass first (bad input fails before any write), then the real one.
    pub fn apply(&self, policy: Policy) -> Result<Outcome, PkiError> {
        self.plan(policy)?;
        // Two processes issuing into one empty directory would each write a CA: the directory
        // lock serialises them, and the real pass below re-reads what the other one wrote.
        let _lock = self.lock_dir()?;
        let mut w = Writer::new(false);
        let changes = self.run(policy, &mut w)?;
        w.sync()
            .map_err(|e| PkiError::Runtime(format!("cannot sync {}: {e}", self.dir_rel())))?;
        Ok(Outcome {
            changes,
            writes: w.writes(),
        })
    }

    /// An exclusive `flock` on `pki.dir/.lock` (the directory is created 0700 if missing), held
    /// until the returned file is dropped. Waits for another holder.
    fn lock_dir(&self) -> Result<std::fs::File, PkiError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        use std::os::unix::io::AsRawFd;
        let dir = &self.layout.dir;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| PkiError::Runtime(format!("cannot create {}: {e}", self.dir_rel())))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(".lock"))
            .map_err(|e| {
                PkiError::Runtime(format!(
                    "cannot open the lock file in {}: {e}",
                    self.dir_rel()
                ))
            })?;
        // SAFETY: flock on a file descriptor this function owns; blocking is intended.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(PkiError::Runtime(format!(
                "cannot lock {}: {}",
                self.dir_rel(),
                std::io::Error::last_os_error()
            )));
        }
        Ok(file)
    }

    pub(super) fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn dir_rel(&self) -> String {
        self.layout.shown.display().to_string()
    }

    /// Checks that `pki.dir` is a usable directory (or can be created).
    pub(super) fn check_dir(&self) -> Result<bool, PkiError> {
        let dir = &self.layout.dir;
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {
                std::fs::read_dir(dir).map_err(|e| {
                    PkiError::Invalid(format!("pki.dir `{}` is not readable: {e}", self.dir_rel()))
                })?;
                Ok(true)
            }
            Ok(_) => Err(PkiError::Invalid(format!(
                "pki.dir `{}` exists but is not a directory",
                self.dir_rel()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The nearest existing ancestor must be a directory.
                let mut p = dir.parent();
                while let Some(a) = p {
                    if let Ok(m) = std::fs::metadata(a) {
                        if !m.is_dir() {
                            return Err(PkiError::Invalid(format!(
                                "pki.dir `{}` cannot be created: `{}` is not a directory",
                                self.dir_rel(),
                                a.display()
                            )));
                        }
                        break;
                    }
                    p = a.parent();
                }
                Ok(false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                Err(PkiError::Invalid(format!(
                    "pki.dir `{}` cannot be created: one of its parents is not a directory",
                    self.dir_rel()
                )))
            }
            Err(e) => Err(PkiError::Invalid(format!(
                "pki.dir `{}` is not accessible: {e}",
                self.dir_rel()
            ))),
        }
    }

    /// A directory that holds private keys must be reachable by its owner only: whoever can
    /// write to it can replace `ca.pem` or a key, whoever can list it learns the names. A real
    /// directory of ours with a looser mode is tightened to 0700 (a reported change); a symlink
    /// to one, a directory of another user and a shared (sticky) directory are refused, since
    /// changing their mode could break whatever else uses them.
    fn enforce_dir_mode(
        &self,
        w: &mut Writer,
        dir: &Path,
        shown: &str,
        changes: &mut Vec<PkiChange>,
    ) -> Result<(), PkiError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let runtime = |e: std::io::Error| PkiError::Runtime(format!("cannot inspect {shown}: {e}"));
        let link = std::fs::symlink_metadata(dir).map_err(runtime)?;
        let meta = std::fs::metadata(dir).map_err(runtime)?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 == 0 {
            return Ok(());
        }
        let why = if link.file_type().is_symlink() {
            let target = std::fs::canonicalize(dir)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            Some(format!(
                "is a symlink to `{target}`, a directory of mode {mode:04o}"
            ))
        } else if meta.uid() != current_euid() {
            Some(format!(
                "is a directory of mode {mode:04o} owned by uid {}, not by this process (uid {})",
                meta.uid(),
                current_euid()
            ))
        } else if mode & 0o1000 != 0 {
            Some(format!("is a shared directory (mode {mode:04o}, sticky)"))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(PkiError::Invalid(format!(
                "pki.dir: `{shown}` {why}; private keys must live in a directory only their owner can reach. Run `chmod 700` on it yourself, or point pki.dir at a new directory (it is created with mode 0700)"
            )));
        }
        changes.push(PkiChange {
            kind: ChangeKind::Update,
            file: format!("{shown}/"),
            detail: format!(
                "directory mode {mode:04o} -> 0700 (group and others must not reach private keys)"
            ),
        });
        w.set_mode(dir, fsio::DIR_MODE)
            .map_err(|e| PkiError::Runtime(format!("cannot chmod {shown}: {e}")))
    }

    pub(super) fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, PkiError> {
        tracing::trace!(file = %self.layout.show(rel), "reading");
        let found = fsio::read_optional(&self.layout.path(rel)).map_err(|e| {
            PkiError::Invalid(format!("cannot read {}: {e}", self.layout.show(rel)))
        })?;
        Ok(found.or_else(|| self.overlay.get(rel).cloned()))
    }

    pub(super) fn write(
        &self,
        w: &mut Writer,
        rel: &str,
        bytes: &[u8],
        mode: u32,
    ) -> Result<(), PkiError> {
        tracing::debug!(
            file = %self.layout.show(rel),
            mode = format!("{mode:04o}"),
            bytes = bytes.len(),
            "writing atomically"
        );
        w.write(&self.layout.path(rel), bytes, mode)
            .map_err(|e| PkiError::Runtime(format!("cannot write {}: {e}", self.layout.show(rel))))
    }

    pub(super) fn change(
        &self,
        kind: ChangeKind,
        rel: &str,
        detail: impl Into<String>,
    ) -> PkiChange {
        let c = PkiChange {
            kind,
            file: self.layout.show(rel),
            detail: detail.into(),
        };
        tracing::debug!(kind = ?c.kind, file = %c.file, detail = %c.detail, "pki change");
        c
    }

    /// One pass with an existing writer (used by the rotation phases).
    pub(super) fn apply_pass(
        &self,
        policy: Policy,
        w: &mut Writer,
    ) -> Result<Vec<PkiChange>, PkiError> {
        self.run(policy, w)
    }

    fn run(&self, policy: Policy, w: &mut Writer) -> Result<Vec<PkiChange>, PkiError> {
        let mut changes = Vec::new();
        if !self.check_dir()? {
            changes.push(PkiChange {
                kind: ChangeKind::Create,
                file: format!("{}/", self.dir_rel()),
                detail: "directory (mode 0700)".into(),
            });
        } else {
            self.enforce_dir_mode(w, &self.layout.dir, &self.dir_rel(), &mut changes)?;
        }
        let clients = self.layout.clients_dir();
        if clients.is_dir() {
            self.enforce_dir_mode(w, &clients, &self.layout.show("clients"), &mut changes)?;
        }
        w.ensure_dir(&self.layout.dir)
            .map_err(|e| PkiError::Runtime(format!("cannot create {}: {e}", self.dir_rel())))?;
        if !self.cfg.clients.is_empty() {
            w.ensure_dir(&self.layout.clients_dir()).map_err(|e| {
                PkiError::Runtime(format!(
                    "cannot create {}: {e}",
                    self.layout.show("clients")
                ))
            })?;
        }

        let root = self.root(policy, w, &mut changes)?;
        let intermediate = if self.cfg.ca.intermediate {
            Some(self.intermediate(&root, policy, w, &mut changes)?)
        } else {
            for f in [FileName::IntermediateCert, FileName::IntermediateKey] {
                if self.layout.file(f).exists() {
                    changes.push(self.change(
                        ChangeKind::Drift,
                        f.as_str(),
                        "not used (pki.ca.intermediate is false); delete it once no certificate chains to it",
                    ));
                }
            }
            None
        };
        self.bundle(&root, w, &mut changes)?;
        for kind in layout::leaves(&self.cfg) {
            self.leaf(&kind, &root, intermediate.as_ref(), policy, w, &mut changes)?;
        }
        self.stale_clients(&mut changes)?;
        self.key_modes(&mut changes);
        self.snippet(w, &mut changes)?;
        Ok(changes)
    }

    fn ca_cn(&self) -> String {
        self.cfg
            .ca
            .common_name
            .clone()
            .unwrap_or_else(|| format!("{} Temporal CA", self.cluster))
    }

    /// Name of a rotated CA: the base name plus the issue date, so old and new roots in the
    /// bundle (and in every peer's logs) are told apart.
    pub(super) fn rotated_cn(&self) -> String {
        format!(
            "{} {:04}-{:02}-{:02}",
            self.ca_cn(),
            self.now.year(),
            u8::from(self.now.month()),
            self.now.day()
        )
    }

    pub(super) fn root_path_len(&self) -> u8 {
        u8::from(self.cfg.ca.intermediate)
    }

    /// Generates a root CA (key and certificate) in memory.
    pub(super) fn new_root(&self, existing_key: Option<Key>) -> Result<Ca, PkiError> {
        self.new_root_named(existing_key, &self.ca_cn())
    }

    pub(super) fn new_root_named(
        &self,
        existing_key: Option<Key>,
        cn: &str,
    ) -> Result<Ca, PkiError> {
        let key = match existing_key {
            Some(k) => k,
            None => Key::generate(self.cfg.ca.key_algorithm).map_err(rcgen_err)?,
        };
        let pem = issue::root_ca(
            cn,
            &key,
            self.now,
            self.cfg.ca.validity.as_duration(),
            self.root_path_len(),
        )
        .map_err(rcgen_err)?;
        ca_from(pem, key)
    }

    /// Generates an intermediate CA signed by `root`.
    pub(super) fn new_intermediate(
        &self,
        root: &Ca,
        existing_key: Option<Key>,
    ) -> Result<Ca, PkiError> {
        let key = match existing_key {
            Some(k) => k,
            None => Key::generate(self.cfg.ca.key_algorithm).map_err(rcgen_err)?,
        };
        let not_after = (self.now + self.cfg.ca.validity.as_duration()).min(root.info.not_after);
        let issuer = issue::issuer(&root.pem, &root.key).map_err(rcgen_err)?;
        let pem = issue::intermediate_ca(
            &format!("{} intermediate", root.info.subject_cn),
            &key,
            &issuer,
            issue::leaf_not_before(self.now),
            not_after,
        )
        .map_err(rcgen_err)?;
        ca_from(pem, key)
    }

    fn root(
        &self,
        policy: Policy,
        w: &mut Writer,
        changes: &mut Vec<PkiChange>,
    ) -> Result<Ca, PkiError> {
        let cert_rel = FileName::CaCert.as_str();
        let key_rel = FileName::CaKey.as_str();
        if let Some(byo) = &self.cfg.ca.bring_your_own {
            return self.byo_root(byo, policy, w, changes);
        }
        let cert = self.read(cert_rel)?;
        let key = self.read(key_rel)?;
        let ca = match (cert, key) {
            (None, None) => {
                let ca = self.new_root(None)?;
                changes.push(self.change(
                    ChangeKind::Create,
                    key_rel,
                    format!(
                        "root CA private key ({}, mode 0600)",
                        ca.key.algorithm_name()
                    ),
                ));
                changes.push(self.change(ChangeKind::Create, cert_rel, describe_ca(&ca.info)));
                self.write(w, key_rel, ca.key.to_pem().as_bytes(), KEY_MODE)?;
                self.write(w, cert_rel, ca.pem.as_bytes(), CERT_MODE)?;
                ca
            }
            (None, Some(k)) => {
                let key = self.parse_key(key_rel, &k)?;
                let ca = self.new_root(Some(key))?;
                changes.push(self.change(
                    ChangeKind::Create,
                    cert_rel,
                    format!("{} (for the existing {key_rel})", describe_ca(&ca.info)),
                ));
                self.write(w, cert_rel, ca.pem.as_bytes(), CERT_MODE)?;
                ca
            }
            (Some(_), None) => {
                return Err(PkiError::Invalid(format!(
                    "{} exists but {} is missing: restore the CA key from your backup (or, to start over with a new CA and re-issue everything, move {} away)",
                    self.layout.show(cert_rel),
                    self.layout.show(key_rel),
                    self.layout.show(cert_rel)
                )));
            }
            (Some(c), Some(k)) => {
                let key = self.parse_key(key_rel, &k)?;
                let ca = self.parse_ca(cert_rel, &c, key)?;
                self.check_ca_health(cert_rel, &ca.info, changes);
                if ca.info.key_algorithm != issue::algorithm_name(self.cfg.ca.key_algorithm) {
                    changes.push(self.change(
                        ChangeKind::Drift,
                        cert_rel,
                        format!(
                            "CA key is {}, pki.ca.key_algorithm says {}: takes effect at the next CA rotation (certs rotate-ca)",
                            ca.info.key_algorithm,
                            issue::algorithm_name(self.cfg.ca.key_algorithm)
                        ),
                    ));
                }
                ca
            }
        };
        if self.cfg.ca.intermediate && ca.info.path_len == Some(0) {
            return Err(PkiError::Invalid(format!(
                "pki.ca.intermediate is true but the root CA in {} was created without one (path length 0) and cannot sign an intermediate: rotate the CA (certs rotate-ca start/promote/finish) or set intermediate: false",
                self.layout.show(cert_rel)
            )));
        }
        Ok(ca)
    }

    fn byo_root(
        &self,
        byo: &crate::config::ByoCaConfig,
        policy: Policy,
        w: &mut Writer,
        changes: &mut Vec<PkiChange>,
    ) -> Result<Ca, PkiError> {
        let cert_rel = FileName::CaCert.as_str();
        let path = self.resolve(&byo.cert);
        let bytes = crate::fsutil::read_limited(&path, crate::fsutil::FileKind::Pem)
            .map_err(|e| PkiError::Invalid(format!("pki.ca.bring_your_own.cert: {e}")))?;
        let chain = certinfo::parse_pem_chain(&bytes).map_err(|e| {
            PkiError::Invalid(format!(
                "pki.ca.bring_your_own.cert `{}`: {e}",
                byo.cert.display()
            ))
        })?;
        let secret_ref = match &byo.key {
            SecretRef::File(p) => SecretRef::File(self.resolve(p)),
            other => other.clone(),
        };
        let key_pem = secret_ref.resolve().map_err(|e| {
            PkiError::Invalid(format!("pki.ca.bring_your_own.key ({}): {e}", byo.key))
        })?;
        if let SecretRef::File(p) = &secret_ref
            && let Some(mode) = fsio::loose_key_mode(p)
        {
            let c = PkiChange {
                kind: ChangeKind::Drift,
                file: byo.key.to_string(),
                detail: format!(
                    "bring-your-own CA key has mode {mode:04o} (readable by group or others); run `chmod 600` on it"
                ),
            };
            tracing::warn!(file = %c.file, "{}", c.detail);
            changes.push(c);
        }
        let key = Key::from_pem(key_pem.expose()).map_err(|e| {
            PkiError::Invalid(format!("pki.ca.bring_your_own.key ({}): {e}", byo.key))
        })?;
        let pem = certinfo::der_to_pem(&chain[0]);
        let ca = self
            .parse_ca(
                &format!("pki.ca.bring_your_own.cert `{}`", byo.cert.display()),
                pem.as_bytes(),
                key,
            )
            .map_err(|e| match e {
                PkiError::Invalid(m) => PkiError::Invalid(m.replace(
                    "does not belong to",
                    "(pki.ca.bring_your_own.key) does not belong to",
                )),
                other => other,
            })?;
        if ca.info.not_after <= self.now {
            return Err(PkiError::Invalid(format!(
                "pki.ca.bring_your_own.cert `{}` expired on {}",
                byo.cert.display(),
                certinfo::rfc3339(ca.info.not_after)
            )));
        }
        let total = ca.info.not_after - ca.info.not_before;
        for kind in layout::leaves(&self.cfg) {
            let v = layout::leaf_validity(&self.cfg, &kind);
            if time::Duration::try_from(v).unwrap_or(time::Duration::MAX) > total {
                return Err(PkiError::Invalid(format!(
                    "the validity of the {} ({}d) is longer than the whole validity of the bring-your-own CA ({}d): shorten it",
                    kind.describe(),
                    v.as_secs() / 86400,
                    total.whole_days()
                )));
            }
        }
        self.check_ca_health(cert_rel, &ca.info, changes);
        match self.read(cert_rel)? {
            None => {
                changes.push(self.change(
                    ChangeKind::Create,
                    cert_rel,
                    format!("copy of the bring-your-own CA `{}`", ca.info.subject_cn),
                ));
                self.write(w, cert_rel, pem.as_bytes(), CERT_MODE)?;
            }
            Some(existing) if existing == pem.as_bytes() => {}
            Some(_) => {
                let detail = format!(
                    "differs from pki.ca.bring_your_own.cert (`{}`)",
                    ca.info.subject_cn
                );
                if policy == Policy::Converge {
                    changes.push(self.change(ChangeKind::Replace, cert_rel, detail));
                    self.write(w, cert_rel, pem.as_bytes(), CERT_MODE)?;
                } else {
                    changes.push(self.change(
                        ChangeKind::Drift,
                        cert_rel,
                        format!("{detail}; run `temporal-bootstrap certs renew` to replace it"),
                    ));
                }
            }
        }
        Ok(ca)
    }

    fn check_ca_health(&self, rel: &str, info: &CertInfo, changes: &mut Vec<PkiChange>) {
        let days = info.days_left(self.now);
        if info.not_after <= self.now {
            changes.push(self.change(
                ChangeKind::Drift,
                rel,
                format!(
                    "CA expired on {}: rotate it (runbooks/certificate-rotation-ca.md)",
                    certinfo::rfc3339(info.not_after)
                ),
            ));
        } else if (info.not_after - self.now) < self.cfg.renew_before.as_duration() {
            changes.push(self.change(
                ChangeKind::Drift,
                rel,
                format!(
                    "CA expires in {days} days: rotate it (runbooks/certificate-rotation-ca.md)"
                ),
            ));
        }
    }

    pub(super) fn parse_key(&self, what: &str, bytes: &[u8]) -> Result<Key, PkiError> {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            PkiError::Invalid(format!("{}: not a PEM file", self.layout.show(what)))
        })?;
        Key::from_pem(text)
            .map_err(|e| PkiError::Invalid(format!("{}: {e}", self.layout.show(what))))
    }

    /// Parses a CA certificate and checks it belongs to `key` and may sign.
    pub(super) fn parse_ca(&self, what: &str, bytes: &[u8], key: Key) -> Result<Ca, PkiError> {
        let shown = if what.ends_with(".pem") {
            self.layout.show(what)
        } else {
            what.to_string()
        };
        let chain = certinfo::parse_pem_chain(bytes)
            .map_err(|e| PkiError::Invalid(format!("{shown}: {e}")))?;
        let der = chain[0].clone();
        let info =
            certinfo::parse_der(&der).map_err(|e| PkiError::Invalid(format!("{shown}: {e}")))?;
        if !info.is_ca || !info.key_cert_sign {
            return Err(PkiError::Invalid(format!(
                "{shown} is not a CA certificate (needs basicConstraints CA:TRUE and keyUsage keyCertSign)"
            )));
        }
        if info.public_key != key.public_key_raw() {
            return Err(PkiError::Invalid(format!(
                "the private key does not belong to {shown} (if a `certs rotate-ca promote` was interrupted, run it again)"
            )));
        }
        Ok(Ca {
            pem: certinfo::der_to_pem(&der),
            der,
            info,
            key,
        })
    }

    fn intermediate(
        &self,
        root: &Ca,
        policy: Policy,
        w: &mut Writer,
        changes: &mut Vec<PkiChange>,
    ) -> Result<Ca, PkiError> {
        let cert_rel = FileName::IntermediateCert.as_str();
        let key_rel = FileName::IntermediateKey.as_str();
        let cert = self.read(cert_rel)?;
        let key = self.read(key_rel)?;
        let mut reasons = Vec::new();
        let mut reuse: Option<Key> = None;
        let mut existing: Option<Ca> = None;
        let mut create = false;
        match (cert, key) {
            (None, None) => create = true,
            (None, Some(k)) => {
                create = true;
                reuse = self.parse_key(key_rel, &k).ok();
            }
            (Some(_), None) => reasons.push(format!("{key_rel} is missing")),
            (Some(c), Some(k)) => match self.parse_key(key_rel, &k) {
                Err(e) => reasons.push(e.to_string()),
                Ok(key) => {
                    let pub_ok = certinfo::parse_pem_chain(&c)
                        .ok()
                        .and_then(|ch| certinfo::parse_der(&ch[0]).ok())
                        .map(|i| i.public_key == key.public_key_raw());
                    if pub_ok == Some(false) {
                        reasons.push("key does not match the certificate".into());
                        reuse = Some(key);
                    } else {
                        match self.parse_ca(cert_rel, &c, key) {
                            Err(e) => reasons.push(e.to_string()),
                            Ok(ca) => {
                                if !ca.info.issued_by(&root.info) {
                                    reasons.push("not issued by the current root CA".into());
                                }
                                let renewable = root.info.not_after
                                    > ca.info.not_after + time::Duration::days(1);
                                if ca.info.not_after <= self.now {
                                    reasons.push(format!(
                                        "expired on {}",
                                        certinfo::rfc3339(ca.info.not_after)
                                    ));
                                } else if (ca.info.not_after - self.now)
                                    < self.cfg.renew_before.as_duration()
                                    && renewable
                                {
                                    reasons.push(format!(
                                        "expires in {} days (renew_before {})",
                                        ca.info.days_left(self.now),
                                        self.cfg.renew_before
                                    ));
                                }
                                existing = Some(ca);
                            }
                        }
                    }
                }
            },
        }
        if create {
            self.ensure_can_issue(root)?;
            let reused = reuse.is_some();
            let ca = self.new_intermediate(root, reuse)?;
            if !reused {
                changes.push(self.change(
                    ChangeKind::Create,
                    key_rel,
                    format!(
                        "intermediate CA private key ({}, mode 0600)",
                        ca.key.algorithm_name()
                    ),
                ));
                self.write(w, key_rel, ca.key.to_pem().as_bytes(), KEY_MODE)?;
            }
            changes.push(self.change(ChangeKind::Create, cert_rel, describe_ca(&ca.info)));
            self.write(w, cert_rel, ca.pem.as_bytes(), CERT_MODE)?;
            return Ok(ca);
        }
        if reasons.is_empty() {
            // Invariant: no reasons and not created means the existing pair parsed.
            if let Some(ca) = existing {
                return Ok(ca);
            }
        }
        let why = reasons.join("; ");
        if policy == Policy::CreateMissing {
            changes.push(self.change(
                ChangeKind::Drift,
                cert_rel,
                format!("needs replacement: {why}; run `temporal-bootstrap certs renew`"),
            ));
            return match existing {
                Some(ca) => Ok(ca),
                None => Err(PkiError::Invalid(format!(
                    "{} is unusable ({why}): run `temporal-bootstrap certs renew` to replace it",
                    self.layout.show(cert_rel)
                ))),
            };
        }
        self.ensure_can_issue(root)?;
        let reused = reuse.is_some();
        let ca = self.new_intermediate(root, reuse)?;
        changes.push(self.change(
            ChangeKind::Replace,
            cert_rel,
            format!("{} (because: {why})", describe_ca(&ca.info)),
        ));
        if !reused {
            self.write(w, key_rel, ca.key.to_pem().as_bytes(), KEY_MODE)?;
        }
        self.write(w, cert_rel, ca.pem.as_bytes(), CERT_MODE)?;
        Ok(ca)
    }

    /// Refuses to issue under a CA that is expired or expires within a day.
    fn ensure_can_issue(&self, ca: &Ca) -> Result<(), PkiError> {
        if ca.info.not_after <= self.now + time::Duration::days(1) {
            return Err(PkiError::Invalid(format!(
                "the CA `{}` expires on {}: it cannot issue certificates any more; rotate it first (runbooks/certificate-rotation-ca.md)",
                ca.info.subject_cn,
                certinfo::rfc3339(ca.info.not_after)
            )));
        }
        Ok(())
    }

    /// Roots that peers trust: current, next (rotation started), previous (rotation promoted).
    pub(super) fn bundle_pem(&self, root: &Ca) -> Result<String, PkiError> {
        let mut out = root.pem.clone();
        for f in [FileName::CaNextCert, FileName::CaPreviousCert] {
            if let Some(b) = self.read(f.as_str())? {
                let chain = certinfo::parse_pem_chain(&b).map_err(|e| {
                    PkiError::Invalid(format!("{}: {e}", self.layout.show(f.as_str())))
                })?;
                out.push_str(&certinfo::der_to_pem(&chain[0]));
            }
        }
        Ok(out)
    }

    fn bundle(
        &self,
        root: &Ca,
        w: &mut Writer,
        changes: &mut Vec<PkiChange>,
    ) -> Result<(), PkiError> {
        let rel = FileName::CaBundle.as_str();
        let want = self.bundle_pem(root)?;
        let n = want.matches("BEGIN CERTIFICATE").count();
        match self.read(rel)? {
            Some(have) if have == want.as_bytes() => {}
            have => {
                let kind = if have.is_some() {
                    ChangeKind::Update
                } else {
                    ChangeKind::Create
                };
                changes.push(self.change(
                    kind,
                    rel,
                    format!("trust bundle: {n} CA certificate(s) peers accept"),
                ));
                self.write(w, rel, want.as_bytes(), CERT_MODE)?;
            }
        }
        Ok(())
    }

    fn leaf(
        &self,
        kind: &LeafKind,
        root: &Ca,
        intermediate: Option<&Ca>,
        policy: Policy,
        w: &mut Writer,
        changes: &mut Vec<PkiChange>,
    ) -> Result<(), PkiError> {
        let issuing = intermediate.unwrap_or(root);
        let profile = layout::leaf_profile(&self.cfg, kind, &self.cluster);
        let validity = layout::leaf_validity(&self.cfg, kind);
        let cert_rel = kind.cert_rel();
        let key_rel = kind.key_rel();
        let desired_not_after = (self.now + validity)
            .min(issuing.info.not_after)
            .min(root.info.not_after);
        let cert = self.read(&cert_rel)?;
        let key = self.read(&key_rel)?;
        let alg = issue::algorithm_name(self.cfg.ca.key_algorithm);

        let Existing {
            create,
            reasons,
            reuse,
        } = self.existing_leaf(cert, key, alg, &key_rel, |info, chain| {
            self.leaf_mismatches(&profile, info, chain, root, intermediate, desired_not_after)
        });
        if !create && reasons.is_empty() {
            return Ok(());
        }
        let why = reasons.join("; ");
        if !create && policy == Policy::CreateMissing {
            changes.push(self.change(
                ChangeKind::Drift,
                &cert_rel,
                format!("needs replacement: {why}; run `temporal-bootstrap certs renew`"),
            ));
            return Ok(());
        }
        self.ensure_can_issue(issuing)?;
        if intermediate.is_some() {
            self.ensure_can_issue(root)?;
        }
        let reused = reuse.is_some();
        let key = match reuse {
            Some(k) => k,
            None => Key::generate(self.cfg.ca.key_algorithm).map_err(rcgen_err)?,
        };
        let issuer = issue::issuer(&issuing.pem, &issuing.key).map_err(rcgen_err)?;
        let leaf_pem = issue::leaf(
            &profile,
            &key,
            &issuer,
            issue::leaf_not_before(self.now),
            desired_not_after,
        )
        .map_err(rcgen_err)?;
        let mut file = leaf_pem;
        if let Some(i) = intermediate {
            file.push_str(&i.pem);
        }
        let mut detail = format!(
            "{}: {}; SANs {}; valid until {}",
            kind.describe(),
            usages_of(&profile),
            sans_of(&profile),
            certinfo::rfc3339(desired_not_after)
        );
        if desired_not_after < self.now + validity {
            detail.push_str(" (shortened to the CA's expiry)");
        }
        changes.extend(self.leaf_changes(create, reused, &key, &key_rel, &cert_rel, &detail, &why));
        if !reused {
            self.write(w, &key_rel, key.to_pem().as_bytes(), KEY_MODE)?;
        }
        self.write(w, &cert_rel, file.as_bytes(), CERT_MODE)?;
        Ok(())
    }

    /// What the files on disk say about one leaf: whether it must be created, why an existing
    /// one must be replaced (`mismatches` judges a parsable certificate), and a key worth
    /// keeping (the configured algorithm, e.g. newer than its certificate).
    fn existing_leaf(
        &self,
        cert: Option<Vec<u8>>,
        key: Option<Vec<u8>>,
        alg: &str,
        key_rel: &str,
        mismatches: impl Fn(&CertInfo, &[CertificateDer<'static>]) -> Vec<String>,
    ) -> Existing {
        let mut reasons: Vec<String> = Vec::new();
        let mut reuse: Option<Key> = None;
        let create;
        match (cert, key) {
            (None, None) => create = true,
            (None, Some(k)) => {
                create = true;
                reuse = self
                    .parse_key(key_rel, &k)
                    .ok()
                    .filter(|k| k.algorithm_name() == alg);
            }
            (Some(_), None) => {
                create = false;
                reasons.push(format!("private key {key_rel} is missing"));
            }
            (Some(c), Some(k)) => {
                create = false;
                let key = self.parse_key(key_rel, &k);
                match certinfo::parse_pem_chain(&c)
                    .and_then(|ch| certinfo::parse_der(&ch[0]).map(|i| (ch, i)))
                {
                    Err(e) => reasons.push(format!("unreadable certificate: {e}")),
                    Ok((chain, info)) => {
                        match key {
                            Err(e) => reasons.push(e.to_string()),
                            Ok(key) if info.public_key != key.public_key_raw() => {
                                reasons.push("private key does not match the certificate".into());
                                if key.algorithm_name() == alg {
                                    reuse = Some(key);
                                }
                            }
                            Ok(_) => {}
                        }
                        reasons.extend(mismatches(&info, &chain));
                    }
                }
            }
        }
        Existing {
            create,
            reasons,
            reuse,
        }
    }

    /// The reported changes of issuing one leaf.
    #[allow(clippy::too_many_arguments)]
    fn leaf_changes(
        &self,
        create: bool,
        reused: bool,
        key: &Key,
        key_rel: &str,
        cert_rel: &str,
        detail: &str,
        why: &str,
    ) -> Vec<PkiChange> {
        let mut changes = Vec::new();
        if create {
            if !reused && self.layout.path(key_rel).exists() {
                changes.push(self.change(
                    ChangeKind::Replace,
                    key_rel,
                    "unusable private key replaced (mode 0600)",
                ));
            } else if !reused {
                changes.push(self.change(
                    ChangeKind::Create,
                    key_rel,
                    format!("private key ({}, mode 0600)", key.algorithm_name()),
                ));
            }
            let suffix = if reused {
                format!(" (for the existing {key_rel})")
            } else {
                String::new()
            };
            changes.push(self.change(ChangeKind::Create, cert_rel, format!("{detail}{suffix}")));
        } else {
            changes.push(self.change(
                ChangeKind::Replace,
                cert_rel,
                format!(
                    "{detail}; because: {why}{}",
                    if reused {
                        "; keeps the newer key on disk"
                    } else {
                        "; new key"
                    }
                ),
            ));
        }
        changes
    }

    /// Why an existing, parsable leaf no longer fits (empty when it fits).
    fn leaf_mismatches(
        &self,
        profile: &LeafProfile,
        info: &CertInfo,
        chain: &[CertificateDer<'static>],
        root: &Ca,
        intermediate: Option<&Ca>,
        desired_not_after: OffsetDateTime,
    ) -> Vec<String> {
        let mut reasons = profile_mismatches(profile, info);
        let alg = issue::algorithm_name(self.cfg.ca.key_algorithm);
        if info.key_algorithm != alg {
            reasons.push(format!(
                "key algorithm {}, pki.ca.key_algorithm says {alg}",
                info.key_algorithm
            ));
        }
        let want_chain: Vec<&CertificateDer<'static>> =
            intermediate.map(|i| &i.der).into_iter().collect();
        let have_chain: Vec<&CertificateDer<'static>> = chain.iter().skip(1).collect();
        if have_chain != want_chain {
            reasons.push(match intermediate {
                Some(_) => "chain does not end with the current intermediate.pem".into(),
                None => "file carries an intermediate although pki.ca.intermediate is false".into(),
            });
        } else {
            // Verify at a moment the leaf claims to be valid, so expiry is reported on its own.
            let at = if self.now >= info.not_after {
                info.not_after - time::Duration::seconds(1)
            } else {
                self.now
            };
            if let Err(e) = certinfo::verify_leaf(chain, info, std::slice::from_ref(&root.der), at)
            {
                reasons.push(format!("not valid under the current CA ({e})"));
            }
        }
        if info.not_after <= self.now {
            reasons.push(format!("expired on {}", certinfo::rfc3339(info.not_after)));
        } else if (info.not_after - self.now) < self.cfg.renew_before.as_duration()
            && desired_not_after > info.not_after + time::Duration::days(1)
        {
            reasons.push(format!(
                "expires in {} days (renew_before {})",
                info.days_left(self.now),
                self.cfg.renew_before
            ));
        }
        reasons
    }

    /// Client certificates on disk that the configuration no longer lists.
    fn stale_clients(&self, changes: &mut Vec<PkiChange>) -> Result<(), PkiError> {
        let Ok(rd) = std::fs::read_dir(self.layout.clients_dir()) else {
            return Ok(());
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".pem") && !n.ends_with("-key.pem") && !n.starts_with('.'))
            .map(|n| n.trim_end_matches(".pem").to_string())
            .filter(|n| !self.cfg.clients.iter().any(|c| c.name.as_str() == n))
            .collect();
        names.sort();
        for n in names {
            changes.push(self.change(
                ChangeKind::Drift,
                &format!("clients/{n}.pem"),
                format!("client `{n}` is no longer in pki.clients; the certificate stays valid until it expires (no revocation): delete clients/{n}.pem and clients/{n}-key.pem once nobody uses it"),
            ));
        }
        Ok(())
    }

    /// Private keys readable by group or others: warned, never changed silently.
    fn key_modes(&self, changes: &mut Vec<PkiChange>) {
        let mut rels: Vec<String> = vec![
            FileName::CaKey.as_str().into(),
            FileName::IntermediateKey.as_str().into(),
            FileName::CaNextKey.as_str().into(),
            FileName::IntermediateNextKey.as_str().into(),
        ];
        rels.extend(layout::leaves(&self.cfg).iter().map(|k| k.key_rel()));
        for rel in rels {
            if let Some(mode) = fsio::loose_key_mode(&self.layout.path(&rel)) {
                let msg = format!(
                    "private key has mode {mode:04o} (readable by group or others); run `chmod 600 {}`",
                    self.layout.show(&rel)
                );
                tracing::warn!("{}: {msg}", self.layout.show(&rel));
                changes.push(self.change(ChangeKind::Drift, &rel, msg));
            }
        }
    }

    fn snippet(&self, w: &mut Writer, changes: &mut Vec<PkiChange>) -> Result<(), PkiError> {
        let rel = FileName::TemporalTls.as_str();
        // The same text however platform.yaml was named on the command line (relative, absolute,
        // through `..`): otherwise two invocations would rewrite the file back and forth.
        let abs = std::fs::canonicalize(&self.layout.dir)
            .or_else(|_| std::path::absolute(&self.layout.dir))
            .unwrap_or_else(|_| self.layout.dir.clone())
            .display()
            .to_string();
        let want = tls_config::render_temporal_tls(&self.cfg, &abs);
        match self.read(rel)? {
            Some(have) if have == want.as_bytes() => {}
            have => {
                let kind = if have.is_some() {
                    ChangeKind::Update
                } else {
                    ChangeKind::Create
                };
                changes.push(self.change(
                    kind,
                    rel,
                    "Temporal server global.tls settings for these files",
                ));
                self.write(w, rel, want.as_bytes(), CERT_MODE)?;
            }
        }
        Ok(())
    }
}

pub(super) fn ca_from(pem: String, key: Key) -> Result<Ca, PkiError> {
    let chain = certinfo::parse_pem_chain(pem.as_bytes()).map_err(PkiError::Runtime)?;
    let der = chain[0].clone();
    let info = certinfo::parse_der(&der).map_err(PkiError::Runtime)?;
    Ok(Ca {
        pem,
        der,
        info,
        key,
    })
}

pub(super) fn rcgen_err(e: rcgen::Error) -> PkiError {
    PkiError::Runtime(format!("certificate generation failed: {e}"))
}

fn describe_ca(info: &CertInfo) -> String {
    format!(
        "CA `{}` ({}, {}), valid until {}",
        info.subject_cn,
        info.key_algorithm,
        info.usages().join(" "),
        certinfo::rfc3339(info.not_after)
    )
}

fn usages_of(p: &LeafProfile) -> String {
    match (p.server_auth, p.client_auth) {
        (true, true) => "serverAuth, clientAuth",
        (true, false) => "serverAuth",
        (false, true) => "clientAuth",
        (false, false) => "none",
    }
    .to_string()
}

/// How a leaf's SANs, usages and subject differ from what platform.yaml asks for (empty when
/// they match). Shared by issuing (which replaces such a leaf on renew) and `certs inspect`.
pub(super) fn profile_mismatches(profile: &LeafProfile, info: &CertInfo) -> Vec<String> {
    let mut reasons = Vec::new();
    let mut want: Vec<String> = profile.dns_names.clone();
    want.extend(profile.ip_addresses.iter().map(|i| i.to_string()));
    let have = info.sans();
    let added: Vec<&String> = want.iter().filter(|s| !have.contains(s)).collect();
    let removed: Vec<&String> = have.iter().filter(|s| !want.contains(s)).collect();
    if !added.is_empty() || !removed.is_empty() {
        let mut parts = Vec::new();
        for a in added {
            parts.push(format!("+{a}"));
        }
        for r in removed {
            parts.push(format!("-{r}"));
        }
        reasons.push(format!("SANs changed ({})", parts.join(" ")));
    }
    if info.server_auth != profile.server_auth
        || info.client_auth != profile.client_auth
        || info.is_ca
    {
        reasons.push(format!(
            "usages are [{}], expected [{}]",
            info.usages().join(", "),
            usages_of(profile)
        ));
    }
    if info.subject_cn != profile.common_name {
        reasons.push(format!(
            "subject CN `{}`, expected `{}`",
            info.subject_cn, profile.common_name
        ));
    }
    reasons
}

fn sans_of(p: &LeafProfile) -> String {
    let mut v: Vec<String> = p.dns_names.clone();
    v.extend(p.ip_addresses.iter().map(|i| i.to_string()));
    v.join(", ")
}

/// The effective user id of this process.
fn current_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// See [`Pki::existing_leaf`].
struct Existing {
    create: bool,
    reasons: Vec<String>,
    reuse: Option<Key>,
}
