//! Generating keys and certificates with rcgen. Pure (no files): callers decide what to write.
//!
//! Profiles:
//! - root CA: basicConstraints CA with pathlen 0 (1 when an intermediate is used), keyUsage
//!   keyCertSign + cRLSign (critical), subject key identifier;
//! - intermediate CA: pathlen 0, same key usages, authority key identifier of the root;
//! - leaves: CA:FALSE, keyUsage digitalSignature (no keyEncipherment: every key we generate is
//!   ECDSA or Ed25519), extendedKeyUsage serverAuth and/or clientAuth, SANs from the
//!   configuration, authority key identifier.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::config::KeyAlgorithm;

/// A freshly generated or loaded key. `Debug` never shows key material (rcgen elides it).
pub struct Key(pub KeyPair);

impl Key {
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, rcgen::Error> {
        let a = match alg {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        };
        KeyPair::generate_for(a).map(Key)
    }

    /// Parses a PKCS#8 PEM private key. The error never contains key bytes.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        KeyPair::from_pem(pem)
            .map(Key)
            .map_err(|_| "not a PKCS#8 PEM private key (BEGIN PRIVATE KEY) of a supported algorithm (ECDSA P-256/P-384, Ed25519, RSA)".to_string())
    }

    /// PKCS#8 PEM. The only place key material leaves this type: straight to a 0600 file.
    pub fn to_pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// The raw public key, as found in a certificate's subjectPublicKey bit string.
    pub fn public_key_raw(&self) -> &[u8] {
        self.0.public_key_raw()
    }

    pub fn algorithm_name(&self) -> &'static str {
        let a = self.0.algorithm();
        if a == &rcgen::PKCS_ECDSA_P256_SHA256 {
            "ecdsa-p256"
        } else if a == &rcgen::PKCS_ECDSA_P384_SHA384 {
            "ecdsa-p384"
        } else if a == &rcgen::PKCS_ED25519 {
            "ed25519"
        } else {
            "rsa"
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({}, ***)", self.algorithm_name())
    }
}

pub fn algorithm_name(alg: KeyAlgorithm) -> &'static str {
    match alg {
        KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
        KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
        KeyAlgorithm::Ed25519 => "ed25519",
    }
}

/// What a leaf certificate must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafProfile {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub server_auth: bool,
    pub client_auth: bool,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "temporal-bootstrap");
    d.push(DnType::CommonName, cn);
    d
}

/// Backdate `not_before` a little so peers with a slightly slow clock accept a new certificate.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

fn ca_params(
    cn: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    path_len: u8,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.not_before = not_before;
    p.not_after = not_after;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// A self-signed root CA certificate (PEM) for `key`.
pub fn root_ca(
    cn: &str,
    key: &Key,
    now: OffsetDateTime,
    validity: std::time::Duration,
    path_len: u8,
) -> Result<String, rcgen::Error> {
    let p = ca_params(cn, now - CLOCK_SKEW, now + validity, path_len);
    Ok(p.self_signed(&key.0)?.pem())
}

/// An intermediate CA certificate signed by `issuer`.
pub fn intermediate_ca(
    cn: &str,
    key: &Key,
    issuer: &Issuer<'_, &KeyPair>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<String, rcgen::Error> {
    let mut p = ca_params(cn, not_before, not_after, 0);
    p.use_authority_key_identifier_extension = true;
    Ok(p.signed_by(&key.0, issuer)?.pem())
}

/// A leaf certificate signed by `issuer`.
pub fn leaf(
    profile: &LeafProfile,
    key: &Key,
    issuer: &Issuer<'_, &KeyPair>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<String, rcgen::Error> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(&profile.common_name);
    p.not_before = not_before;
    p.not_after = not_after;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if profile.server_auth {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if profile.client_auth {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    for d in &profile.dns_names {
        p.subject_alt_names
            .push(SanType::DnsName(d.clone().try_into()?));
    }
    for ip in &profile.ip_addresses {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    p.use_authority_key_identifier_extension = true;
    Ok(p.signed_by(&key.0, issuer)?.pem())
}

/// An issuer from a CA certificate PEM and its key.
pub fn issuer<'k>(
    ca_pem: &str,
    key: &'k Key,
) -> Result<Issuer<'static, &'k KeyPair>, rcgen::Error> {
    Issuer::from_ca_cert_pem(ca_pem, &key.0)
}

pub fn leaf_not_before(now: OffsetDateTime) -> OffsetDateTime {
    now - CLOCK_SKEW
}
