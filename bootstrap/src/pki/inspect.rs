//! `certs inspect`: every certificate under `pki.dir` with its expiry and status.

use rustls_pki_types::CertificateDer;
use serde::Serialize;

use super::PkiError;
use super::certinfo::{self, CertInfo};
use super::engine::Pki;
use super::layout::{self, FileName, LeafKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertStatus {
    Ok,
    RenewSoon,
    Expired,
    NotYetValid,
    InvalidChain,
    /// Valid, but its SANs, usages or subject no longer match platform.yaml.
    Mismatch,
}

impl CertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::RenewSoon => "renew soon",
            Self::Expired => "expired",
            Self::NotYetValid => "not yet valid",
            Self::InvalidChain => "invalid chain",
            Self::Mismatch => "differs from config",
        }
    }

    /// Whether the certificate cannot be used as platform.yaml intends (`certs inspect` exits 1).
    /// `renew soon` is not: renewing is routine.
    pub fn is_problem(self) -> bool {
        !matches!(self, Self::Ok | Self::RenewSoon)
    }
}

/// One certificate file.
#[derive(Debug, Clone, Serialize)]
pub struct CertReport {
    pub file: String,
    /// root-ca, next-root-ca, previous-root-ca, intermediate-ca, next-intermediate-ca, frontend,
    /// internode, client.
    pub role: String,
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<String>,
    pub usages: Vec<String>,
    pub key_algorithm: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub days_left: i64,
    pub status: CertStatus,
    /// Why the status is not ok; empty when ok.
    pub detail: String,
}

