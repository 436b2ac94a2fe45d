//! Read-only checks an upgrade runs on the databases before it writes anything.
//!
//! [`gin_for_character`]: temporalio/temporal#9930 (open). The PostgreSQL visibility versions of
//! 1.30 create GIN indexes on `(namespace_id, <jsonb column>)`; `namespace_id` is `CHAR(64)`,
//! which has a GIN operator class only through the `btree_gin` extension. Visibility v1.2
//! creates the extension, but a database without it (restored without its extensions, or
//! where it was dropped) fails at v1.10 with "data type character has no default operator
//! class for access method gin", half-way through the 1.29 -> 1.30 hop. (PostgreSQL finds a
//! default operator class in any schema: only its absence matters, not the `search_path`.)
//!
//! Guarantees: reads the catalogue only, as the application role.

use sqlx::postgres::PgConnection;

use super::connection::Session;
use super::error::{PgError, query_err};
use super::plan::{RowCount, row_count};
use super::schema::SchemaKind;
use super::step::{StepOptions, spec_for};
use crate::reconcile::Context;

/// What the #9930 check found in the visibility database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GinForCharacter {
    pub database: String,
    /// A default GIN operator class for `character` exists in the database.
    pub usable: bool,
    /// The schema `btree_gin` is installed in, when it is installed.
    pub btree_gin_schema: Option<String>,
}

/// The #9930 condition in the configured PostgreSQL visibility database.
pub async fn gin_for_character(ctx: &Context) -> Result<GinForCharacter, PgError> {
    let spec = spec_for(ctx, SchemaKind::Visibility, &StepOptions::default())?;
    let database = spec.databases[0].name.clone();
    let mut session = Session::open(&spec).await?;
    let conn = session.app(&database).await?;
    let (usable, btree_gin_schema) = read(conn, &database).await?;
    Ok(GinForCharacter {
        database,
        usable,
        btree_gin_schema,
    })
}

/// Rows of `executions_visibility` in the configured PostgreSQL visibility database (what the
/// rewriting versions cost is proportional to); `None` before the table exists.
pub async fn visibility_rows(ctx: &Context) -> Result<Option<RowCount>, PgError> {
    let spec = spec_for(ctx, SchemaKind::Visibility, &StepOptions::default())?;
    let database = spec.databases[0].name.clone();
    let mut session = Session::open(&spec).await?;
    let conn = session.app(&database).await?;
    row_count(conn, "executions_visibility").await
}

async fn read(conn: &mut PgConnection, database: &str) -> Result<(bool, Option<String>), PgError> {
    sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod \
                        WHERE a.amname = 'gin' AND c.opcdefault \
                          AND c.opcintype = 'bpchar'::regtype), \
                (SELECT n.nspname::text FROM pg_extension e \
                   JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'btree_gin')",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(query_err(format!(
        "reading the GIN operator classes in `{database}`"
    )))
}
