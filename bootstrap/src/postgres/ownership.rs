//! Who owns the objects of a Temporal database, and the one statement that gives them back to
//! the application role.
//!
//! Why: schema versions `ALTER` existing tables, which only their owner may do. Tables created
//! by `temporal-sql-tool -u <admin>` (how many runbooks run it) belong to the admin role, and
//! the application role's next `ALTER` fails half-way through an upgrade with "must be owner".
//! The plan checks ownership before any write and refuses with the fix instead.
//!
//! Guarantees: reads only. Objects that belong to an extension (btree_gin's functions) are not
//! counted: they are never altered by a schema version.
//!
//! Assumptions: Temporal's objects live in the `public` schema (as `bookkeeping` assumes).

use sqlx::postgres::PgConnection;

use super::error::{PgError, query_err};
use super::sql::quote_literal;

/// An object in `public` the application role may not alter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignObject {
    /// `table`, `view`, `sequence` or `function`.
    pub kind: String,
    pub name: String,
    pub owner: String,
}

/// Objects of the `public` schema (of the database `conn` is connected to) whose owner `role`
/// is not a member of, ordered by owner, kind and name.
pub(crate) async fn foreign_objects(
    conn: &mut PgConnection,
    database: &str,
    role: &str,
) -> Result<Vec<ForeignObject>, PgError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT kind, name, owner FROM ( \
           SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' \
                  WHEN 'm' THEN 'view' ELSE 'table' END AS kind, \
                  c.relname::text AS name, c.relowner AS owner_oid \
           FROM pg_class c \
           WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r','p','S','v','m') \
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                             AND d.objid = c.oid AND d.deptype IN ('e','a','i')) \
           UNION ALL \
           SELECT 'function', p.proname::text, p.proowner \
           FROM pg_proc p \
           WHERE p.pronamespace = 'public'::regnamespace \
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass \
                             AND d.objid = p.oid AND d.deptype = 'e') \
         ) o CROSS JOIN LATERAL (SELECT pg_get_userbyid(o.owner_oid)::text AS owner) u \
         WHERE NOT pg_has_role($1, o.owner_oid, 'MEMBER') \
         ORDER BY owner, kind, name",
    )
    .bind(role)
    .fetch_all(&mut *conn)
    .await
    .map_err(query_err(format!("reading object owners in `{database}`")))?;
    Ok(rows
        .into_iter()
        .map(|(kind, name, owner)| ForeignObject { kind, name, owner })
        .collect())
}

/// A database whose objects the application role cannot alter, with the fix.
#[derive(Debug, thiserror::Error)]
#[error(
    "database `{database}`: {count} object(s) are owned by `{owners}`, not by the application role `{app}` (e.g. {examples}); the next schema version's ALTER would fail with \"must be owner\" (they were likely created by temporal-sql-tool run as `{owners}`). Nothing was written. Fix once, as a superuser or `{owners}`, connected to `{database}`: {fix} Then run this command again"
)]
pub struct ForeignOwnership {
    pub database: String,
    pub app: String,
    pub owners: String,
    pub count: usize,
    pub examples: String,
    /// One statement that gives the objects to the application role.
    pub fix: String,
}

/// The error for a database whose objects `objects` (not empty) the application role `app`
/// cannot alter: names the owners, a few objects, and the one statement (run as a superuser or
/// the owner, in that database) that hands them to `app`.
pub(crate) fn refusal(database: &str, app: &str, objects: &[ForeignObject]) -> PgError {
    let mut owners: Vec<&str> = objects.iter().map(|o| o.owner.as_str()).collect();
    owners.dedup();
    let examples: Vec<String> = objects
        .iter()
        .take(4)
        .map(|o| format!("{} {}", o.kind, o.name))
        .collect();
    PgError::ForeignOwner(Box::new(ForeignOwnership {
        database: database.to_string(),
        app: app.to_string(),
        owners: owners.join(", "),
        count: objects.len(),
        examples: examples.join(", "),
        fix: reassign_statement(app, &owners),
    }))
}

/// One `DO` statement giving every table, view, standalone sequence and function of `public`
/// owned by one of `owners` to `app`. `REASSIGN OWNED BY` cannot be used: it fails for a
/// superuser owner (the usual case), whose system objects cannot change hands.
fn reassign_statement(app: &str, owners: &[&str]) -> String {
    let owner_list = owners
        .iter()
        .map(|o| quote_literal(o))
        .collect::<Vec<_>>()
        .join(", ");
    let app = quote_literal(app);
    format!(
        "DO $tb$ DECLARE r record; BEGIN FOR r IN \
         SELECT format('ALTER %s %s OWNER TO %I', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, c.oid::regclass, {app}) AS cmd \
         FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r','p','S','v','m') \
         AND pg_get_userbyid(c.relowner) IN ({owner_list}) \
         AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('e','a','i')) \
         UNION ALL SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, {app}) \
         FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND pg_get_userbyid(p.proowner) IN ({owner_list}) \
         AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e') \
         LOOP EXECUTE r.cmd; END LOOP; END $tb$;"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_owner_objects_and_the_fix() {
        let objects = vec![
            ForeignObject {
                kind: "function".into(),
                name: "convert_ts".into(),
                owner: "postgres".into(),
            },
            ForeignObject {
                kind: "table".into(),
                name: "executions_visibility".into(),
                owner: "postgres".into(),
            },
        ];
        let text = refusal("temporal_visibility", "temporal", &objects).to_string();
        assert!(text.contains("owned by `postgres`"), "{text}");
        assert!(
            text.contains("function convert_ts, table executions_visibility"),
            "{text}"
        );
        assert!(
            text.contains("OWNER TO %I") && text.contains("IN (E'postgres')"),
            "{text}"
        );
        assert!(text.contains("Nothing was written"), "{text}");
    }
}
