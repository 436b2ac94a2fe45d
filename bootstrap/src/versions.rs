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
    /// Newest patch of this line (hops go to it).
    pub latest_patch: u32,
    /// `schema/postgresql/v12/temporal` version.
    pub postgres_temporal: SchemaVersion,
    /// `schema/postgresql/v12/visibility` version.
    pub postgres_visibility: SchemaVersion,
    /// `schema/elasticsearch/visibility` version (vN).
    pub elasticsearch: u32,
    /// Upgrade notes for hops into this line (breaking changes, schema quirks).
    pub notes: &'static [&'static str],
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

impl serde::Serialize for SchemaVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
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

const fn rel(
    minor: u32,
    latest_patch: u32,
    pt: (u32, u32),
    pv: (u32, u32),
    es: u32,
    notes: &'static [&'static str],
) -> ReleaseSchemas {
    ReleaseSchemas {
        minor,
        latest_patch,
        postgres_temporal: SchemaVersion::new(pt.0, pt.1),
        postgres_visibility: SchemaVersion::new(pv.0, pv.1),
        elasticsearch: es,
        notes,
    }
}

/// Schema versions per 1.x release line, as shipped by the line's latest patch (the patch every
/// upgrade hop uses), with the line's upgrade notes. From 1.27 on, every patch is in [`PATCHES`]
/// with its exact versions and the latest patch here is the newest one there (a unit test holds
/// the two together).
///
/// Source: the `schema/postgresql/v12/version.go` constants and the highest
/// `schema/elasticsearch/visibility/versioned/vN` folder at each release tag of
/// temporalio/temporal (1.20.0 to 1.31.2), and of the `go.temporal.io/server` module at each
/// version the Go module proxy serves (1.30.7 to 1.30.9, 1.31.3 to 1.31.5, 1.32.0 to 1.32.2;
/// 1.32.0 was released in September 2026 with the same schema versions as 1.31).
/// `scripts/checks/release-table` downloads every patch the proxy serves and compares.
/// Four-part re-tags such as 1.29.6.1 are not semver releases and are ignored.
pub const RELEASES: &[ReleaseSchemas] = &[
    rel(
        20,
        5,
        (1, 9),
        (1, 2),
        4,
        &[
            "advanced visibility on PostgreSQL needs the `postgres12` plugin; custom search attributes become per namespace on SQL visibility",
        ],
    ),
    rel(
        21,
        6,
        (1, 10),
        (1, 3),
        5,
        &["1.21.0 and 1.21.1 are known-broken: go straight to the latest 1.21 patch"],
    ),
    rel(
        22,
        7,
        (1, 10),
        (1, 3),
        5,
        &["the frontend serves the HTTP API (default port 7243) from this release on"],
    ),
    rel(23, 1, (1, 11), (1, 4), 6, &[]),
    rel(
        24,
        3,
        (1, 12),
        (1, 6),
        7,
        &[
            "the `postgres` (PostgreSQL 9.6) and `mysql` (MySQL 5.7) SQL plugins are removed: use `postgres12` (or `mysql8`) before this hop",
            "standard visibility is removed: visibility must be advanced (SQL on postgres12/mysql8/sqlite, or Elasticsearch)",
            "1.24.0 is known-broken; 1.24.1+ ship visibility schema 1.6 (1.24.0 shipped 1.5)",
        ],
    ),
    rel(25, 2, (1, 14), (1, 6), 7, &[]),
    rel(
        26,
        3,
        (1, 14),
        (1, 7),
        8,
        &[
            "1.26.2+ ship visibility schema 1.7 and Elasticsearch schema v8 (1.26.0 and 1.26.1 shipped 1.6 and v7)",
        ],
    ),
    rel(
        27,
        4,
        (1, 16),
        (1, 9),
        9,
        &["1.27.0 is known-broken; 1.27.1+ ship persistence schema 1.16 (1.27.0 shipped 1.15)"],
    ),
    rel(28, 4, (1, 17), (1, 9), 9, &[]),
    rel(29, 7, (1, 18), (1, 9), 9, &[]),
    rel(
        30,
        9,
        (1, 18),
        (1, 13),
        13,
        &[
            "1.30.5+ apply the PostgreSQL visibility 1.10-1.13 changes in one combined statement (one table rewrite instead of several)",
            "OpenSearch 2 is supported as visibility store from 1.30.1",
        ],
    ),
    rel(31, 5, (1, 19), (1, 14), 14, &[]),
    rel(
        32,
        2,
        (1, 19),
        (1, 14),
        14,
        &["no schema change from 1.31: the hop only rolls the services"],
    ),
];

/// Schema targets of one exact release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SchemaTargets {
    /// PostgreSQL persistence (`temporal`) schema.
    pub postgres_temporal: SchemaVersion,
    /// PostgreSQL (SQL) visibility schema.
    pub postgres_visibility: SchemaVersion,
    /// Elasticsearch visibility schema (vN).
    pub elasticsearch: u32,
}

/// The first release line whose every patch is listed in [`PATCHES`].
pub const FIRST_EXACT_LINE: u32 = 27;

