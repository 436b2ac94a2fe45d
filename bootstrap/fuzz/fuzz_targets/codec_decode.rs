//! The codec server's request decoding, on arbitrary bytes read two ways:
//! - as a `/decode` body: JSON -> `PayloadsJson` -> `to_payload` -> `Keyring::decrypt`, with the
//!   fixed keys of docs/payload-encryption.md (`new` = 32 x 0x02, current) and `old` (32 x 0x01);
//! - as a protobuf `Payload` (`Payload::from_proto`), what a decrypted plaintext is parsed with.
//!
//! Invariants:
//! - a payload without our marker decrypts to itself, with no key id;
//! - a payload that decrypts used a configured key, and its plaintext round-trips through the
//!   wire form; altering one byte of its data makes decryption fail;
//! - whatever we encrypt decrypts back to the same payload with the current key, and encrypting an
//!   already encrypted payload returns it unchanged;
//! - `to_payload` / `from_payload` and `to_proto` / `from_proto` round-trip every payload.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use temporal_bootstrap::codec::crypto::{DecryptError, Keyring};
use temporal_bootstrap::codec::payload::{Payload, PayloadJson, PayloadsJson};

fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| {
        let keys = vec![
            ("new".to_string(), vec![2u8; 32]),
            ("old".to_string(), vec![1u8; 32]),
        ];
        match Keyring::new(keys, "new") {
            Ok(k) => k,
            Err(e) => panic!("the fixed test keys are refused: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<PayloadsJson>(data) {
        for json in &body.payloads {
            if let Ok(p) = json.to_payload() {
                check_payload(&p);
            }
        }
    }
    if let Ok(p) = Payload::from_proto(data) {
        check_payload(&p);
    }
});

fn check_payload(p: &Payload) {
    // Both encodings round-trip.
    assert_eq!(
        Payload::from_proto(&p.to_proto()).as_ref(),
        Ok(p),
        "to_proto/from_proto changed the payload"
    );
    let json = match serde_json::to_vec(&PayloadJson::from_payload(p)) {
        Ok(j) => j,
        Err(e) => panic!("a payload does not serialize to JSON: {e}"),
    };
    let back = serde_json::from_slice::<PayloadJson>(&json).map(|j| j.to_payload());
    assert!(
        matches!(&back, Ok(Ok(b)) if b == p),
        "from_payload/to_payload changed the payload: {back:?}"
    );

    let keys = keyring();
    match keys.decrypt(p) {
        Ok((plain, None)) => {
            assert!(!Keyring::is_encrypted(p), "marked payload passed through");
            assert_eq!(&plain, p, "unmarked payload changed by decrypt");
        }
        Ok((plain, Some(id))) => {
            assert!(
                id == "new" || id == "old",
                "decrypted with unknown key {id}"
            );
            assert_eq!(Payload::from_proto(&plain.to_proto()).as_ref(), Ok(&plain));
            // Authenticated: any altered byte of nonce, ciphertext or tag is refused.
            let mut altered = p.clone();
            let last = altered.data.len() - 1; // decrypt succeeded, so data holds at least 28 bytes
            altered.data[last] ^= 0x01;
            assert!(
                matches!(keys.decrypt(&altered), Err(DecryptError::Authentication(_))),
                "an altered ciphertext decrypted"
            );
        }
        Err(_) => assert!(Keyring::is_encrypted(p), "unmarked payload refused"),
    }

    // Our own encryption round-trips; encrypted payloads are not encrypted twice.
    let sealed = match keys.encrypt(p) {
        Ok(s) => s,
        Err(e) => panic!("encrypt failed: {e}"),
    };
    if Keyring::is_encrypted(p) {
        assert_eq!(&sealed, p, "an encrypted payload was encrypted again");
    } else {
        assert!(Keyring::is_encrypted(&sealed));
        match keys.decrypt(&sealed) {
            Ok((plain, Some(id))) => {
                assert_eq!(id, "new", "encrypted with a key other than the current one");
                assert_eq!(&plain, p, "decrypt(encrypt(p)) != p");
            }
            other => panic!("our own ciphertext does not decrypt: {other:?}"),
        }
    }
}
