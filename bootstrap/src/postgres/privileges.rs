//! What the admin login may do, checked before any write: managed services (Amazon RDS, Cloud
//! SQL, Azure) give no superuser, only a master user with CREATEROLE and CREATEDB.
//!
//! Why: from PostgreSQL 16, `CREATE DATABASE ... OWNER r` and `ALTER DATABASE ... OWNER TO r`
//! need the executing role to be able to `SET ROLE r`, and a CREATEROLE role that creates `r`
//! only gets ADMIN OPTION on it (plus whatever `createrole_self_grant` adds; empty by default, and
//! on RDS). Before 16 they need membership in `r`. A superuser needs nothing.
//!
//! Flow: [`read`] the admin's attributes, the server version, `createrole_self_grant`, what it
//! holds on the application role and whether it may act for each database's owner; [`decide`]
//! (pure) turns that and the planned role/database work into either the one membership grant the
//! admin can give itself (a planned change, run before the databases), or a refusal that names
//! each missing privilege with the statement that fixes it.
//!
//! Guarantees: reads only; the refusal comes before any write (exit 2). The grant is planned only
//! when databases must be created or given to the role, so a converged run writes nothing.
//!
//! Assumptions: the control connection is the admin's.
//!
//! Caveats: RDS's `rds_superuser` is not a superuser and gives none of this; it is not looked at.

use sqlx::postgres::PgConnection;

use super::error::{PgError, query_err};
use super::sql::quote_ident;

/// PostgreSQL 16's `server_version_num`: SET as a membership option, CREATEROLE's new rules.
const PG16: i32 = 160_000;

/// What the admin login has, as far as the role and database work needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdminRights {
    pub user: String,
    pub server_version_num: i32,
    pub superuser: bool,
    pub create_role: bool,
    pub create_db: bool,
    /// `createrole_self_grant` (16+) contains `set`: a role the admin creates is SET-able at once.
    pub self_grant_set: bool,
    /// The admin may `SET ROLE` to the application role (16+: the SET option; before: membership).
    /// False when the role does not exist.
    pub set_app: bool,
    /// The admin may alter and grant the application role (16+: ADMIN OPTION on it; before:
    /// CREATEROLE). False when the role does not exist.
    pub admin_of_app: bool,
    /// Databases (of those to be given to the role) whose current owner the admin does not act
    /// for, with that owner.
    pub foreign_databases: Vec<(String, String)>,
}

/// The role and database work the plan holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Work<'a> {
    pub app: &'a str,
    pub create_role: bool,
    pub alter_role: bool,
    pub create_databases: &'a [String],
    pub reown_databases: &'a [String],
}

/// A privilege the admin lacks, with the statement that gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub what: String,
    pub fix: String,
}