/// Exact schema versions of every patch from 1.27.0 on, and of the earlier patches whose versions
/// differ from their line's latest patch (1.24.0, 1.26.0, 1.26.1; every other patch 1.20.0 to
/// 1.26.x ships its line's versions). Sorted by version.
pub const PATCHES: &[(TemporalVersion, SchemaTargets)] = &[
    patch(24, 0, (1, 12), (1, 5), 7),
    patch(26, 0, (1, 14), (1, 6), 7),
    patch(26, 1, (1, 14), (1, 6), 7),
    patch(27, 0, (1, 15), (1, 9), 9),
    patch(27, 1, (1, 16), (1, 9), 9),
    patch(27, 2, (1, 16), (1, 9), 9),
    patch(27, 3, (1, 16), (1, 9), 9),
    patch(27, 4, (1, 16), (1, 9), 9),
    patch(28, 0, (1, 17), (1, 9), 9),
    patch(28, 1, (1, 17), (1, 9), 9),
    patch(28, 2, (1, 17), (1, 9), 9),
    patch(28, 3, (1, 17), (1, 9), 9),
    patch(28, 4, (1, 17), (1, 9), 9),
    patch(29, 0, (1, 18), (1, 9), 9),
    patch(29, 1, (1, 18), (1, 9), 9),
    patch(29, 2, (1, 18), (1, 9), 9),
    patch(29, 3, (1, 18), (1, 9), 9),
    patch(29, 4, (1, 18), (1, 9), 9),
    patch(29, 5, (1, 18), (1, 9), 9),
    patch(29, 6, (1, 18), (1, 9), 9),
    patch(29, 7, (1, 18), (1, 9), 9),
    patch(30, 0, (1, 18), (1, 13), 13),
    patch(30, 1, (1, 18), (1, 13), 13),
    patch(30, 2, (1, 18), (1, 13), 13),
    patch(30, 3, (1, 18), (1, 13), 13),
    patch(30, 4, (1, 18), (1, 13), 13),
    patch(30, 5, (1, 18), (1, 13), 13),
    patch(30, 6, (1, 18), (1, 13), 13),
    patch(30, 7, (1, 18), (1, 13), 13),
    patch(30, 8, (1, 18), (1, 13), 13),
    patch(30, 9, (1, 18), (1, 13), 13),
    patch(31, 0, (1, 19), (1, 14), 14),
    patch(31, 1, (1, 19), (1, 14), 14),
    patch(31, 2, (1, 19), (1, 14), 14),
    patch(31, 3, (1, 19), (1, 14), 14),
    patch(31, 4, (1, 19), (1, 14), 14),
    patch(31, 5, (1, 19), (1, 14), 14),
    patch(32, 0, (1, 19), (1, 14), 14),
    patch(32, 1, (1, 19), (1, 14), 14),
    patch(32, 2, (1, 19), (1, 14), 14),
];

const fn patch(
    minor: u32,
    patch: u32,
    pt: (u32, u32),
    pv: (u32, u32),
    es: u32,
) -> (TemporalVersion, SchemaTargets) {
    (TemporalVersion::new(1, minor, patch), targets(pt, pv, es))
}

/// The first patch of a line carrying the security fixes to authorization (landed in 1.28.4,
/// 1.29.6, 1.30.4 and 1.31.2; 1.32.0 shipped with them). An upgrade target below it is refused
/// unless the operator accepts the risk (`--allow-insecure-release`); a configured release below
/// it is a validation warning (a running cluster may be on one, and must be upgradable).
pub const AUTHORIZATION_FIXES: &[TemporalVersion] = &[
    TemporalVersion::new(1, 28, 4),
    TemporalVersion::new(1, 29, 6),
    TemporalVersion::new(1, 30, 4),
    TemporalVersion::new(1, 31, 2),
];

/// Releases the `go.temporal.io/server` module retracts in its go.mod (1.26.0 was published by
/// accident, 1.26.1 carries only the retraction, 1.30.0 was retracted after release).
pub const RETRACTED: &[TemporalVersion] = &[
    TemporalVersion::new(1, 26, 0),
    TemporalVersion::new(1, 26, 1),
    TemporalVersion::new(1, 30, 0),
];

const fn targets(pt: (u32, u32), pv: (u32, u32), es: u32) -> SchemaTargets {
    SchemaTargets {
        postgres_temporal: SchemaVersion::new(pt.0, pt.1),
        postgres_visibility: SchemaVersion::new(pv.0, pv.1),
        elasticsearch: es,
    }
}

/// PostgreSQL visibility versions whose statements add generated STORED columns to
/// `executions_visibility`: PostgreSQL rewrites the whole table (hours on large tables).
/// 1.10 to 1.12 carry no statements since their changes were folded into 1.13.
pub const REWRITING_VISIBILITY_VERSIONS: &[SchemaVersion] = &[
    SchemaVersion::new(1, 2),
    SchemaVersion::new(1, 3),
    SchemaVersion::new(1, 7),
    SchemaVersion::new(1, 8),
    SchemaVersion::new(1, 13),
    SchemaVersion::new(1, 14),
];

/// Measured cost of the visibility versions that rewrite `executions_visibility`, in
/// microseconds per row (the rewrite plus the indexes the version builds), by
/// `scripts/bench/upgrade` on the reference machine: 2 shared cores, PostgreSQL 15, the real
/// schema of 1.30.9 (v1.13, which folds 1.10 to 1.12) and 1.31.2 (v1.14), 100k and 1M rows.
/// Another machine differs: the estimate says so, and the runbook asks for a rehearsal.
pub const REWRITE_MICROS_PER_ROW: &[(SchemaVersion, f64)] = &[
    // 146 (100k rows) and 136 (1M rows) measured.
    (SchemaVersion::new(1, 13), 140.0),
    // 258 and 259 measured: two ALTERs, each rewriting the table and all its indexes.
    (SchemaVersion::new(1, 14), 260.0),
];

/// Seconds a rewriting visibility version takes on `rows` rows, from
/// [`REWRITE_MICROS_PER_ROW`]; versions never measured (before 1.13) get the highest measured
/// cost. `None` for a version that does not rewrite the table.
pub fn visibility_rewrite_seconds(version: SchemaVersion, rows: u64) -> Option<f64> {
    if !REWRITING_VISIBILITY_VERSIONS.contains(&version) {
        return None;
    }
    let micros = REWRITE_MICROS_PER_ROW
        .iter()
        .find(|(v, _)| *v == version)
        .map(|(_, c)| *c)
        .unwrap_or_else(|| {
            REWRITE_MICROS_PER_ROW
                .iter()
                .map(|(_, c)| *c)
                .fold(0.0, f64::max)
        });
    Some(rows as f64 * micros / 1e6)
}

