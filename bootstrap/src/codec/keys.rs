//! Where the keyring comes from: `codec.keys` resolved at start (plain `secret:` references, or
//! `wrapped:` data keys unwrapped through `codec.kms`), and resolved again when a payload names a
//! key id the server does not hold yet (the operator added a key and rolled workers first).
//!
//! Plaintext key bytes exist only in memory, for as long as it takes to build the keyring; the
//! buffers are cleared after use.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;

use super::crypto::Keyring;
use super::kms::{Kms, KmsError};
use crate::config::codec::CodecConfig;
use crate::config::types::SecretRef;

/// A new key id triggers at most one re-read of the configuration per this interval, so a
/// stream of payloads with unknown ids cannot turn into a stream of KMS calls.
pub const REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// [`REFRESH_MIN_INTERVAL`], shortened by `TB_CODEC_KEY_REFRESH_MS` in tests.
fn refresh_min_interval() -> Duration {
    std::env::var("TB_CODEC_KEY_REFRESH_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(REFRESH_MIN_INTERVAL, Duration::from_millis)
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A wrong value: exit 2.
    #[error("{0}")]
    Invalid(String),
    /// The KMS failed: exit 1 at start; at run time the server keeps its keys.
    #[error("codec.keys[{index}] (`{id}`): cannot unwrap the key: {source}")]
    Kms {
        index: usize,
        id: String,
        #[source]
        source: KmsError,
    },
}

/// Everything needed to load the keys again.
pub struct KeySource {
    /// The file `codec-server -f` was started with (a complete platform.yaml or a codec file).
    pub config_path: PathBuf,
    /// Its directory: relative `file:` references resolve against it.
    pub base: PathBuf,
    pub kms: Option<Arc<Kms>>,
    /// The wrapped form of one loaded key: unwrapping it again proves the KMS still answers
    /// (and that our token or credentials still may decrypt).
    pub probe: Option<String>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl KeySource {
    pub fn new(config_path: PathBuf, base: PathBuf, kms: Option<Arc<Kms>>) -> Self {
        Self {
            config_path,
            base,
            kms,
            probe: None,
            last_refresh: tokio::sync::Mutex::new(None),
        }
    }

    /// One KMS round trip with a wrapped key already loaded. `None` when there is no KMS.
    pub async fn probe(&self) -> Option<Result<(), KmsError>> {
        let (kms, wrapped) = (self.kms.as_ref()?, self.probe.as_ref()?);
        Some(kms.unwrap_key(wrapped).await.map(|mut k| k.fill(0)))
    }

    /// Re-reads `codec.keys` and loads the ids `current` does not hold. `Ok(None)`: nothing new,
    /// or a refresh ran less than [`REFRESH_MIN_INTERVAL`] ago (concurrent callers wait for the
    /// one running and then see its result in the keyring).
    pub async fn refresh(
        &self,
        current: &Keyring,
    ) -> Result<Option<(Keyring, Vec<String>)>, KeyError> {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < refresh_min_interval()) {
            return Ok(None);
        }
        *last = Some(Instant::now());
        let loaded = crate::config::codec::load_codec_file(&self.config_path).map_err(|e| {
            KeyError::Invalid(format!("re-reading {}: {e}", self.config_path.display()))
        })?;
        let Some(c) = loaded.codec.as_ref() else {
            return Err(KeyError::Invalid(format!(
                "re-reading {}: it no longer has a `codec:` section",
                self.config_path.display()
            )));
        };
        let known: BTreeSet<String> = current.ids().map(String::from).collect();
        let (mut new, current_id, _) = load(c, &self.base, self.kms.as_deref(), &known).await?;
        if new.is_empty() && current_id == current.current_id() {
            return Ok(None);
        }
        let ids = new.iter().map(|(id, _)| id.clone()).collect();
        let ring = current
            .extended(&new, &current_id)
            .map_err(|e| KeyError::Invalid(e.to_string()));
        clear(&mut new);
        Ok(Some((ring?, ids)))
    }
}

/// Loads every key of `c` whose id is not in `skip`. Returns the keys, the current id and the
/// wrapped form of one key (for [`KeySource::probe`]).
pub async fn load(
    c: &CodecConfig,
    base: &Path,
    kms: Option<&Kms>,
    skip: &BTreeSet<String>,
) -> Result<(Vec<(String, Vec<u8>)>, String, Option<String>), KeyError> {
    let mut keys = Vec::new();
    let mut current = None;
    let mut probe = None;
    for (i, k) in c.keys.iter().enumerate() {
        if k.current {
            current = Some(k.id.clone());
        }
        if skip.contains(&k.id) {
            continue;
        }
        let bytes = match (&k.secret, &k.wrapped) {
            (Some(secret), None) => {
                let raw = resolve(base, secret, &format!("codec.keys[{i}] (`{}`)", k.id))?;
                base64::engine::general_purpose::STANDARD
                    .decode(raw.trim())
                    .map_err(|_| {
                        KeyError::Invalid(format!(
                            "codec.keys[{i}] (`{}`): the key is not base64 (write one with `temporal-bootstrap codec keygen --out FILE`)",
                            k.id
                        ))
                    })?
            }
            (None, Some(wrapped)) => {
                let Some(kms) = kms else {
                    return Err(KeyError::Invalid(format!(
                        "codec.keys[{i}].wrapped: a wrapped key needs codec.kms (vault-transit or aws-kms)"
                    )));
                };
                let blob = resolve(base, wrapped, &format!("codec.keys[{i}].wrapped"))?;
                let key = kms
                    .unwrap_key(&blob)
                    .await
                    .map_err(|source| KeyError::Kms {
                        index: i,
                        id: k.id.clone(),
                        source,
                    })?;
                probe.get_or_insert(blob.trim().to_string());
                key
            }
            _ => {
                return Err(KeyError::Invalid(format!(
                    "codec.keys[{i}]: set exactly one of `secret` and `wrapped`"
                )));
            }
        };
        keys.push((k.id.clone(), bytes));
    }
    let current = current.ok_or_else(|| {
        KeyError::Invalid("codec.keys: exactly one key must have `current: true`".into())
    })?;
    Ok((keys, current, probe))
}

/// Overwrites plaintext key bytes before they are freed.
pub fn clear(keys: &mut [(String, Vec<u8>)]) {
    for (_, k) in keys.iter_mut() {
        k.fill(0);
    }
}

/// `file:` references are relative to the directory of platform.yaml, like every other path.
pub fn resolve(base: &Path, r: &SecretRef, what: &str) -> Result<String, KeyError> {
    let r = match r {
        SecretRef::File(p) if p.is_relative() => SecretRef::File(base.join(p)),
        other => other.clone(),
    };
    r.resolve()
        .map(|s| s.expose().to_string())
        .map_err(|e| KeyError::Invalid(format!("{what}: {e}")))
}
