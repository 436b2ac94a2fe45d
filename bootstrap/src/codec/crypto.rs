//! The encryption format (see docs/payload-encryption.md), compatible with the Temporal SDK
//! samples' encryption codec:
//!
//! - encrypted payload metadata: `encoding` = `binary/encrypted`, `encryption-key-id` = key id;
//! - encrypted payload data: 12-byte random nonce || AES-256-GCM(key, nonce, plaintext, no AAD)
//!   (ciphertext followed by the 16-byte tag);
//! - plaintext: the original Payload in protobuf wire encoding.

use std::collections::BTreeMap;
use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::payload::Payload;

pub const ENCODING_KEY: &str = "encoding";
pub const ENCRYPTED_ENCODING: &str = "binary/encrypted";
pub const KEY_ID_KEY: &str = "encryption-key-id";
pub const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// Why a payload could not be decrypted. Never carries key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("encrypted payload has no `{KEY_ID_KEY}` metadata")]
    NoKeyId,
    #[error("unknown encryption key id `{0}` (not configured on this codec server)")]
    UnknownKey(String),
    #[error("encrypted data is too short ({0} bytes; nonce and tag need 28)")]
    TooShort(usize),
    #[error(
        "decryption failed with key `{0}`: the ciphertext or its tag was altered, or it was encrypted with another key of the same id"
    )]
    Authentication(String),
    #[error("decrypted bytes are not a Payload: {0}")]
    NotAPayload(String),
}

/// Named keys; one of them encrypts.
pub struct Keyring {
    keys: BTreeMap<String, Arc<LessSafeKey>>,
    current: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

/// Why a set of keys cannot form a keyring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("key `{id}` is {len} bytes; AES-256 needs {KEY_LEN} (base64 of 32 random bytes)")]
    Length { id: String, len: usize },
    #[error("key `{0}` was refused by AES-256-GCM")]
    Refused(String),
    #[error("current key `{0}` is not configured")]
    NoCurrent(String),
}

impl Keyring {
    /// `keys`: (id, 32 key bytes). `current` must be one of the ids.
    pub fn new(keys: Vec<(String, Vec<u8>)>, current: &str) -> Result<Self, KeyringError> {
        let ring = Self::new_unchecked(keys)?;
        if !ring.keys.contains_key(current) {
            return Err(KeyringError::NoCurrent(current.to_string()));
        }
        Ok(Self {
            current: current.to_string(),
            ..ring
        })
    }

    /// The keys, with no current key chosen yet.
    fn new_unchecked(mut keys: Vec<(String, Vec<u8>)>) -> Result<Self, KeyringError> {
        let mut map = BTreeMap::new();
        for (id, mut bytes) in keys.drain(..) {
            let len = bytes.len();
            let unbound = UnboundKey::new(&AES_256_GCM, &bytes);
            // The plaintext copy is not needed past this point (ring holds the key schedule).
            bytes.fill(0);
            if len != KEY_LEN {
                return Err(KeyringError::Length { id, len });
            }
            let unbound = unbound.map_err(|_| KeyringError::Refused(id.clone()))?;
            map.insert(id, Arc::new(LessSafeKey::new(unbound)));
        }
        Ok(Self {
            keys: map,
            current: String::new(),
            rng: SystemRandom::new(),
        })
    }

    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// Every key id held.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// This keyring plus `added` (id, 32 bytes), with `current` encrypting. Existing ids keep
    /// their key: a key id is never re-bound to other bytes while the server runs.
    pub fn extended(
        &self,
        added: &[(String, Vec<u8>)],
        current: &str,
    ) -> Result<Self, KeyringError> {
        let fresh = added
            .iter()
            .filter(|(id, _)| !self.keys.contains_key(id))
            .map(|(id, k)| (id.clone(), k.clone()))
            .collect();
        let mut next = Keyring::new_unchecked(fresh)?;
        for (id, k) in &self.keys {
            next.keys.insert(id.clone(), k.clone());
        }
        if !next.keys.contains_key(current) {
            return Err(KeyringError::NoCurrent(current.to_string()));
        }
        next.current = current.to_string();
        Ok(next)
    }

    /// Whether the payload carries our encryption marker.
    pub fn is_encrypted(p: &Payload) -> bool {
        p.meta_str(ENCODING_KEY) == Some(ENCRYPTED_ENCODING)
    }

