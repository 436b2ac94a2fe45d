//! The PKI adapter: a CA (generated, bring-your-own, optionally with an intermediate), the
//! frontend, internode and client certificates, the trust bundle and the Temporal server TLS
//! settings, all as files under `pki.dir` (layout in docs/pki.md).
//!
//! Entry points: [`Pki::plan`] / [`Pki::apply`] (`certs issue` with [`Policy::CreateMissing`],
//! `certs renew` and the `certificates` step with [`Policy::Converge`]), [`Pki::inspect`],
//! [`Pki::rotate`], and the pure [`render_temporal_tls`].
//!
//! Guarantees: no private key material is ever logged, printed or put in an error; keys are
//! written 0600 through an atomic rename; bad input fails before the first write.

mod certinfo;
mod engine;
mod fsio;
mod inspect;
mod issue;
mod layout;
mod rotate;
mod secrets;
mod tls_config;

pub use certinfo::{CertInfo, parse_der, parse_pem_chain, verify_client, verify_server};
pub use engine::{ChangeKind, Outcome, Pki, PkiChange, Policy};
pub use inspect::{CertReport, CertStatus};
pub use layout::{FileName, LeafKind};
pub use rotate::RotatePhase;
pub use secrets::TLS_TYPE;
pub use tls_config::{REFRESH_INTERVAL, render_temporal_tls};

use crate::reconcile::{Action, Change, Context, ErrorKind, Step, StepError, StepFuture, StepName};

/// Errors of the PKI adapter, already phrased for the operator; never contain key material.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PkiError {
    /// Bad input: configuration, files the operator must fix (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// The world failed: a write, the crypto library (exit 1).
    #[error("{0}")]
    Runtime(String),
}

impl PkiError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) => ErrorKind::Invalid,
            Self::Runtime(_) => ErrorKind::Failed,
        }
    }
}

impl From<PkiError> for StepError {
    fn from(e: PkiError) -> Self {
        StepError::from_error(e.kind(), e)
    }
}

impl PkiChange {
    /// As a reconcile change: create -> create, replace/update/remove -> update, drift -> drift.
    pub fn to_change(&self) -> Change {
        let action = match self.kind {
            ChangeKind::Create => Action::Create,
            ChangeKind::Replace | ChangeKind::Update | ChangeKind::Remove => Action::Update,
            ChangeKind::Drift => Action::Drift,
        };
        let verb = match self.kind {
            ChangeKind::Create => "create",
            ChangeKind::Replace => "replace",
            ChangeKind::Update => "update",
            ChangeKind::Remove => "remove",
            ChangeKind::Drift => "drift",
        };
        Change::new(
            action,
            format!("file {}", self.file),
            format!("{verb}: {}", self.detail),
        )
    }
}

/// The `certificates` step: keeps the files under `pki.dir` converged and, with
/// `pki.kubernetes_secrets`, the Kubernetes Secrets that carry them into Pods.
///
/// Flow: plan = (with Secrets: GET each Secret and, where `pki.dir` lacks the CA or a leaf,
/// take its files from the Secret, see [`secrets`]) read every file, compare with the
/// configuration (missing, expiring within `renew_before`, SANs/usages/key algorithm changed,
/// not issued by the current CA, loose key permissions, stale clients), then compare every
/// Secret with the files; apply = write the restored files, the same pass with writes (keys
/// before certificates, each file atomically), then the Secrets that differ (CA first), then a
/// fresh plan (files and Secrets re-read) must come back without pending writes.
///
/// Guarantees: works offline (files only; Secrets are neither read nor written offline); a
/// second apply writes nothing (no file, no Secret); expiring or mismatched leaves are replaced
/// with a change line naming the reason; the CA is never replaced by this step (rotation is
/// `certs rotate-ca`) and a CA Secret holding another CA fails the step (exit 2) without `--force`.
///
/// Assumptions: one writer per `pki.dir` and per set of Secrets. Caveats: no revocation
/// (CRL/OCSP): removed clients stay valid until they expire; leaves are short-lived (90 days by
/// default) for that reason. Kubernetes failures (unreachable, 401, 403) are runtime errors.
pub struct CertificatesStep;

