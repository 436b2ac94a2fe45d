//! temporal-bootstrap: provisions and keeps converged a self-hosted Temporal platform.
//!
//! Modules by dependency direction (pure modules never import adapters):
//! - pure: [`config`], [`capacity`], [`versions`], [`observability::rules`];
//! - adapters (one per real system): [`pki`] (files), [`postgres`] (databases, role, versioned
//!   schema), [`search`] (Elasticsearch/OpenSearch REST),
//!   [`temporal`] (gRPC: cluster facts, namespaces, search attributes), [`observability`]
//!   (Prometheus, Grafana);
//! - drivers: [`reconcile`] (steps in dependency order), [`daemon`], [`render`], [`upgrade`], [`cli`].

pub mod capacity;
pub mod cli;
pub mod codec;
pub mod config;
pub mod daemon;
pub mod error;
pub mod fsutil;
pub mod kubernetes;
pub mod observability;
pub mod pki;
pub mod postgres;
pub mod reconcile;
pub mod render;
pub mod search;
pub mod serve;
pub mod steps;
pub mod temporal;
pub mod upgrade;
pub mod versions;

/// Installs the process-wide rustls crypto provider (ring) once. `main` calls it first; library
/// entry points that build TLS clients call it too, so tests and embedders need not. Two providers
/// in one process make rustls panic when a client picks the default, so there is exactly one.
pub fn ensure_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first (by an embedder); keep theirs.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
