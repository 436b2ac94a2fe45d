//! The release's Elasticsearch schema folder, the desired index template, and the canonical JSON
//! form used to compare what we want with what a cluster returns. Pure apart from reading files.
//!
//! Layout read (mirrors Temporal's `schema/elasticsearch/`):
//!
//! ```text
//! <schema_dir>/visibility/index_template_v7.json        the current template (often a symlink
//!                                                       to versioned/vN/index_template_v7.json)
//! <schema_dir>/visibility/cluster_settings_v7.json      {"persistent": {...}} (optional)
//! <schema_dir>/visibility/versioned/vN/index_template_v7.json   one folder per schema version
//! ```
//!
//! The schema version (`v14`, ...) comes from, in order: `mappings._meta.schema_version` in the
//! template; the symlink target of the template; the highest `versioned/vN` folder whose template
//! is identical (canonically) to the current one. Otherwise it is `None` ("unknown").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::SearchError;

/// The template name Temporal's tooling uses (legacy `_template` API).
pub const TEMPLATE_NAME: &str = "temporal_visibility_v1_template";
/// Temporal's pattern; every index name the config accepts matches it.
pub const DEFAULT_PATTERN: &str = "temporal_visibility_v1*";
/// Key under the index mapping `_meta` where we record what we applied.
pub const META_KEY: &str = "temporal_bootstrap";

const TEMPLATE_FILE: &str = "index_template_v7.json";
const CLUSTER_SETTINGS_FILE: &str = "cluster_settings_v7.json";

/// What the release's schema folder holds, parsed.
#[derive(Debug, Clone)]
pub struct SchemaFolder {
    /// The template file as read (before our adjustments).
    pub template: Value,
    pub template_path: PathBuf,
    /// Persistent cluster settings to enforce, flat keys -> canonical string values.
    pub cluster_settings: BTreeMap<String, Value>,
    /// `v14`, when it can be told for sure.
    pub schema_version: Option<String>,
}

/// Sizing applied on top of the release template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSizing {
    /// Primary shards (from the capacity plan; 1 until the planner provides it).
    pub primary_shards: u32,
    /// Replicas per primary; `None` keeps the template's own replica settings.
    pub replicas: Option<u32>,
}

/// The template we want stored, in canonical form, with its digest.
#[derive(Debug, Clone)]
pub struct DesiredTemplate {
    /// The body we PUT (release field definitions as written, flat settings).
    pub body: Value,
    /// Its canonical form: what we compare with the stored template.
    pub canonical: Value,
    /// sha256 of the canonical serialisation.
    pub sha256: String,
    pub schema_version: Option<String>,
    /// The sizing applied (also enforced on an existing index where it can be).
    pub sizing: IndexSizing,
}

impl DesiredTemplate {
    /// `mappings.properties` of the template (field name -> canonical definition).
    pub fn properties(&self) -> BTreeMap<String, Value> {
        self.canonical
            .pointer("/mappings/properties")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// The `_meta` entry recorded on the index for this template.
    pub fn meta_record(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "managed_by".into(),
            Value::String("temporal-bootstrap".into()),
        );
        m.insert("template".into(), Value::String(TEMPLATE_NAME.into()));
        m.insert("template_sha256".into(), Value::String(self.sha256.clone()));
        m.insert(
            "schema_version".into(),
            Value::String(
                self.schema_version
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            ),
        );
        Value::Object(m)
    }

    /// Short form for messages: `v14 (sha256 1a2b3c4d5e6f)`.
    pub fn label(&self) -> String {
        format!(
            "{} (sha256 {})",
            self.schema_version.as_deref().unwrap_or("unknown version"),
            self.sha256.chars().take(12).collect::<String>()
        )
    }
}

/// Reads `<schema_dir>/visibility/`.
pub fn load_folder(schema_dir: &Path) -> Result<SchemaFolder, SearchError> {
    load_folder_at(schema_dir, None)
}

