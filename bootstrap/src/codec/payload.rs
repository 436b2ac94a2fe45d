//! `temporal.api.common.v1.Payload`: its protobuf wire form (the encrypted plaintext) and its
//! proto-JSON form (the remote codec protocol).
//!
//! The message is tiny and stable, so it is hand-encoded here instead of pulling generated types:
//! ```text
//! message Payload {
//!   map<string, bytes> metadata = 1;                  // entries: key = 1 (string), value = 2 (bytes)
//!   bytes data = 2;
//!   repeated ExternalPayloadDetails external_payloads = 3;  // { int64 size_bytes = 1; }
//! }
//! ```
//! Decoding follows protobuf rules: fields in any order, a repeated map key keeps the last value,
//! unknown fields are skipped. Encoding writes fields in number order and metadata keys sorted,
//! which every protobuf implementation reads.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

/// One Temporal payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    pub metadata: BTreeMap<String, Vec<u8>>,
    pub data: Vec<u8>,
    /// `external_payloads[].size_bytes`.
    pub external_sizes: Vec<i64>,
}

/// Why bytes are not a Payload message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a protobuf Payload: {0}")]
pub struct WireError(pub &'static str);

impl Payload {
    /// The metadata value as text, when present and UTF-8.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.metadata
            .get(key)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Protobuf wire encoding.
    pub fn to_proto(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 64);
        for (k, v) in &self.metadata {
            let mut entry = Vec::with_capacity(k.len() + v.len() + 8);
            put_len_field(&mut entry, 1, k.as_bytes());
            put_len_field(&mut entry, 2, v);
            put_len_field(&mut out, 1, &entry);
        }
        if !self.data.is_empty() {
            put_len_field(&mut out, 2, &self.data);
        }
        for size in &self.external_sizes {
            let mut m = Vec::new();
            if *size != 0 {
                put_varint(&mut m, 1 << 3);
                // int64 is encoded as its two's complement u64.
                put_varint(&mut m, *size as u64);
            }
            put_len_field(&mut out, 3, &m);
        }
        out
    }

    /// Parses the protobuf wire encoding.
    pub fn from_proto(mut buf: &[u8]) -> Result<Self, WireError> {
        let mut p = Payload::default();
        while !buf.is_empty() {
            let (field, wire) = read_tag(&mut buf)?;
            match (field, wire) {
                (1, 2) => {
                    let mut entry = read_len(&mut buf)?;
                    let (mut key, mut value) = (Vec::new(), Vec::new());
                    while !entry.is_empty() {
                        match read_tag(&mut entry)? {
                            (1, 2) => key = read_len(&mut entry)?.to_vec(),
                            (2, 2) => value = read_len(&mut entry)?.to_vec(),
                            (_, w) => skip(&mut entry, w)?,
                        }
                    }
                    let key = String::from_utf8(key)
                        .map_err(|_| WireError("a metadata key is not UTF-8"))?;
                    p.metadata.insert(key, value);
                }
                (2, 2) => p.data = read_len(&mut buf)?.to_vec(),
                (3, 2) => {
                    let mut m = read_len(&mut buf)?;
                    let mut size = 0i64;
                    while !m.is_empty() {
                        match read_tag(&mut m)? {
                            (1, 0) => size = read_varint(&mut m)? as i64,
                            (_, w) => skip(&mut m, w)?,
                        }
                    }
                    p.external_sizes.push(size);
                }
                (_, w) => skip(&mut buf, w)?,
            }
        }
        Ok(p)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn read_varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first().ok_or(WireError("truncated varint"))?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(WireError("varint longer than 10 bytes"))
}

fn read_tag(buf: &mut &[u8]) -> Result<(u64, u8), WireError> {
    let tag = read_varint(buf)?;
    let field = tag >> 3;
    if field == 0 {
        return Err(WireError("field number 0"));
    }
    Ok((field, (tag & 7) as u8))
}

fn read_len<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], WireError> {
    let n = usize::try_from(read_varint(buf)?).map_err(|_| WireError("length overflow"))?;
    if n > buf.len() {
        return Err(WireError("length beyond the end of the message"));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn skip(buf: &mut &[u8], wire: u8) -> Result<(), WireError> {
    let n = match wire {
        0 => {
            read_varint(buf)?;
            return Ok(());
        }
        1 => 8,
        2 => {
            read_len(buf)?;
            return Ok(());
        }
        5 => 4,
        _ => return Err(WireError("unsupported wire type (groups or invalid)")),
    };
    if n > buf.len() {
        return Err(WireError("truncated fixed-size field"));
    }
    *buf = &buf[n..];
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// proto JSON (what the Web UI, the CLI and the SDKs' remote codec client send)
// ---------------------------------------------------------------------------------------------

/// `{"payloads": [...]}`, the body of /encode and /decode requests and responses.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadsJson {
    #[serde(default)]
    pub payloads: Vec<PayloadJson>,
}

/// One payload in proto JSON: metadata values and data are base64.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PayloadJson {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_payloads: Vec<ExternalJson>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExternalJson {
    /// proto JSON writes int64 as a string; numbers are accepted too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<serde_json::Value>,
}

/// Proto JSON accepts standard and URL-safe base64, padded or not.
fn b64_decode(s: &str) -> Option<Vec<u8>> {
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

impl PayloadJson {
    /// Converts to a Payload; the error names the bad field (never its value).
    pub fn to_payload(&self) -> Result<Payload, String> {
        let mut metadata = BTreeMap::new();
        for (k, v) in &self.metadata {
            let bytes =
                b64_decode(v).ok_or_else(|| format!("metadata `{k}` is not valid base64"))?;
            metadata.insert(k.clone(), bytes);
        }
        let data = b64_decode(&self.data).ok_or("`data` is not valid base64")?;
        let mut external_sizes = Vec::new();
        for e in &self.external_payloads {
            let size = match &e.size_bytes {
                None => 0,
                Some(serde_json::Value::String(s)) => s
                    .parse()
                    .map_err(|_| "externalPayloads[].sizeBytes is not an integer")?,
                Some(serde_json::Value::Number(n)) => n
                    .as_i64()
                    .ok_or("externalPayloads[].sizeBytes is not an integer")?,
                Some(_) => return Err("externalPayloads[].sizeBytes is not an integer".into()),
            };
            external_sizes.push(size);
        }
        Ok(Payload {
            metadata,
            data,
            external_sizes,
        })
    }

    pub fn from_payload(p: &Payload) -> Self {
        Self {
            metadata: p
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), STANDARD.encode(v)))
                .collect(),
            data: STANDARD.encode(&p.data),
            external_payloads: p
                .external_sizes
                .iter()
                .map(|s| ExternalJson {
                    size_bytes: (*s != 0).then(|| serde_json::Value::String(s.to_string())),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Payload {
        let mut metadata = BTreeMap::new();
        metadata.insert("encoding".into(), b"json/plain".to_vec());
        Payload {
            metadata,
            data: b"\"hello\"".to_vec(),
            external_sizes: vec![],
        }
    }

    #[test]
    fn wire_bytes_match_protobuf() {
        // Bytes produced by Python protobuf for Payload(metadata={"encoding": b"json/plain"},
        // data=b'"hello"'): entry, then data.
        let expected: &[u8] = b"\x0a\x16\x0a\x08encoding\x12\x0ajson/plain\x12\x07\"hello\"";
        assert_eq!(sample().to_proto(), expected);
        assert_eq!(Payload::from_proto(expected).unwrap(), sample());
    }

    #[test]
    fn unknown_fields_are_skipped_and_order_is_free() {
        let mut bytes = b"\x12\x07\"hello\"".to_vec();
        bytes.extend_from_slice(b"\x28\x96\x01"); // field 5 varint 150
        bytes.extend_from_slice(b"\x0a\x16\x0a\x08encoding\x12\x0ajson/plain");
        assert_eq!(Payload::from_proto(&bytes).unwrap(), sample());
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let full = sample().to_proto();
        for n in 1..full.len() {
            let _ = Payload::from_proto(&full[..n]);
        }
        assert!(Payload::from_proto(&full[..5]).is_err());
        assert!(Payload::from_proto(b"\x0b").is_err()); // wire type 3 (group)
    }

    #[test]
    fn json_accepts_url_safe_and_unpadded_base64() {
        let j: PayloadJson = serde_json::from_str(
            r#"{"metadata":{"encoding":"anNvbi9wbGFpbg"},"data":"ImhlbGxvIg=="}"#,
        )
        .unwrap();
        assert_eq!(j.to_payload().unwrap(), sample());
        let bad: PayloadJson = serde_json::from_str(r#"{"data":"not base64!"}"#).unwrap();
        assert!(bad.to_payload().unwrap_err().contains("data"));
        assert!(serde_json::from_str::<PayloadJson>(r#"{"datta":""}"#).is_err());
    }

    proptest! {
        #[test]
        fn proto_and_json_round_trip(
            meta in proptest::collection::btree_map("[a-z-]{0,12}", proptest::collection::vec(any::<u8>(), 0..40), 0..4),
            data in proptest::collection::vec(any::<u8>(), 0..300),
            ext in proptest::collection::vec(any::<i64>(), 0..3),
        ) {
            let p = Payload { metadata: meta, data, external_sizes: ext };
            prop_assert_eq!(&Payload::from_proto(&p.to_proto()).unwrap(), &p);
            let j = serde_json::to_string(&PayloadJson::from_payload(&p)).unwrap();
            let back: PayloadJson = serde_json::from_str(&j).unwrap();
            prop_assert_eq!(&back.to_payload().unwrap(), &p);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Payload::from_proto(&bytes);
        }
    }
}