    /// Encrypts with the current key and a fresh random nonce. Already encrypted payloads are
    /// returned unchanged, so encoding twice never nests encryption.
    pub fn encrypt(&self, p: &Payload) -> Result<Payload, String> {
        if Self::is_encrypted(p) {
            return Ok(p.clone());
        }
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| "the system random generator failed")?;
        self.seal(&self.current, nonce, p)
    }

    /// The format itself, with the nonce given: random in [`Keyring::encrypt`], fixed only in
    /// the shared test vectors.
    fn seal(&self, key_id: &str, nonce: [u8; NONCE_LEN], p: &Payload) -> Result<Payload, String> {
        let key = self.keys.get(key_id).ok_or("key missing")?;
        let plaintext = p.to_proto();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&plaintext);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| "encryption failed")?;
        out.extend_from_slice(tag.as_ref());
        let mut metadata = BTreeMap::new();
        metadata.insert(ENCODING_KEY.into(), ENCRYPTED_ENCODING.as_bytes().to_vec());
        metadata.insert(KEY_ID_KEY.into(), key_id.as_bytes().to_vec());
        Ok(Payload {
            metadata,
            data: out,
            external_sizes: vec![],
        })
    }

    /// Decrypts a payload we encrypted; any other payload is returned unchanged.
    /// Returns the key id used, if any.
    pub fn decrypt(&self, p: &Payload) -> Result<(Payload, Option<String>), DecryptError> {
        if !Self::is_encrypted(p) {
            return Ok((p.clone(), None));
        }
        let id = p.meta_str(KEY_ID_KEY).ok_or(DecryptError::NoKeyId)?;
        let key = self
            .keys
            .get(id)
            .ok_or_else(|| DecryptError::UnknownKey(sanitize(id)))?;
        if p.data.len() < NONCE_LEN + TAG_LEN {
            return Err(DecryptError::TooShort(p.data.len()));
        }
        let (nonce, sealed) = p.data.split_at(NONCE_LEN);
        // Invariant: split_at(NONCE_LEN) leaves exactly NONCE_LEN bytes in `nonce`.
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| DecryptError::TooShort(p.data.len()))?;
        let mut buf = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .map_err(|_| DecryptError::Authentication(id.to_string()))?;
        let payload =
            Payload::from_proto(plain).map_err(|e| DecryptError::NotAPayload(e.to_string()))?;
        Ok((payload, Some(id.to_string())))
    }
}

