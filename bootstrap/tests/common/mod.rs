//! Helpers shared by the integration tests that need the dev stack's PostgreSQL.

/// Admin access to the PostgreSQL of `scripts/dev-services` (TB_PG_* environment variables).
#[derive(Clone)]
pub struct Pg {
    pub host: String,
    pub port: u16,
    pub admin_user: String,
    pub admin_password: String,
}

/// The dev stack's PostgreSQL. Only tests marked to need the stack call it (they are ignored
/// without it, see `build.rs`), so a missing variable here is a failure.
pub fn pg() -> Pg {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        get("TB_PG_HOST"),
        get("TB_PG_PORT"),
        get("TB_PG_ADMIN_USER"),
        get("TB_PG_ADMIN_PASSWORD"),
    ) {
        (Some(host), Some(port), Some(admin_user), Some(admin_password)) => Pg {
            host,
            port: port.parse().expect("TB_PG_PORT is a port number"),
            admin_user,
            admin_password,
        },
        _ => panic!(
            "TB_PG_HOST/TB_PG_PORT/TB_PG_ADMIN_USER/TB_PG_ADMIN_PASSWORD are not set; run `eval \"$(scripts/dev-services env)\"` after `scripts/dev-services start`"
        ),
    }
}

/// An admin connection to `db` on the dev stack's PostgreSQL (no TLS, no statement logging).
pub async fn admin_conn(pg: &Pg, db: &str) -> Result<sqlx::postgres::PgConnection, sqlx::Error> {
    use sqlx::ConnectOptions;
    sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .host(&pg.host)
        .port(pg.port)
        .username(&pg.admin_user)
        .password(&pg.admin_password)
        .database(db)
        .ssl_mode(sqlx::postgres::PgSslMode::Disable)
        .disable_statement_logging()
        .connect()
        .await
}

/// Drops `databases` (with FORCE) and `role` on the dev stack's PostgreSQL, ignoring errors: the
/// cleanup of a test's own objects, called from `Drop` (so on a thread and runtime of its own,
/// even while a test panics).
pub fn drop_databases_and_role(pg: &Pg, databases: &[String], role: &str) {
    use sqlx::AssertSqlSafe;
    let (pg, databases, role) = (pg.clone(), databases.to_vec(), role.to_string());
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("a tokio runtime for the cleanup");
        rt.block_on(async move {
            let Ok(mut c) = admin_conn(&pg, "postgres").await else {
                return;
            };
            for db in databases {
                let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
                )))
                .execute(&mut c)
                .await;
            }
            let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS \"{role}\"")))
                .execute(&mut c)
                .await;
        });
    })
    .join();
}