/// `42s`, `3m10s`, `2h05m`.
pub fn human_seconds(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Releases with known defects, or retracted by the server module (`retract` in its go.mod:
/// 1.26.0 published by accident, 1.26.1 carrying only the retraction, 1.30.0), that must not be
/// deployed; use the next patch.
pub const KNOWN_BROKEN: &[TemporalVersion] = &[
    TemporalVersion::new(1, 21, 0),
    TemporalVersion::new(1, 21, 1),
    TemporalVersion::new(1, 24, 0),
    TemporalVersion::new(1, 26, 0),
    TemporalVersion::new(1, 26, 1),
    TemporalVersion::new(1, 27, 0),
    TemporalVersion::new(1, 30, 0),
];

/// PostgreSQL major versions the bundle is tested against.
pub const POSTGRES_TESTED: &[u32] = &[13, 14, 15, 16];

/// Visibility stores and versions a release supports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DependencySupport {
    /// PostgreSQL majors tested (persistence and SQL visibility, plugin `postgres12`).
    pub postgres_tested: Vec<u32>,
    /// Elasticsearch majors.
    pub elasticsearch: Vec<u32>,
    /// OpenSearch majors (empty: not supported by this release).
    pub opensearch: Vec<u32>,
}

/// What a release supports underneath it.
pub fn dependency_support(v: TemporalVersion) -> DependencySupport {
    DependencySupport {
        postgres_tested: POSTGRES_TESTED.to_vec(),
        elasticsearch: vec![7, 8],
        opensearch: if v >= TemporalVersion::new(1, 30, 1) {
            vec![2]
        } else {
            vec![]
        },
    }
}

/// The newest patch of a release line we know, e.g. 1.29 -> 1.29.7.
pub fn latest_patch(minor: u32) -> Option<TemporalVersion> {
    RELEASES
        .iter()
        .find(|r| r.minor == minor)
        .map(|r| TemporalVersion::new(1, r.minor, r.latest_patch))
}

/// A release of a line this bundle knows, parsed once from a version: its exact schema
/// versions (patch-aware) and its line's facts. Every command that needs a release's schema
/// versions goes through this type (`plan`, `apply`, `status`, `upgrade`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedRelease {
    version: TemporalVersion,
    line: &'static ReleaseSchemas,
    schemas: SchemaTargets,
}

impl SupportedRelease {
    /// Any patch of a known line, known-broken ones included (a running cluster may be on one).
    /// A patch newer than the table's newest of its line gets the line's schema versions.
    pub fn of(v: TemporalVersion) -> Result<Self, UpgradeRefusal> {
        let line = if v.major == 1 {
            RELEASES.iter().find(|r| r.minor == v.minor)
        } else {
            None
        };
        let Some(line) = line else {
            return Err(UpgradeRefusal::UnknownTarget {
                to: v,
                why: format!("known releases: {}", supported_range()),
                instead: format!(
                    "target a known release (newest: {}), or use a temporal-bootstrap release that knows {v} and its schema versions",
                    newest_known()
                ),
            });
        };
        let schemas = PATCHES
            .iter()
            .find(|(p, _)| *p == v)
            .map(|(_, t)| *t)
            .unwrap_or(SchemaTargets {
                postgres_temporal: line.postgres_temporal,
                postgres_visibility: line.postgres_visibility,
                elasticsearch: line.elasticsearch,
            });
        Ok(Self {
            version: v,
            line,
            schemas,
        })
    }

    /// A release that may be configured as what the cluster runs: a known line, not a
    /// known-broken or retracted patch.
    pub fn target(v: TemporalVersion) -> Result<Self, UpgradeRefusal> {
        let r = Self::of(v)?;
        if r.is_retracted() {
            return Err(UpgradeRefusal::Retracted {
                to: v,
                instead: r.latest_of_line(),
            });
        }
        if r.is_known_broken() {
            return Err(UpgradeRefusal::BrokenTarget {
                to: v,
                instead: r.latest_of_line(),
            });
        }
        Ok(r)
    }

    /// A release an upgrade may go to: [`Self::target`], a patch the table knows (its schema
    /// versions are facts, not the line's guess), and not below its line's authorization-fix
    /// patch unless `allow_insecure`.
    pub fn upgrade_target(
        v: TemporalVersion,
        allow_insecure: bool,
    ) -> Result<Self, UpgradeRefusal> {
        let r = Self::target(v)?;
        if let Some(fix) = r.missing_authorization_fix()
            && !allow_insecure
        {
            return Err(UpgradeRefusal::Insecure {
                to: v,
                fix,
                instead: r.latest_of_line(),
            });
        }
        if r.is_newer_than_known() {
            let latest = r.latest_of_line();
            return Err(UpgradeRefusal::UnknownTarget {
                to: v,
                why: format!("the newest 1.{} patch it knows is {latest}", v.minor),
                instead: format!(
                    "target {latest}, or use a temporal-bootstrap release that knows {v}"
                ),
            });
        }
        Ok(r)
    }

    pub fn version(&self) -> TemporalVersion {
        self.version
    }

    /// The exact schema versions this patch ships.
    pub fn schemas(&self) -> SchemaTargets {
        self.schemas
    }

    /// The release line's facts (latest patch, upgrade notes).
    pub fn line(&self) -> &'static ReleaseSchemas {
        self.line
    }

    /// The newest patch of this release's line, e.g. 1.29.x -> 1.29.7.
    pub fn latest_of_line(&self) -> TemporalVersion {
        TemporalVersion::new(1, self.line.minor, self.line.latest_patch)
    }

    pub fn is_known_broken(&self) -> bool {
        KNOWN_BROKEN.contains(&self.version)
    }

    pub fn is_retracted(&self) -> bool {
        RETRACTED.contains(&self.version)
    }

    /// The patch of this line that carries the authorization fixes, when this release is below
    /// it.
    pub fn missing_authorization_fix(&self) -> Option<TemporalVersion> {
        AUTHORIZATION_FIXES
            .iter()
            .copied()
            .find(|f| f.major == self.version.major && f.minor == self.version.minor)
            .filter(|f| self.version < *f)
    }

    /// Whether [`Self::schemas`] are this patch's own, read from its release (every patch from
    /// [`FIRST_EXACT_LINE`] on, and the early exceptions before it), rather than its line's.
    pub fn is_exact(&self) -> bool {
        PATCHES.iter().any(|(p, _)| *p == self.version)
    }

    /// A patch released after this table was written: its schema versions are assumed to be
    /// its line's.
    pub fn is_newer_than_known(&self) -> bool {
        self.version.patch > self.line.latest_patch
    }
}

