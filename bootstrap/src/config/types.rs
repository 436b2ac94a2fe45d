//! Newtypes for `platform.yaml` values: parse, don't validate.
//!
//! Every type here can only hold a valid value. Parsing errors name what would be valid; they never
//! echo a value that could be a secret.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Implements `Deserialize` (from a string, through `FromStr`), `Serialize` (through `Display`)
/// and `JsonSchema` (a string with a pattern and description) for a newtype.
macro_rules! string_newtype_serde {
    ($ty:ty, $pattern:expr, $description:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let pattern: Option<&str> = $pattern;
                match pattern {
                    Some(p) => json_schema!({"type": "string", "pattern": p, "description": $description}),
                    None => json_schema!({"type": "string", "description": $description}),
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

/// A human duration such as `500ms`, `30s`, `5m`, `2h`, `30d`, `2w`, `5y` or `1h30m`.
///
/// A year is 365 days; a day is 24 hours (certificate validity and retention are counted this way).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(Duration);

const DURATION_UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 7 * 86_400_000),
    ("y", 365 * 86_400_000),
];

impl HumanDuration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }
    pub const fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    pub const fn from_days(d: u64) -> Self {
        Self(Duration::from_secs(d * 86_400))
    }
    pub fn as_duration(&self) -> Duration {
        self.0
    }
    pub fn as_secs_f64(&self) -> f64 {
        self.0.as_secs_f64()
    }
    pub fn as_millis(&self) -> u64 {
        // Parsed values are bounded (see FromStr), so this never truncates.
        self.0.as_millis() as u64
    }
    pub fn as_days_f64(&self) -> f64 {
        self.0.as_secs_f64() / 86_400.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const VALID: &str =
            "a duration such as 500ms, 30s, 5m, 2h, 30d, 2w, 5y or 1h30m (units: ms s m h d w y)";
        let s = s.trim();
        if s.is_empty() {
            return Err(format!("empty duration; expected {VALID}"));
        }
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!("`{s}` is not a duration; expected {VALID}"));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("`{s}` is too large; expected {VALID}"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            let Some(&(_, factor)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) else {
                let why = if unit.is_empty() {
                    "has no unit".to_string()
                } else {
                    format!("has unknown unit `{unit}`")
                };
                return Err(format!("`{s}` {why}; expected {VALID}"));
            };
            rest = &rest[unit_len..];
            total = number
                .checked_mul(factor)
                .and_then(|v| total.checked_add(v))
                // 1000 years is far beyond any retention or validity we accept; it keeps arithmetic safe.
                .filter(|v| *v <= 1000 * 365 * 86_400_000)
                .ok_or_else(|| format!("`{s}` is too long (at most 1000y)"))?;
        }
        Ok(Self(Duration::from_millis(total)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        // Largest unit first; years only when exact so `400d` stays `400d`, weeks never.
        for (name, factor) in DURATION_UNITS.iter().rev().filter(|(n, _)| *n != "w") {
            if *name == "y" && !ms.is_multiple_of(*factor) {
                continue;
            }
            if ms >= *factor {
                write!(f, "{}{name}", ms / factor)?;
                ms %= factor;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

string_newtype_serde!(
    HumanDuration,
    Some("^([0-9]+(ms|s|m|h|d|w|y))+$"),
    "A duration: a number and a unit (ms, s, m, h, d, w, y), e.g. 500ms, 30d, 1h30m"
);

// ---------------------------------------------------------------------------------------------
// Percentages and bounded numbers
// ---------------------------------------------------------------------------------------------

/// A percentage written `60%` (0% to 1000%). Stored as a fraction (0.6).
#[derive(Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(f64);

impl Percent {
    pub fn fraction(&self) -> f64 {
        self.0
    }
    pub fn from_fraction(f: f64) -> Self {
        Self(f)
    }
}

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const VALID: &str = "a percentage between 0% and 1000%, such as 60%";
        let number = s
            .trim()
            .strip_suffix('%')
            .ok_or_else(|| format!("`{s}` is not a percentage; expected {VALID}"))?;
        let value: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a percentage; expected {VALID}"))?;
        if !(0.0..=1000.0).contains(&value) || !value.is_finite() {
            return Err(format!("`{s}` is out of range; expected {VALID}"));
        }
        Ok(Self(value / 100.0))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", (self.0 * 10_000.0).round() / 100.0)
    }
}
impl fmt::Debug for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}
string_newtype_serde!(
    Percent,
    Some("^[0-9]+(\\.[0-9]+)?%$"),
    "A percentage such as 60%"
);

/// A strictly positive, finite rate or count (e.g. workflow starts per second).
#[derive(Clone, Copy, PartialEq, PartialOrd, Debug, Serialize)]
#[serde(transparent)]
pub struct Positive(f64);

impl Positive {
    pub fn new(v: f64) -> Result<Self, String> {
        if v.is_finite() && v > 0.0 {
            Ok(Self(v))
        } else {
            Err(format!("{v} must be a number greater than 0"))
        }
    }
    pub fn get(&self) -> f64 {
        self.0
    }
}
impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Positive::new(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
impl JsonSchema for Positive {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Positive".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "number", "exclusiveMinimum": 0})
    }
}

/// A finite number that is zero or more (e.g. timers per workflow).
#[derive(Clone, Copy, PartialEq, PartialOrd, Debug, Serialize, Default)]
#[serde(transparent)]
pub struct NonNegative(f64);

impl NonNegative {
    pub fn new(v: f64) -> Result<Self, String> {
        if v.is_finite() && v >= 0.0 {
            Ok(Self(v))
        } else {
            Err(format!("{v} must be a number of 0 or more"))
        }
    }
    pub fn get(&self) -> f64 {
        self.0
    }
}
impl<'de> Deserialize<'de> for NonNegative {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        NonNegative::new(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
impl JsonSchema for NonNegative {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NonNegative".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "number", "minimum": 0})
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

/// A reference to a secret: `env:NAME` or `file:PATH`. Inline secret values are refused so they
/// never end up in version control, plans or logs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    Env(String),
    File(std::path::PathBuf),
}

impl FromStr for SecretRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Never echo `s`: when the reference prefix is missing it is probably the secret itself.
        const VALID: &str = "a secret reference `env:NAME` (an environment variable) or `file:PATH` (a file holding the value); inline secret values are not accepted";
        if let Some(name) = s.strip_prefix("env:") {
            let ok = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if ok {
                return Ok(Self::Env(name.to_string()));
            }
            return Err(format!(
                "`env:` must be followed by an environment variable name ([A-Za-z_][A-Za-z0-9_]*); expected {VALID}"
            ));
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(format!(
                    "`file:` must be followed by a path; expected {VALID}"
                ));
            }
            return Ok(Self::File(path.into()));
        }
        Err(format!("not a secret reference; expected {VALID}"))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}
impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({self})")
    }
}
string_newtype_serde!(
    SecretRef,
    Some("^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$"),
    "A secret reference: env:NAME or file:PATH (inline values are refused)"
);