/// Reads `<schema_dir>/visibility/` with the template of schema version `version`
/// (`versioned/vN/`, which a release folder keeps for every version up to its own: what one
/// upgrade hop applies), or the release's current template when `None`.
pub fn load_folder_at(
    schema_dir: &Path,
    version: Option<u32>,
) -> Result<SchemaFolder, SearchError> {
    let mut vis = schema_dir.join("visibility");
    if !vis.is_dir()
        && (schema_dir.join(TEMPLATE_FILE).is_file() || schema_dir.join("versioned").is_dir())
    {
        // Pointed at the `visibility` folder itself: accept it.
        vis = schema_dir.to_path_buf();
    }
    let mut template_path = vis.join(TEMPLATE_FILE);
    if let Some(n) = version {
        template_path = vis
            .join("versioned")
            .join(format!("v{n}"))
            .join(TEMPLATE_FILE);
        if !template_path.is_file() {
            return Err(SearchError::Schema(format!(
                "{} not found: Elasticsearch schema v{n} is needed; point visibility.elasticsearch.schema_dir at a release folder that holds it (the target release's folder keeps every earlier version)",
                template_path.display()
            )));
        }
    } else if !template_path.is_file() {
        // The release's `visibility/index_template_v7.json` is a symlink to the newest
        // `versioned/vN/` copy; Go module zips (`go mod download go.temporal.io/server`) drop
        // symlinks, so the newest versioned copy is the current template.
        match newest_versioned(&vis) {
            Some(newest) => template_path = newest,
            None => {
                return Err(SearchError::Schema(format!(
                    "{} not found, nor any versioned/vN/{TEMPLATE_FILE}; visibility.elasticsearch.schema_dir must be the release's schema/elasticsearch folder (holding visibility/{TEMPLATE_FILE})",
                    template_path.display()
                )));
            }
        }
    }
    let template = read_json(&template_path)?;
    if !template.is_object() {
        return Err(SearchError::Schema(format!(
            "{} is not a JSON object",
            template_path.display()
        )));
    }
    let settings_path = vis.join(CLUSTER_SETTINGS_FILE);
    let cluster_settings = if settings_path.exists() {
        let v = read_json(&settings_path)?;
        let persistent = v.get("persistent").cloned().unwrap_or(Value::Null);
        let mut flat = BTreeMap::new();
        flatten_into("", &persistent, &mut flat);
        flat.into_iter()
            .map(|(k, v)| (k, canonical_scalars(&v)))
            .collect()
    } else {
        // Temporal's own file holds exactly this; enforce it even when the file is absent.
        BTreeMap::from([(
            "action.auto_create_index".to_string(),
            Value::String("false".into()),
        )])
    };
    let schema_version = detect_version(&vis, &template_path, &template);
    Ok(SchemaFolder {
        template,
        template_path,
        cluster_settings,
        schema_version,
    })
}

/// `versioned/vN/index_template_v7.json` with the highest N, if any.
fn newest_versioned(vis: &Path) -> Option<PathBuf> {
    std::fs::read_dir(vis.join("versioned"))
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            let n = name.strip_prefix('v')?.parse::<u32>().ok()?;
            let path = entry.path().join(TEMPLATE_FILE);
            path.is_file().then_some((n, path))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, path)| path)
}

fn read_json(path: &Path) -> Result<Value, SearchError> {
    let text = crate::fsutil::read_limited_string(path, crate::fsutil::FileKind::Schema)
        .map_err(|e| SearchError::Schema(e.to_string()))?;
    serde_json::from_str(&text)
        .map_err(|e| SearchError::Schema(format!("{} is not valid JSON: {e}", path.display())))
}

fn detect_version(vis: &Path, template_path: &Path, template: &Value) -> Option<String> {
    if let Some(v) = template.pointer("/mappings/_meta/schema_version") {
        let s = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Some(normalise_version(&s));
    }
    if let Ok(target) = std::fs::read_link(template_path)
        && let Some(v) = version_in_path(&target)
    {
        return Some(v);
    }
    // A release tarball may have the symlink dereferenced: find the identical versioned copy.
    let current = canonical_string(&canonical_template(template));
    let mut best: Option<u32> = None;
    let entries = std::fs::read_dir(vis.join("versioned")).ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(n) = name.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = crate::fsutil::read_limited_string(
            &entry.path().join(TEMPLATE_FILE),
            crate::fsutil::FileKind::Schema,
        ) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if canonical_string(&canonical_template(&v)) == current && best.is_none_or(|b| n > b) {
            best = Some(n);
        }
    }
    best.map(|n| format!("v{n}"))
}

