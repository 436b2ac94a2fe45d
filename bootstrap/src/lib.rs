//! temporal-bootstrap: provisions and keeps converged a self-hosted Temporal platform.
//!
//! Modules by dependency direction (pure modules never import adapters):
//! - pure: [`config`], [`capacity`], [`versions`] (and plan diffing as it lands);
//! - drivers: [`reconcile`] (steps in dependency order), [`cli`].

pub mod capacity;
pub mod cli;
pub mod config;
pub mod reconcile;
pub mod versions;
