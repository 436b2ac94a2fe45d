//! Helpers shared by the integration tests that need the dev stack's PostgreSQL.

/// A PostgreSQL server of the dev stack and the logins the tests use on it.
#[derive(Clone)]
pub struct Pg {
    pub host: String,
    pub port: u16,
    /// What platform.yaml's `persistence.postgres.admin` says: the login the tool runs with.
    pub admin_user: String,
    pub admin_password: String,
    /// The environment variable platform.yaml reads the admin password from (`env:NAME`): the
    /// one `scripts/dev-services env` exports it in, so library calls in the test process log in.
    pub admin_password_env: &'static str,
    /// A superuser, for the tests' own setup, inspection and cleanup (the admin itself on the
    /// PostgreSQL 15 service).
    pub super_user: String,
    pub super_password: String,
}

impl Pg {
    /// The admin is the superuser (the PostgreSQL 15 service), not a managed service's admin.
    #[allow(dead_code)]
    pub fn admin_is_superuser(&self) -> bool {
        self.admin_user == self.super_user
    }
}

fn env_or_panic(names: &[&str]) -> Vec<String> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let values: Vec<Option<String>> = names.iter().map(|n| get(n)).collect();
    if values.iter().any(Option::is_none) {
        panic!(
            "{} are not all set; run `eval \"$(scripts/dev-services env)\"` after `scripts/dev-services start`",
            names.join("/")
        );
    }
    values.into_iter().flatten().collect()
}

fn pg_from(host: &str, port: &str, admin: [&'static str; 2], superuser: [&str; 2]) -> Pg {
    let v = env_or_panic(&[host, port, admin[0], admin[1], superuser[0], superuser[1]]);
    Pg {
        host: v[0].clone(),
        port: v[1]
            .parse()
            .unwrap_or_else(|_| panic!("{port} is not a port number")),
        admin_user: v[2].clone(),
        admin_password: v[3].clone(),
        admin_password_env: admin[1],
        super_user: v[4].clone(),
        super_password: v[5].clone(),
    }
}

/// The dev stack's PostgreSQL 15, administered by its superuser. Only tests marked to need the
/// stack call it (they are ignored without it, see `build.rs`), so a missing variable here is a
/// failure.
pub fn pg() -> Pg {
    let admin = ["TB_PG_ADMIN_USER", "TB_PG_ADMIN_PASSWORD"];
    pg_from("TB_PG_HOST", "TB_PG_PORT", admin, admin)
}

/// The dev stack's second PostgreSQL (a newer major, `postgres-rds`), administered as Amazon
/// RDS's master user is: LOGIN, CREATEROLE, CREATEDB, not a superuser.
#[allow(dead_code)] // used through `on_every_server!`
pub fn pg_rds() -> Pg {
    pg_from(
        "TB_PG_RDS_HOST",
        "TB_PG_RDS_PORT",
        ["TB_PG_RDS_ADMIN_USER", "TB_PG_RDS_ADMIN_PASSWORD"],
        ["TB_PG_RDS_SUPERUSER", "TB_PG_RDS_SUPERUSER_PASSWORD"],
    )
}

/// A runtime for one test, as `#[tokio::test]` makes it.
#[allow(dead_code)] // used through `on_every_server!`
pub fn new_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Declares each listed `async fn NAME(pg: Pg)` scenario as two tests: `superuser_pg15::NAME`
/// (the PostgreSQL 15 service, its superuser as the admin) and `rds_like::NAME` (the newer
/// PostgreSQL, an RDS-shaped admin that is not a superuser). Each runs on a runtime of its own,
/// or, with `on_every_server! { block_on RUNTIME; NAME, ... }`, on the one `RUNTIME()` returns.
#[allow(unused_macros)]
macro_rules! on_every_server {
    (@server $module:ident $pg:ident $rt:path; $($name:ident),*) => {
        mod $module {
            $(
                #[test]
                #[cfg_attr(
                    not(tb_stack),
                    ignore = "needs the dev stack: scripts/dev-services start; eval \"$(scripts/dev-services env)\""
                )]
                fn $name() {
                    $rt().block_on(crate::$name(crate::common::$pg()))
                }
            )*
        }
    };
    (block_on $rt:path; $($name:ident),* $(,)?) => {
        on_every_server!(@server superuser_pg15 pg $rt; $($name),*);
        on_every_server!(@server rds_like pg_rds $rt; $($name),*);
    };
    ($($name:ident),* $(,)?) => {
        on_every_server!(block_on crate::common::new_runtime; $($name),*);
    };
}

/// The superuser's connection to `db` (no TLS, no statement logging): the tests' setup and
/// inspection, never what the tool under test logs in as.
pub async fn admin_conn(pg: &Pg, db: &str) -> Result<sqlx::postgres::PgConnection, sqlx::Error> {
    conn_as(pg, &pg.super_user, &pg.super_password, db).await
}

/// `user`'s connection to `db` on `pg` (no TLS, no statement logging).
pub async fn conn_as(
    pg: &Pg,
    user: &str,
    password: &str,
    db: &str,
) -> Result<sqlx::postgres::PgConnection, sqlx::Error> {
    use sqlx::ConnectOptions;
    sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .host(&pg.host)
        .port(pg.port)
        .username(user)
        .password(password)
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