/// One row of `temporal-bootstrap upgrade releases`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KnownRelease {
    pub version: TemporalVersion,
    pub schemas: SchemaTargets,
    /// The schema versions are this patch's own ([`SupportedRelease::is_exact`]); false for an
    /// older line listed by its latest patch.
    pub patch_known: bool,
    pub retracted: bool,
    pub known_broken: bool,
    /// The patch of this line with the authorization fixes, when this one lacks them.
    pub missing_authorization_fix: Option<TemporalVersion>,
}

impl KnownRelease {
    /// `ok`, or what is wrong with it.
    pub fn status(&self) -> String {
        if self.retracted {
            "retracted".into()
        } else if self.known_broken {
            "known-broken".into()
        } else if let Some(fix) = self.missing_authorization_fix {
            format!("lacks the authorization fixes of {fix}")
        } else {
            "ok".into()
        }
    }
}

/// Every release the table knows: each patch of [`PATCHES`] from [`FIRST_EXACT_LINE`] on, and
/// the latest patch of each older line.
pub fn known_releases() -> Vec<KnownRelease> {
    let mut versions: Vec<TemporalVersion> = RELEASES
        .iter()
        .filter(|l| l.minor < FIRST_EXACT_LINE)
        .map(|l| TemporalVersion::new(1, l.minor, l.latest_patch))
        .collect();
    versions.extend(
        PATCHES
            .iter()
            .map(|(v, _)| *v)
            .filter(|v| v.minor >= FIRST_EXACT_LINE),
    );
    versions
        .into_iter()
        .filter_map(|v| SupportedRelease::of(v).ok())
        .map(|r| KnownRelease {
            version: r.version(),
            schemas: r.schemas(),
            patch_known: r.is_exact() || r.version() == r.latest_of_line(),
            retracted: r.is_retracted(),
            known_broken: r.is_known_broken(),
            missing_authorization_fix: r.missing_authorization_fix(),
        })
        .collect()
}

/// One step of an upgrade: a single minor (or patch) move, schema first, then services.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hop {
    /// Release the cluster runs before this hop.
    pub from: TemporalVersion,
    /// Release after this hop (the latest patch of its line, or the requested target).
    pub to: TemporalVersion,
    /// Schema versions `from` runs on.
    pub schemas_before: SchemaTargets,
    /// Exact schema versions `to` needs; applied before any service of `to` starts.
    pub schemas: SchemaTargets,
    /// `temporalio/server:<to>`.
    pub server_image: String,
    /// `temporalio/admin-tools:<to>`.
    pub admin_tools_image: String,
    /// Breaking changes and quirks of the `to` line.
    pub notes: Vec<String>,
    /// Risks of this hop (table rewrites, ...).
    pub warnings: Vec<String>,
    /// Whether the SQL visibility migration rewrites `executions_visibility`.
    pub visibility_rewrite: bool,
    /// Known problems of hops into this line, from the server's issue tracker.
    pub hazards: Vec<Hazard>,
}

/// A known problem of upgrading into a release line, as reported on the server's issue tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Hazard {
    /// The line a hop lands on for this to apply.
    #[serde(skip)]
    pub into_minor: u32,
    /// `temporalio/temporal#NNNN`.
    pub issue: &'static str,
    /// Which store it concerns.
    pub store: HazardStore,
    pub summary: &'static str,
}

/// The store a hazard concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HazardStore {
    PostgresVisibility,
}

/// The PostgreSQL visibility hazard `upgrade plan` checks in the database before any write.
pub const GIN_CHARACTER_ISSUE: &str = "temporalio/temporal#9930";

/// Known hazards by line. Source: the temporalio/temporal issue tracker (December 2026).
pub const HAZARDS: &[Hazard] = &[
    Hazard {
        into_minor: 30,
        issue: GIN_CHARACTER_ISSUE,
        store: HazardStore::PostgresVisibility,
        summary: "visibility 1.9 -> 1.10 can fail with \"data type character has no default operator class for access method gin\" when the visibility database lacks a GIN operator class for character (extension btree_gin) (open issue); `upgrade plan` (without --from) and `upgrade apply` check this before any write",
    },
    Hazard {
        into_minor: 30,
        issue: "temporalio/temporal#10358",
        store: HazardStore::PostgresVisibility,
        summary: "the 1.30 visibility versions add generated STORED columns: PostgreSQL rewrites the whole executions_visibility table under an exclusive lock (visibility reads and writes wait)",
    },
    Hazard {
        into_minor: 31,
        issue: "temporalio/temporal#11594",
        store: HazardStore::PostgresVisibility,
        summary: "visibility v1.14 rewrites the whole executions_visibility table under an exclusive lock; reported: 57 minutes for 35M rows on 16 cores",
    },
];