/// Why a secret reference could not be resolved. Never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable `{0}` is not set (referenced as env:{0})")]
    EnvMissing(String),
    #[error("secret file: {0}")]
    File(#[source] crate::fsutil::ReadError),
    #[error("secret {0} is empty")]
    Empty(String),
}

impl SecretRef {
    /// Reads the referenced value. Files have one trailing newline removed.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let value = match self {
            SecretRef::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::EnvMissing(name.clone()))?
            }
            SecretRef::File(path) => {
                let mut v =
                    crate::fsutil::read_limited_string(path, crate::fsutil::FileKind::Secret)
                        .map_err(SecretError::File)?;
                if v.ends_with('\n') {
                    v.pop();
                    if v.ends_with('\r') {
                        v.pop();
                    }
                }
                v
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(Secret(value))
    }
}

/// A resolved secret value. `Debug` and `Display` print `***`; use [`Secret::expose`] at the one
/// place the value is handed to a client library.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// A Temporal namespace name: 2 to 255 characters of letters, digits, `-`, `_` and `.`, starting
/// and ending with a letter or digit. The server itself does not validate names, so we do.
/// `temporal-system` is the server's own namespace and cannot be managed here.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespaceName(String);

impl NamespaceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for NamespaceName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const VALID: &str = "2-255 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit (e.g. payments, orders-prod)";
        let chars_ok = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        let ends_ok = s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !(2..=255).contains(&s.len()) || !chars_ok || !ends_ok {
            return Err(format!(
                "`{s}` is not a valid namespace name; expected {VALID}"
            ));
        }
        if s == "temporal-system" {
            return Err("`temporal-system` is the server's internal namespace and cannot be managed; choose another name".into());
        }
        Ok(Self(s.to_string()))
    }
}
impl fmt::Display for NamespaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for NamespaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
string_newtype_serde!(
    NamespaceName,
    Some("^[A-Za-z0-9][A-Za-z0-9._-]{0,253}[A-Za-z0-9]$"),
    "A Temporal namespace name"
);

