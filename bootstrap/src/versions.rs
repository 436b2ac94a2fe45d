//! Temporal releases we know: schema versions each needs, releases to refuse, upgrade rules. Pure.
//!
//! Source: Temporal's release notes and schema folders (see FACTS.md, "Schema tooling" and
//! "Upgrades"). A release's schema versions are exact targets: the server refuses to start on an
//! older schema, and schema rollback is not supported.

use crate::config::types::TemporalVersion;

/// Schema versions one minor release line needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseSchemas {
    pub minor: u32,
    /// `schema/postgresql/v12/temporal` version.
    pub postgres_temporal: SchemaVersion,
    /// `schema/postgresql/v12/visibility` version.
    pub postgres_visibility: SchemaVersion,
    /// `schema/elasticsearch/visibility` version (vN).
    pub elasticsearch: u32,
}

/// A `MAJOR.MINOR` schema version as used in `schema_version.curr_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaVersion {
    pub major: u32,
    pub minor: u32,
}

impl SchemaVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }
}

impl std::fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for SchemaVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().trim_start_matches('v');
        let (a, b) = t.split_once('.').ok_or_else(|| {
            format!("`{s}` is not a schema version; expected MAJOR.MINOR such as 1.14")
        })?;
        let n = |p: &str| {
            p.parse::<u32>().map_err(|_| {
                format!("`{s}` is not a schema version; expected MAJOR.MINOR such as 1.14")
            })
        };
        Ok(Self::new(n(a)?, n(b)?))
    }
}

const fn rel(minor: u32, pt: (u32, u32), pv: (u32, u32), es: u32) -> ReleaseSchemas {
    ReleaseSchemas {
        minor,
        postgres_temporal: SchemaVersion::new(pt.0, pt.1),
        postgres_visibility: SchemaVersion::new(pv.0, pv.1),
        elasticsearch: es,
    }
}

/// Schema versions per 1.x release line (FACTS.md).
pub const RELEASES: &[ReleaseSchemas] = &[
    rel(20, (1, 9), (1, 2), 4),
    rel(21, (1, 10), (1, 3), 5),
    rel(22, (1, 10), (1, 3), 5),
    rel(23, (1, 11), (1, 4), 6),
    rel(24, (1, 12), (1, 5), 7),
    rel(25, (1, 14), (1, 6), 7),
    rel(26, (1, 14), (1, 7), 8),
    rel(27, (1, 16), (1, 9), 9),
    rel(28, (1, 17), (1, 9), 9),
    rel(29, (1, 18), (1, 9), 9),
    rel(30, (1, 18), (1, 13), 13),
    rel(31, (1, 19), (1, 14), 14),
];

/// Releases with known defects that must not be deployed; use the next patch.
pub const KNOWN_BROKEN: &[TemporalVersion] = &[
    TemporalVersion::new(1, 21, 0),
    TemporalVersion::new(1, 21, 1),
    TemporalVersion::new(1, 24, 0),
    TemporalVersion::new(1, 27, 0),
];

/// Schema versions for a release, if we know its line.
pub fn schemas_for(v: TemporalVersion) -> Option<&'static ReleaseSchemas> {
    if v.major != 1 {
        return None;
    }
    RELEASES.iter().find(|r| r.minor == v.minor)
}

/// Whether `v` may be configured as the target release; the error says why not and what to do.
pub fn check_target(v: TemporalVersion) -> Result<(), String> {
    if KNOWN_BROKEN.contains(&v) {
        return Err(format!(
            "{v} is a known-broken release; use a later patch of 1.{} instead",
            v.minor
        ));
    }
    if schemas_for(v).is_none() {
        let first = RELEASES.first().map(|r| r.minor).unwrap_or(0);
        let last = RELEASES.last().map(|r| r.minor).unwrap_or(0);
        return Err(format!(
            "{v} is not a supported release; supported release lines are 1.{first}.x to 1.{last}.x"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_ordered_and_never_goes_backwards() {
        for pair in RELEASES.windows(2) {
            assert_eq!(
                pair[1].minor,
                pair[0].minor + 1,
                "release lines are consecutive"
            );
            assert!(pair[1].postgres_temporal >= pair[0].postgres_temporal);
            assert!(pair[1].postgres_visibility >= pair[0].postgres_visibility);
            assert!(pair[1].elasticsearch >= pair[0].elasticsearch);
        }
    }

    #[test]
    fn broken_and_unknown_releases_are_refused() {
        assert!(
            check_target(TemporalVersion::new(1, 27, 0))
                .unwrap_err()
                .contains("known-broken")
        );
        assert!(check_target(TemporalVersion::new(1, 27, 4)).is_ok());
        assert!(
            check_target(TemporalVersion::new(1, 19, 0))
                .unwrap_err()
                .contains("1.20.x to 1.31.x")
        );
        assert_eq!(
            schemas_for(TemporalVersion::new(1, 30, 1))
                .unwrap()
                .postgres_visibility,
            SchemaVersion::new(1, 13)
        );
    }
}