/// Why an upgrade is refused (exit 2); each message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeRefusal {
    #[error(
        "{to} is older than the running {from}: downgrades are refused. A binary rollback to the previous release is possible while the schema stays where it is (runbooks/rollback.md); the schema itself cannot be rolled back"
    )]
    Downgrade {
        from: TemporalVersion,
        to: TemporalVersion,
    },
    #[error("{to} is a known-broken release; target {instead} instead")]
    BrokenTarget {
        to: TemporalVersion,
        instead: TemporalVersion,
    },
    #[error(
        "{to} is retracted (the go.temporal.io/server module withdrew it); target {instead} instead"
    )]
    Retracted {
        to: TemporalVersion,
        instead: TemporalVersion,
    },
    #[error(
        "{to} lacks the authorization security fixes that landed in {fix}; target {instead} (or at least {fix}), or pass --allow-insecure-release to accept the risk"
    )]
    Insecure {
        to: TemporalVersion,
        fix: TemporalVersion,
        instead: TemporalVersion,
    },
    #[error("{to} is not a release this bundle knows ({why}); {instead}")]
    UnknownTarget {
        to: TemporalVersion,
        why: String,
        instead: String,
    },
    #[error("--via {via}: {why}")]
    BadVia { via: TemporalVersion, why: String },
    #[error("the running release {from} is not one this bundle can upgrade from ({why})")]
    UnsupportedSource { from: TemporalVersion, why: String },
    #[error(
        "hop {index} goes from {from} to {to}, skipping a minor release: upgrades go one minor version at a time"
    )]
    SkippedMinor {
        index: usize,
        from: TemporalVersion,
        to: TemporalVersion,
    },
}

fn newest_known() -> String {
    RELEASES
        .last()
        .map(|r| format!("1.{}.{}", r.minor, r.latest_patch))
        .unwrap_or_default()
}

fn supported_range() -> String {
    match (RELEASES.first(), RELEASES.last()) {
        (Some(a), Some(b)) => format!("1.{}.x to 1.{}.{}", a.minor, b.minor, b.latest_patch),
        _ => "none".into(),
    }
}

/// Whether `v` can be the target of an upgrade: a known, not known-broken or retracted patch of
/// a known line, with its line's authorization fixes unless `allow_insecure`.
pub fn check_upgrade_target(
    v: TemporalVersion,
    allow_insecure: bool,
) -> Result<(), UpgradeRefusal> {
    SupportedRelease::upgrade_target(v, allow_insecure).map(|_| ())
}

fn hop(from: TemporalVersion, to: TemporalVersion) -> Option<Hop> {
    let before = SupportedRelease::of(from).ok()?.schemas();
    let to_release = SupportedRelease::of(to).ok()?;
    let after = to_release.schemas();
    let line = to_release.line();
    let mut notes: Vec<String> = if from.minor == to.minor {
        Vec::new()
    } else {
        line.notes.iter().map(|n| n.to_string()).collect()
    };
    if from.minor == to.minor {
        notes.push(format!("patch upgrade within 1.{}", to.minor));
    }
    let rewriting: Vec<SchemaVersion> = REWRITING_VISIBILITY_VERSIONS
        .iter()
        .copied()
        .filter(|v| *v > before.postgres_visibility && *v <= after.postgres_visibility)
        .collect();
    let mut warnings = Vec::new();
    if !rewriting.is_empty() {
        let list: Vec<String> = rewriting.iter().map(|v| v.to_string()).collect();
        warnings.push(format!(
            "SQL visibility {} -> {}: version(s) {} add generated STORED columns and rewrite the whole executions_visibility table; time grows with its size (one report: about two hours) and takes an exclusive lock; rehearse on a copy and plan a window (does not apply to Elasticsearch visibility)",
            before.postgres_visibility,
            after.postgres_visibility,
            list.join(", ")
        ));
    }
    if KNOWN_BROKEN.contains(&from) {
        warnings.push(format!(
            "the running {from} is known-broken: finish this hop promptly"
        ));
    }
    Some(Hop {
        from,
        to,
        schemas_before: before,
        schemas: after,
        server_image: format!("temporalio/server:{to}"),
        admin_tools_image: format!("temporalio/admin-tools:{to}"),
        notes,
        warnings,
        visibility_rewrite: !rewriting.is_empty(),
        hazards: HAZARDS
            .iter()
            .copied()
            .filter(|h| from.minor < h.into_minor && h.into_minor <= to.minor)
            .collect(),
    })
}

/// How [`plan_hops`] picks the hops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HopOptions {
    /// A target below its line's authorization-fix patch is allowed (`--allow-insecure-release`).
    pub allow_insecure_release: bool,
    /// Intermediate patches to land on instead of their line's latest (`--via`), at most one per
    /// line strictly between the two ends: for a registry or mirror that lacks the latest patch.
    pub via: Vec<TemporalVersion>,
}

impl HopOptions {
    /// Latest patches, and targets without the authorization fixes allowed.
    pub const INSECURE: HopOptions = HopOptions {
        allow_insecure_release: true,
        via: Vec::new(),
    };
}

/// Each `--via` patch: a line strictly between `from` and `to`, once, and a patch an upgrade may
/// land on.
fn check_via(
    from: TemporalVersion,
    to: TemporalVersion,
    options: &HopOptions,
) -> Result<(), UpgradeRefusal> {
    for (i, v) in options.via.iter().enumerate() {
        if v.major != from.major || v.minor <= from.minor || v.minor >= to.minor {
            return Err(UpgradeRefusal::BadVia {
                via: *v,
                why: format!(
                    "an intermediate hop must be on a release line strictly between {from} and {to}"
                ),
            });
        }
        if options.via[..i].iter().any(|o| o.minor == v.minor) {
            return Err(UpgradeRefusal::BadVia {
                via: *v,
                why: format!("another --via patch is already on the 1.{} line", v.minor),
            });
        }
        SupportedRelease::upgrade_target(*v, options.allow_insecure_release)?;
    }
    Ok(())
}