fn version_in_path(p: &Path) -> Option<String> {
    p.components().find_map(|c| {
        let s = c.as_os_str().to_string_lossy();
        let n = s.strip_prefix('v')?.parse::<u32>().ok()?;
        Some(format!("v{n}"))
    })
}

fn normalise_version(s: &str) -> String {
    let t = s.trim();
    if t.starts_with('v') {
        t.to_string()
    } else {
        format!("v{t}")
    }
}

/// Parses `v14` into 14.
pub fn version_number(v: &str) -> Option<u32> {
    v.strip_prefix('v')?.parse().ok()
}

/// Builds the template we want: the release template with `index_patterns` covering `index`
/// and the sizing applied on top. Settings are written flat (`index.number_of_shards`), as
/// Elasticsearch stores them; mappings and aliases are kept as the release wrote them.
pub fn desired_template(
    folder: &SchemaFolder,
    index: &str,
    sizing: IndexSizing,
) -> DesiredTemplate {
    let orig = &folder.template;
    let canon = canonical_template(orig);
    let patterns: Vec<String> = canon["index_patterns"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let patterns = if patterns.iter().any(|p| glob_match(p, index)) {
        canon["index_patterns"].clone()
    } else {
        // The configured name must get this template; Temporal's default pattern is kept
        // when it matches, otherwise the exact index name is used.
        let new = if glob_match(DEFAULT_PATTERN, index) {
            DEFAULT_PATTERN.to_string()
        } else {
            index.to_string()
        };
        Value::Array(vec![Value::String(new)])
    };
    let mut settings = canon["settings"].as_object().cloned().unwrap_or_default();
    settings.insert(
        "index.number_of_shards".into(),
        Value::String(sizing.primary_shards.to_string()),
    );
    if let Some(r) = sizing.replicas {
        settings.insert(
            "index.number_of_replicas".into(),
            Value::String(r.to_string()),
        );
        // auto_expand_replicas would override an explicit replica count.
        settings.remove("index.auto_expand_replicas");
    }
    let mut body = Map::new();
    body.insert(
        "order".into(),
        orig.get("order").cloned().unwrap_or(Value::from(0)),
    );
    body.insert("index_patterns".into(), patterns);
    body.insert("settings".into(), Value::Object(settings));
    body.insert(
        "mappings".into(),
        orig.get("mappings")
            .map(unwrap_type)
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
    );
    body.insert(
        "aliases".into(),
        orig.get("aliases")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
    );
    if let Some(v) = orig.get("version") {
        body.insert("version".into(), v.clone());
    }
    let body = Value::Object(body);
    let canonical = canonical_template(&body);
    let sha256 = sha256_hex(canonical_string(&canonical).as_bytes());
    DesiredTemplate {
        body,
        canonical,
        sha256,
        schema_version: folder.schema_version.clone(),
        sizing,
    }
}

/// The canonical form of a legacy index template, as written by us or returned by
/// `GET _template/NAME?flat_settings=true`: settings flattened with the `index.` prefix, every
/// scalar as a string (Elasticsearch stores settings as strings and may return `10000` as
/// `10000.0`), keys sorted. Fields Elasticsearch adds or drops on its own are normalised away.
pub fn canonical_template(t: &Value) -> Value {
    let mut out = Map::new();
    let order = t.get("order").cloned().unwrap_or(Value::from(0));
    out.insert("order".into(), canonical_scalars(&order));
    let patterns = match t.get("index_patterns").or_else(|| t.get("template")) {
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(a)) => a.iter().map(canonical_scalars).collect(),
        _ => vec![],
    };
    out.insert("index_patterns".into(), Value::Array(patterns));
    let mut flat = BTreeMap::new();
    if let Some(s) = t.get("settings") {
        flatten_into("", s, &mut flat);
    }
    let settings: Map<String, Value> = flat
        .into_iter()
        .map(|(k, v)| {
            let k = if k.starts_with("index.") {
                k
            } else {
                format!("index.{k}")
            };
            (k, canonical_scalars(&v))
        })
        .collect();
    out.insert("settings".into(), Value::Object(settings));
    let mappings = t
        .get("mappings")
        .map(unwrap_type)
        .map(canonical_scalars)
        .unwrap_or(Value::Object(Map::new()));
    out.insert("mappings".into(), mappings);
    let aliases = t
        .get("aliases")
        .map(canonical_scalars)
        .unwrap_or(Value::Object(Map::new()));
    out.insert("aliases".into(), aliases);
    if let Some(v) = t.get("version") {
        out.insert("version".into(), canonical_scalars(v));
    }
    Value::Object(out)
}

