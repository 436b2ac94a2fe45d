//! How a step fails: a kind (exit code, the daemon's `error` label), the operator's message,
//! and the underlying error kept as the source.

use std::sync::Arc;

pub use crate::error::{ErrorClass, ErrorKind};

/// A step's failure, phrased for the operator, with the error it came from.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub kind: ErrorKind,
    pub message: String,
    #[source]
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StepError {
    /// A failure with no underlying error (the message says it all).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A module error as a step failure: its text is the message and it stays the source.
    pub fn from_error<E>(kind: ErrorKind, error: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Self {
            kind,
            message: error.to_string(),
            source: Some(Arc::new(error)),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn class(&self) -> ErrorClass {
        self.kind.class()
    }

    /// The underlying error, to inspect a cause (e.g. with `downcast_ref`).
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no access");
        let e = StepError::from_error(ErrorKind::Denied, io);
        assert_eq!(e.message, "no access");
        let cause = e.cause().unwrap();
        assert_eq!(
            cause.downcast_ref::<std::io::Error>().unwrap().kind(),
            std::io::ErrorKind::PermissionDenied
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
