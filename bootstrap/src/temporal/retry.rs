//! Bounded exponential backoff for transient frontend failures.
//!
//! Retried: UNAVAILABLE (frontend restarting, connection refused, load balancer without a
//! backend), DEADLINE_EXCEEDED (slow frontend) and RESOURCE_EXHAUSTED (the frontend's rate
//! limiter: "service rate limit exceeded", seen on the dev server when registering namespaces
//! eight at a time); and connection attempts that fail at the transport level (refused, reset,
//! timeout) but not on certificates. Everything else fails at
//! once: retrying a refused certificate or an invalid argument only delays the error.
//!
//! Caveat: DEADLINE_EXCEEDED on a write may mean the write happened. Callers make writes safe to
//! repeat (RegisterNamespace treats ALREADY_EXISTS as "exists now", AddSearchAttributes with an
//! existing name of the same type is a no-op, UpdateNamespace sets absolute values).

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use temporalio_client::tonic::Code;

/// Attempts in total (first try included).
pub const RETRY_MAX_ATTEMPTS: u32 = 5;
/// Wait before the second attempt.
pub const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Growth of the wait per attempt.
pub const RETRY_MULTIPLIER: u32 = 2;
/// Upper bound of one wait.
pub const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(3);
/// Deadline of one RPC attempt.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of one TCP (+TLS) connection attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub multiplier: u32,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The production policy: 5 attempts, 200 ms doubling to at most 3 s (about 3 s of waiting
    /// in total before giving up).
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        max_attempts: RETRY_MAX_ATTEMPTS,
        initial_backoff: RETRY_INITIAL_BACKOFF,
        multiplier: RETRY_MULTIPLIER,
        max_backoff: RETRY_MAX_BACKOFF,
    };

    /// The wait after failed attempt `attempt` (1-based), without jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .max(1)
            .saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// Total waiting time when every attempt fails (no jitter), for messages and tests.
    pub fn total_backoff(&self) -> Duration {
        (1..self.max_attempts).map(|a| self.backoff(a)).sum()
    }
}

/// Whether a gRPC status is worth another attempt.
pub fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
    )
}

/// Up to +-20% jitter so that many clients do not retry in lockstep. Not cryptographic.
fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let unit = (nanos % 1000) as f64 / 1000.0; // [0, 1)
    d.mul_f64(0.8 + 0.4 * unit)
}

/// Runs `op` until it succeeds, fails permanently, or the attempts are used up. `transient`
/// classifies errors. Returns the result and the number of attempts made.
pub async fn retry<T, E, F, Fut>(
    policy: RetryPolicy,
    what: &str,
    transient: impl Fn(&E) -> bool,
    mut op: F,
) -> (Result<T, E>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return (Ok(v), attempt),
            Err(e) if attempt < policy.max_attempts.max(1) && transient(&e) => {
                let wait = jitter(policy.backoff(attempt));
                tracing::warn!(
                    "{what}: attempt {attempt}/{} failed ({e}); retrying in {} ms",
                    policy.max_attempts,
                    wait.as_millis()
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return (Err(e), attempt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let p = RetryPolicy::DEFAULT;
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(2), Duration::from_millis(400));
        assert_eq!(p.backoff(3), Duration::from_millis(800));
        assert_eq!(p.backoff(5), Duration::from_secs(3));
        assert_eq!(p.backoff(60), Duration::from_secs(3));
        assert_eq!(
            p.total_backoff(),
            Duration::from_millis(200 + 400 + 800 + 1600)
        );
    }

    #[test]
    fn only_unavailable_deadline_and_throttling_are_transient() {
        assert!(is_transient(Code::Unavailable));
        assert!(is_transient(Code::DeadlineExceeded));
        assert!(is_transient(Code::ResourceExhausted));
        for c in [
            Code::InvalidArgument,
            Code::AlreadyExists,
            Code::NotFound,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Internal,
        ] {
            assert!(!is_transient(c), "{c:?}");
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_then_gives_up() {
        let policy = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            multiplier: 2,
            max_backoff: Duration::from_millis(2),
        };
        let calls = Cell::new(0);
        let (res, attempts) = retry(
            policy,
            "test",
            |_: &String| true,
            || {
                calls.set(calls.get() + 1);
                async { Err::<(), _>("down".to_string()) }
            },
        )
        .await;
        assert!(res.is_err());
        assert_eq!((attempts, calls.get()), (3, 3));

        let calls = Cell::new(0);
        let (res, attempts) = retry(
            policy,
            "test",
            |_: &String| false,
            || {
                calls.set(calls.get() + 1);
                async { Err::<(), _>("refused".to_string()) }
            },
        )
        .await;
        assert!(res.is_err());
        assert_eq!((attempts, calls.get()), (1, 1));

        let calls = Cell::new(0);
        let (res, attempts) = retry(
            policy,
            "test",
            |_: &String| true,
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move {
                    if n < 2 {
                        Err("down".to_string())
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!((res, attempts), (Ok(2), 2));
    }
}
