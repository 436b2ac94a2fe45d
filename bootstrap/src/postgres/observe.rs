//! Reading the server: the application role, the databases and their owners, and the schema
//! version recorded in each database.
//!
//! Flow: on the control connection, the server version, the role's attributes and marker
//! comment, and each database's owner; then, for each existing database, the recorded schema
//! version, read as the application role (which also tells whether its password logs in), or as
//! the admin when the role cannot log in or may not read the version tables (another role owns
//! them).
//!
//! Guarantees: writes nothing. A role whose password is refused is reported
//! (`password_accepted: Some(false)`), not an error.
//!
//! Assumptions: the control login may read `pg_roles` and `pg_database` (any role may).
//!
//! Caveats: without admin credentials and with a role that cannot log in, the schema state is
//! [`SchemaState::Unknown`]; plan refuses to guess a version from it.

use serde::Serialize;
use sqlx::Row;

use super::ROLE_MARKER;
use super::bookkeeping::read_schema_state;
use super::connection::{DatabaseSpec, Session, Spec};
use super::error::{PgError, query_err};
use super::schema::SchemaKind;

/// The role as the server has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleState {
    pub name: String,
    pub exists: bool,
    pub login: bool,
    pub superuser: bool,
    pub create_role: bool,
    pub create_db: bool,
    pub replication: bool,
    /// The role carries [`ROLE_MARKER`]: this tool created it (or an operator adopted it).
    pub managed: bool,
    /// Whether the configured password logs in; `None` when not tried (role or databases missing).
    pub password_accepted: Option<bool>,
}

impl RoleState {
    /// Attributes that differ from the least-privilege set, as `name: observed -> wanted`.
    pub fn drift(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, have: bool, want: bool| {
            if have != want {
                out.push(format!("{name} {have} -> {want}"));
            }
        };
        check("login", self.login, true);
        check("superuser", self.superuser, false);
        check("createrole", self.create_role, false);
        check("createdb", self.create_db, false);
        check("replication", self.replication, false);
        out
    }

    /// The `ALTER ROLE` keywords that set back only the attributes that drifted: an admin that is
    /// not a superuser may not even name SUPERUSER or REPLICATION (a role holding either is
    /// never altered, see [`Self::protected_reason`]).
    pub fn fix_keywords(&self) -> Vec<&'static str> {
        [
            (self.login, true, "LOGIN"),
            (self.superuser, false, "NOSUPERUSER"),
            (self.create_role, false, "NOCREATEROLE"),
            (self.create_db, false, "NOCREATEDB"),
            (self.replication, false, "NOREPLICATION"),
        ]
        .into_iter()
        .filter_map(|(have, want, keyword)| (have != want).then_some(keyword))
        .collect()
    }

    /// Why this role must never be altered, if it must not: it holds a privilege only an
    /// administrator's role should have, or this tool did not create it.
    pub fn protected_reason(&self) -> Option<String> {
        let privileges: Vec<&str> = [
            (self.superuser, "SUPERUSER"),
            (self.create_role, "CREATEROLE"),
            (self.replication, "REPLICATION"),
        ]
        .into_iter()
        .filter_map(|(has, name)| has.then_some(name))
        .collect();
        if !privileges.is_empty() {
            Some(format!("has {}", privileges.join(", ")))
        } else if !self.managed {
            Some(format!(
                "exists but was not created by temporal-bootstrap (no `{ROLE_MARKER}` comment)"
            ))
        } else {
            None
        }
    }
}

/// A database's schema as recorded in its `schema_version` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum SchemaState {
    /// No `schema_dir` configured.
    NotManaged,
    /// The database does not exist yet.
    NoDatabase,
    /// The database exists but has no `schema_version` table (or no row for it).
    NoVersionTables,
    Versioned {
        current: String,
        min_compatible: String,
        history_rows: i64,
    },
    /// Could not be read (e.g. the application role cannot log in yet).
    Unknown { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseState {
    pub name: String,
    pub kind: SchemaKind,
    pub exists: bool,
    pub owner: Option<String>,
    pub schema: SchemaState,
    /// The target version when the schema is managed.
    pub target: Option<String>,
}

/// What [`observe`] found; serialisable for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    pub server_version: String,
    pub role: RoleState,
    pub databases: Vec<DatabaseState>,
}

/// Reads role, databases and schema versions. Writes nothing.
pub async fn observe(spec: &Spec) -> Result<Observed, PgError> {
    let mut session = Session::open(spec).await?;
    let observed = observe_with(&mut session).await;
    session.close().await;
    observed
}

/// [`observe`] on the connections of a session (plan, apply and verify share them).
pub(crate) async fn observe_with(session: &mut Session<'_>) -> Result<Observed, PgError> {
    let spec = session.spec;
    let server_version: String = sqlx::query_scalar("SELECT current_setting('server_version')")
        .fetch_one(session.control())
        .await
        .map_err(query_err("reading the server version"))?;
    let mut role = read_role(session, &spec.app.user).await?;
    let mut databases = Vec::new();
    for db in &spec.databases {
        databases.push(observe_database(session, db, &mut role).await?);
    }
    Ok(Observed {
        server_version,
        role,
        databases,
    })
}

