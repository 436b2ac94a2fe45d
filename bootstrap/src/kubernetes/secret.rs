//! The core/v1 Secret object as far as the bootstrap needs it: name, `resourceVersion`, type,
//! labels and the decoded `data`, plus the object as read so a replace keeps everything else
//! (annotations, owner references, keys we do not manage).
//!
//! Guarantees: `Debug` shows the data keys, never their values; decoding errors name the key,
//! never its content.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// The label every Secret written by the bootstrap carries.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "temporal-bootstrap";

/// A Secret; `data` holds decoded bytes.
#[derive(Clone, PartialEq)]
pub struct Secret {
    pub namespace: String,
    pub name: String,
    /// Set on objects read from the server; sent back on replace (optimistic concurrency).
    pub resource_version: Option<String>,
    /// `type` (`Opaque` when the server omits it).
    pub type_: String,
    pub labels: BTreeMap<String, String>,
    pub data: BTreeMap<String, Vec<u8>>,
    /// The object as read (empty for a new one): fields we do not manage are kept on replace.
    raw: Value,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("resource_version", &self.resource_version)
            .field("type", &self.type_)
            .field("labels", &self.labels)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secret {
    /// A new Secret (no resourceVersion) of `type_`.
    pub fn new(namespace: &str, name: &str, type_: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            resource_version: None,
            type_: type_.to_string(),
            labels: BTreeMap::new(),
            data: BTreeMap::new(),
            raw: Value::Null,
        }
    }

    /// Parses a Secret object as the API server returns it (`data` values base64).
    pub fn from_json(v: &Value) -> Result<Self, String> {
        if v.get("kind").and_then(Value::as_str).unwrap_or("Secret") != "Secret" {
            return Err(format!(
                "expected kind Secret, got {}",
                v.get("kind").map(|k| k.to_string()).unwrap_or_default()
            ));
        }
        let meta = v
            .get("metadata")
            .and_then(Value::as_object)
            .ok_or("Secret without metadata")?;
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .ok_or("Secret without metadata.name")?
            .to_string();
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let resource_version = meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        let labels = meta
            .get("labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let type_ = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("Opaque")
            .to_string();
        let mut data = BTreeMap::new();
        if let Some(d) = v.get("data").and_then(Value::as_object) {
            for (k, val) in d {
                let s = val
                    .as_str()
                    .ok_or_else(|| format!("data key `{k}` is not a string"))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|_| format!("data key `{k}` is not valid base64"))?;
                data.insert(k.clone(), bytes);
            }
        }
        Ok(Self {
            namespace,
            name,
            resource_version,
            type_,
            labels,
            data,
            raw: v.clone(),
        })
    }

    /// The object to send: the object as read with our metadata, type and data merged in.
    pub fn to_json(&self) -> Value {
        let mut obj = match &self.raw {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        obj.insert("apiVersion".into(), json!("v1"));
        obj.insert("kind".into(), json!("Secret"));
        // stringData is write-only and would override data; we always send data.
        obj.remove("stringData");
        let mut meta = match obj.remove("metadata") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        meta.insert("name".into(), json!(self.name));
        meta.insert("namespace".into(), json!(self.namespace));
        match &self.resource_version {
            Some(rv) => {
                meta.insert("resourceVersion".into(), json!(rv));
            }
            None => {
                meta.remove("resourceVersion");
            }
        }
        let labels: Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        meta.insert("labels".into(), Value::Object(labels));
        obj.insert("metadata".into(), Value::Object(meta));
        obj.insert("type".into(), json!(self.type_));
        let data: Map<String, Value> = self
            .data
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!(base64::engine::general_purpose::STANDARD.encode(v)),
                )
            })
            .collect();
        obj.insert("data".into(), Value::Object(data));
        Value::Object(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_unmanaged_fields_and_hides_data_in_debug() {
        let v = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "ns", "resourceVersion": "42",
                         "labels": {"team": "x"}, "annotations": {"a": "b"}},
            "type": "kubernetes.io/tls",
            "data": {"tls.key": "c2VjcmV0", "other": "eA=="}
        });
        let mut s = Secret::from_json(&v).unwrap();
        assert_eq!(s.data["tls.key"], b"secret");
        assert_eq!(s.resource_version.as_deref(), Some("42"));
        assert!(!format!("{s:?}").contains("secret\""));
        assert!(!format!("{s:?}").contains("c2VjcmV0"));
        s.labels
            .insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
        s.data.insert("tls.crt".into(), b"cert".to_vec());
        let out = s.to_json();
        assert_eq!(out["metadata"]["annotations"]["a"], "b");
        assert_eq!(out["metadata"]["labels"]["team"], "x");
        assert_eq!(out["metadata"]["resourceVersion"], "42");
        assert_eq!(out["data"]["other"], "eA==");
        assert_eq!(out["data"]["tls.crt"], "Y2VydA==");
        let bad = json!({"metadata": {"name": "s"}, "data": {"k": "!!"}});
        let e = Secret::from_json(&bad).unwrap_err();
        assert!(e.contains("`k`") && !e.contains("!!"), "{e}");
    }
}