impl CertificatesStep {
    fn pki(ctx: &Context) -> Result<Pki, StepError> {
        let pki = ctx
            .config
            .pki
            .as_ref()
            .ok_or_else(|| StepError::invalid("no pki section"))?;
        Ok(Pki::new(
            pki,
            &ctx.config.cluster.name.to_string(),
            &ctx.base_dir,
        ))
    }

    /// The Secrets to sync, unless offline or not configured.
    fn sync(ctx: &Context) -> Result<Option<secrets::SecretSync<'_>>, StepError> {
        let Some(ks) = ctx
            .config
            .pki
            .as_ref()
            .and_then(|p| p.kubernetes_secrets.as_ref())
        else {
            return Ok(None);
        };
        if ctx.offline {
            return Ok(None);
        }
        Ok(Some(secrets::SecretSync {
            client: crate::kubernetes::KubeClient::from_env()?,
            cfg: ks,
            force: ctx.force,
        }))
    }

    fn verify_files(pki: &Pki) -> Result<(), StepError> {
        let left = pki.plan(Policy::Converge)?;
        if let Some(c) = left.iter().find(|c| c.kind != ChangeKind::Drift) {
            return Err(StepError::new(
                ErrorKind::Failed,
                format!(
                    "certificates did not converge: {} still pending ({})",
                    c.file, c.detail
                ),
            ));
        }
        Ok(())
    }
}

impl Step for CertificatesStep {
    fn name(&self) -> StepName {
        StepName::Certificates
    }

    fn enabled(&self, ctx: &Context) -> Result<bool, StepError> {
        Ok(ctx.config.pki.is_some())
    }

    fn works_offline(&self) -> bool {
        true
    }

    fn plan<'a>(&'a self, ctx: &'a Context) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move {
            let pki = Self::pki(ctx)?;
            let Some(sync) = Self::sync(ctx)? else {
                let changes = pki.plan(Policy::Converge)?;
                return Ok(changes.iter().map(PkiChange::to_change).collect());
            };
            let targets = secrets::targets(&pki, sync.cfg);
            let observed = sync.observe(&targets).await?;
            let restores = sync.restores(&pki, &targets, &observed);
            let mut changes = sync.restore_changes(&pki, &restores);
            let from = restored_from(&restores);
            let overlay = restores.into_iter().map(|r| (r.rel, r.bytes)).collect();
            let pki = pki.with_overlay(overlay);
            let (file_changes, planned) = pki
                .plan_with_content(Policy::Converge)
                .map_err(|e| with_origin(e, &from))?;
            changes.extend(file_changes.iter().map(PkiChange::to_change));
            changes.extend(sync.diff(&pki, &targets, &observed, &planned)?);
            Ok(changes)
        })
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a Context,
        _pending: &'a [Change],
    ) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move {
            let pki = Self::pki(ctx)?;
            let Some(sync) = Self::sync(ctx)? else {
                let outcome = pki.apply(Policy::Converge)?;
                Self::verify_files(&pki)?;
                return Ok(outcome.changes.iter().map(PkiChange::to_change).collect());
            };
            let targets = secrets::targets(&pki, sync.cfg);
            let mut observed = sync.observe(&targets).await?;
            let restores = sync.restores(&pki, &targets, &observed);
            let mut done = sync.restore_changes(&pki, &restores);
            if !restores.is_empty() {
                // Restored files that do not fit (e.g. a CA key that does not match its
                // certificate) fail here, before they are written.
                let overlay = restores
                    .iter()
                    .map(|r| (r.rel.clone(), r.bytes.clone()))
                    .collect();
                Self::pki(ctx)?
                    .with_overlay(overlay)
                    .plan(Policy::Converge)
                    .map_err(|e| with_origin(e, &restored_from(&restores)))?;
            }
            sync.write_restores(&pki, &restores)?;
            // Refusals (a CA Secret holding another CA) fail here, before any other write.
            sync.diff(&pki, &targets, &observed, &Default::default())?;
            let outcome = pki.apply(Policy::Converge)?;
            Self::verify_files(&pki)?;
            done.extend(outcome.changes.iter().map(PkiChange::to_change));
            done.extend(sync.publish(&pki, &targets, &mut observed).await?);
            // Verify against a fresh read: every Secret now matches its files (or is drift).
            let fresh = sync.observe(&targets).await?;
            let left = sync.diff(&pki, &targets, &fresh, &Default::default())?;
            if let Some(c) = left.iter().find(|c| c.action != Action::Drift) {
                return Err(StepError::new(
                    ErrorKind::Failed,
                    format!(
                        "certificate Secrets did not converge: {} still pending ({})",
                        c.resource, c.detail
                    ),
                ));
            }
            // Drift stays in the report: it needs the operator.
            done.extend(left);
            Ok(done)
        })
    }
}