/// Key ids come from untrusted input; keep error messages printable and short.
fn sanitize(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// 32 random bytes, base64 with a newline: the key file format of `codec keygen`.
pub fn generate_key_b64() -> Result<String, String> {
    use base64::Engine;
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| "the system random generator failed".to_string())?;
    Ok(format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring2() -> Keyring {
        Keyring::new(
            vec![("old".into(), vec![1; 32]), ("new".into(), vec![2; 32])],
            "new",
        )
        .unwrap()
    }

    fn plain() -> Payload {
        let mut metadata = BTreeMap::new();
        metadata.insert("encoding".into(), b"json/plain".to_vec());
        Payload {
            metadata,
            data: b"\"secret-marker\"".to_vec(),
            external_sizes: vec![],
        }
    }

    #[test]
    fn round_trip_with_random_nonce() {
        let k = ring2();
        let a = k.encrypt(&plain()).unwrap();
        let b = k.encrypt(&plain()).unwrap();
        assert_ne!(a.data, b.data, "nonces must differ");
        assert_eq!(a.meta_str(KEY_ID_KEY), Some("new"));
        assert_eq!(a.meta_str(ENCODING_KEY), Some(ENCRYPTED_ENCODING));
        assert_eq!(a.data.len(), 12 + plain().to_proto().len() + 16);
        assert_eq!(k.decrypt(&a).unwrap(), (plain(), Some("new".into())));
        // Encoding twice does not nest.
        assert_eq!(k.encrypt(&a).unwrap(), a);
    }

    #[test]
    fn old_keys_still_decrypt_after_rotation() {
        let before = Keyring::new(vec![("old".into(), vec![1; 32])], "old").unwrap();
        let enc = before.encrypt(&plain()).unwrap();
        assert_eq!(ring2().decrypt(&enc).unwrap().0, plain());
    }

    #[test]
    fn decrypts_a_vector_made_by_the_sdk_sample_implementation() {
        // Produced by Python `cryptography` AESGCM (what the SDK samples use) with key 32 x 0x02,
        // nonce 00..0b and plaintext = temporalio Payload(...).SerializeToString() of `plain()`.
        let hex = "000102030405060708090a0b431ee8f2b427ef2b4fe12e718cb40f883c50efbc7f7bfdb7687f4dfcf57260f0933c044736f10c86454c0a585752a6d5d0a2f175d4c6e3534b";
        let data: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut metadata = BTreeMap::new();
        metadata.insert(ENCODING_KEY.into(), ENCRYPTED_ENCODING.as_bytes().to_vec());
        metadata.insert(KEY_ID_KEY.into(), b"new".to_vec());
        let enc = Payload {
            metadata,
            data,
            external_sizes: vec![],
        };
        assert_eq!(ring2().decrypt(&enc).unwrap().0, plain());
    }

    #[test]
    fn failures_are_classified() {
        let k = ring2();
        let mut enc = k.encrypt(&plain()).unwrap();
        let last = enc.data.len() - 1;
        enc.data[last] ^= 1;
        assert!(matches!(
            k.decrypt(&enc),
            Err(DecryptError::Authentication(_))
        ));
        enc.metadata.insert(KEY_ID_KEY.into(), b"nope\n".to_vec());
        assert_eq!(
            k.decrypt(&enc).unwrap_err(),
            DecryptError::UnknownKey("nope?".into())
        );
        enc.metadata.remove(KEY_ID_KEY);
        assert_eq!(k.decrypt(&enc).unwrap_err(), DecryptError::NoKeyId);
        let mut short = k.encrypt(&plain()).unwrap();
        short.data.truncate(20);
        assert_eq!(k.decrypt(&short).unwrap_err(), DecryptError::TooShort(20));
    }

    /// examples/payload-encryption/vectors/test-vectors.json: the file every SDK example checks
    /// too, so the server and the four codecs agree byte for byte.
    #[test]
    fn shared_test_vectors() {
        use super::super::payload::{PayloadJson, PayloadsJson};
        use base64::Engine;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/payload-encryption/vectors/test-vectors.json"
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let b64 = |s: &serde_json::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(s.as_str().unwrap())
                .unwrap()
        };
        let keys = v["keys"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, k)| (id.clone(), b64(k)))
            .collect::<Vec<_>>();
        let ring = Keyring::new(keys, "k-2026-11").unwrap();
        let payload = |j: &serde_json::Value| {
            serde_json::from_value::<PayloadJson>(j.clone())
                .unwrap()
                .to_payload()
                .unwrap()
        };
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let cases = v["encrypt"].as_array().unwrap();
        assert!(cases.len() >= 9, "the vectors file lost its encrypt cases");
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let plain = payload(&c["payload"]);
            assert_eq!(
                plain.to_proto(),
                hex(c["payload_proto_hex"].as_str().unwrap()),
                "{name}: serialisation"
            );
            let nonce: [u8; NONCE_LEN] = hex(c["nonce_hex"].as_str().unwrap()).try_into().unwrap();
            let sealed = ring
                .seal(c["key_id"].as_str().unwrap(), nonce, &plain)
                .unwrap();
            let expected = payload(&c["encrypted"]);
            assert_eq!(sealed, expected, "{name}: encryption");
            assert_eq!(
                ring.decrypt(&expected).unwrap().0,
                plain,
                "{name}: decryption"
            );
        }
        for c in v["decrypt_only"].as_array().unwrap() {
            let got = ring.decrypt(&payload(&c["encrypted"])).unwrap().0;
            assert_eq!(got, payload(&c["payload"]), "{}", c["name"]);
        }
        for p in v["pass_through"].as_array().unwrap() {
            let p = payload(p);
            assert_eq!(ring.decrypt(&p).unwrap(), (p.clone(), None));
        }
        let tampered = v["tampered"].as_array().unwrap();
        assert!(tampered.len() >= 8);
        for c in tampered {
            let err = ring.decrypt(&payload(&c["encrypted"])).unwrap_err();
            let reason = match err {
                DecryptError::Authentication(_) => "authentication",
                DecryptError::UnknownKey(_) | DecryptError::NoKeyId => "unknown-key",
                DecryptError::TooShort(_) => "too-short",
                DecryptError::NotAPayload(_) => "not-a-payload",
            };
            assert_eq!(reason, c["reason"].as_str().unwrap(), "{}", c["name"]);
        }
        // The JSON form the server answers with is the vectors' form too.
        let first = payload(&cases[0]["encrypted"]);
        let back = serde_json::to_value(PayloadsJson {
            payloads: vec![PayloadJson::from_payload(&first)],
        })
        .unwrap();
        assert_eq!(back["payloads"][0]["data"], cases[0]["encrypted"]["data"]);
    }

    #[test]
    fn foreign_payloads_pass_through() {
        assert_eq!(ring2().decrypt(&plain()).unwrap(), (plain(), None));
    }

    #[test]
    fn bad_key_lengths_are_refused() {
        assert!(
            Keyring::new(vec![("k".into(), vec![0; 16])], "k")
                .unwrap_err()
                .to_string()
                .contains("16 bytes")
        );
        assert!(Keyring::new(vec![("k".into(), vec![0; 32])], "x").is_err());
    }
}
