//! Where the server is and how to log in: the resolved [`Spec`] of one run, its logins and TLS,
//! and the [`Session`] that owns the connections of one observe, plan or apply.
//!
//! Flow: [`Session::open`] logs in to the control database (the admin database, or the
//! persistence database when no admin credentials are given); [`Session::login`] opens, on first
//! use, one connection per login and database and hands it out again on later calls; and
//! [`Session::close`] ends them all.
//!
//! Guarantees: no connection outlives the call that opened it: nothing is cached in the process,
//! so each run (and each daemon cycle) logs in afresh and notices a password changed on the
//! server, and a connection is never used by a runtime other than the one that opened it.
//! Statements are never logged by the client library (they may carry a password verifier).
//! Connection failures are classified: refused password (`28P01`/`28000`), missing database
//! (`3D000`), unreachable server or failed TLS.
//!
//! Assumptions: `sqlx` speaks to the server through the process-wide rustls provider
//! ([`crate::ensure_crypto_provider`]).
//!
//! Caveats: every observe, plan and apply logs in again (one SCRAM exchange per connection);
//! within one call each login and database is logged in once.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{ConnectOptions, Connection};

use super::error::{PgError, db_message};
use super::schema::SchemaKind;
use crate::config::PostgresTlsMode;
use crate::config::types::{Secret, SecretRef};
use crate::versions::SchemaVersion;

/// Time allowed to open one connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS to the server.
#[derive(Debug, Clone)]
pub struct TlsSpec {
    pub mode: PostgresTlsMode,
    /// CA file (absolute) for verify-full.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: Secret,
}

/// One database and the schema it must hold.
#[derive(Debug, Clone)]
pub struct DatabaseSpec {
    pub name: String,
    pub kind: SchemaKind,
    /// `None` when no `schema_dir` is configured: the schema is not managed.
    pub schema: Option<SchemaSpec>,
}

#[derive(Debug, Clone)]
pub struct SchemaSpec {
    /// `<schema_dir>/<kind>/versioned`.
    pub versioned_dir: PathBuf,
    pub target: SchemaVersion,
}

/// The resolved desired state of one run (secrets resolved, paths absolute).
#[derive(Debug, Clone)]
pub struct Spec {
    pub host: String,
    pub port: u16,
    pub tls: Option<TlsSpec>,
    /// The application role and its password.
    pub app: Login,
    /// Where the app password comes from (shown in plans instead of the value).
    pub app_password_ref: SecretRef,
    pub admin: Option<(Login, String)>,
    pub databases: Vec<DatabaseSpec>,
    /// The persistence database; keys the advisory lock and is the control database when no
    /// admin credentials are given.
    pub lock_name: String,
    pub lock_timeout: Duration,
}

impl Spec {
    fn options(&self, login: &Login, database: &str) -> PgConnectOptions {
        let mut o = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .username(&login.user)
            .password(login.password.expose())
            .database(database)
            // With the process id: a later run recognises the backends of a killed one.
            .application_name(&application_name())
            .ssl_mode(match self.tls.as_ref().map(|t| t.mode) {
                None => PgSslMode::Prefer,
                Some(PostgresTlsMode::Disable) => PgSslMode::Disable,
                Some(PostgresTlsMode::Require) => PgSslMode::Require,
                Some(PostgresTlsMode::VerifyFull) => PgSslMode::VerifyFull,
            });
        if let Some(ca) = self.tls.as_ref().and_then(|t| t.ca.as_ref()) {
            o = o.ssl_root_cert(ca);
        }
        // Statements never go to our logs: they may carry a password verifier.
        o.disable_statement_logging()
    }

