//! The `platform.yaml` loader on arbitrary text: `config::load::load_str`, then
//! `config::validate::check` again on what it accepted.
//!
//! Invariants:
//! - a refusal names at least one issue, each in the file it was given, at line 1 or later;
//! - an accepted configuration re-validates deterministically: `check` finds no error and
//!   exactly the warnings (paths and messages) the loader returned;
//! - an accepted configuration written back (serialized to the JSON tree the loader
//!   deserializes from) is read again without error, prints the same, and validates the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temporal_bootstrap::config::load::{Finding, load_str};
use temporal_bootstrap::config::model::PlatformConfig;
use temporal_bootstrap::config::validate;

const FILE: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = match load_str(text, FILE) {
        Ok(l) => l,
        Err(errors) => {
            assert!(!errors.issues.is_empty(), "refused without an issue");
            for issue in &errors.issues {
                assert_eq!(issue.file, FILE);
                assert!(issue.line >= 1, "issue at line 0: {issue}");
            }
            return;
        }
    };

    let warnings: Vec<(String, String)> = loaded
        .warnings
        .iter()
        .map(|w| (w.path.clone(), w.message.clone()))
        .collect();
    let report = validate::check(&loaded.config);
    assert!(
        report.errors.is_empty(),
        "accepted, but re-validation finds errors: {:?}",
        report.errors
    );
    assert_eq!(
        pairs(&report.warnings),
        warnings,
        "re-validation gives other warnings"
    );

    let tree = match serde_json::to_value(&loaded.config) {
        Ok(t) => t,
        Err(e) => panic!("an accepted configuration does not serialize: {e}"),
    };
    let again: PlatformConfig = match serde_json::from_value(tree.clone()) {
        Ok(c) => c,
        Err(e) => panic!("an accepted configuration, written back, is refused: {e}\n{tree:#}"),
    };
    match serde_json::to_value(&again) {
        Ok(t2) => assert_eq!(t2, tree, "written back twice, the configuration changed"),
        Err(e) => panic!("a re-read configuration does not serialize: {e}"),
    }
    let report2 = validate::check(&again);
    assert!(
        report2.errors.is_empty(),
        "written back, the configuration has errors: {:?}",
        report2.errors
    );
    assert_eq!(
        pairs(&report2.warnings),
        warnings,
        "written back, other warnings"
    );
});

fn pairs(findings: &[Finding]) -> Vec<(String, String)> {
    findings
        .iter()
        .map(|f| (f.path.clone(), f.message.clone()))
        .collect()
}
