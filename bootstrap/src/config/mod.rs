//! The `platform.yaml` model and its loading, validation and JSON Schema. Pure: no network.

pub mod codec;
pub mod load;
pub mod locate;
pub mod model;
pub mod types;
pub mod validate;

pub use load::{ConfigErrors, ConfigIssue, Finding, LoadedConfig, load_file, load_str};
pub use model::*;

/// The JSON Schema of `platform.yaml`, generated from the types (committed as
/// `schemas/platform.schema.json`; a test fails when the committed copy is stale).
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(PlatformConfig);
    let mut value = serde_json::to_value(schema).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "$id".into(),
            "https://temporal-bootstrap.dev/schemas/platform.schema.json".into(),
        );
        obj.insert("title".into(), "temporal-bootstrap platform.yaml".into());
    }
    value
}
