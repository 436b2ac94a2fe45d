//! The `schema_version` and `schema_update_history` tables, in `temporal-sql-tool`'s format:
//! reading the recorded version, creating the tables, and the rows each applied version adds.
//!
//! Flow: observe reads the state with [`read_schema_state`]; apply creates missing tables with
//! [`create_version_tables`], reads [`current_version`] before each database's versions, and
//! appends [`version_rows_sql`] to each version's statements so both commit together.
//!
//! Guarantees: the tables and rows are exactly those `temporal-sql-tool setup-schema -v 0.0` and
//! `update-schema` write (version_partition 0, db_name = the database, UTC time of the write,
//! description cut to 255 characters), so either tool can take over from the other. Values are
//! escape-string literals ([`quote_literal`]), read back exactly whatever
//! `standard_conforming_strings` is.
//!
//! Assumptions: the tables live in the `public` schema of each database.
//!
//! Caveats: a `schema_version` table without a row for the database reads as "no version
//! tables": the version is never guessed.

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgConnection;

use super::error::{PgError, query_err};
use super::observe::SchemaState;
use super::schema::PendingVersion;
use super::sql::quote_literal;
use crate::versions::SchemaVersion;

/// The schema state recorded in `db` (reached through `conn`, connected to that database).
pub(crate) async fn read_schema_state(
    conn: &mut PgConnection,
    db: &str,
) -> Result<SchemaState, PgError> {
    let ctx = || format!("reading schema_version in `{db}`");
    let tables: (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('public.schema_version') IS NOT NULL, \
                to_regclass('public.schema_update_history') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(query_err(ctx()))?;
    if !(tables.0 && tables.1) {
        return Ok(SchemaState::NoVersionTables);
    }
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT curr_version::text, min_compatible_version::text FROM public.schema_version \
         WHERE version_partition = 0 AND db_name = $1",
    )
    .bind(db)
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_err(ctx()))?;
    let Some((current, min)) = row else {
        return Ok(SchemaState::NoVersionTables);
    };
    let history_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM public.schema_update_history")
        .fetch_one(&mut *conn)
        .await
        .map_err(query_err(ctx()))?;
    Ok(SchemaState::Versioned {
        current: current.unwrap_or_default(),
        min_compatible: min.unwrap_or_default(),
        history_rows,
    })
}

/// The version recorded in `db` (0.0 when there is no row).
pub(crate) async fn current_version(
    conn: &mut PgConnection,
    db: &str,
) -> Result<SchemaVersion, PgError> {
    let v: Option<String> = sqlx::query_scalar(
        "SELECT curr_version::text FROM public.schema_version WHERE version_partition = 0 AND db_name = $1",
    )
    .bind(db)
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_err(format!("reading schema_version in `{db}`")))?
    .flatten();
    match v {
        None => Ok(SchemaVersion::new(0, 0)),
        Some(v) => v.parse().map_err(|_| PgError::BadVersionRow {
            database: db.to_string(),
            value: v,
        }),
    }
}

/// Creates the two version tables and the 0.0 rows, exactly as `setup-schema -v 0.0` leaves
/// them, in one implicit transaction (one round trip). Existing tables and rows are kept.
pub(crate) async fn create_version_tables(
    conn: &mut PgConnection,
    db: &str,
) -> Result<(), PgError> {
    let has_row = format!(
        "EXISTS (SELECT 1 FROM schema_version WHERE version_partition = 0 AND db_name = {})",
        quote_literal(db)
    );
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS schema_version(version_partition INT not null, \
           db_name VARCHAR(255) not null, creation_time TIMESTAMP, curr_version VARCHAR(64), \
           min_compatible_version VARCHAR(64), PRIMARY KEY (version_partition, db_name));\n\
         CREATE TABLE IF NOT EXISTS schema_update_history(version_partition INT not null, \
           year int not null, month int not null, update_time TIMESTAMP not null, \
           description VARCHAR(255), manifest_md5 VARCHAR(64), new_version VARCHAR(64), \
           old_version VARCHAR(64), PRIMARY KEY (version_partition, year, month, update_time));\n\
         DO $tb$ BEGIN IF NOT {has_row} THEN {rows} END IF; END $tb$;",
        rows = version_rows_sql(db, "0", "0.0", "0.0", "", "initial version"),
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map_err(query_err(format!(
            "creating the schema_version tables in `{db}`"
        )))?;
    Ok(())
}

/// The rows that record `v` applied on top of `previous` in `db`.
pub(crate) fn applied_rows_sql(db: &str, previous: SchemaVersion, v: &PendingVersion) -> String {
    version_rows_sql(
        db,
        &previous.to_string(),
        &v.version.to_string(),
        &v.manifest.min_compatible_version,
        &v.manifest.md5,
        &v.manifest.description,
    )
}

/// SQL that upserts `schema_version` and appends to `schema_update_history`, in
/// `temporal-sql-tool`'s format (UTC time of the write; version_partition 0; db_name = the
/// database). Values are escape-string literals, correct whatever `standard_conforming_strings` is.
fn version_rows_sql(
    db: &str,
    old: &str,
    new: &str,
    min_compatible: &str,
    md5: &str,
    description: &str,
) -> String {
    let (db, old, new, min, md5, desc) = (
        quote_literal(db),
        quote_literal(old),
        quote_literal(new),
        quote_literal(min_compatible),
        quote_literal(md5),
        quote_literal(truncate(description, 255)),
    );
    format!(
        "INSERT INTO schema_version(version_partition, db_name, creation_time, curr_version, min_compatible_version) \
         VALUES (0, {db}, clock_timestamp() AT TIME ZONE 'UTC', {new}, {min}) \
         ON CONFLICT (version_partition, db_name) DO UPDATE SET creation_time = excluded.creation_time, \
         curr_version = excluded.curr_version, min_compatible_version = excluded.min_compatible_version;\n\
         INSERT INTO schema_update_history(version_partition, year, month, update_time, old_version, new_version, manifest_md5, description) \
         SELECT 0, extract(year FROM t.now)::int, extract(month FROM t.now)::int, t.now, {old}, {new}, {md5}, {desc} \
         FROM (SELECT clock_timestamp() AT TIME ZONE 'UTC' AS now) t;\n"
    )
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_literals_survive_quotes_and_backslashes() {
        assert_eq!(quote_literal(r"it's a \ path"), r"E'it''s a \\ path'");
        let sql = version_rows_sql("temporal", "1.3", "1.4", "1.0", "abc", "desc; it's");
        assert!(
            sql.contains("E'desc; it''s'") && sql.contains("E'1.3', E'1.4', E'abc'"),
            "{sql}"
        );
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("abc", 255), "abc");
        assert_eq!(truncate("ééé", 2), "éé");
    }
}
