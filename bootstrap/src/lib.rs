//! temporal-bootstrap: provisions and keeps converged a self-hosted Temporal platform.
//!
//! Modules by dependency direction (pure modules never import adapters):
//! - pure: [`config`], [`versions`] (and the capacity planner and plan diffing as they land);
//! - adapters: [`postgres`] (databases, role, versioned schema);
//! - drivers: [`reconcile`] (steps in dependency order), [`cli`].

pub mod cli;
pub mod config;
pub mod postgres;
pub mod reconcile;
pub mod versions;
