//! `postgres::schema::parse_manifest` (what `read_manifest` runs on a `manifest.json`) on
//! arbitrary bytes, for the folder named by the manifest itself and for a fixed folder `v1.0`.
//!
//! Invariants:
//! - an accepted manifest belongs to its folder, lists files unless `AllowNoCqlFiles`, has a
//!   `MinCompatibleVersion` that parses, and an md5 of 32 lowercase hex digits;
//! - the result does not depend on the folder except through the version check: when the
//!   manifest is accepted for its own folder, it is refused for any other with `VersionMismatch`;
//! - parsing is deterministic, and an accepted manifest written back as JSON is accepted again
//!   with the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temporal_bootstrap::postgres::schema::{Manifest, SchemaError, parse_manifest};
use temporal_bootstrap::versions::SchemaVersion;

const PATH: &str = "fuzz/v/manifest.json";

fuzz_target!(|data: &[u8]| {
    let fixed = SchemaVersion::new(1, 0);
    // The folder the manifest claims, when it claims one we can read.
    let own = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| {
            v.get("CurrVersion")?
                .as_str()?
                .parse::<SchemaVersion>()
                .ok()
        });

    for folder in [Some(fixed), own].into_iter().flatten() {
        let first = parse_manifest(data, PATH, folder);
        let second = parse_manifest(data, PATH, folder);
        assert_eq!(
            format!("{first:?}"),
            format!("{second:?}"),
            "parse_manifest is not deterministic"
        );
        match first {
            Ok(m) => check_accepted(&m, folder, data),
            Err(SchemaError::VersionMismatch { .. }) => {
                assert_ne!(Some(folder), own, "refused for the folder it names")
            }
            Err(SchemaError::Manifest { path, .. }) => assert_eq!(path, PATH),
            Err(other) => panic!("parse_manifest returned an error of another kind: {other:?}"),
        }
    }
});

fn check_accepted(m: &Manifest, folder: SchemaVersion, data: &[u8]) {
    assert_eq!(m.curr_version, folder);
    assert!(
        !m.files.is_empty() || m.allow_no_files,
        "accepted without files"
    );
    assert!(
        m.min_compatible_version.parse::<SchemaVersion>().is_ok(),
        "MinCompatibleVersion {:?} accepted but does not parse",
        m.min_compatible_version
    );
    assert!(
        m.md5.len() == 32
            && m.md5
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "md5 {:?} is not 32 lowercase hex digits",
        m.md5
    );

    // Any other folder: refused only because of the version.
    let other = SchemaVersion::new(folder.major ^ 1, folder.minor);
    assert!(
        matches!(
            parse_manifest(data, PATH, other),
            Err(SchemaError::VersionMismatch { .. })
        ),
        "manifest for {folder} was not refused as a mismatch for {other}"
    );

    // Written back as JSON, the same manifest again (the md5 is of the new bytes).
    let rewritten = serde_json::json!({
        "CurrVersion": m.curr_version.to_string(),
        "MinCompatibleVersion": m.min_compatible_version,
        "Description": m.description,
        "SchemaUpdateCqlFiles": m.files,
        "AllowNoCqlFiles": m.allow_no_files,
    })
    .to_string();
    match parse_manifest(rewritten.as_bytes(), PATH, folder) {
        Ok(again) => assert_eq!(
            Manifest {
                md5: m.md5.clone(),
                ..again
            },
            *m,
            "manifest changed when written back"
        ),
        Err(e) => panic!("manifest written back is refused: {e}"),
    }
}
