//! The file layout under `pki.dir` (documented in docs/pki.md) and the leaf profiles derived from
//! the configuration.

use std::path::PathBuf;

use crate::config::{DEFAULT_LEAF_VALIDITY, PkiConfig};

use super::issue::LeafProfile;

/// Fixed file names under `pki.dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileName {
    CaCert,
    CaKey,
    CaBundle,
    IntermediateCert,
    IntermediateKey,
    CaNextCert,
    CaNextKey,
    IntermediateNextCert,
    IntermediateNextKey,
    CaPreviousCert,
    FrontendCert,
    FrontendKey,
    InternodeCert,
    InternodeKey,
    TemporalTls,
}

impl FileName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CaCert => "ca.pem",
            Self::CaKey => "ca-key.pem",
            Self::CaBundle => "ca-bundle.pem",
            Self::IntermediateCert => "intermediate.pem",
            Self::IntermediateKey => "intermediate-key.pem",
            Self::CaNextCert => "ca-next.pem",
            Self::CaNextKey => "ca-next-key.pem",
            Self::IntermediateNextCert => "intermediate-next.pem",
            Self::IntermediateNextKey => "intermediate-next-key.pem",
            Self::CaPreviousCert => "ca-previous.pem",
            Self::FrontendCert => "frontend.pem",
            Self::FrontendKey => "frontend-key.pem",
            Self::InternodeCert => "internode.pem",
            Self::InternodeKey => "internode-key.pem",
            Self::TemporalTls => "temporal-tls.yaml",
        }
    }
}

/// Which leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafKind {
    Frontend,
    Internode,
    Client(String),
}

impl LeafKind {
    /// Path relative to `pki.dir`.
    pub fn cert_rel(&self) -> String {
        match self {
            Self::Frontend => FileName::FrontendCert.as_str().into(),
            Self::Internode => FileName::InternodeCert.as_str().into(),
            Self::Client(n) => format!("clients/{n}.pem"),
        }
    }
    pub fn key_rel(&self) -> String {
        match self {
            Self::Frontend => FileName::FrontendKey.as_str().into(),
            Self::Internode => FileName::InternodeKey.as_str().into(),
            Self::Client(n) => format!("clients/{n}-key.pem"),
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Self::Frontend => "frontend server certificate".into(),
            Self::Internode => "internode certificate".into(),
            Self::Client(n) => format!("client certificate `{n}`"),
        }
    }
}

/// Absolute location of the files (for I/O) and the configured spelling (for messages, so no
/// machine path leaks into output that users paste into tickets).
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub shown: PathBuf,
}

impl Layout {
    pub fn new(dir: PathBuf, shown: PathBuf) -> Self {
        Self { dir, shown }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
    pub fn file(&self, f: FileName) -> PathBuf {
        self.dir.join(f.as_str())
    }
    pub fn show(&self, rel: &str) -> String {
        self.shown.join(rel).display().to_string()
    }
    pub fn clients_dir(&self) -> PathBuf {
        self.dir.join("clients")
    }
}

/// The first frontend SAN: the name clients put in `serverName`.
pub fn frontend_server_name(pki: &PkiConfig) -> String {
    pki.frontend
        .dns_names
        .first()
        .map(|d| d.to_string())
        .or_else(|| pki.frontend.ip_addresses.first().map(|i| i.to_string()))
        .unwrap_or_else(|| "localhost".into())
}

/// The first internode SAN (the frontend's names when internode lists none).
pub fn internode_server_name(pki: &PkiConfig) -> String {
    let p = leaf_profile(pki, &LeafKind::Internode, "");
    p.dns_names
        .first()
        .cloned()
        .or_else(|| p.ip_addresses.first().map(|i| i.to_string()))
        .unwrap_or_else(|| "localhost".into())
}

/// What the leaf must contain according to the configuration.
pub fn leaf_profile(pki: &PkiConfig, kind: &LeafKind, cluster: &str) -> LeafProfile {
    match kind {
        LeafKind::Frontend => {
            let dns: Vec<String> = pki
                .frontend
                .dns_names
                .iter()
                .map(|d| d.to_string())
                .collect();
            LeafProfile {
                common_name: dns
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("{cluster} frontend")),
                dns_names: dns,
                ip_addresses: pki.frontend.ip_addresses.clone(),
                server_auth: true,
                client_auth: false,
            }
        }
        LeafKind::Internode => {
            // Internode without names of its own falls back to the frontend's names: the server
            // certificate must carry at least one name its peers can check.
            let own = !pki.internode.dns_names.is_empty() || !pki.internode.ip_addresses.is_empty();
            let src = if own { &pki.internode } else { &pki.frontend };
            let dns: Vec<String> = src.dns_names.iter().map(|d| d.to_string()).collect();
            LeafProfile {
                common_name: dns
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("{cluster} internode")),
                dns_names: dns,
                ip_addresses: src.ip_addresses.clone(),
                server_auth: true,
                client_auth: true,
            }
        }
        LeafKind::Client(name) => LeafProfile {
            common_name: name.clone(),
            dns_names: vec![name.clone()],
            ip_addresses: vec![],
            server_auth: false,
            client_auth: true,
        },
    }
}

/// Configured validity of a leaf.
pub fn leaf_validity(pki: &PkiConfig, kind: &LeafKind) -> std::time::Duration {
    let v = match kind {
        LeafKind::Frontend => pki.frontend.validity,
        LeafKind::Internode => pki.internode.validity,
        LeafKind::Client(n) => pki
            .clients
            .iter()
            .find(|c| c.name.as_str() == n)
            .and_then(|c| c.validity),
    };
    v.unwrap_or(DEFAULT_LEAF_VALIDITY).as_duration()
}

/// Every leaf the configuration asks for, in a stable order.
pub fn leaves(pki: &PkiConfig) -> Vec<LeafKind> {
    let mut out = vec![LeafKind::Frontend, LeafKind::Internode];
    out.extend(
        pki.clients
            .iter()
            .map(|c| LeafKind::Client(c.name.as_str().to_string())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki(yaml: &str) -> PkiConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn profiles_follow_the_configuration() {
        let p = pki(
            "dir: pki\nfrontend: { dns_names: [a.example, b.example], ip_addresses: [10.0.0.1] }\nclients: [ { name: w1, validity: 10d } ]\n",
        );
        let fe = leaf_profile(&p, &LeafKind::Frontend, "c");
        assert_eq!(fe.common_name, "a.example");
        assert!(fe.server_auth && !fe.client_auth);
        assert_eq!(fe.ip_addresses.len(), 1);
        // Internode without names of its own uses the frontend's.
        let inode = leaf_profile(&p, &LeafKind::Internode, "c");
        assert_eq!(inode.dns_names, vec!["a.example", "b.example"]);
        assert!(inode.server_auth && inode.client_auth);
        assert_eq!(internode_server_name(&p), "a.example");
        let cl = leaf_profile(&p, &LeafKind::Client("w1".into()), "c");
        assert_eq!(
            (cl.common_name.as_str(), cl.dns_names.as_slice()),
            ("w1", &["w1".to_string()][..])
        );
        assert!(!cl.server_auth && cl.client_auth);
        assert_eq!(
            leaf_validity(&p, &LeafKind::Client("w1".into())).as_secs(),
            10 * 86400
        );
        assert_eq!(leaf_validity(&p, &LeafKind::Frontend).as_secs(), 90 * 86400);
        assert_eq!(
            LeafKind::Client("w1".into()).key_rel(),
            "clients/w1-key.pem"
        );
        assert_eq!(leaves(&p).len(), 3);
    }
}
