//! Desired vs observed visibility state -> pending changes and the writes that realise them.
//! Pure: no I/O.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::schema::{
    DesiredTemplate, META_KEY, TEMPLATE_NAME, canonical_scalars, canonical_string,
    describe_differences,
};
use crate::reconcile::{Action, Change};

/// What the cluster holds, as far as the visibility step cares.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Persistent cluster settings, flat keys, canonical values.
    pub persistent: BTreeMap<String, Value>,
    /// Transient cluster settings (they override persistent ones).
    pub transient: BTreeMap<String, Value>,
    /// The stored template in canonical form, if any.
    pub template: Option<Value>,
    /// The index, if it exists.
    pub index: Option<IndexState>,
}

#[derive(Debug, Clone, Default)]
pub struct IndexState {
    /// Field name -> canonical definition.
    pub properties: BTreeMap<String, Value>,
    /// Canonical `dynamic` of the mapping root, if set.
    pub dynamic: Option<Value>,
    /// The whole mapping `_meta` as stored (other tools' keys are kept).
    pub meta: Map<String, Value>,
    /// Index settings, flat keys (`index.number_of_shards`), canonical values.
    pub settings: BTreeMap<String, Value>,
}

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `PUT _cluster/settings {"persistent": {...}}` with only the keys that differ.
    ClusterSettings(Map<String, Value>),
    /// `PUT _template/temporal_visibility_v1_template`.
    PutTemplate,
    /// `PUT /<index>` (the template supplies settings and mappings; we add `_meta`).
    CreateIndex,
    /// `PUT /<index>/_mapping {"properties": {...}}`: fields the template has and the index lacks.
    AddFields(Map<String, Value>),
    /// `PUT /<index>/_settings {...}`: dynamic settings that differ (replica count).
    IndexSettings(Map<String, Value>),
    /// `PUT /<index>/_mapping {"_meta": {...}}`: the whole merged `_meta`.
    RecordMeta(Map<String, Value>),
}

impl Op {
    /// Privileges (cluster, index) the write needs on Elasticsearch.
    pub fn privileges(&self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Op::ClusterSettings(_) => (&["manage"], &[]),
            Op::PutTemplate => (&["manage_index_templates"], &[]),
            Op::CreateIndex => (&[], &["create_index"]),
            Op::AddFields(_) | Op::IndexSettings(_) | Op::RecordMeta(_) => (&[], &["manage"]),
        }
    }
}

/// The plan: changes to show and the writes to perform (drift has no write).
#[derive(Debug, Clone, Default)]
pub struct Diff {
    pub changes: Vec<Change>,
    pub ops: Vec<Op>,
}

/// Compares. `template_body` is the template as we PUT it (original field definitions).
pub fn diff(
    observed: &Observed,
    desired: &DesiredTemplate,
    want_settings: &BTreeMap<String, Value>,
    index: &str,
) -> Diff {
    let mut d = Diff::default();
    diff_cluster_settings(&mut d, observed, want_settings);
    diff_template(&mut d, observed, desired);
    match &observed.index {
        None => {
            d.changes.push(Change::new(
                Action::Create,
                format!("index {index}"),
                format!(
                    "from the template, schema {}; records it in the mapping _meta",
                    desired.label()
                ),
            ));
            d.ops.push(Op::CreateIndex);
        }
        Some(state) => {
            diff_fields(&mut d, state, desired, index);
            diff_dynamic(&mut d, state, desired, index);
            index_settings(&mut d, state, desired, index);
            diff_meta(&mut d, state, desired, index);
        }
    }
    d
}