    /// Opens a new connection, classifying a failure (refused login, missing database,
    /// unreachable server or failed TLS).
    async fn connect(&self, login: &Login, database: &str) -> Result<PgConnection, PgError> {
        // The TLS client of sqlx uses the process-wide rustls provider.
        crate::ensure_crypto_provider();
        let opts = self.options(login, database);
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, opts.connect()).await {
            Err(_) => {
                return Err(
                    self.unreachable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))
                );
            }
            Ok(Err(e)) => return Err(self.connect_error(login, database, e)),
            Ok(Ok(c)) => c,
        };
        // PostgreSQL 14+: end our backend (and free the advisory lock) soon after this process
        // dies, instead of when the current statement finishes. Older servers lack the setting.
        let _ = sqlx::raw_sql("SET client_connection_check_interval = 1000")
            .execute(&mut conn)
            .await;
        Ok(conn)
    }

    fn unreachable(&self, reason: String) -> PgError {
        PgError::Unreachable {
            host: self.host.clone(),
            port: self.port,
            reason,
        }
    }

    /// What a failed login means: the server's SQLSTATE when it answered, else the client's
    /// error text (TLS failures get a hint at the configuration that decides them).
    fn connect_error(&self, login: &Login, database: &str, e: sqlx::Error) -> PgError {
        let code = e
            .as_database_error()
            .and_then(|d| d.code().map(|c| c.to_string()));
        match code.as_deref() {
            Some("28P01") | Some("28000") => PgError::Auth {
                host: self.host.clone(),
                port: self.port,
                user: login.user.clone(),
                source: Box::new(e),
            },
            Some("3D000") => PgError::NoDatabase {
                host: self.host.clone(),
                port: self.port,
                user: login.user.clone(),
                database: database.to_string(),
            },
            Some(_) => PgError::Query {
                context: format!("connecting to `{database}` as `{}`", login.user),
                source: Box::new(e),
            },
            None => {
                let text = db_message(&e);
                let lower = text.to_lowercase();
                if lower.contains("certificate") || lower.contains("tls") || lower.contains("ssl") {
                    self.unreachable(format!(
                        "TLS failed: {text} (check persistence.postgres.tls: mode and the CA that signed the server certificate)"
                    ))
                } else {
                    self.unreachable(text)
                }
            }
        }
    }

    /// The login and database used to read roles and databases and to hold the lock.
    pub(crate) fn control_login(&self) -> (&Login, &str) {
        match &self.admin {
            Some((login, db)) => (login, db.as_str()),
            None => (&self.app, self.lock_name.as_str()),
        }
    }

    /// The advisory lock key of this run (stable per persistence database name).
    pub fn lock_key(&self) -> i64 {
        use md5::{Digest, Md5};
        let d = Md5::digest(format!("temporal-bootstrap:schema:{}", self.lock_name));
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        i64::from_be_bytes(b)
    }
}

/// `application_name` of this process's sessions.
pub(crate) fn application_name() -> String {
    format!("temporal-bootstrap/{}", std::process::id())
}

/// The connections of one observe, plan or apply: the control connection, opened with the
/// session, and one connection per login and database, opened on first use (each PostgreSQL
/// login costs a SCRAM exchange, so observe, apply and verify share them). Owned by the call
/// that opened it and ended by [`Session::close`].
pub(crate) struct Session<'s> {
    pub spec: &'s Spec,
    control: PgConnection,
    /// By user and database.
    logins: Vec<(String, String, PgConnection)>,
}

impl<'s> Session<'s> {
    /// Logs in to the control database.
    pub async fn open(spec: &'s Spec) -> Result<Self, PgError> {
        let (login, db) = spec.control_login();
        let control = spec.connect(login, db).await?;
        Ok(Self {
            spec,
            control,
            logins: Vec::new(),
        })
    }

    /// The connection that reads roles and databases, runs the admin statements and holds the
    /// advisory lock.
    pub fn control(&mut self) -> &mut PgConnection {
        &mut self.control
    }

    /// The application role's connection to `database`.
    pub async fn app(&mut self, database: &str) -> Result<&mut PgConnection, PgError> {
        let spec = self.spec;
        self.login(&spec.app, database).await
    }

    /// `login`'s connection to `database`, opened on first use.
    pub async fn login(
        &mut self,
        login: &Login,
        database: &str,
    ) -> Result<&mut PgConnection, PgError> {
        let found = self
            .logins
            .iter()
            .position(|(u, d, _)| *u == login.user && d == database);
        let pos = match found {
            Some(p) => p,
            None => {
                let conn = self.spec.connect(login, database).await?;
                self.logins
                    .push((login.user.clone(), database.to_string(), conn));
                self.logins.len() - 1
            }
        };
        Ok(&mut self.logins[pos].2)
    }

    /// Ends every connection with a goodbye to the server. Closing the control connection also
    /// frees an advisory lock that could not be released.
    pub async fn close(self) {
        for (_, _, conn) in self.logins {
            let _ = conn.close().await;
        }
        let _ = self.control.close().await;
    }
}