impl Pki {
    /// Reports every certificate file; reads only.
    pub fn inspect(&self) -> Result<Vec<CertReport>, PkiError> {
        if !self.check_dir()? {
            return Ok(vec![]);
        }
        let trust = self.trust_anchors()?;
        let mut files: Vec<(String, &str)> = vec![
            (FileName::CaCert.as_str().into(), "root-ca"),
            (FileName::CaNextCert.as_str().into(), "next-root-ca"),
            (FileName::CaPreviousCert.as_str().into(), "previous-root-ca"),
            (
                FileName::IntermediateCert.as_str().into(),
                "intermediate-ca",
            ),
            (
                FileName::IntermediateNextCert.as_str().into(),
                "next-intermediate-ca",
            ),
            (FileName::FrontendCert.as_str().into(), "frontend"),
            (FileName::InternodeCert.as_str().into(), "internode"),
        ];
        if let Ok(rd) = std::fs::read_dir(self.layout.clients_dir()) {
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".pem") && !n.ends_with("-key.pem") && !n.starts_with('.'))
                .collect();
            names.sort();
            files.extend(
                names
                    .into_iter()
                    .map(|n| (format!("clients/{n}"), "client")),
            );
        }
        let mut out = Vec::new();
        for (rel, role) in files {
            let Some(bytes) = self.read(&rel)? else {
                continue;
            };
            out.push(self.report(&rel, role, &bytes, &trust));
        }
        Ok(out)
    }

    fn trust_anchors(&self) -> Result<Vec<CertificateDer<'static>>, PkiError> {
        for f in [FileName::CaBundle, FileName::CaCert] {
            if let Some(b) = self.read(f.as_str())?
                && let Ok(chain) = certinfo::parse_pem_chain(&b)
            {
                return Ok(chain);
            }
        }
        Ok(vec![])
    }

    fn report(
        &self,
        rel: &str,
        role: &str,
        bytes: &[u8],
        trust: &[CertificateDer<'static>],
    ) -> CertReport {
        let parsed = certinfo::parse_pem_chain(bytes)
            .and_then(|chain| certinfo::parse_der(&chain[0]).map(|i| (chain, i)));
        let (chain, info) = match parsed {
            Ok(x) => x,
            Err(e) => {
                return CertReport {
                    file: self.layout.show(rel),
                    role: role.into(),
                    subject: String::new(),
                    issuer: String::new(),
                    sans: vec![],
                    usages: vec![],
                    key_algorithm: String::new(),
                    serial: String::new(),
                    not_before: String::new(),
                    not_after: String::new(),
                    days_left: 0,
                    status: CertStatus::InvalidChain,
                    detail: e,
                };
            }
        };
        let (status, detail) = self.status(rel, role, &chain, &info, trust);
        CertReport {
            file: self.layout.show(rel),
            role: role.into(),
            subject: info.subject_cn.clone(),
            issuer: info.issuer.clone(),
            sans: info.sans(),
            usages: info.usages(),
            key_algorithm: info.key_algorithm.clone(),
            serial: info.serial.clone(),
            not_before: certinfo::rfc3339(info.not_before),
            not_after: certinfo::rfc3339(info.not_after),
            days_left: info.days_left(self.now),
            status,
            detail,
        }
    }

    fn status(
        &self,
        rel: &str,
        role: &str,
        chain: &[CertificateDer<'static>],
        info: &CertInfo,
        trust: &[CertificateDer<'static>],
    ) -> (CertStatus, String) {
        if self.now < info.not_before {
            return (
                CertStatus::NotYetValid,
                format!("valid from {}", certinfo::rfc3339(info.not_before)),
            );
        }
        if self.now >= info.not_after {
            return (
                CertStatus::Expired,
                format!("expired on {}", certinfo::rfc3339(info.not_after)),
            );
        }
        let chain_check: Result<(), String> = match role {
            "root-ca" | "next-root-ca" | "previous-root-ca" => {
                if info.is_ca && info.key_cert_sign && info.self_signed() {
                    Ok(())
                } else {
                    Err("not a self-signed CA certificate".into())
                }
            }
            "intermediate-ca" | "next-intermediate-ca" => {
                let issuer_file = if role == "intermediate-ca" {
                    FileName::CaCert
                } else {
                    FileName::CaNextCert
                };
                let root = self
                    .read(issuer_file.as_str())
                    .ok()
                    .flatten()
                    .and_then(|b| certinfo::parse_pem_chain(&b).ok())
                    .and_then(|c| certinfo::parse_der(&c[0]).ok());
                match root {
                    Some(r) if info.issued_by(&r) && info.is_ca => Ok(()),
                    Some(_) => Err(format!("not issued by {}", issuer_file.as_str())),
                    None => Err(format!("{} is missing", issuer_file.as_str())),
                }
            }
            _ => {
                if trust.is_empty() {
                    Err("no ca-bundle.pem or ca.pem to verify against".into())
                } else {
                    certinfo::verify_leaf(chain, info, trust, self.now)
                }
            }
        };
        if let Err(e) = chain_check {
            return (CertStatus::InvalidChain, e);
        }
        let kind = match role {
            "frontend" => Some(LeafKind::Frontend),
            "internode" => Some(LeafKind::Internode),
            // A client no longer in platform.yaml is reported by issue/renew, not here.
            "client" => rel
                .strip_prefix("clients/")
                .and_then(|f| f.strip_suffix(".pem"))
                .filter(|name| self.cfg.clients.iter().any(|c| c.name.as_str() == *name))
                .map(|name| LeafKind::Client(name.to_string())),
            _ => None,
        };
        if let Some(kind) = kind {
            let profile = layout::leaf_profile(&self.cfg, &kind, &self.cluster);
            let reasons = super::engine::profile_mismatches(&profile, info);
            if !reasons.is_empty() {
                return (
                    CertStatus::Mismatch,
                    format!(
                        "{}: run `temporal-bootstrap certs renew`",
                        reasons.join("; ")
                    ),
                );
            }
        }
        if (info.not_after - self.now) < self.cfg.renew_before.as_duration() {
            return (
                CertStatus::RenewSoon,
                format!(
                    "expires within renew_before ({}): run `temporal-bootstrap certs renew`",
                    self.cfg.renew_before
                ),
            );
        }
        (CertStatus::Ok, String::new())
    }
}