/// Cluster settings: only the keys that differ; a transient override is drift.
fn diff_cluster_settings(
    d: &mut Diff,
    observed: &Observed,
    want_settings: &BTreeMap<String, Value>,
) {
    let mut put = Map::new();
    for (key, want) in want_settings {
        let have = observed.persistent.get(key);
        if have != Some(want) {
            d.changes.push(Change::new(
                Action::Update,
                format!("cluster setting {key}"),
                format!(
                    "persistent {} -> {}",
                    have.map(canonical_string).unwrap_or_else(|| "unset".into()),
                    canonical_string(want)
                ),
            ));
            put.insert(key.clone(), want.clone());
        }
        if let Some(t) = observed.transient.get(key)
            && t != want
        {
            d.changes.push(Change::new(
                Action::Drift,
                format!("cluster setting {key}"),
                format!(
                    "a transient value {} overrides the persistent one; remove it (PUT _cluster/settings {{\"transient\": {{\"{key}\": null}}}})",
                    canonical_string(t)
                ),
            ));
        }
    }
    if !put.is_empty() {
        d.ops.push(Op::ClusterSettings(put));
    }
}

/// The template: only when the stored one differs canonically.
fn diff_template(d: &mut Diff, observed: &Observed, desired: &DesiredTemplate) {
    match &observed.template {
        None => {
            d.changes.push(Change::new(
                Action::Create,
                format!("index template {TEMPLATE_NAME}"),
                format!(
                    "schema {}, patterns {}, {} primary shard(s), replicas {}",
                    desired.label(),
                    canonical_string(&desired.canonical["index_patterns"]),
                    setting(desired, "index.number_of_shards").unwrap_or("?".into()),
                    setting(desired, "index.number_of_replicas")
                        .map(|r| {
                            match setting(desired, "index.auto_expand_replicas") {
                                Some(a) => format!("{r} (auto-expand {a})"),
                                None => r,
                            }
                        })
                        .unwrap_or_else(|| "cluster default".into()),
                ),
            ));
            d.ops.push(Op::PutTemplate);
        }
        Some(stored) if stored != &desired.canonical => {
            let lines = describe_differences(&desired.canonical, stored, 8);
            d.changes.push(Change::new(
                Action::Update,
                format!("index template {TEMPLATE_NAME}"),
                format!("to schema {}: {}", desired.label(), lines.join("; ")),
            ));
            d.ops.push(Op::PutTemplate);
        }
        Some(_) => {}
    }
}