const MAPPING_ROOT_KEYS: &[&str] = &[
    "properties",
    "dynamic",
    "dynamic_templates",
    "_meta",
    "_source",
    "_routing",
    "_field_names",
    "date_detection",
    "numeric_detection",
    "runtime",
    "enabled",
];

/// Elasticsearch 7 may return mappings wrapped in a type name (`{"_doc": {...}}`).
pub(crate) fn unwrap_type(m: &Value) -> &Value {
    if let Some(obj) = m.as_object()
        && obj.len() == 1
        && let Some((k, inner)) = obj.iter().next()
        && !MAPPING_ROOT_KEYS.contains(&k.as_str())
        && inner.get("properties").is_some()
    {
        return inner;
    }
    m
}

/// Flattens nested objects into dotted keys; arrays and scalars are leaves.
fn flatten_into(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, inner) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_into(&key, inner, out);
            }
        }
        Value::Null if prefix.is_empty() => {}
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// Every scalar as a string (numbers normalised: `10000`, `10000.0` and `"10000"` are equal).
pub fn canonical_scalars(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), canonical_scalars(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(canonical_scalars).collect()),
        Value::Number(n) => Value::String(number_string(n)),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::String(s) => {
            // "10000.0" and "10000" are the same setting value.
            if let Ok(f) = s.parse::<f64>()
                && f.is_finite()
                && f.fract() == 0.0
                && f.abs() < 1e15
                && s.contains('.')
            {
                Value::String(format!("{}", f as i64))
            } else {
                Value::String(s.clone())
            }
        }
        Value::Null => Value::Null,
    }
}

fn number_string(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}

/// Deterministic serialisation: object keys sorted at every level, no whitespace.
pub fn canonical_string(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Elasticsearch index-pattern matching: `*` matches any run of characters.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(pos) = rest.find(part) {
            rest = &rest[pos + part.len()..];
        } else {
            return false;
        }
    }
    true
}

/// Differences between two canonical values, as `path: a -> b` lines (at most `limit`).
pub fn describe_differences(want: &Value, have: &Value, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("", want, have, &mut out);
    if out.len() > limit {
        let more = out.len() - limit;
        out.truncate(limit);
        out.push(format!("... and {more} more"));
    }
    out
}