/// A DNS label used for the cluster, worker pools and Kubernetes object names: 1-63 lowercase
/// letters, digits and '-', starting with a letter, not ending with '-'.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsLabel(String);

impl DnsLabel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for DnsLabel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=63).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not a valid name; expected 1-63 lowercase letters, digits or '-', starting with a letter and not ending with '-' (e.g. prod-eu1)"
            ))
        }
    }
}
impl fmt::Display for DnsLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for DnsLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
string_newtype_serde!(
    DnsLabel,
    Some("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"),
    "A DNS label: lowercase letters, digits and '-'"
);

/// A task queue name: 1-1000 printable characters without whitespace.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskQueueName(String);
impl TaskQueueName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for TaskQueueName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if (1..=1000).contains(&s.len())
            && s.chars().all(|c| c.is_ascii_graphic())
            && !s.starts_with("/_sys/")
        {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not a valid task queue name; expected 1-1000 printable ASCII characters without spaces, not starting with /_sys/"
            ))
        }
    }
}
impl fmt::Display for TaskQueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for TaskQueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
string_newtype_serde!(TaskQueueName, None, "A task queue name");

// ---------------------------------------------------------------------------------------------
// Search attributes
// ---------------------------------------------------------------------------------------------

/// Names the server reserves: its system search attributes, the predefined ones outside the
/// `Temporal` prefix, and the internal visibility fields (`sadefs.IsReserved` in the server,
/// checked against v1.32.2); the `Temporal` prefix is checked separately. Adding one of these
/// fails or silently collides.
pub const RESERVED_SEARCH_ATTRIBUTES: &[&str] = &[
    "BatcherNamespace",
    "BatcherUser",
    "BinaryChecksums",
    "BuildIds",
    "CloseTime",
    "ExecutionDuration",
    "ExecutionStatus",
    "ExecutionTime",
    "HistoryLength",
    "HistorySizeBytes",
    "Memo",
    "MemoEncoding",
    "NamespaceId",
    "ParentRunId",
    "ParentWorkflowId",
    "RootRunId",
    "RootWorkflowId",
    "RunId",
    "StartTime",
    "StateTransitionCount",
    "TaskQueue",
    "VisibilityTaskKey",
    "WorkflowId",
    "WorkflowType",
];

/// A custom search attribute name: a letter, then letters, digits or '_' (at most 64), not a
/// reserved system name and not starting with `Temporal`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SearchAttributeName(String);
impl SearchAttributeName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for SearchAttributeName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=64).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(format!(
                "`{s}` is not a valid search attribute name; expected a letter followed by letters, digits or '_' (at most 64), e.g. CustomerId"
            ));
        }
        if let Some(r) = RESERVED_SEARCH_ATTRIBUTES
            .iter()
            .find(|r| r.eq_ignore_ascii_case(s))
        {
            return Err(format!(
                "`{s}` is reserved by the Temporal server (system search attribute or internal field `{r}`); choose another name such as Custom{r}"
            ));
        }
        if s.starts_with("Temporal") {
            return Err(format!(
                "`{s}` starts with `Temporal`, a prefix reserved for system search attributes; choose another name"
            ));
        }
        Ok(Self(s.to_string()))
    }
}
impl fmt::Display for SearchAttributeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for SearchAttributeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
string_newtype_serde!(
    SearchAttributeName,
    Some("^[A-Za-z][A-Za-z0-9_]{0,63}$"),
    "A custom search attribute name"
);

/// The indexed value types Temporal supports for custom search attributes.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize, JsonSchema,
)]
pub enum SearchAttributeType {
    Bool,
    Datetime,
    Double,
    Int,
    Keyword,
    KeywordList,
    Text,
}

impl SearchAttributeType {
    pub const ALL: [SearchAttributeType; 7] = [
        Self::Bool,
        Self::Datetime,
        Self::Double,
        Self::Int,
        Self::Keyword,
        Self::KeywordList,
        Self::Text,
    ];