/// Fields the index lacks are added; a field with another mapping is drift (never changed in
/// place).
fn diff_fields(d: &mut Diff, state: &IndexState, desired: &DesiredTemplate, index: &str) {
    let mut add = Map::new();
    let body_props = desired
        .body
        .pointer("/mappings/properties")
        .and_then(Value::as_object);
    for (field, want) in desired.properties() {
        match state.properties.get(&field) {
            None => {
                let original = body_props
                    .and_then(|p| p.get(&field))
                    .cloned()
                    .unwrap_or_else(|| want.clone());
                d.changes.push(Change::new(
                    Action::Update,
                    format!("index {index} field {field}"),
                    format!("add {}", canonical_string(&want)),
                ));
                add.insert(field.clone(), original);
            }
            Some(have) if have != &want => {
                d.changes.push(Change::new(
                    Action::Drift,
                    format!("index {index} field {field}"),
                    format!(
                        "index has {}, template wants {}; a field is never changed in place (it needs a new index and a reindex)",
                        canonical_string(have),
                        canonical_string(&want)
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if !add.is_empty() {
        d.ops.push(Op::AddFields(add));
    }
}

/// The mapping's `dynamic` setting differing from the template is drift.
fn diff_dynamic(d: &mut Diff, state: &IndexState, desired: &DesiredTemplate, index: &str) {
    let want_dynamic = desired.canonical.pointer("/mappings/dynamic");
    if let Some(w) = want_dynamic
        && state.dynamic.as_ref() != Some(w)
    {
        d.changes.push(Change::new(
            Action::Drift,
            format!("index {index} mapping dynamic"),
            format!(
                "index has {}, template wants {}; left unchanged",
                state
                    .dynamic
                    .as_ref()
                    .map(canonical_string)
                    .unwrap_or_else(|| "unset".into()),
                canonical_string(w)
            ),
        ));
    }
}

/// The schema version and template checksum recorded in the mapping `_meta`.
fn diff_meta(d: &mut Diff, state: &IndexState, desired: &DesiredTemplate, index: &str) {
    let record = desired.meta_record();
    let current = state.meta.get(META_KEY);
    if current.map(canonical_scalars) != Some(canonical_scalars(&record)) {
        let was = current
            .map(|m| {
                format!(
                    "{} (sha256 {})",
                    m.get("schema_version")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown version"),
                    m.get("template_sha256")
                        .and_then(Value::as_str)
                        .map(|s| s.chars().take(12).collect::<String>())
                        .unwrap_or_else(|| "?".into())
                )
            })
            .unwrap_or_else(|| "nothing recorded".into());
        d.changes.push(Change::new(
            Action::Update,
            format!("index {index} _meta"),
            format!("record schema {} (was: {was})", desired.label()),
        ));
        let mut merged = state.meta.clone();
        merged.insert(META_KEY.into(), record);
        d.ops.push(Op::RecordMeta(merged));
    }
}

/// Primary shards of an existing index never change (drift); a configured replica count is
/// enforced (it is a dynamic setting), switching `auto_expand_replicas` off.
fn index_settings(d: &mut Diff, state: &IndexState, desired: &DesiredTemplate, index: &str) {
    let want_shards = desired.sizing.primary_shards.to_string();
    if let Some(Value::String(have)) = state.settings.get("index.number_of_shards")
        && *have != want_shards
    {
        d.changes.push(Change::new(
            Action::Drift,
            format!("index {index} primary shards"),
            format!(
                "index has {have}, the plan wants {want_shards}; the primary shard count of an existing index never changes (new indices get {want_shards} from the template; moving needs a new index and a reindex)"
            ),
        ));
    }
    let Some(r) = desired.sizing.replicas else {
        return;
    };
    if state.settings.is_empty() {
        return;
    }
    let want = r.to_string();
    let mut put = Map::new();
    let mut details = Vec::new();
    let auto = state
        .settings
        .get("index.auto_expand_replicas")
        .and_then(Value::as_str)
        .unwrap_or("false");
    if auto != "false" {
        details.push(format!("auto_expand_replicas {auto} -> false"));
        put.insert(
            "index.auto_expand_replicas".into(),
            Value::String("false".into()),
        );
    }
    let have = state
        .settings
        .get("index.number_of_replicas")
        .and_then(Value::as_str)
        .unwrap_or("unset");
    if have != want {
        details.push(format!("number_of_replicas {have} -> {want}"));
        put.insert("index.number_of_replicas".into(), Value::String(want));
    } else if !put.is_empty() {
        // Switching auto-expand off keeps the current count; state it explicitly anyway.
        put.insert("index.number_of_replicas".into(), Value::String(want));
    }
    if !put.is_empty() {
        d.changes.push(Change::new(
            Action::Update,
            format!("index {index} settings"),
            details.join(", "),
        ));
        d.ops.push(Op::IndexSettings(put));
    }
}

fn setting(desired: &DesiredTemplate, key: &str) -> Option<String> {
    desired
        .canonical
        .pointer("/settings")
        .and_then(|s| s.get(key))
        .and_then(Value::as_str)
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::super::schema::{IndexSizing, SchemaFolder, canonical_template, desired_template};
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn desired() -> DesiredTemplate {
        let folder = SchemaFolder {
            template: json!({
                "order": 0,
                "index_patterns": ["temporal_visibility_v1*"],
                "settings": {"index": {"number_of_shards": "1", "number_of_replicas": "0"}},
                "mappings": {"dynamic": "false", "properties": {
                    "WorkflowId": {"type": "keyword"},
                    "StartTime": {"type": "date_nanos"},
                    "D": {"type": "scaled_float", "scaling_factor": 10000}
                }},
                "aliases": {}
            }),
            template_path: PathBuf::from("t"),
            cluster_settings: BTreeMap::new(),
            schema_version: Some("v14".into()),
        };
        desired_template(
            &folder,
            "temporal_visibility_v1_test",
            IndexSizing {
                primary_shards: 1,
                replicas: None,
            },
        )
    }

    fn settings() -> BTreeMap<String, Value> {
        BTreeMap::from([("action.auto_create_index".into(), json!("false"))])
    }

    fn converged(d: &DesiredTemplate) -> Observed {
        let mut meta = Map::new();
        meta.insert(META_KEY.into(), d.meta_record());
        meta.insert("other_tool".into(), json!({"keep": true}));
        Observed {
            persistent: settings(),
            transient: BTreeMap::new(),
            template: Some(canonical_template(&d.body)),
            index: Some(IndexState {
                properties: d.properties(),
                dynamic: Some(json!("false")),
                meta,
                settings: BTreeMap::from([
                    ("index.number_of_shards".into(), json!("1")),
                    ("index.number_of_replicas".into(), json!("0")),
                    ("index.uuid".into(), json!("rVw9qS4eS5iTOf5Zc2soZA")),
                ]),
            }),
        }
    }

    #[test]
    fn fresh_cluster_needs_every_write_in_order() {
        let d = desired();
        let out = diff(
            &Observed::default(),
            &d,
            &settings(),
            "temporal_visibility_v1_test",
        );
        let kinds: Vec<&str> = out
            .ops
            .iter()
            .map(|o| match o {
                Op::ClusterSettings(_) => "settings",
                Op::PutTemplate => "template",
                Op::CreateIndex => "index",
                Op::AddFields(_) => "fields",
                Op::IndexSettings(_) => "index-settings",
                Op::RecordMeta(_) => "meta",
            })
            .collect();
        assert_eq!(kinds, vec!["settings", "template", "index"]);
        assert!(out.changes.iter().all(|c| c.action != Action::Drift));
    }

    #[test]
    fn converged_cluster_needs_nothing() {
        let d = desired();
        let out = diff(
            &converged(&d),
            &d,
            &settings(),
            "temporal_visibility_v1_test",
        );
        assert!(out.changes.is_empty(), "{:?}", out.changes);
        assert!(out.ops.is_empty());
    }

    #[test]
    fn missing_fields_are_added_and_changed_fields_are_drift() {
        let d = desired();
        let mut obs = converged(&d);
        let idx = obs.index.as_mut().unwrap();
        idx.properties.remove("StartTime");
        idx.properties
            .insert("WorkflowId".into(), json!({"type": "text"}));
        idx.properties
            .insert("CustomKeyword".into(), json!({"type": "keyword"}));
        let out = diff(&obs, &d, &settings(), "temporal_visibility_v1_test");
        assert_eq!(
            out.ops,
            vec![Op::AddFields(
                json!({"StartTime": {"type": "date_nanos"}})
                    .as_object()
                    .unwrap()
                    .clone()
            )]
        );
        let drift: Vec<&Change> = out
            .changes
            .iter()
            .filter(|c| c.action == Action::Drift)
            .collect();
        assert_eq!(drift.len(), 1);
        assert!(drift[0].resource.ends_with("field WorkflowId"));
        assert!(drift[0].detail.contains("never changed in place"));
    }

    #[test]
    fn meta_is_merged_not_replaced() {
        let d = desired();
        let mut obs = converged(&d);
        obs.index.as_mut().unwrap().meta.insert(
            META_KEY.into(),
            json!({"schema_version": "v13", "template_sha256": "abc"}),
        );
        let out = diff(&obs, &d, &settings(), "temporal_visibility_v1_test");
        let Some(Op::RecordMeta(m)) = out.ops.first() else {
            panic!("{:?}", out.ops)
        };
        assert_eq!(m["other_tool"], json!({"keep": true}));
        assert_eq!(m[META_KEY]["schema_version"], "v14");
        assert!(out.changes[0].detail.contains("was: v13"));
    }

    #[test]
    fn cluster_setting_written_only_when_it_differs() {
        let d = desired();
        let mut obs = converged(&d);
        obs.persistent
            .insert("action.auto_create_index".into(), json!("true"));
        obs.transient
            .insert("action.auto_create_index".into(), json!("true"));
        let out = diff(&obs, &d, &settings(), "temporal_visibility_v1_test");
        assert_eq!(out.ops.len(), 1);
        assert!(
            matches!(&out.ops[0], Op::ClusterSettings(m) if m["action.auto_create_index"] == "false")
        );
        assert!(out.changes.iter().any(|c| c.action == Action::Drift));
    }

    #[test]
    fn template_difference_is_described() {
        let d = desired();
        let mut obs = converged(&d);
        let mut stored = obs.template.take().unwrap();
        stored["settings"]["index.number_of_shards"] = json!("5");
        obs.template = Some(stored);
        let out = diff(&obs, &d, &settings(), "temporal_visibility_v1_test");
        assert_eq!(out.ops, vec![Op::PutTemplate]);
        assert!(
            out.changes[0]
                .detail
                .contains("settings.index.number_of_shards: \"5\" -> \"1\""),
            "{}",
            out.changes[0].detail
        );
    }
}

#[cfg(test)]
mod sizing_tests {
    use super::super::schema::{IndexSizing, SchemaFolder, desired_template};
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn desired(shards: u32, replicas: Option<u32>) -> DesiredTemplate {
        let folder = SchemaFolder {
            template: json!({"index_patterns": ["temporal_visibility_v1*"],
                "settings": {"index": {"auto_expand_replicas": "0-2"}},
                "mappings": {"properties": {}}}),
            template_path: PathBuf::from("t"),
            cluster_settings: BTreeMap::new(),
            schema_version: None,
        };
        desired_template(
            &folder,
            "temporal_visibility_v1_x",
            IndexSizing {
                primary_shards: shards,
                replicas,
            },
        )
    }

    fn index(settings: &[(&str, &str)]) -> IndexState {
        IndexState {
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
            ..IndexState::default()
        }
    }

    #[test]
    fn shard_count_of_an_existing_index_is_drift() {
        let mut d = Diff::default();
        let state = index(&[("index.number_of_shards", "1")]);
        index_settings(&mut d, &state, &desired(4, None), "i");
        assert_eq!(d.changes.len(), 1);
        assert_eq!(d.changes[0].action, Action::Drift);
        assert!(
            d.changes[0]
                .detail
                .contains("index has 1, the plan wants 4")
        );
        assert!(d.ops.is_empty());
    }

    #[test]
    fn configured_replicas_are_enforced_and_auto_expand_switched_off() {
        let mut d = Diff::default();
        let state = index(&[
            ("index.number_of_shards", "1"),
            ("index.number_of_replicas", "0"),
            ("index.auto_expand_replicas", "0-2"),
        ]);
        index_settings(&mut d, &state, &desired(1, Some(2)), "i");
        assert_eq!(
            d.ops,
            vec![Op::IndexSettings(
                json!({"index.auto_expand_replicas": "false", "index.number_of_replicas": "2"})
                    .as_object()
                    .unwrap()
                    .clone()
            )]
        );
        assert_eq!(
            d.changes[0].detail,
            "auto_expand_replicas 0-2 -> false, number_of_replicas 0 -> 2"
        );
        // Already there: nothing.
        let mut d = Diff::default();
        let state = index(&[
            ("index.number_of_shards", "1"),
            ("index.number_of_replicas", "2"),
            ("index.auto_expand_replicas", "false"),
        ]);
        index_settings(&mut d, &state, &desired(1, Some(2)), "i");
        assert!(d.ops.is_empty() && d.changes.is_empty());
        // No replicas configured: the index's own replica settings are left alone.
        let mut d = Diff::default();
        index_settings(
            &mut d,
            &index(&[("index.number_of_replicas", "5")]),
            &desired(1, None),
            "i",
        );
        assert!(d.ops.is_empty());
    }
}