/// The hops from `from` to `to`: one per minor release, each to the latest patch of its line,
/// the last one to `to` itself. Same release: no hops. A patch move within a line: one hop.
///
/// Guarantees: hops are consecutive (each starts where the previous ended), never skip a minor,
/// never go backwards, never land on a known-broken or unknown release.
pub fn plan_hops(
    from: TemporalVersion,
    to: TemporalVersion,
    options: &HopOptions,
) -> Result<Vec<Hop>, UpgradeRefusal> {
    if to < from {
        return Err(UpgradeRefusal::Downgrade { from, to });
    }
    if to == from {
        return Ok(Vec::new());
    }
    check_upgrade_target(to, options.allow_insecure_release)?;
    check_via(from, to, options)?;
    if SupportedRelease::of(from).is_err() {
        return Err(UpgradeRefusal::UnsupportedSource {
            from,
            why: format!(
                "known releases: {}; upgrade to 1.{}.x with Temporal's own tools first",
                supported_range(),
                RELEASES.first().map(|r| r.minor).unwrap_or(0)
            ),
        });
    }
    let mut hops = Vec::new();
    let mut current = from;
    for minor in from.minor..=to.minor {
        let via = options.via.iter().copied().find(|v| v.minor == minor);
        let next = if minor == to.minor {
            to
        } else if minor == from.minor {
            continue;
        } else if let Some(v) = via {
            v
        } else {
            // Invariant: every minor between two known lines is a known line (the table is
            // consecutive, checked by a unit test).
            latest_patch(minor).ok_or_else(|| UpgradeRefusal::UnsupportedSource {
                from,
                why: format!("no release line 1.{minor} in the table"),
            })?
        };
        let h = hop(current, next).ok_or_else(|| UpgradeRefusal::UnsupportedSource {
            from,
            why: format!("no schema versions known for {current} -> {next}"),
        })?;
        hops.push(h);
        current = next;
    }
    check_hops(&hops)?;
    Ok(hops)
}

