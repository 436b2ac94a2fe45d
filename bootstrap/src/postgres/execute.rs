//! The one statement executor: how a version folder's statements and its bookkeeping rows reach
//! the server, and how a failure is pinned to a statement.
//!
//! Flow: [`apply_version`] picks how the version commits. Normally everything goes to the
//! server as one multi-statement simple query, which PostgreSQL runs as one implicit
//! transaction ([`Commit::Together`]: one round trip and one commit per version). When the
//! server refuses it, the version is run again statement by statement in one explicit
//! transaction, each statement under a savepoint ([`Commit::Resuming`]): a statement whose
//! effect is already in place ([`Statement::already_took_effect`], by SQLSTATE) is skipped with
//! a warning, the way `temporal-sql-tool` skips "already exists", so a version that a crashed
//! tool (or a crashed version outside a transaction) left half-applied is completed; any other
//! failure rolls everything back and names the statement. A version holding a statement
//! PostgreSQL refuses in a transaction (`CONCURRENTLY`) has each statement committed on its own
//! with the same skipping, then the rows ([`Commit::EachOwn`], as `temporal-sql-tool` runs
//! every version). All three go through [`execute`].
//!
//! Guarantees: in a transactional version the statements and the rows commit together or not at
//! all. The rows recorded are those `temporal-sql-tool update-schema` writes for the version,
//! whoever applied its statements. Every failure names the database, version, file and line,
//! and keeps the server's error as its source.
//!
//! Assumptions: a file's statements were split by [`super::sql::split`] the way psql splits
//! them.
//!
//! Caveats: skipping by SQLSTATE trusts that an object with the statement's name is the one the
//! statement creates, as the tool does. An interrupted `CREATE INDEX CONCURRENTLY` leaves an
//! INVALID index that `IF NOT EXISTS` then skips; drop it before re-running (the error says
//! which).

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
    /// One explicit transaction, each statement under a savepoint, statements already in
    /// effect skipped, then the rows.
    Resuming,
    /// Each statement committed on its own (statements already in effect skipped), then the
    /// rows.
    EachOwn,
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
    /// The transaction could not be opened, a savepoint set, or the commit made.
    Transaction(sqlx::Error),
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
    let rows = applied_rows_sql(db, previous, v);
    let skipped = |file: &str, stmt: &Statement, code: &str| {
        tracing::warn!(
            database = db,
            version = %v.version,
            file,
            line = stmt.line,
            sqlstate = code,
            "statement already in effect (left by an earlier run of this version that stopped half-way); skipped, as temporal-sql-tool does"
        );
    };
    let first = if in_transaction {
        Commit::Together
    } else {
        Commit::EachOwn
    };
    let mut failure = match execute(conn, &v.statements, &rows, first, progress, &skipped).await {
        Ok(()) => return Ok(()),
        Err(f) => f,
    };
    if let Failure::Batch(e) = &failure
        && e.as_database_error().is_some()
    {
        // The server refused the version as a whole: run it again statement by statement,
        // which completes a half-applied version or names the statement that fails.
        failure = match execute(
            conn,
            &v.statements,
            &rows,
            Commit::Resuming,
            progress,
            &skipped,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
    }
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
    Err(match failure {
        Failure::At { file, line, source } => statement_error(file, line, source),
        Failure::Rows(source) => PgError::Query {
            context: format!("recording {db} v{}", v.version),
            source: Box::new(source),
        },
        // Not the server's answer (the connection broke): there is no statement to find.
        Failure::Batch(e) | Failure::Transaction(e) => rolled_back(e),
    })
}

/// Runs `statements`, then `rows`, on `conn`, committed as `commit` says; `skipped` is told of
/// each statement found already in effect. The one place schema statements are sent to the
/// server.
async fn execute(
    conn: &mut PgConnection,
    statements: &[(String, Statement)],
    rows: &str,
    commit: Commit,
    progress: &(dyn Fn(u64) + Sync),
    skipped: &(dyn Fn(&str, &Statement, &str) + Sync),
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
        Commit::Resuming => {
            let mut tx = conn.begin().await.map_err(Failure::Transaction)?;
            one_by_one(&mut tx, statements, true, progress, skipped).await?;
            sqlx::raw_sql(AssertSqlSafe(rows))
                .execute(&mut *tx)
                .await
                .map_err(Failure::Rows)?;
            tx.commit().await.map_err(Failure::Transaction)?;
            progress(1);
        }
        Commit::EachOwn => {
            one_by_one(conn, statements, false, progress, skipped).await?;
            sqlx::raw_sql(AssertSqlSafe(rows))
                .execute(&mut *conn)
                .await
                .map_err(Failure::Rows)?;
            progress(1);
        }
    }
    Ok(())
}

/// Each statement as its own query, skipping those already in effect and stopping at the first
/// other failure. In a transaction (`savepoints`), each statement runs under a savepoint so a
/// skipped one does not abort the transaction.
async fn one_by_one(
    conn: &mut PgConnection,
    statements: &[(String, Statement)],
    savepoints: bool,
    progress: &(dyn Fn(u64) + Sync),
    skipped: &(dyn Fn(&str, &Statement, &str) + Sync),
) -> Result<(), Failure> {
    for (file, stmt) in statements {
        if savepoints {
            sqlx::raw_sql("SAVEPOINT tb_statement")
                .execute(&mut *conn)
                .await
                .map_err(Failure::Transaction)?;
        }
        match sqlx::raw_sql(AssertSqlSafe(stmt.text.as_str()))
            .execute(&mut *conn)
            .await
        {
            Ok(_) => {}
            Err(source) => {
                let code = source
                    .as_database_error()
                    .and_then(|d| d.code())
                    .map(|c| c.into_owned());
                match code {
                    Some(code) if stmt.already_took_effect(&code) => {
                        if savepoints {
                            sqlx::raw_sql("ROLLBACK TO SAVEPOINT tb_statement")
                                .execute(&mut *conn)
                                .await
                                .map_err(Failure::Transaction)?;
                        }
                        skipped(file, stmt, &code);
                    }
                    _ => {
                        return Err(Failure::At {
                            file: file.clone(),
                            line: stmt.line,
                            source,
                        });
                    }
                }
            }
        }
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
