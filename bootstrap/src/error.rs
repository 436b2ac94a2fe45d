//! Failure kinds shared by every module: what decides an exit code (2: fix the input, 1: the
//! world failed) and the bounded `error` label of the daemon's metrics. A leaf: imports nothing
//! of this crate.

use std::fmt;

use serde::Serialize;

/// What went wrong, in a small bounded set (it is a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// The input is wrong: a value in platform.yaml, a file it names, a flag.
    Invalid,
    /// The input is well-formed but asks for something that must never happen to the live
    /// system (a shard count change, a search attribute type change, a privileged role).
    Refused,
    /// The system answered that we may not: bad credentials, missing privileges.
    Denied,
    /// The system could not be reached (connection refused, DNS, TLS handshake).
    Unreachable,
    /// The system did not answer or converge in time.
    Timeout,
    /// Someone else is changing the same thing (a lock is held, a concurrent write won).
    Conflict,
    /// The system was reached and failed the request for a reason of its own.
    Failed,
    /// An invariant of this program broke: a bug to report.
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        Self::Invalid,
        Self::Refused,
        Self::Denied,
        Self::Unreachable,
        Self::Timeout,
        Self::Conflict,
        Self::Failed,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Refused => "refused",
            Self::Denied => "denied",
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::Conflict => "conflict",
            Self::Failed => "failed",
            Self::Internal => "internal",
        }
    }

    /// Exit 2 for what only a change of the input can fix, exit 1 for the world.
    pub fn class(self) -> ErrorClass {
        match self {
            Self::Invalid | Self::Refused => ErrorClass::Invalid,
            Self::Denied
            | Self::Unreachable
            | Self::Timeout
            | Self::Conflict
            | Self::Failed
            | Self::Internal => ErrorClass::Runtime,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a failure is the user's input (exit 2) or the world (exit 1). Derived from
/// [`ErrorKind::class`]; reported as `error_class` in JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    Invalid,
    Runtime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_exit_classes_and_stable_labels() {
        let invalid: Vec<&str> = ErrorKind::ALL
            .iter()
            .filter(|k| k.class() == ErrorClass::Invalid)
            .map(|k| k.as_str())
            .collect();
        assert_eq!(invalid, ["invalid", "refused"]);
        for k in ErrorKind::ALL {
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::from(k.as_str())
            );
        }
    }
}