/// The role's attributes and whether it carries [`ROLE_MARKER`] (the password is tried later,
/// when a database is read as the role).
async fn read_role(session: &mut Session<'_>, name: &str) -> Result<RoleState, PgError> {
    let row = sqlx::query(
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, \
         coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = $1",
    )
    .bind(name)
    .fetch_optional(session.control())
    .await
    .map_err(query_err("reading pg_roles"))?;
    let mut role = RoleState {
        name: name.to_string(),
        exists: row.is_some(),
        login: false,
        superuser: false,
        create_role: false,
        create_db: false,
        replication: false,
        managed: false,
        password_accepted: None,
    };
    if let Some(r) = row {
        role.login = r.get(0);
        role.superuser = r.get(1);
        role.create_role = r.get(2);
        role.create_db = r.get(3);
        role.replication = r.get(4);
        role.managed = r.get::<String, _>(5).starts_with(ROLE_MARKER);
    }
    Ok(role)
}

/// One database: owner and schema state. Logging in as the role records in `role` whether its
/// password is accepted.
async fn observe_database(
    session: &mut Session<'_>,
    db: &DatabaseSpec,
    role: &mut RoleState,
) -> Result<DatabaseState, PgError> {
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
    )
    .bind(&db.name)
    .fetch_optional(session.control())
    .await
    .map_err(query_err("reading pg_database"))?;
    let exists = owner.is_some();
    let schema = if !exists {
        if db.schema.is_some() {
            SchemaState::NoDatabase
        } else {
            SchemaState::NotManaged
        }
    } else if role.exists && role.login {
        match session.app(&db.name).await {
            Ok(conn) => {
                role.password_accepted = Some(true);
                if db.schema.is_some() {
                    match read_schema_state(conn, &db.name).await {
                        // The version tables belong to another role (temporal-sql-tool run as
                        // the admin): read them as the admin; plan then refuses with the fix.
                        Err(e) if e.sqlstate() == Some("42501") => {
                            schema_via_admin(session, db, "may not read schema_version").await?
                        }
                        other => other?,
                    }
                } else {
                    SchemaState::NotManaged
                }
            }
            Err(PgError::Auth { .. }) => {
                role.password_accepted = Some(false);
                schema_via_admin(session, db, "cannot log in").await?
            }
            Err(e) => return Err(e),
        }
    } else {
        schema_via_admin(session, db, "cannot log in").await?
    };
    Ok(DatabaseState {
        name: db.name.clone(),
        kind: db.kind,
        exists,
        owner,
        schema,
        target: db.schema.as_ref().map(|s| s.target.to_string()),
    })
}

/// The schema state read with the admin login, when the role cannot read it (`why`).
async fn schema_via_admin(
    session: &mut Session<'_>,
    db: &DatabaseSpec,
    why: &str,
) -> Result<SchemaState, PgError> {
    if db.schema.is_none() {
        return Ok(SchemaState::NotManaged);
    }
    let spec = session.spec;
    match &spec.admin {
        Some((login, _)) => {
            let conn = session.login(login, &db.name).await?;
            match read_schema_state(conn, &db.name).await {
                // An admin that is not a superuser (a managed service's) may hold SET on the
                // role without its privileges (PostgreSQL 16+ membership without INHERIT).
                Err(e) if e.sqlstate() == Some("42501") => {
                    read_as_role(conn, &db.name, &spec.app.user, e).await
                }
                other => other,
            }
        }
        None => Ok(SchemaState::Unknown {
            reason: format!(
                "role `{}` {why} and no admin credentials are configured (persistence.postgres.admin)",
                spec.app.user
            ),
        }),
    }
}

/// The schema state read after `SET ROLE role` on the admin's connection (then `RESET ROLE`);
/// `denied` is returned when the admin may not SET ROLE to it either.
async fn read_as_role(
    conn: &mut sqlx::postgres::PgConnection,
    database: &str,
    role: &str,
    denied: PgError,
) -> Result<SchemaState, PgError> {
    let set = format!("SET ROLE {}", super::sql::quote_ident(role));
    if sqlx::raw_sql(sqlx::AssertSqlSafe(set))
        .execute(&mut *conn)
        .await
        .is_err()
    {
        return Err(denied);
    }
    let state = read_schema_state(conn, database).await;
    sqlx::raw_sql("RESET ROLE")
        .execute(&mut *conn)
        .await
        .map_err(query_err("RESET ROLE after reading the schema version"))?;
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_drift_lists_every_attribute_off_the_least_privilege_set() {
        let mut r = RoleState {
            name: "temporal".into(),
            exists: true,
            login: true,
            superuser: false,
            create_role: false,
            create_db: false,
            replication: false,
            managed: true,
            password_accepted: Some(true),
        };
        assert!(r.drift().is_empty());
        assert_eq!(r.protected_reason(), None);
        r.login = false;
        r.superuser = true;
        r.create_db = true;
        assert_eq!(
            r.drift(),
            [
                "login false -> true",
                "superuser true -> false",
                "createdb true -> false"
            ]
        );
        assert_eq!(r.fix_keywords(), ["LOGIN", "NOSUPERUSER", "NOCREATEDB"]);
    }
}
