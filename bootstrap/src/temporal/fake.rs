//! An in-memory [`TemporalApi`] for unit tests of the diff/apply logic. It mimics the server
//! behaviours the steps depend on (ALREADY_EXISTS, merge-only data, silently kept types, SQL
//! caps) and counts calls. Integration tests use the real dev server instead.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::config::types::SearchAttributeType;

use super::TemporalError;
use super::api::*;

#[derive(Debug, Default)]
pub struct FakeState {
    pub namespaces: BTreeMap<String, NamespaceState>,
    pub attributes: BTreeMap<String, BTreeMap<String, SearchAttributeType>>,
    pub registers: u32,
    pub updates: u32,
    pub adds: u32,
    pub lists: u32,
    /// Added attributes become visible only after this many further lists.
    pub visible_after_lists: u32,
    pub pending: BTreeMap<String, BTreeMap<String, SearchAttributeType>>,
}

pub struct FakeTemporal {
    pub info: ClusterInfo,
    pub state: Mutex<FakeState>,
}

impl FakeTemporal {
    pub fn new(shards: u32, visibility: &str) -> Self {
        let mut state = FakeState::default();
        state.namespaces.insert(
            "temporal-system".into(),
            NamespaceState {
                name: "temporal-system".into(),
                state: "Registered".into(),
                retention: Some(Duration::from_secs(7 * 86_400)),
                description: String::new(),
                owner_email: String::new(),
                data: BTreeMap::new(),
                history_archival: false,
            },
        );
        Self {
            info: ClusterInfo {
                server_version: "1.32.0".into(),
                cluster_name: "active".into(),
                cluster_id: "id".into(),
                persistence_store: "sqlite".into(),
                visibility_store: visibility.into(),
                history_shard_count: shards,
            },
            state: Mutex::new(state),
        }
    }

    pub fn writes(&self) -> u32 {
        let s = self.state.lock().unwrap();
        s.registers + s.updates + s.adds
    }

    pub fn insert_namespace(&self, name: &str, retention_days: u64) {
        self.state.lock().unwrap().namespaces.insert(
            name.into(),
            NamespaceState {
                name: name.into(),
                state: "Registered".into(),
                retention: Some(Duration::from_secs(retention_days * 86_400)),
                description: String::new(),
                owner_email: String::new(),
                data: BTreeMap::new(),
                history_archival: false,
            },
        );
    }

    pub fn insert_attribute(&self, ns: &str, name: &str, ty: SearchAttributeType) {
        self.state
            .lock()
            .unwrap()
            .attributes
            .entry(ns.into())
            .or_default()
            .insert(name.into(), ty);
    }

    fn ready<T: Send + 'static>(v: Result<T, TemporalError>) -> ApiFuture<'static, T> {
        Box::pin(async move { v })
    }
}

impl TemporalApi for FakeTemporal {
    fn address(&self) -> String {
        "fake:7233".into()
    }

    fn cluster_info(&self) -> ApiFuture<'_, ClusterInfo> {
        Self::ready(Ok(self.info.clone()))
    }

    fn list_namespaces(&self) -> ApiFuture<'_, Vec<NamespaceState>> {
        let s = self.state.lock().unwrap();
        Self::ready(Ok(s.namespaces.values().cloned().collect()))
    }

    fn describe_namespace<'a>(&'a self, name: &'a str) -> ApiFuture<'a, NamespaceState> {
        let s = self.state.lock().unwrap();
        Self::ready(
            s.namespaces
                .get(name)
                .cloned()
                .ok_or_else(|| TemporalError::NamespaceNotFound(name.into())),
        )
    }

    fn register_namespace<'a>(&'a self, spec: &'a NamespaceSpec) -> ApiFuture<'a, bool> {
        let mut s = self.state.lock().unwrap();
        s.registers += 1;
        if s.namespaces.contains_key(&spec.name) {
            return Self::ready(Ok(false));
        }
        s.namespaces.insert(
            spec.name.clone(),
            NamespaceState {
                name: spec.name.clone(),
                state: "Registered".into(),
                retention: Some(spec.retention),
                description: spec.description.clone(),
                owner_email: spec.owner_email.clone(),
                data: spec.data.clone(),
                history_archival: false,
            },
        );
        Self::ready(Ok(true))
    }

    fn update_namespace<'a>(&'a self, u: &'a NamespaceUpdate) -> ApiFuture<'a, ()> {
        let mut s = self.state.lock().unwrap();
        s.updates += 1;
        let Some(ns) = s.namespaces.get_mut(&u.name) else {
            return Self::ready(Err(TemporalError::NamespaceNotFound(u.name.clone())));
        };
        if let Some(r) = u.retention {
            ns.retention = Some(r);
        }
        if let Some(d) = &u.description {
            ns.description = d.clone();
        }
        if let Some(o) = &u.owner_email {
            ns.owner_email = o.clone();
        }
        for (k, v) in &u.data {
            ns.data.insert(k.clone(), v.clone());
        }
        Self::ready(Ok(()))
    }

    fn list_search_attributes<'a>(
        &'a self,
        namespace: &'a str,
    ) -> ApiFuture<'a, ObservedAttributes> {
        let mut s = self.state.lock().unwrap();
        if !s.namespaces.contains_key(namespace) {
            return Self::ready(Err(TemporalError::NamespaceNotFound(namespace.into())));
        }
        s.lists += 1;
        if s.visible_after_lists > 0 {
            s.visible_after_lists -= 1;
        } else if let Some(p) = s.pending.remove(namespace) {
            let attrs = s.attributes.entry(namespace.into()).or_default();
            for (k, v) in p {
                attrs.entry(k).or_insert(v);
            }
        }
        let attrs = s.attributes.get(namespace).cloned().unwrap_or_default();
        Self::ready(Ok(attrs.into_iter().map(|(k, v)| (k, Some(v))).collect()))
    }

    fn add_search_attributes<'a>(
        &'a self,
        namespace: &'a str,
        attributes: &'a BTreeMap<String, SearchAttributeType>,
    ) -> ApiFuture<'a, ()> {
        let mut s = self.state.lock().unwrap();
        s.adds += 1;
        if !s.namespaces.contains_key(namespace) {
            return Self::ready(Err(TemporalError::NamespaceNotFound(namespace.into())));
        }
        let p = s.pending.entry(namespace.into()).or_default();
        for (k, v) in attributes {
            // Like the server: an existing name keeps its old type, silently.
            p.entry(k.clone()).or_insert(*v);
        }
        Self::ready(Ok(()))
    }
}
