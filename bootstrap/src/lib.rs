//! temporal-bootstrap: provisions and keeps converged a self-hosted Temporal platform.
//!
//! Layers; imports point down only (`tests/layers.rs` fails otherwise):
//! - leaf: the pure modules [`config`], [`capacity`], [`versions`], [`observability::rules`],
//!   [`error`] (failure kinds) and [`reconcile`] (the step shape and its runner), plus the small
//!   utilities [`fsutil`] and [`serve`];
//! - adapters, one per real system: [`pki`] (files, and Secrets through [`kubernetes`]),
//!   [`postgres`] (role, databases, versioned schema), [`search`] (Elasticsearch/OpenSearch),
//!   [`temporal`] (gRPC: cluster facts, namespaces, search attributes), [`observability`]
//!   (Prometheus rules, Grafana dashboards), [`kubernetes`] (Secrets), [`codec`] (the payload
//!   codec server);
//! - drivers: [`steps`] (which adapter implements which step), [`daemon`], [`render`],
//!   [`upgrade`];
//! - edge: [`cli`] (flags, output, exit codes) and `main`.
//!
//! docs/architecture.md describes the same on one page.

pub mod audit;
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