    /// How many custom attributes of this type one namespace may have on SQL visibility
    /// (PostgreSQL, MySQL, SQLite). Elasticsearch has no such cap.
    pub fn sql_visibility_cap(self) -> usize {
        match self {
            Self::Keyword => 10,
            _ => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "Bool",
            Self::Datetime => "Datetime",
            Self::Double => "Double",
            Self::Int => "Int",
            Self::Keyword => "Keyword",
            Self::KeywordList => "KeywordList",
            Self::Text => "Text",
        }
    }
}

impl fmt::Display for SearchAttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Versions and addresses
// ---------------------------------------------------------------------------------------------

/// A Temporal server release `MAJOR.MINOR.PATCH` (e.g. `1.31.2`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TemporalVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl TemporalVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl FromStr for TemporalVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "`{s}` is not a Temporal release; expected MAJOR.MINOR.PATCH such as 1.31.2 (quote it in YAML)"
            )
        };
        let trimmed = s.trim().trim_start_matches('v');
        let parts: Vec<&str> = trimmed.split('.').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let n = |p: &str| p.parse::<u32>().map_err(|_| bad());
        Ok(Self::new(n(parts[0])?, n(parts[1])?, n(parts[2])?))
    }
}
impl fmt::Display for TemporalVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}
impl fmt::Debug for TemporalVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}
string_newtype_serde!(
    TemporalVersion,
    Some("^v?[0-9]+\\.[0-9]+\\.[0-9]+$"),
    "A Temporal release, e.g. \"1.31.2\""
);

/// `host:port` where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl FromStr for HostPort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "`{s}` {why}; expected host:port such as temporal-frontend:7233 or 127.0.0.1:7233"
            )
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("has an invalid port"))?;
        if port == 0 {
            return Err(bad("has port 0"));
        }
        let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))
        {
            inner.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            host.parse::<std::net::Ipv4Addr>().is_ok() || is_dns_name(host)
        };
        if !host_ok {
            return Err(bad("has an invalid host"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}
impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}
impl fmt::Debug for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}
string_newtype_serde!(HostPort, None, "host:port, e.g. temporal-frontend:7233");

/// A container image reference with a tag, `repository:tag`. Parsed once: the Helm values need
/// the two parts, and a reference without a tag (or by digest) would run whatever `latest` is.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    repository: String,
    tag: String,
}
impl ImageRef {
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> &str {
        &self.tag
    }
}
impl FromStr for ImageRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = |why: &str| {
            Err(format!(
                "`{s}` {why}; expected repository:tag, e.g. registry.example.com/payments-worker:1.4.2"
            ))
        };
        if s.contains('@') {
            return bad("is a digest reference, which the chart cannot take");
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("contains whitespace");
        }
        // The tag follows the last ':' that is not part of a registry host:port.
        match s.rsplit_once(':') {
            Some((repo, tag)) if !repo.is_empty() && !tag.is_empty() && !tag.contains('/') => {
                Ok(Self {
                    repository: repo.to_string(),
                    tag: tag.to_string(),
                })
            }
            _ => bad("has no tag"),
        }
    }
}
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}
impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}
string_newtype_serde!(
    ImageRef,
    Some("^[^@\\s]+:[^:/@\\s]+$"),
    "A container image with a tag: repository:tag"
);

/// A DNS name usable in a certificate SAN or an address: labels of letters, digits and '-',
/// separated by dots; a leading `*.` wildcard is allowed.
pub fn is_dns_name(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A DNS name for certificate SANs (see [`is_dns_name`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsName(String);
impl DnsName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for DnsName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_dns_name(s) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(format!(
                "`{s}` is not a valid DNS name; expected labels of letters, digits and '-' separated by dots, e.g. temporal-frontend.temporal.svc"
            ))
        }
    }
}
impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
string_newtype_serde!(
    DnsName,
    None,
    "A DNS name, e.g. temporal-frontend.temporal.svc"
);

/// An e-mail address (`local@domain`), checked loosely: one `@`, a non-empty local part, a DNS domain.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);
impl Email {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for Email {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && !local.contains(char::is_whitespace)
                    && is_dns_name(domain)
                    && domain.contains('.') =>
            {
                Ok(Self(s.to_string()))
            }
            _ => Err(format!(
                "`{s}` is not an e-mail address; expected name@example.com"
            )),
        }
    }
}
impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
string_newtype_serde!(Email, None, "An e-mail address");

