//! The value parsers of `config::types` on arbitrary text: durations, percentages, positive and
//! non-negative numbers, shard counts, plus versions, host:port and secret references.
//! (`platform.yaml` has no byte-size type; sizes are plain numbers.)
//!
//! Invariants:
//! - what `FromStr` accepts prints (`Display`) to text that parses back to the same value, and
//!   printing is stable after one round;
//! - deserializing the text as a JSON string agrees with `FromStr` (the `Deserialize` entry
//!   point YAML values go through);
//! - accepted values are in range: durations at most 1000 years, percentages 0% to 1000%,
//!   `Positive` > 0 and `NonNegative` >= 0 (both finite), shard counts 1 to MAX_HISTORY_SHARDS;
//! - a refused secret reference's message does not depend on the text after its prefix, so it
//!   can never echo an inline secret.
#![no_main]

use std::fmt::{Debug, Display};
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use temporal_bootstrap::config::types::{
    HostPort, HumanDuration, MAX_HISTORY_SHARDS, NonNegative, Percent, Positive, SecretRef,
    ShardSetting, TemporalVersion,
};

const MAX_DURATION_MS: u64 = 1000 * 365 * 86_400_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s = text.as_ref();

    if let Some(d) = round_trip::<HumanDuration>(s) {
        assert!(d.as_millis() <= MAX_DURATION_MS, "{s:?} accepted as {d}");
    }
    if let Some(p) = parse_agreeing::<Percent>(s) {
        let f = p.fraction();
        assert!(f.is_finite() && (0.0..=10.0).contains(&f), "{s:?} -> {f}");
        // Printing rounds to 1/100 of a percent; after that, printing is exact.
        let shown = p.to_string();
        let again = reparse::<Percent>(&shown);
        assert!(
            (again.fraction() - f).abs() <= 0.5e-4 + 1e-12,
            "{s:?} prints as {shown} which reads as {again:?}"
        );
        assert_eq!(again.to_string(), shown, "percent printing is not stable");
    }
    round_trip::<TemporalVersion>(s);
    if let Some(hp) = round_trip::<HostPort>(s) {
        assert_ne!(hp.port, 0);
    }

    match s.parse::<SecretRef>() {
        Ok(r) => assert_eq!(reparse::<SecretRef>(&r.to_string()), r),
        Err(e) => {
            let prefix = ["env:", "file:"]
                .into_iter()
                .find(|p| s.starts_with(p))
                .unwrap_or("");
            let canonical = match prefix.parse::<SecretRef>() {
                Err(c) => c,
                Ok(r) => panic!("{prefix:?} accepted as {r:?}"),
            };
            // `env:` names are refused with one message, whatever they are.
            assert_eq!(e, canonical, "secret reference error depends on the value");
        }
    }

    // Numbers: from the text (as YAML/JSON would give them) and from raw bits.
    if let Ok(v) = serde_json::from_str::<Positive>(s) {
        assert!(v.get().is_finite() && v.get() > 0.0, "{s:?} -> {v:?}");
    }
    if let Ok(v) = serde_json::from_str::<NonNegative>(s) {
        assert!(v.get().is_finite() && v.get() >= 0.0, "{s:?} -> {v:?}");
    }
    if let Some(bits) = data.first_chunk::<8>() {
        let x = f64::from_le_bytes(*bits);
        assert_eq!(Positive::new(x).is_ok(), x.is_finite() && x > 0.0, "{x}");
        assert_eq!(
            NonNegative::new(x).is_ok(),
            x.is_finite() && x >= 0.0,
            "{x}"
        );
    }
    if let Ok(shards) = serde_json::from_str::<ShardSetting>(s) {
        if let ShardSetting::Pinned(n) = shards {
            assert!((1..=MAX_HISTORY_SHARDS).contains(&n), "{s:?} -> {n}");
        }
        let json = serde_json::to_string(&shards).map_err(|e| e.to_string());
        let back =
            json.and_then(|j| serde_json::from_str::<ShardSetting>(&j).map_err(|e| e.to_string()));
        assert_eq!(back, Ok(shards), "shard setting does not round-trip");
    }
});

/// `FromStr` of `s`, after checking that deserializing `s` as a JSON string gives the same answer.
fn parse_agreeing<T>(s: &str) -> Option<T>
where
    T: FromStr + DeserializeOwned + Debug + Display,
{
    let parsed = s.parse::<T>().ok();
    let quoted = serde_json::Value::String(s.to_string());
    let deserialized = serde_json::from_value::<T>(quoted).ok();
    assert_eq!(
        parsed.as_ref().map(|v| v.to_string()),
        deserialized.as_ref().map(|v| v.to_string()),
        "FromStr and Deserialize disagree on {s:?}"
    );
    parsed
}

/// Like [`parse_agreeing`], and the printed value parses back to an equal value.
fn round_trip<T>(s: &str) -> Option<T>
where
    T: FromStr + DeserializeOwned + Debug + Display + PartialEq,
{
    let v = parse_agreeing::<T>(s)?;
    let shown = v.to_string();
    let again = reparse::<T>(&shown);
    assert_eq!(
        again, v,
        "{s:?} prints as {shown:?} which reads differently"
    );
    Some(v)
}

fn reparse<T: FromStr + Debug>(shown: &str) -> T {
    match shown.parse::<T>() {
        Ok(v) => v,
        Err(_) => panic!("printed value {shown:?} does not parse"),
    }
}
