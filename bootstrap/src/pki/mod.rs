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
mod tls_config;

pub use certinfo::{CertInfo, parse_der, parse_pem_chain, verify_client, verify_server};
pub use engine::{ChangeKind, Outcome, Pki, PkiChange, Policy};
pub use inspect::{CertReport, CertStatus};
pub use layout::{FileName, LeafKind};
pub use rotate::RotatePhase;
pub use tls_config::{REFRESH_INTERVAL, render_temporal_tls};

use crate::reconcile::{Action, Change, Context, Step, StepError, StepFuture, StepName};

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

impl From<PkiError> for StepError {
    fn from(e: PkiError) -> Self {
        match e {
            PkiError::Invalid(m) => StepError::invalid(m),
            PkiError::Runtime(m) => StepError::runtime(m),
        }
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

/// The `certificates` step: keeps the files under `pki.dir` converged.
///
/// Flow: plan = read every file, compare with the configuration (missing, expiring within
/// `renew_before`, SANs/usages/key algorithm changed, not issued by the current CA, loose key
/// permissions, stale clients); apply = the same pass with writes (keys before certificates,
/// each file atomically), then a fresh plan must come back without pending writes.
///
/// Guarantees: works offline (files only); a second apply writes nothing; expiring or
/// mismatched leaves are replaced with a change line naming the reason; the CA is never replaced
/// by this step (rotation is `certs rotate-ca`).
///
/// Assumptions: one writer per `pki.dir`. Caveats: no revocation (CRL/OCSP): removed clients
/// stay valid until they expire; leaves are short-lived (90 days by default) for that reason.
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
}

impl Step for CertificatesStep {
    fn name(&self) -> StepName {
        StepName::Certificates
    }

    fn enabled(&self, ctx: &Context) -> Result<bool, String> {
        Ok(ctx.config.pki.is_some())
    }

    fn works_offline(&self) -> bool {
        true
    }

    fn plan<'a>(&'a self, ctx: &'a Context) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move {
            let pki = Self::pki(ctx)?;
            let changes = pki.plan(Policy::Converge)?;
            Ok(changes.iter().map(PkiChange::to_change).collect())
        })
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a Context,
        _pending: &'a [Change],
    ) -> StepFuture<'a, Vec<Change>> {
        Box::pin(async move {
            let pki = Self::pki(ctx)?;
            let outcome = pki.apply(Policy::Converge)?;
            // Verify: nothing but drift may remain pending.
            let left = pki.plan(Policy::Converge)?;
            if let Some(c) = left.iter().find(|c| c.kind != ChangeKind::Drift) {
                return Err(StepError::runtime(format!(
                    "certificates did not converge: {} still pending ({})",
                    c.file, c.detail
                )));
            }
            Ok(outcome.changes.iter().map(PkiChange::to_change).collect())
        })
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
