//! Reading certificates: PEM parsing, the facts we compare against the configuration, and chain
//! verification with the same verifier (rustls/webpki) the TLS peers use.
//!
//! Guarantees: pure functions over bytes; nothing here reads files or touches private keys
//! beyond comparing a key pair's public half with a certificate.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Owned facts about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    pub subject_cn: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub is_ca: bool,
    pub path_len: Option<u32>,
    pub key_cert_sign: bool,
    pub crl_sign: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    #[serde(serialize_with = "ser_time")]
    pub not_before: OffsetDateTime,
    #[serde(serialize_with = "ser_time")]
    pub not_after: OffsetDateTime,
    /// Algorithm of the subject key: `ecdsa-p256`, `ecdsa-p384`, `ed25519`, `rsa` or `unknown`.
    pub key_algorithm: String,
    #[serde(skip)]
    pub public_key: Vec<u8>,
    #[serde(skip)]
    pub subject_key_id: Option<Vec<u8>>,
    #[serde(skip)]
    pub authority_key_id: Option<Vec<u8>>,
    #[serde(skip)]
    pub subject_raw: Vec<u8>,
    #[serde(skip)]
    pub issuer_raw: Vec<u8>,
}

impl CertInfo {
    /// The certificate's usages as a short list, e.g. `serverAuth, clientAuth` or
    /// `CA(pathlen 0) keyCertSign cRLSign`.
    pub fn usages(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.is_ca {
            out.push(match self.path_len {
                Some(n) => format!("CA(pathlen {n})"),
                None => "CA".to_string(),
            });
        }
        if self.key_cert_sign {
            out.push("keyCertSign".into());
        }
        if self.crl_sign {
            out.push("cRLSign".into());
        }
        if self.server_auth {
            out.push("serverAuth".into());
        }
        if self.client_auth {
            out.push("clientAuth".into());
        }
        out
    }

    /// SANs as strings: DNS names, then IP addresses.
    pub fn sans(&self) -> Vec<String> {
        self.dns_names
            .iter()
            .cloned()
            .chain(self.ip_addresses.iter().map(|ip| ip.to_string()))
            .collect()
    }

    pub fn self_signed(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// Whether `issuer` names this certificate's issuer (DN and, when present, key identifier).
    pub fn issued_by(&self, issuer: &CertInfo) -> bool {
        if self.issuer_raw != issuer.subject_raw {
            return false;
        }
        match (&self.authority_key_id, &issuer.subject_key_id) {
            (Some(a), Some(s)) => a == s,
            _ => true,
        }
    }

    /// Whole days from `now` to expiry (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }
}

fn ser_time<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// `2026-11-26T10:00:00Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Every certificate in a PEM text, in order (leaf first for chain files).
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem) {
        out.push(item.map_err(|e| format!("not a valid PEM certificate file: {e}"))?);
    }
    if out.is_empty() {
        return Err("no PEM CERTIFICATE block found".into());
    }
    Ok(out)
}

/// PEM text of one DER certificate.
pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

pub fn parse_der(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    let subject_cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string();
    let mut info = CertInfo {
        subject_cn,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        dns_names: vec![],
        ip_addresses: vec![],
        is_ca: false,
        path_len: None,
        key_cert_sign: false,
        crl_sign: false,
        server_auth: false,
        client_auth: false,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        key_algorithm: key_algorithm_name(&cert),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
        subject_key_id: None,
        authority_key_id: None,
        subject_raw: cert.subject().as_raw().to_vec(),
        issuer_raw: cert.issuer().as_raw().to_vec(),
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => info.dns_names.push(d.to_string()),
                        GeneralName::IPAddress(b) => {
                            if let Ok(a) = <[u8; 4]>::try_from(*b) {
                                info.ip_addresses.push(IpAddr::from(a));
                            } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                                info.ip_addresses.push(IpAddr::from(a));
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => {
                info.is_ca = bc.ca;
                info.path_len = bc.path_len_constraint;
            }
            ParsedExtension::KeyUsage(ku) => {
                info.key_cert_sign = ku.key_cert_sign();
                info.crl_sign = ku.crl_sign();
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                info.server_auth = eku.server_auth;
                info.client_auth = eku.client_auth;
            }
            ParsedExtension::SubjectKeyIdentifier(k) => info.subject_key_id = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                info.authority_key_id = a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => {}
        }
    }
    Ok(info)
}

