//! What can go wrong in the PostgreSQL adapter, and what kind of failure each error is.
//!
//! Flow: every module of the adapter returns [`PgError`]; [`PgError::kind`] maps it to the
//! crate's [`ErrorKind`], which alone decides the exit code (2 for the input, 1 for the world)
//! and the daemon's error label.
//!
//! Guarantees: an error that came from the database keeps the [`sqlx::Error`] as its source, so
//! [`PgError::sqlstate`] can tell `42P07` from `55P03`; the rendered text of such an error is the
//! server's message with its SQLSTATE (`... (SQLSTATE 42P07)`), as before the source was kept.
//!
//! Assumptions: the server reports SQLSTATEs (every supported PostgreSQL does).
//!
//! Caveats: the kind of a query or statement failure is refined by its SQLSTATE only for the
//! codes listed in [`PgError::kind`]; any other code is `failed`.

use std::time::Duration;

use sqlx::postgres::PgDatabaseError;

use super::ROLE_ATTRIBUTES;
use super::schema::SchemaError;
use crate::reconcile::{ErrorClass, ErrorKind, StepError};
use crate::versions::SchemaVersion;

/// Everything that can go wrong; each variant says whether it is the input's fault.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{0}")]
    Secret(String),
    #[error("{0}")]
    Schema(#[from] SchemaError),
    #[error("{what}: {path} does not exist")]
    MissingFile { what: String, path: String },
    #[error(
        "PostgreSQL at {host}:{port} rejected user `{user}`: {} (check the user and its password reference)",
        db_message(.source)
    )]
    Auth {
        host: String,
        port: u16,
        user: String,
        #[source]
        source: Box<sqlx::Error>,
    },
    #[error("cannot reach PostgreSQL at {host}:{port}: {reason}")]
    Unreachable {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("database `{database}` does not exist on {host}:{port} (connecting as `{user}`)")]
    NoDatabase {
        host: String,
        port: u16,
        user: String,
        database: String,
    },
    #[error("{0}")]
    NeedsAdmin(String),
    #[error(
        "role `{role}` {reason}; temporal-bootstrap never alters such a role (it may be a DBA's or another application's). It would have run: {would}. Set persistence.postgres.user to a dedicated role that does not exist yet (it is created with {ROLE_ATTRIBUTES}){adopt}"
    )]
    ProtectedRole {
        role: String,
        reason: String,
        would: String,
        adopt: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// The admin login lacks what the role and database work needs (see `privileges`).
    #[error(
        "the admin role `{admin}` (PostgreSQL {}, not a superuser) lacks {}. Nothing was written. Run as a superuser (on Amazon RDS the master user has CREATEROLE and CREATEDB; a managed service's admin role may also run the GRANT on a role it created): {}; then run this command again",
        .server_version_num / 10_000,
        .missing.iter().map(|m| m.what.as_str()).collect::<Vec<_>>().join("; "),
        .missing.iter().map(|m| m.fix.as_str()).collect::<Vec<_>>().join("; ")
    )]
    AdminPrivileges {
        admin: String,
        server_version_num: i32,
        missing: Vec<super::privileges::Missing>,
    },
    /// Objects the application role may not alter (see `ownership`). Boxed: it is large.
    #[error("{0}")]
    ForeignOwner(Box<super::ownership::ForeignOwnership>),
    #[error(
        "database `{database}` has schema_version `{value}`, which is not a MAJOR.MINOR version"
    )]
    BadVersionRow { database: String, value: String },
    #[error(
        "another run holds the schema lock (advisory lock {key} in database `{database}`) for more than {waited:?}; it may still be migrating. Wait for it to finish, or check pg_stat_activity for the session holding it"
    )]
    LockTimeout {
        key: i64,
        database: String,
        waited: Duration,
    },
    #[error(
        "{database} v{version}: {file} line {line}: {}; the version was rolled back, the database stays at {previous}",
        db_message(.source)
    )]
    Statement {
        database: String,
        version: SchemaVersion,
        file: String,
        line: usize,
        #[source]
        source: Box<sqlx::Error>,
        previous: SchemaVersion,
    },
    #[error(
        "{database} v{version}: {file} line {line}: {}; this version runs outside a transaction (CONCURRENTLY), so the statements before this one stay committed; the database is still recorded at {previous}, and a re-run applies the version again (its statements must be idempotent, as Temporal's are)",
        db_message(.source)
    )]
    StatementOutsideTransaction {
        database: String,
        version: SchemaVersion,
        file: String,
        line: usize,
        #[source]
        source: Box<sqlx::Error>,
        previous: SchemaVersion,
    },
    #[error("{context}: {}", db_message(.source))]
    Query {
        context: String,
        #[source]
        source: Box<sqlx::Error>,
    },
    #[error("verification after apply failed: {0}")]
    Verify(String),
}