/// Checks a hop list (e.g. loaded from a state file): consecutive, forward, one minor at a time.
pub fn check_hops(hops: &[Hop]) -> Result<(), UpgradeRefusal> {
    for (i, h) in hops.iter().enumerate() {
        if h.to <= h.from {
            return Err(UpgradeRefusal::Downgrade {
                from: h.from,
                to: h.to,
            });
        }
        if h.to.major != h.from.major || h.to.minor > h.from.minor + 1 {
            return Err(UpgradeRefusal::SkippedMinor {
                index: i + 1,
                from: h.from,
                to: h.to,
            });
        }
        if let Some(prev) = i.checked_sub(1).map(|j| &hops[j])
            && prev.to != h.from
        {
            return Err(UpgradeRefusal::SkippedMinor {
                index: i + 1,
                from: prev.to,
                to: h.from,
            });
        }
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
        let target = |v| SupportedRelease::target(v).map(|r| r.version());
        assert!(
            target(TemporalVersion::new(1, 27, 0))
                .unwrap_err()
                .to_string()
                .contains("known-broken")
        );
        assert!(target(TemporalVersion::new(1, 27, 4)).is_ok());
        assert!(
            target(TemporalVersion::new(1, 19, 0))
                .unwrap_err()
                .to_string()
                .contains("1.20.x to 1.32.2")
        );
        assert_eq!(
            SupportedRelease::of(TemporalVersion::new(1, 30, 1))
                .unwrap()
                .schemas()
                .postgres_visibility,
            SchemaVersion::new(1, 13)
        );
        // A patch newer than the table: configurable with its line's versions, never an
        // upgrade target.
        let newer = TemporalVersion::new(1, 31, 9);
        assert!(
            SupportedRelease::target(newer)
                .unwrap()
                .is_newer_than_known()
        );
        assert!(SupportedRelease::upgrade_target(newer, false).is_err());
    }

    /// Every patch of every known line: the steps (`plan`/`apply`) and the upgrade hops aim at
    /// the same schema versions, and a patch never ships older schemas than an earlier one.
    #[test]
    fn every_known_patch_has_one_set_of_schema_versions() {
        for line in RELEASES {
            let mut previous: Option<SchemaTargets> = None;
            for patch in 0..=line.latest_patch {
                let v = TemporalVersion::new(1, line.minor, patch);
                let r = SupportedRelease::of(v).unwrap();
                let early = PATCHES.iter().find(|(p, _)| *p == v).map(|(_, t)| *t);
                let want = early.unwrap_or(SchemaTargets {
                    postgres_temporal: line.postgres_temporal,
                    postgres_visibility: line.postgres_visibility,
                    elasticsearch: line.elasticsearch,
                });
                assert_eq!(r.schemas(), want, "{v}");
                if let Some(p) = previous {
                    assert!(
                        want.postgres_temporal >= p.postgres_temporal
                            && want.postgres_visibility >= p.postgres_visibility
                            && want.elasticsearch >= p.elasticsearch,
                        "{v} goes backwards"
                    );
                }
                previous = Some(want);
                assert_eq!(
                    SupportedRelease::target(v).is_ok(),
                    !KNOWN_BROKEN.contains(&v)
                );
                if line.minor > RELEASES[0].minor && !KNOWN_BROKEN.contains(&v) {
                    let from = latest_patch(line.minor - 1).unwrap();
                    let hops = plan_hops(from, v, &HopOptions::INSECURE).unwrap();
                    assert_eq!(hops.last().unwrap().schemas, r.schemas(), "{from} -> {v}");
                }
            }
        }
        // The two releases the old line-based lookup got wrong.
        for (v, vis, es) in [("1.26.0", (1, 6), 7), ("1.26.1", (1, 6), 7)] {
            let s = SupportedRelease::of(v.parse().unwrap()).unwrap().schemas();
            assert_eq!(s.postgres_visibility, SchemaVersion::new(vis.0, vis.1));
            assert_eq!(s.elasticsearch, es);
        }
    }

    fn v(s: &str) -> TemporalVersion {
        s.parse().unwrap()
    }

    #[test]
    fn hops_from_1_27_to_1_31_use_latest_patches_and_exact_schemas() {
        let hops = plan_hops(v("1.27.4"), v("1.31.2"), &HopOptions::default()).unwrap();
        let path: Vec<String> = hops
            .iter()
            .map(|h| format!("{}->{}", h.from, h.to))
            .collect();
        assert_eq!(
            path,
            [
                "1.27.4->1.28.4",
                "1.28.4->1.29.7",
                "1.29.7->1.30.9",
                "1.30.9->1.31.2"
            ]
        );
        let s: Vec<String> = hops
            .iter()
            .map(|h| {
                format!(
                    "{}/{}/v{}",
                    h.schemas.postgres_temporal,
                    h.schemas.postgres_visibility,
                    h.schemas.elasticsearch
                )
            })
            .collect();
        assert_eq!(
            s,
            [
                "1.17/1.9/v9",
                "1.18/1.9/v9",
                "1.18/1.13/v13",
                "1.19/1.14/v14"
            ]
        );
        assert_eq!(hops[0].server_image, "temporalio/server:1.28.4");
        assert_eq!(hops[0].admin_tools_image, "temporalio/admin-tools:1.28.4");
    }

    #[test]
    fn last_hop_lands_on_the_requested_patch() {
        let hops = plan_hops(v("1.27.4"), v("1.29.1"), &HopOptions::INSECURE).unwrap();
        assert_eq!(hops.last().unwrap().to, v("1.29.1"));
        assert_eq!(hops[0].to, v("1.28.4"));
    }

    #[test]
    fn patch_upgrade_is_one_hop_and_can_change_schema() {
        let hops = plan_hops(v("1.27.0"), v("1.27.4"), &HopOptions::default()).unwrap();
        assert_eq!(hops.len(), 1);
        assert_eq!(
            hops[0].schemas_before.postgres_temporal,
            SchemaVersion::new(1, 15)
        );
        assert_eq!(hops[0].schemas.postgres_temporal, SchemaVersion::new(1, 16));
        assert!(hops[0].warnings.iter().any(|w| w.contains("known-broken")));
    }

    #[test]
    fn same_release_needs_no_hop() {
        assert!(
            plan_hops(v("1.29.7"), v("1.29.7"), &HopOptions::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn downgrades_are_refused() {
        let e = plan_hops(v("1.32.2"), v("1.31.2"), &HopOptions::default()).unwrap_err();
        assert!(matches!(e, UpgradeRefusal::Downgrade { .. }));
        assert!(e.to_string().contains("rollback"));
        assert!(matches!(
            plan_hops(v("1.29.7"), v("1.29.6"), &HopOptions::default()).unwrap_err(),
            UpgradeRefusal::Downgrade { .. }
        ));
    }

    #[test]
    fn broken_unknown_and_unsupported_are_refused_with_advice() {
        let e = plan_hops(v("1.26.3"), v("1.27.0"), &HopOptions::default()).unwrap_err();
        assert_eq!(
            e,
            UpgradeRefusal::BrokenTarget {
                to: v("1.27.0"),
                instead: v("1.27.4")
            }
        );
        for t in ["1.21.0", "1.21.1", "1.24.0"] {
            assert!(matches!(
                check_upgrade_target(v(t), false).unwrap_err(),
                UpgradeRefusal::BrokenTarget { .. }
            ));
        }
        let e = plan_hops(v("1.30.6"), v("1.31.9"), &HopOptions::default()).unwrap_err();
        assert!(e.to_string().contains("target 1.31.5"), "{e}");
        let e = plan_hops(v("1.32.2"), v("1.33.0"), &HopOptions::default()).unwrap_err();
        assert!(matches!(e, UpgradeRefusal::UnknownTarget { .. }));
        assert!(e.to_string().contains("1.20.x to 1.32.2"), "{e}");
        let hops = plan_hops(v("1.31.2"), v("1.32.2"), &HopOptions::default()).unwrap();
        assert_eq!(hops.len(), 1);
        let e = plan_hops(v("1.19.3"), v("1.21.6"), &HopOptions::default()).unwrap_err();
        assert!(matches!(e, UpgradeRefusal::UnsupportedSource { .. }));
    }

    #[test]
    fn every_generated_plan_moves_one_minor_at_a_time() {
        let mut known = Vec::new();
        for r in RELEASES {
            for p in 0..=r.latest_patch {
                known.push(TemporalVersion::new(1, r.minor, p));
            }
        }
        let mut plans = 0;
        for from in &known {
            for to in &known {
                match plan_hops(*from, *to, &HopOptions::INSECURE) {
                    Ok(hops) => {
                        plans += 1;
                        check_hops(&hops).unwrap();
                        if from != to {
                            assert_eq!(hops.first().unwrap().from, *from);
                            assert_eq!(hops.last().unwrap().to, *to);
                            assert_eq!(hops.len() as u32, (to.minor - from.minor).max(1));
                            for h in &hops[..hops.len() - 1] {
                                assert!(!KNOWN_BROKEN.contains(&h.to));
                                assert_eq!(Some(h.to), latest_patch(h.to.minor));
                            }
                        }
                    }
                    Err(e) => assert!(
                        to < from || KNOWN_BROKEN.contains(to),
                        "{from} -> {to}: {e}"
                    ),
                }
            }
        }
        assert!(plans > 1000);
    }

    #[test]
    fn hand_edited_hops_that_skip_a_minor_are_refused() {
        let mut hops = plan_hops(v("1.27.4"), v("1.29.7"), &HopOptions::default()).unwrap();
        hops.remove(0);
        hops[0].from = v("1.27.4");
        assert!(matches!(
            check_hops(&hops).unwrap_err(),
            UpgradeRefusal::SkippedMinor { .. }
        ));
        let mut gap = plan_hops(v("1.27.4"), v("1.30.6"), &HopOptions::default()).unwrap();
        gap.remove(1);
        assert!(matches!(
            check_hops(&gap).unwrap_err(),
            UpgradeRefusal::SkippedMinor { index: 2, .. }
        ));
    }

    #[test]
    fn table_rewrites_are_flagged_only_where_they_happen() {
        let hops = plan_hops(v("1.27.4"), v("1.31.2"), &HopOptions::default()).unwrap();
        let flagged: Vec<bool> = hops.iter().map(|h| h.visibility_rewrite).collect();
        assert_eq!(flagged, [false, false, true, true]);
        assert!(hops[2].warnings[0].contains("1.9 -> 1.13"));
        let old = plan_hops(v("1.25.2"), v("1.26.3"), &HopOptions::default()).unwrap();
        assert!(old[0].visibility_rewrite, "1.6 -> 1.7 adds a stored column");
    }

    #[test]
    fn early_patches_and_latest_patches() {
        let schemas = |s: &str| SupportedRelease::of(v(s)).unwrap().schemas();
        assert_eq!(
            schemas("1.24.0").postgres_visibility,
            SchemaVersion::new(1, 5)
        );
        assert_eq!(
            schemas("1.24.3").postgres_visibility,
            SchemaVersion::new(1, 6)
        );
        assert_eq!(schemas("1.26.1").elasticsearch, 7);
        assert_eq!(schemas("1.26.2").elasticsearch, 8);
        let latest: Vec<String> = RELEASES
            .iter()
            .map(|r| format!("1.{}.{}", r.minor, r.latest_patch))
            .collect();
        assert_eq!(
            latest,
            [
                "1.20.5", "1.21.6", "1.22.7", "1.23.1", "1.24.3", "1.25.2", "1.26.3", "1.27.4",
                "1.28.4", "1.29.7", "1.30.9", "1.31.5", "1.32.2"
            ]
        );
        for r in RELEASES {
            assert!(!KNOWN_BROKEN.contains(&TemporalVersion::new(1, r.minor, r.latest_patch)));
        }
    }

    #[test]
    fn opensearch_only_from_1_30_1() {
        assert!(dependency_support(v("1.30.0")).opensearch.is_empty());
        assert_eq!(dependency_support(v("1.30.1")).opensearch, [2]);
        assert_eq!(
            dependency_support(v("1.20.5")).postgres_tested,
            [13, 14, 15, 16]
        );
    }

    /// From 1.27 on every patch is in PATCHES, in order, and each line's latest patch is the
    /// newest there; the authorization-fix patches and retracted releases are real patches.
    #[test]
    fn every_patch_from_1_27_is_listed_exactly() {
        for pair in PATCHES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "PATCHES is sorted");
        }
        for line in RELEASES.iter().filter(|l| l.minor >= FIRST_EXACT_LINE) {
            for p in 0..=line.latest_patch {
                let v = TemporalVersion::new(1, line.minor, p);
                let r = SupportedRelease::of(v).unwrap();
                assert!(r.is_exact(), "{v} is missing from PATCHES");
            }
            let newest = PATCHES
                .iter()
                .filter(|(p, _)| p.minor == line.minor)
                .map(|(p, _)| p.patch)
                .max();
            assert_eq!(newest, Some(line.latest_patch), "1.{}", line.minor);
            let latest =
                SupportedRelease::of(TemporalVersion::new(1, line.minor, line.latest_patch))
                    .unwrap()
                    .schemas();
            assert_eq!(latest.postgres_temporal, line.postgres_temporal);
            assert_eq!(latest.postgres_visibility, line.postgres_visibility);
            assert_eq!(latest.elasticsearch, line.elasticsearch);
        }
        for v in AUTHORIZATION_FIXES.iter().chain(RETRACTED) {
            assert!(SupportedRelease::of(*v).is_ok(), "{v}");
            assert!(v.patch <= latest_patch(v.minor).unwrap().patch, "{v}");
        }
        assert!(!SupportedRelease::of(v("1.31.9")).unwrap().is_exact());
    }

    #[test]
    fn retracted_releases_are_refused_naming_the_patch_to_use() {
        let e = SupportedRelease::target(v("1.30.0")).unwrap_err();
        assert_eq!(
            e,
            UpgradeRefusal::Retracted {
                to: v("1.30.0"),
                instead: v("1.30.9")
            }
        );
        assert!(e.to_string().contains("retracted") && e.to_string().contains("target 1.30.9"));
        assert!(plan_hops(v("1.29.7"), v("1.30.0"), &HopOptions::INSECURE).is_err());
    }

    #[test]
    fn a_target_without_the_authorization_fixes_needs_consent() {
        for (target, fix) in [
            ("1.28.3", "1.28.4"),
            ("1.29.5", "1.29.6"),
            ("1.30.3", "1.30.4"),
            ("1.31.1", "1.31.2"),
        ] {
            let e = plan_hops(v("1.27.4"), v(target), &HopOptions::default()).unwrap_err();
            assert!(
                matches!(e, UpgradeRefusal::Insecure { fix: f, .. } if f == v(fix)),
                "{target}: {e}"
            );
            assert!(e.to_string().contains("--allow-insecure-release"), "{e}");
            let hops = plan_hops(v("1.27.4"), v(target), &HopOptions::INSECURE).unwrap();
            assert_eq!(hops.last().unwrap().to, v(target));
        }
        for fine in ["1.27.2", "1.28.4", "1.29.6", "1.30.4", "1.31.2", "1.32.0"] {
            assert!(check_upgrade_target(v(fine), false).is_ok(), "{fine}");
        }
        // Intermediate hops always land on the latest patch, which has the fixes.
        for h in plan_hops(v("1.27.4"), v("1.32.2"), &HopOptions::default()).unwrap() {
            assert!(
                SupportedRelease::of(h.to)
                    .unwrap()
                    .missing_authorization_fix()
                    .is_none()
            );
        }
    }

    #[test]
    fn hops_carry_the_known_hazards_of_their_line() {
        let hops = plan_hops(v("1.29.7"), v("1.32.2"), &HopOptions::default()).unwrap();
        let issues: Vec<Vec<&str>> = hops
            .iter()
            .map(|h| h.hazards.iter().map(|z| z.issue).collect())
            .collect();
        assert_eq!(
            issues,
            vec![
                vec!["temporalio/temporal#9930", "temporalio/temporal#10358"],
                vec!["temporalio/temporal#11594"],
                vec![],
            ]
        );
        assert!(
            plan_hops(v("1.30.6"), v("1.30.9"), &HopOptions::default()).unwrap()[0]
                .hazards
                .is_empty()
        );
    }
}