/// An `http://` or `https://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl(reqwest::Url);
impl HttpUrl {
    pub fn as_url(&self) -> &reqwest::Url {
        &self.0
    }
}
impl FromStr for HttpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = reqwest::Url::parse(s)
            .map_err(|e| format!("`{s}` is not a URL ({e}); expected http(s)://host:port"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "`{s}` must be an http:// or https:// URL with a host"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            // Credentials in URLs leak into logs; they belong in secret references.
            return Err("URLs must not carry credentials; use the auth settings with secret references instead".into());
        }
        Ok(Self(url))
    }
}
impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}
impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}
string_newtype_serde!(HttpUrl, Some("^https?://"), "An http:// or https:// URL");

/// The number of history shards: `auto` (sized by the capacity planner) or a pinned count.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ShardSetting {
    #[default]
    Auto,
    Pinned(u32),
}

/// Bounds on a pinned shard count. Clusters have run with 1 to 128K shards.
pub const MAX_HISTORY_SHARDS: u32 = 131_072;

impl<'de> Deserialize<'de> for ShardSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        let msg = format!(
            "expected `auto` or a whole number of shards between 1 and {MAX_HISTORY_SHARDS} (a power of two such as 512 is recommended)"
        );
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(&msg))? {
            Raw::S(s) if s == "auto" => Ok(Self::Auto),
            Raw::N(n) if (1..=MAX_HISTORY_SHARDS as i64).contains(&n) => Ok(Self::Pinned(n as u32)),
            Raw::N(n) => Err(serde::de::Error::custom(format!(
                "{n} is out of range; {msg}"
            ))),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "`{s}` is not valid; {msg}"
            ))),
        }
    }
}
impl Serialize for ShardSetting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Pinned(n) => s.serialize_u32(*n),
        }
    }
}
impl JsonSchema for ShardSetting {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ShardSetting".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`auto` or a pinned number of history shards (immutable once the cluster exists)",
            "oneOf": [
                {"type": "string", "const": "auto"},
                {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY_SHARDS}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (s, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("1h30m", 5_400_000),
            ("30d", 30 * 86_400_000),
            ("5y", 5 * 365 * 86_400_000),
        ] {
            let d: HumanDuration = s.parse().unwrap();
            assert_eq!(d.as_millis(), ms, "{s}");
            assert_eq!(d.to_string(), s, "round trip of {s}");
        }
        for bad in [
            "",
            "10",
            "ms",
            "5 days",
            "3x",
            "-1d",
            "99999999999999999999y",
            "1001y",
        ] {
            assert!(
                bad.parse::<HumanDuration>().is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn secret_refs_never_echo_inline_values() {
        let err = "hunter2-password".parse::<SecretRef>().unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(
            "env:DB_PASS".parse::<SecretRef>().unwrap(),
            SecretRef::Env("DB_PASS".into())
        );
        assert!("env:1BAD".parse::<SecretRef>().is_err());
        let secret = Secret::new("s3cr3t");
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
    }

    #[test]
    fn names_are_checked() {
        assert!("payments".parse::<NamespaceName>().is_ok());
        for bad in ["a", "-x", "has space", "x/y", "temporal-system", "ends-"] {
            assert!(bad.parse::<NamespaceName>().is_err(), "{bad}");
        }
        assert!("CustomerId".parse::<SearchAttributeName>().is_ok());
        for bad in [
            "WorkflowId",
            "workflowid",
            "TemporalFoo",
            "1abc",
            "a-b",
            "Memo",
            "MemoEncoding",
            "VisibilityTaskKey",
        ] {
            assert!(bad.parse::<SearchAttributeName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn host_ports_and_percentages() {
        assert!("temporal-frontend:7233".parse::<HostPort>().is_ok());
        assert!("[::1]:7233".parse::<HostPort>().is_ok());
        assert!("nohost".parse::<HostPort>().is_err());
        assert!("a:0".parse::<HostPort>().is_err());
        assert_eq!("60%".parse::<Percent>().unwrap().fraction(), 0.6);
        assert!("60".parse::<Percent>().is_err());
        assert!("2000%".parse::<Percent>().is_err());
    }
}
