//! temporal-bootstrap: provisions and keeps converged a self-hosted Temporal platform.
//!
//! Modules by dependency direction (pure modules never import adapters):
//! - pure: [`config`], [`versions`] (and the capacity planner and plan diffing as they land);
//! - drivers: [`reconcile`] (steps in dependency order), [`cli`].

pub mod cli;
pub mod config;
pub mod daemon;
pub mod reconcile;
pub mod upgrade;
pub mod versions;