/// Reads the admin's rights on the control connection.
pub(crate) async fn read(
    control: &mut PgConnection,
    app: &str,
    reown: &[String],
) -> Result<AdminRights, PgError> {
    let (user, version, superuser, create_role, create_db, self_grant, app_exists): (
        String,
        i32,
        bool,
        bool,
        bool,
        String,
        bool,
    ) = sqlx::query_as(
        "SELECT current_user::text, current_setting('server_version_num')::int, \
                r.rolsuper, r.rolcreaterole, r.rolcreatedb, \
                coalesce(current_setting('createrole_self_grant', true), ''), \
                EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) \
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .bind(app)
    .fetch_one(&mut *control)
    .await
    .map_err(query_err("reading the admin role's attributes"))?;
    let (set_app, admin_of_app) = if !app_exists {
        (false, false)
    } else if version >= PG16 {
        sqlx::query_as(
            "SELECT pg_has_role(current_user, $1, 'SET'), \
                    pg_has_role(current_user, $1, 'MEMBER WITH ADMIN OPTION')",
        )
        .bind(app)
        .fetch_one(&mut *control)
        .await
        .map_err(query_err(
            "reading the admin's membership in the application role",
        ))?
    } else {
        let member: bool = sqlx::query_scalar("SELECT pg_has_role(current_user, $1, 'MEMBER')")
            .bind(app)
            .fetch_one(&mut *control)
            .await
            .map_err(query_err(
                "reading the admin's membership in the application role",
            ))?;
        (member, create_role || superuser)
    };
    let foreign_databases: Vec<(String, String)> = sqlx::query_as(
        "SELECT datname::text, pg_get_userbyid(datdba)::text FROM pg_database \
         WHERE datname = ANY($1) AND NOT pg_has_role(current_user, datdba, 'USAGE') \
         ORDER BY datname",
    )
    .bind(reown)
    .fetch_all(&mut *control)
    .await
    .map_err(query_err(
        "reading the owners of the databases to give to the role",
    ))?;
    Ok(AdminRights {
        user,
        server_version_num: version,
        superuser,
        create_role,
        create_db,
        self_grant_set: self_grant
            .split(',')
            .any(|o| o.trim().eq_ignore_ascii_case("set")),
        set_app,
        admin_of_app,
        foreign_databases,
    })
}

/// The membership grant that lets the admin own databases on the application role's behalf
/// (16+: SET, and INHERIT so that it also sees the role's sessions and tables, as
/// `createrole_self_grant = 'set, inherit'` would give).
pub(crate) fn grant_statement(app: &str, admin: &str, server_version_num: i32) -> String {
    if server_version_num >= PG16 {
        format!(
            "GRANT {} TO {} WITH INHERIT TRUE, SET TRUE",
            quote_ident(app),
            quote_ident(admin)
        )
    } else {
        format!("GRANT {} TO {}", quote_ident(app), quote_ident(admin))
    }
}

/// What the admin must grant itself first (`Ok(Some(statement))`), nothing (`Ok(None)`), or
/// what it lacks (`Err`, every missing privilege with its fix, to be run by a superuser).
pub(crate) fn decide(
    rights: &AdminRights,
    work: &Work<'_>,
) -> Result<Option<String>, Vec<Missing>> {
    if rights.superuser {
        return Ok(None);
    }
    let admin = quote_ident(&rights.user);
    let app = quote_ident(work.app);
    let v16 = rights.server_version_num >= PG16;
    let mut missing = Vec::new();
    if (work.create_role || work.alter_role) && !rights.create_role {
        missing.push(Missing {
            what: format!(
                "CREATEROLE, needed to {} role {app}",
                if work.create_role { "create" } else { "alter" }
            ),
            fix: format!("ALTER ROLE {admin} CREATEROLE"),
        });
    } else if work.alter_role && v16 && !rights.admin_of_app {
        missing.push(Missing {
            what: format!(
                "ADMIN OPTION on role {app} (PostgreSQL 16+: a CREATEROLE role alters only the roles it administers), needed to alter it"
            ),
            fix: format!("GRANT {app} TO {admin} WITH ADMIN TRUE"),
        });
    }
    let databases = !work.create_databases.is_empty() || !work.reown_databases.is_empty();
    if !databases {
        return if missing.is_empty() {
            Ok(None)
        } else {
            Err(missing)
        };
    }
    if !rights.create_db {
        let names: Vec<&str> = work
            .create_databases
            .iter()
            .chain(work.reown_databases)
            .map(String::as_str)
            .collect();
        missing.push(Missing {
            what: format!(
                "CREATEDB, needed to {} database(s) {}",
                if work.create_databases.is_empty() {
                    "give the role"
                } else {
                    "create"
                },
                names.join(", ")
            ),
            fix: format!("ALTER ROLE {admin} CREATEDB"),
        });
    }
    for (db, owner) in &rights.foreign_databases {
        missing.push(Missing {
            what: format!(
                "ownership of database {} (owned by {}), needed to give it to {app}",
                quote_ident(db),
                quote_ident(owner)
            ),
            fix: format!("ALTER DATABASE {} OWNER TO {app}", quote_ident(db)),
        });
    }
    let grant = grant_statement(work.app, &rights.user, rights.server_version_num);
    let needs_grant = if work.create_role {
        // The creator administers the new role (16+) or holds CREATEROLE (<16): it can grant.
        !(v16 && rights.self_grant_set)
    } else {
        !rights.set_app
    };
    let can_grant = work.create_role || rights.admin_of_app;
    if needs_grant && !can_grant {
        missing.push(Missing {
            what: format!(
                "{} role {app}, needed to create or alter databases owned by it",
                if v16 {
                    "membership with the SET option in"
                } else {
                    "membership in"
                }
            ),
            fix: grant.clone(),
        });
    }
    if missing.is_empty() {
        Ok(needs_grant.then_some(grant))
    } else {
        Err(missing)
    }
}

/// The refusal for `missing` (not empty).
pub(crate) fn refusal(rights: &AdminRights, missing: Vec<Missing>) -> PgError {
    PgError::AdminPrivileges {
        admin: rights.user.clone(),
        server_version_num: rights.server_version_num,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rds_master() -> AdminRights {
        AdminRights {
            user: "master".into(),
            server_version_num: 170_006,
            superuser: false,
            create_role: true,
            create_db: true,
            self_grant_set: false,
            set_app: false,
            admin_of_app: false,
            foreign_databases: vec![],
        }
    }

    fn fresh<'a>(dbs: &'a [String]) -> Work<'a> {
        Work {
            app: "temporal",
            create_role: true,
            alter_role: false,
            create_databases: dbs,
            reown_databases: &[],
        }
    }

    #[test]
    fn an_rds_master_user_grants_itself_set_on_the_role_it_creates() {
        let dbs = vec!["temporal".to_string()];
        assert_eq!(
            decide(&rds_master(), &fresh(&dbs)),
            Ok(Some(
                "GRANT \"temporal\" TO \"master\" WITH INHERIT TRUE, SET TRUE".into()
            ))
        );
        // createrole_self_grant = 'set, inherit' already gives it.
        let mut r = rds_master();
        r.self_grant_set = true;
        assert_eq!(decide(&r, &fresh(&dbs)), Ok(None));
        // Before 16: plain membership.
        let mut r = rds_master();
        r.server_version_num = 150_010;
        assert_eq!(
            decide(&r, &fresh(&dbs)),
            Ok(Some("GRANT \"temporal\" TO \"master\"".into()))
        );
        // No database work: nothing to grant.
        assert_eq!(decide(&rds_master(), &fresh(&[])), Ok(None));
        // A superuser needs nothing.
        let mut r = rds_master();
        r.superuser = true;
        r.create_role = false;
        r.create_db = false;
        assert_eq!(decide(&r, &fresh(&dbs)), Ok(None));
    }

    #[test]
    fn each_missing_privilege_is_named_with_its_fix() {
        let dbs = vec!["temporal".to_string(), "temporal_visibility".to_string()];
        let mut r = rds_master();
        r.create_role = false;
        r.create_db = false;
        let missing = decide(&r, &fresh(&dbs)).unwrap_err();
        assert_eq!(
            missing,
            vec![
                Missing {
                    what: "CREATEROLE, needed to create role \"temporal\"".into(),
                    fix: "ALTER ROLE \"master\" CREATEROLE".into()
                },
                Missing {
                    what: "CREATEDB, needed to create database(s) temporal, temporal_visibility"
                        .into(),
                    fix: "ALTER ROLE \"master\" CREATEDB".into()
                },
            ]
        );
        // An existing role someone else administers: the admin cannot give itself SET on it.
        let reown = vec!["temporal".to_string()];
        let mut r = rds_master();
        r.foreign_databases = vec![("temporal".into(), "someone".into())];
        let work = Work {
            app: "temporal",
            create_role: false,
            alter_role: false,
            create_databases: &[],
            reown_databases: &reown,
        };
        let missing = decide(&r, &work).unwrap_err();
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert_eq!(
            missing[0].fix,
            "ALTER DATABASE \"temporal\" OWNER TO \"temporal\""
        );
        assert_eq!(
            missing[1].fix,
            "GRANT \"temporal\" TO \"master\" WITH INHERIT TRUE, SET TRUE"
        );
        // Already SET-able and the owner's: nothing to grant, nothing missing.
        let mut r = rds_master();
        r.set_app = true;
        assert_eq!(decide(&r, &work), Ok(None));
        // Altering a role it does not administer (16+).
        let work = Work {
            alter_role: true,
            reown_databases: &[],
            ..work
        };
        let missing = decide(&rds_master(), &work).unwrap_err();
        assert_eq!(
            missing[0].fix,
            "GRANT \"temporal\" TO \"master\" WITH ADMIN TRUE"
        );
    }
}