fn key_algorithm_name(cert: &X509Certificate<'_>) -> String {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
        OID_SIG_ED25519,
    };
    let spki = cert.public_key();
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => "ecdsa-p256".into(),
            Some(c) if c == OID_NIST_EC_P384 => "ecdsa-p384".into(),
            _ => "ecdsa".into(),
        }
    } else if *alg == OID_SIG_ED25519 {
        "ed25519".into()
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        "rsa".into()
    } else {
        "unknown".into()
    }
}

fn unix(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        t.unix_timestamp().max(0) as u64
    ))
}

fn roots(trust: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for r in trust {
        store
            .add(r.clone())
            .map_err(|e| format!("trust anchor not usable: {e}"))?;
    }
    Ok(Arc::new(store))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies `chain` (leaf first, then intermediates) as a TLS server certificate for `name`
/// against `trust`, at time `at`. The error is webpki's reason.
pub fn verify_server(
    chain: &[CertificateDer<'static>],
    trust: &[CertificateDer<'static>],
    name: &str,
    at: OffsetDateTime,
) -> Result<(), String> {
    let (leaf, rest) = chain.split_first().ok_or("empty certificate chain")?;
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(trust)?, provider())
        .build()
        .map_err(|e| e.to_string())?;
    let server_name =
        ServerName::try_from(name.to_string()).map_err(|e| format!("server name {name}: {e}"))?;
    verifier
        .verify_server_cert(leaf, rest, &server_name, &[], unix(at))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Verifies `chain` as a TLS client certificate against `trust` at time `at`.
pub fn verify_client(
    chain: &[CertificateDer<'static>],
    trust: &[CertificateDer<'static>],
    at: OffsetDateTime,
) -> Result<(), String> {
    let (leaf, rest) = chain.split_first().ok_or("empty certificate chain")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(trust)?, provider())
        .build()
        .map_err(|e| e.to_string())?;
    verifier
        .verify_client_cert(leaf, rest, unix(at))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Verifies a leaf for every usage it claims (server for its first SAN, client).
pub fn verify_leaf(
    chain: &[CertificateDer<'static>],
    info: &CertInfo,
    trust: &[CertificateDer<'static>],
    at: OffsetDateTime,
) -> Result<(), String> {
    if info.server_auth
        && let Some(name) = info.sans().first()
    {
        verify_server(chain, trust, name, at)?;
    }
    if info.client_auth {
        verify_client(chain, trust, at)?;
    }
    if !info.server_auth && !info.client_auth {
        return Err("certificate has neither serverAuth nor clientAuth".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_garbage_is_rejected() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["x.example".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        let pem = der_to_pem(cert.der());
        assert_eq!(pem, cert.pem().replace("\r\n", "\n"));
        let chain = parse_pem_chain(pem.as_bytes()).unwrap();
        let info = parse_der(&chain[0]).unwrap();
        assert!(info.is_ca && info.key_cert_sign && info.self_signed());
        assert_eq!(info.path_len, Some(0));
        assert_eq!(info.dns_names, vec!["x.example"]);
        assert_eq!(info.key_algorithm, "ecdsa-p256");
        assert_eq!(info.public_key, key.public_key_raw());
        assert!(parse_pem_chain(b"garbage").is_err());
        assert!(parse_der(b"garbage").is_err());
        // A CA is not a valid leaf.
        assert!(verify_leaf(&chain, &info, &chain, OffsetDateTime::now_utc()).is_err());
    }
}