/// The Secrets files were restored from, for messages.
fn restored_from(restores: &[secrets::Restore]) -> String {
    let mut from: Vec<&str> = restores.iter().map(|r| r.from.as_str()).collect();
    from.dedup();
    from.join(", ")
}

/// Names the Secrets when a plan over restored files fails.
fn with_origin(e: PkiError, from: &str) -> PkiError {
    if from.is_empty() {
        return e;
    }
    let add = |m: String| {
        format!(
            "{m} (files restored from {from}; if the error is about them, fix or delete that Secret)"
        )
    };
    match e {
        PkiError::Invalid(m) => PkiError::Invalid(add(m)),
        PkiError::Runtime(m) => PkiError::Runtime(add(m)),
    }
}

/// Hooks for tests: issue certificates that configuration cannot ask for (e.g. already expired).
#[doc(hidden)]
pub mod testing {
    use time::OffsetDateTime;

    use super::engine::Pki;
    use super::issue::{self, Key};
    use super::layout::{self, LeafKind};
    use super::{FileName, PkiError};

    /// Issues `kind` under the current CA of `pki.dir` with an arbitrary validity window and
    /// returns (certificate chain PEM, private key PEM). Writes nothing.
    pub fn issue_leaf_with_validity(
        pki: &Pki,
        kind: &LeafKind,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(String, String), PkiError> {
        let read = |f: FileName| -> Result<Vec<u8>, PkiError> {
            pki.read(f.as_str())?
                .ok_or_else(|| PkiError::Invalid(format!("{} missing", f.as_str())))
        };
        let root_key = pki.parse_key(FileName::CaKey.as_str(), &read(FileName::CaKey)?)?;
        let root = pki.parse_ca(
            FileName::CaCert.as_str(),
            &read(FileName::CaCert)?,
            root_key,
        )?;
        let inter = if pki.config().ca.intermediate {
            let k = pki.parse_key(
                FileName::IntermediateKey.as_str(),
                &read(FileName::IntermediateKey)?,
            )?;
            Some(pki.parse_ca(
                FileName::IntermediateCert.as_str(),
                &read(FileName::IntermediateCert)?,
                k,
            )?)
        } else {
            None
        };
        let issuing = inter.as_ref().unwrap_or(&root);
        let profile = layout::leaf_profile(pki.config(), kind, "test");
        let key = Key::generate(pki.config().ca.key_algorithm).map_err(super::engine::rcgen_err)?;
        let issuer = issue::issuer(&issuing.pem, &issuing.key).map_err(super::engine::rcgen_err)?;
        let mut pem = issue::leaf(&profile, &key, &issuer, not_before, not_after)
            .map_err(super::engine::rcgen_err)?;
        if let Some(i) = &inter {
            pem.push_str(&i.pem);
        }
        Ok((pem, key.to_pem()))
    }
}
