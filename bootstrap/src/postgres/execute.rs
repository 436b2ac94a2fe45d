//! The one statement executor: how a version folder's statements and its bookkeeping rows reach
//! the server, and how a failure is pinned to a statement.
//!
//! Flow: [`apply_version`] picks how the version commits. Normally everything goes to the
//! server as one multi-statement simple query, which PostgreSQL runs as one implicit
//! transaction ([`Commit::Together`]: one round trip and one commit per version). When that
//! fails on the server, the statements are replayed one by one in an explicit transaction that
//! is rolled back ([`Commit::RolledBack`]), only to name the failing statement and its line. A
//! version holding a statement PostgreSQL refuses in a transaction (`CONCURRENTLY`) has each
//! statement committed on its own, then the rows ([`Commit::EachOwn`], as `temporal-sql-tool`
//! runs them). All three go through [`execute`].
//!
//! Guarantees: in a transactional version the statements and the rows commit together or not at
//! all. Every failure names the database, version, file and line, and keeps the server's error
//! as its source.
//!
//! Assumptions: a file's statements were split by [`super::sql::split`] the way psql splits
//! them.
//!
//! Caveats: a failure or crash half-way through a `CONCURRENTLY` version leaves the database
//! recorded at the previous version with some statements already applied; re-running applies the
//! version again, which Temporal's files allow (`IF NOT EXISTS` everywhere). An interrupted
//! `CREATE INDEX CONCURRENTLY` leaves an INVALID index that `IF NOT EXISTS` then skips; drop it
//! before re-running (the error says which).

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

use super::bookkeeping::applied_rows_sql;
use super::error::PgError;
use super::schema::PendingVersion;
use super::sql::Statement;
use crate::versions::SchemaVersion;

/// How the statements of one version are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// Statements and bookkeeping rows as one multi-statement query: one implicit transaction.
    Together,
    /// Each statement committed on its own, then the rows.
    EachOwn,
    /// Each statement in an explicit transaction that is then rolled back; no rows.
    RolledBack,
}

/// Where an execution stopped.
enum Failure {
    /// The multi-statement query failed (nothing was committed).
    Batch(sqlx::Error),
    /// A statement run on its own failed.
    At {
        file: String,
        line: usize,
        source: sqlx::Error,
    },
    /// The bookkeeping rows could not be written.
    Rows(sqlx::Error),
    /// The replay transaction could not be opened.
    Begin(sqlx::Error),
}

/// Applies one version folder on `conn` (connected to `db` as the application role) on top of
/// `previous`. `progress` is told of each unit done: each statement, and the bookkeeping rows.
pub(crate) async fn apply_version(
    conn: &mut PgConnection,
    db: &str,
    previous: SchemaVersion,
    v: &PendingVersion,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), PgError> {
    let in_transaction = !v
        .statements
        .iter()
        .any(|(_, s)| cannot_run_in_transaction(&s.text));
    if !in_transaction {
        tracing::warn!(database = db, version = %v.version, "this version holds statements PostgreSQL cannot run in a transaction (CONCURRENTLY); its statements are committed one by one");
    }
    let commit = if in_transaction {
        Commit::Together
    } else {
        Commit::EachOwn
    };
    let rows = applied_rows_sql(db, previous, v);
    let failure = match execute(conn, &v.statements, &rows, commit, progress).await {
        Ok(()) => return Ok(()),
        Err(f) => f,
    };
    let statement_error = |file: String, line: usize, source: sqlx::Error| {
        let (database, version, source) = (db.to_string(), v.version, Box::new(source));
        if in_transaction {
            PgError::Statement {
                database,
                version,
                file,
                line,
                source,
                previous,
            }
        } else {
            PgError::StatementOutsideTransaction {
                database,
                version,
                file,
                line,
                source,
                previous,
            }
        }
    };
    let rolled_back = |source| PgError::Query {
        context: format!("applying {db} v{} (rolled back)", v.version),
        source: Box::new(source),
    };
    match failure {
        Failure::At { file, line, source } => Err(statement_error(file, line, source)),
        Failure::Rows(source) => Err(PgError::Query {
            context: format!("recording {db} v{}", v.version),
            source: Box::new(source),
        }),
        // Not the server's answer (the connection broke): there is no statement to find.
        Failure::Batch(e) if e.as_database_error().is_none() => Err(rolled_back(e)),
        Failure::Batch(original) => {
            // Replay to name the failing statement; without one, report the batch's error.
            match execute(conn, &v.statements, "", Commit::RolledBack, &|_| {}).await {
                Err(Failure::At { file, line, source }) => Err(statement_error(file, line, source)),
                _ => Err(rolled_back(original)),
            }
        }
        Failure::Begin(source) => Err(rolled_back(source)),
    }
}

/// Runs `statements` (then `rows`, except when rolled back) on `conn`, committed as `commit`
/// says. The one place schema statements are sent to the server.
async fn execute(
    conn: &mut PgConnection,
    statements: &[(String, Statement)],
    rows: &str,
    commit: Commit,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), Failure> {
    match commit {
        Commit::Together => {
            let mut batch = String::new();
            for (_, stmt) in statements {
                batch.push_str(&stmt.text);
                batch.push_str(";\n");
            }
            batch.push_str(rows);
            sqlx::raw_sql(AssertSqlSafe(batch))
                .execute(&mut *conn)
                .await
                .map_err(Failure::Batch)?;
            progress(statements.len() as u64 + 1);
        }
        Commit::EachOwn => {
            one_by_one(conn, statements, progress).await?;
            sqlx::raw_sql(AssertSqlSafe(rows))
                .execute(&mut *conn)
                .await
                .map_err(Failure::Rows)?;
            progress(1);
        }
        Commit::RolledBack => {
            let mut tx = conn.begin().await.map_err(Failure::Begin)?;
            let replayed = one_by_one(&mut tx, statements, progress).await;
            let _ = tx.rollback().await;
            replayed?;
        }
    }
    Ok(())
}

/// Each statement as its own query, stopping at the first failure.
async fn one_by_one(
    conn: &mut PgConnection,
    statements: &[(String, Statement)],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), Failure> {
    for (file, stmt) in statements {
        sqlx::raw_sql(AssertSqlSafe(stmt.text.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(|source| Failure::At {
                file: file.clone(),
                line: stmt.line,
                source,
            })?;
        progress(1);
    }
    Ok(())
}

/// Statements PostgreSQL refuses inside a transaction block (SQLSTATE 25001). Temporal's own
/// schema uses `CREATE INDEX CONCURRENTLY IF NOT EXISTS` (visibility v1.13 of release 1.31).
fn cannot_run_in_transaction(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(6)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        w.as_slice(),
        ["CREATE", "INDEX", "CONCURRENTLY", ..]
            | ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", ..]
            | ["DROP", "INDEX", "CONCURRENTLY", ..]
            | ["REINDEX", _, "CONCURRENTLY", ..]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn cannot_run_in_transaction_detects_concurrently() {
        assert!(super::cannot_run_in_transaction(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x)"
        ));
        assert!(super::cannot_run_in_transaction(
            "create unique index concurrently a on t (x)"
        ));
        assert!(super::cannot_run_in_transaction(
            "DROP INDEX CONCURRENTLY a"
        ));
        assert!(!super::cannot_run_in_transaction("CREATE INDEX a ON t (x)"));
        assert!(!super::cannot_run_in_transaction(
            "CREATE TABLE concurrently_named (x INT)"
        ));
    }
}
