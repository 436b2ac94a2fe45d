//! PostgreSQL adapter: databases, the least-privilege application role, and the versioned
//! Temporal schemas, kept compatible with `temporal-sql-tool`.
//!
//! Flow: [`observe`] reads the server (role attributes, databases and owners, `schema_version`
//! of each database) without writing; [`plan`] turns that into [`Change`]s and the list of
//! pending schema versions; [`apply`] takes an advisory lock, plans again under it, creates or
//! fixes the role and databases with the admin credentials, then brings each database to its
//! target schema version as the application role, one transaction per version folder, and
//! verifies the result. Each of the three opens its own connections and closes them before it
//! returns.
//!
//! Modules, in the order a run uses them: [`schema`] (version folders and manifests: the
//! source), `connection` (the resolved [`Spec`], logins, TLS, the connections of one call),
//! `observe`, `plan`, `apply`, `execute` (the one statement executor), `bookkeeping` (the
//! `schema_version` / `schema_update_history` tables), `error` ([`PgError`]); [`sql`] splits and
//! quotes, `scram` computes password verifiers, `step` builds the `persistence` and
//! `visibility` steps on top.
//!
//! Guarantees: a converged server gets no write (plan is empty and apply is not called; apply
//! itself also writes nothing when nothing is pending). A schema is never downgraded: a database
//! newer than the target is reported as drift and left alone (the server accepts a newer
//! schema). Objects the application role cannot alter are refused before any write (exit 2). Each version's statements and its
//! `schema_version`/`schema_update_history` rows commit together, so a crash leaves the database
//! at a clean version; a version someone else left half-applied is completed statement by
//! statement (see `execute`). The application password never appears in a SQL statement (the role
//! password is set as a SCRAM-SHA-256 verifier computed here, so the server's statement log cannot
//! record it), and statement logging of the client library is off. Progress is reported as
//! [`SchemaProgress`] events to whoever asked for them; this module draws nothing.
//!
//! Assumptions: PostgreSQL 12 or later (transactional DDL, `pg_try_advisory_lock`); the admin
//! user is a superuser or has CREATEROLE and CREATEDB (a managed service's master user, e.g.
//! Amazon RDS's; what it lacks is refused before any write, and on PostgreSQL 16+ it gives itself
//! SET on the application role: see `privileges`); the schema folder follows Temporal's layout
//! (see [`schema`]). Schema statements run as the application role, so the tables it creates
//! belong to the role Temporal connects as.
//!
//! Caveats: the advisory lock is held for each step's apply (re-plan, writes, verify); the
//! `persistence` and `visibility` steps take it one after the other, so two runs may interleave
//! between the steps, which is harmless because each step re-plans under the lock. The lock
//! lives in the database used for control (the admin database, or the persistence database when
//! no admin credentials are given): all runs against one server must use the same kind of
//! configuration. `temporal-sql-tool` takes no lock: do not run both at the same time. A changed
//! role password is detected by logging in, so a server that accepts any password (`trust` in
//! pg_hba.conf) hides that drift.

mod apply;
mod bookkeeping;
mod connection;
mod error;
mod execute;
mod observe;
pub mod ownership;
mod plan;
mod preflight;
mod privileges;
pub mod schema;
mod scram;
pub mod sql;
mod step;

use std::sync::Arc;
use std::time::Duration;

pub use apply::{ApplyOutcome, apply, apply_with};
pub use connection::{CONNECT_TIMEOUT, DatabaseSpec, Login, SchemaSpec, Spec, TlsSpec};
pub use error::PgError;
pub use observe::{DatabaseState, Observed, RoleState, SchemaState, observe};
pub use plan::{Plan, RolePlan, RowCount, SchemaPlan, plan};
pub use preflight::{GinForCharacter, gin_for_character, visibility_rows};
pub use privileges::Missing as MissingPrivilege;
pub use schema::{PendingVersion, SchemaError, SchemaKind};
pub use step::{
    LOCK_TIMEOUT_ENV, PersistenceStep, SchemaTargetFn, StepOptions, VisibilityStep, migrate_to,
    migrate_with, recorded_version, spec_for,
};

#[cfg(doc)]
use crate::reconcile::Change;
use crate::versions::SchemaVersion;

/// Attributes the application role must have (least privilege).
pub const ROLE_ATTRIBUTES: &str = "LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION";
/// Start of the comment put on the roles this tool creates (`COMMENT ON ROLE`, in the same
/// transaction as `CREATE ROLE`). Only a role carrying it is ever altered; an operator adopts an
/// existing role by setting the comment.
pub const ROLE_MARKER: &str = "managed by temporal-bootstrap";
/// Default time a run waits for another run's advisory lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// How an apply's schema work advances, for a progress display. One unit of work is one
/// statement, or one version's bookkeeping rows. Sent only when there is schema work; every
/// `Started` is followed by a `Finished`, whether the apply succeeds or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaProgress {
    /// The schema work starts: `total` units.
    Started { total: u64 },
    /// A version starts.
    Version {
        database: String,
        version: SchemaVersion,
        description: String,
    },
    /// Units done since the last event.
    Advanced(u64),
    /// A line worth showing above a bar (a version applied, the closing summary); it also goes
    /// to the log.
    Line(String),
    /// The schema work ended.
    Finished,
}

/// Receives [`SchemaProgress`] events.
pub type ProgressFn = dyn Fn(SchemaProgress) + Send + Sync;

/// A progress receiver shared by the steps of a run (see [`StepOptions::progress`]).
pub type ProgressSink = Arc<ProgressFn>;