impl PgError {
    /// The one source of this error's exit code and label. A secret that cannot be resolved and
    /// a password the server refuses are the world's (exit 1): the configuration is valid, the
    /// environment does not match it. A failure the database explains with a SQLSTATE gets the
    /// kind that code names (see [`kind_of_sqlstate`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Schema(_)
            | Self::MissingFile { .. }
            | Self::NoDatabase { .. }
            | Self::NeedsAdmin(_)
            | Self::Invalid(_)
            | Self::BadVersionRow { .. } => ErrorKind::Invalid,
            Self::ProtectedRole { .. } | Self::ForeignOwner(_) | Self::AdminPrivileges { .. } => {
                ErrorKind::Refused
            }
            Self::Auth { .. } => ErrorKind::Denied,
            Self::Unreachable { .. } => ErrorKind::Unreachable,
            Self::LockTimeout { .. } => ErrorKind::Conflict,
            Self::Statement { .. }
            | Self::StatementOutsideTransaction { .. }
            | Self::Query { .. } => self
                .sqlstate()
                .and_then(kind_of_sqlstate)
                .unwrap_or(ErrorKind::Failed),
            Self::Secret(_) | Self::Verify(_) => ErrorKind::Failed,
        }
    }

    /// Whether the input is at fault (exit 2) rather than the world (exit 1).
    pub fn is_invalid(&self) -> bool {
        self.kind().class() == ErrorClass::Invalid
    }

    /// The SQLSTATE the server answered with (`42P07`, `55P03`, ...), when the error came from
    /// the database.
    pub fn sqlstate(&self) -> Option<&str> {
        let source = match self {
            Self::Auth { source, .. }
            | Self::Statement { source, .. }
            | Self::StatementOutsideTransaction { source, .. }
            | Self::Query { source, .. } => source,
            _ => return None,
        };
        let db = source.as_database_error()?;
        Some(db.try_downcast_ref::<PgDatabaseError>()?.code())
    }
}

/// The kind a SQLSTATE names, for the codes that say more than "the request failed":
/// `28000`/`28P01` (authorization, password) and `42501` (insufficient privilege) are denials;
/// `55P03` (lock not available), `40001` (serialization) and `40P01` (deadlock) are conflicts
/// with another session; `57014` (statement or lock timeout, cancel) is a timeout.
fn kind_of_sqlstate(code: &str) -> Option<ErrorKind> {
    match code {
        "28000" | "28P01" | "42501" => Some(ErrorKind::Denied),
        "55P03" | "40001" | "40P01" => Some(ErrorKind::Conflict),
        "57014" => Some(ErrorKind::Timeout),
        _ => None,
    }
}

impl From<PgError> for StepError {
    fn from(e: PgError) -> Self {
        StepError::from_error(e.kind(), e)
    }
}

/// Wraps a failed query with what was being done.
pub(crate) fn query_err(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> PgError {
    let context = context.into();
    move |source| PgError::Query {
        context,
        source: Box::new(source),
    }
}

/// The server's message and SQLSTATE, or the client's error text.
pub(crate) fn db_message(e: &sqlx::Error) -> String {
    match e.as_database_error() {
        Some(d) => match d.code() {
            Some(code) => format!("{} (SQLSTATE {code})", d.message()),
            None => d.message().to_string(),
        },
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocol(text: &str) -> Box<sqlx::Error> {
        Box::new(sqlx::Error::Protocol(text.into()))
    }

    #[test]
    fn errors_map_to_exit_classes() {
        let unreachable = PgError::Unreachable {
            host: "db".into(),
            port: 5432,
            reason: "refused".into(),
        };
        assert_eq!(StepError::from(unreachable).class(), ErrorClass::Runtime);
        let protected = PgError::ProtectedRole {
            role: "postgres".into(),
            reason: "is a superuser".into(),
            would: "ALTER ROLE".into(),
            adopt: String::new(),
        };
        let e = StepError::from(protected);
        assert_eq!(e.class(), ErrorClass::Invalid);
        assert!(e.message.contains("never alters"), "{}", e.message);
        let auth = PgError::Auth {
            host: "db".into(),
            port: 5432,
            user: "postgres".into(),
            source: protocol("password authentication failed"),
        };
        // The configuration is valid; the environment does not match it (README: exit 1).
        assert_eq!(StepError::from(auth).class(), ErrorClass::Runtime);
        let secret = PgError::Secret("persistence.postgres.password: not set".into());
        assert_eq!(StepError::from(secret).class(), ErrorClass::Runtime);
        let lock = PgError::LockTimeout {
            key: 1,
            database: "postgres".into(),
            waited: Duration::from_secs(2),
        };
        assert_eq!(StepError::from(lock).class(), ErrorClass::Runtime);
    }

    #[test]
    fn a_client_side_failure_keeps_its_source_and_has_no_sqlstate() {
        let e = PgError::Query {
            context: "reading pg_roles".into(),
            source: protocol("connection closed"),
        };
        assert!(e.to_string().starts_with("reading pg_roles: "), "{e}");
        assert!(e.to_string().contains("connection closed"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.sqlstate(), None);
        assert_eq!(e.kind(), ErrorKind::Failed);
    }

    #[test]
    fn sqlstates_refine_the_kind_without_changing_the_exit_class() {
        assert_eq!(kind_of_sqlstate("28P01"), Some(ErrorKind::Denied));
        assert_eq!(kind_of_sqlstate("42501"), Some(ErrorKind::Denied));
        assert_eq!(kind_of_sqlstate("55P03"), Some(ErrorKind::Conflict));
        assert_eq!(kind_of_sqlstate("40P01"), Some(ErrorKind::Conflict));
        assert_eq!(kind_of_sqlstate("57014"), Some(ErrorKind::Timeout));
        assert_eq!(kind_of_sqlstate("42P07"), None);
        for code in [
            "28000", "28P01", "42501", "55P03", "40001", "40P01", "57014",
        ] {
            let kind = kind_of_sqlstate(code).unwrap();
            assert_eq!(kind.class(), ErrorClass::Runtime, "{code}");
        }
    }
}