fn diff_into(path: &str, want: &Value, have: &Value, out: &mut Vec<String>) {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            let keys: std::collections::BTreeSet<&String> = w.keys().chain(h.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (w.get(k), h.get(k)) {
                    (Some(a), Some(b)) => diff_into(&p, a, b, out),
                    (Some(a), None) => out.push(format!("{p}: missing -> {}", short(a))),
                    (None, Some(b)) => out.push(format!("{p}: {} -> removed", short(b))),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a != b => out.push(format!("{path}: {} -> {}", short(b), short(a))),
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let s = canonical_string(v);
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_absorbs_elasticsearch_normalisation() {
        let ours = json!({
            "index_patterns": ["temporal_visibility_v1*"],
            "settings": {"index": {"number_of_shards": 1, "sort.field": ["CloseTime", "RunId"],
                          "search.idle.after": "365d"}},
            "mappings": {"dynamic": false, "properties": {
                "D": {"type": "scaled_float", "scaling_factor": 10000}}},
            "aliases": {}
        });
        // What GET _template?flat_settings=true returns for it.
        let stored = json!({
            "order": 0,
            "index_patterns": ["temporal_visibility_v1*"],
            "settings": {"index.number_of_shards": "1", "index.sort.field": ["CloseTime", "RunId"],
                         "index.search.idle.after": "365d"},
            "mappings": {"dynamic": "false", "properties": {
                "D": {"type": "scaled_float", "scaling_factor": 10000.0}}},
            "aliases": {}
        });
        assert_eq!(
            canonical_string(&canonical_template(&ours)),
            canonical_string(&canonical_template(&stored))
        );
    }

    #[test]
    fn type_wrapped_mappings_are_unwrapped() {
        let wrapped = json!({"mappings": {"_doc": {"properties": {"A": {"type": "keyword"}}}}});
        let plain = json!({"mappings": {"properties": {"A": {"type": "keyword"}}}});
        assert_eq!(canonical_template(&wrapped), canonical_template(&plain));
    }

    #[test]
    fn glob_matches_like_index_patterns() {
        assert!(glob_match(
            "temporal_visibility_v1*",
            "temporal_visibility_v1_prod"
        ));
        assert!(glob_match(
            "temporal_visibility_v1*",
            "temporal_visibility_v1"
        ));
        assert!(!glob_match("temporal_visibility_v1*", "other"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("exact", "exact"));
    }

    fn folder(template: Value) -> SchemaFolder {
        SchemaFolder {
            template,
            template_path: PathBuf::from("t.json"),
            cluster_settings: BTreeMap::new(),
            schema_version: Some("v14".into()),
        }
    }

    #[test]
    fn sizing_and_patterns_are_applied_on_top() {
        let f = folder(json!({
            "index_patterns": ["temporal_visibility_v1*"],
            "settings": {"index": {"number_of_shards": "1", "number_of_replicas": "0",
                                   "auto_expand_replicas": "0-2"}},
            "mappings": {"properties": {}}
        }));
        let d = desired_template(
            &f,
            "temporal_visibility_v1_prod",
            IndexSizing {
                primary_shards: 4,
                replicas: Some(2),
            },
        );
        assert_eq!(d.body["settings"]["index.number_of_shards"], "4");
        assert_eq!(d.body["settings"]["index.number_of_replicas"], "2");
        assert!(
            d.body["settings"]
                .get("index.auto_expand_replicas")
                .is_none()
        );
        assert_eq!(d.body["index_patterns"], json!(["temporal_visibility_v1*"]));
        assert_eq!(d.canonical, canonical_template(&d.body));
        // Without replicas the template's own replica settings stay.
        let d2 = desired_template(
            &f,
            "temporal_visibility_v1_prod",
            IndexSizing {
                primary_shards: 1,
                replicas: None,
            },
        );
        assert_eq!(
            d2.canonical["settings"]["index.auto_expand_replicas"],
            "0-2"
        );
        assert_ne!(d.sha256, d2.sha256);
        assert_eq!(d2.sha256.len(), 64);
    }

    #[test]
    fn patterns_are_adjusted_when_they_miss_the_index() {
        let f = folder(json!({"index_patterns": ["temporal_visibility_v1_dev"], "mappings": {}}));
        let sizing = IndexSizing {
            primary_shards: 1,
            replicas: None,
        };
        let d = desired_template(&f, "temporal_visibility_v1_prod", sizing);
        assert_eq!(d.body["index_patterns"], json!(["temporal_visibility_v1*"]));
        let d = desired_template(&f, "custom_visibility", sizing);
        assert_eq!(d.body["index_patterns"], json!(["custom_visibility"]));
    }

    fn fixture_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/elasticsearch/schema/elasticsearch")
    }

    #[test]
    fn fixture_folder_is_read_with_its_version() {
        let f = load_folder(&fixture_dir()).unwrap();
        assert_eq!(f.schema_version.as_deref(), Some("v14"));
        assert_eq!(
            f.cluster_settings.get("action.auto_create_index"),
            Some(&Value::String("false".into()))
        );
        // The visibility folder itself is accepted too.
        let f2 = load_folder(&fixture_dir().join("visibility")).unwrap();
        assert_eq!(f2.schema_version, f.schema_version);
    }

    #[test]
    fn without_the_top_level_symlink_the_newest_versioned_template_is_current() {
        // What `go mod download go.temporal.io/server@v1.32.2` yields: no symlink, only versioned/.
        let dir = tempfile::tempdir().unwrap();
        let vis = dir.path().join("visibility");
        for v in ["v9", "v13", "v14"] {
            std::fs::create_dir_all(vis.join("versioned").join(v)).unwrap();
        }
        for (from, to) in [("v13", "v9"), ("v13", "v13"), ("v14", "v14")] {
            std::fs::copy(
                fixture_dir().join(format!(
                    "visibility/versioned/{from}/index_template_v7.json"
                )),
                vis.join(format!("versioned/{to}/index_template_v7.json")),
            )
            .unwrap();
        }
        let f = load_folder(dir.path()).unwrap();
        assert_eq!(f.schema_version.as_deref(), Some("v14"));
        assert!(
            f.template_path
                .ends_with("versioned/v14/index_template_v7.json")
        );
        std::fs::remove_dir_all(vis.join("versioned")).unwrap();
        let e = load_folder(dir.path()).unwrap_err().to_string();
        assert!(e.contains("versioned/vN"), "{e}");
    }

    #[test]
    fn version_comes_from_meta_then_symlink_then_identical_copy() {
        let dir = tempfile::tempdir().unwrap();
        let vis = dir.path().join("visibility");
        let v13 = fixture_dir().join("visibility/versioned/v13/index_template_v7.json");
        let v14 = fixture_dir().join("visibility/versioned/v14/index_template_v7.json");
        for v in ["v13", "v14"] {
            std::fs::create_dir_all(vis.join("versioned").join(v)).unwrap();
        }
        std::fs::copy(&v13, vis.join("versioned/v13/index_template_v7.json")).unwrap();
        std::fs::copy(&v14, vis.join("versioned/v14/index_template_v7.json")).unwrap();
        // A dereferenced copy (release tarballs may not keep symlinks): found by content.
        std::fs::copy(&v13, vis.join("index_template_v7.json")).unwrap();
        assert_eq!(
            load_folder(dir.path()).unwrap().schema_version.as_deref(),
            Some("v13")
        );
        // No identical copy: unknown rather than a guess.
        let mut t: Value = serde_json::from_str(&std::fs::read_to_string(&v13).unwrap()).unwrap();
        t["mappings"]["properties"]["Extra"] = serde_json::json!({"type": "keyword"});
        std::fs::write(vis.join("index_template_v7.json"), t.to_string()).unwrap();
        assert_eq!(load_folder(dir.path()).unwrap().schema_version, None);
        // An explicit _meta wins.
        t["mappings"]["_meta"] = serde_json::json!({"schema_version": 15});
        std::fs::write(vis.join("index_template_v7.json"), t.to_string()).unwrap();
        assert_eq!(
            load_folder(dir.path()).unwrap().schema_version.as_deref(),
            Some("v15")
        );
        // Without cluster_settings_v7.json the Temporal setting is still enforced.
        assert_eq!(
            load_folder(dir.path())
                .unwrap()
                .cluster_settings
                .get("action.auto_create_index"),
            Some(&Value::String("false".into()))
        );
    }

    #[test]
    fn missing_template_names_the_expected_layout() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_folder(dir.path()).unwrap_err().to_string();
        assert!(err.contains("visibility/index_template_v7.json"), "{err}");
        assert!(err.contains("schema/elasticsearch"), "{err}");
    }

    #[test]
    fn differences_are_listed_by_path() {
        let want = json!({"a": {"b": "1", "c": "x"}});
        let have = json!({"a": {"b": "2", "d": "y"}});
        let d = describe_differences(&want, &have, 10);
        assert_eq!(
            d,
            vec![
                "a.b: \"2\" -> \"1\"",
                "a.c: missing -> \"x\"",
                "a.d: \"y\" -> removed"
            ]
        );
    }
}
