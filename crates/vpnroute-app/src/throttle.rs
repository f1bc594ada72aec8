//! The request rate limiter (`Throttling.User`): per access key and action, counted by a
//! [`RateLimiter`] (this process's own counters, or the store's shared ones).

use vpnroute_domain::ApiError;
use vpnroute_store::{FixedWindowLimiter, RateLimiter};

/// Per (access key, action) rate limits; `Throttling.User` beyond the limit. The counting is
/// a [`RateLimiter`] (this process's own counters, or the store's shared ones).
pub struct Throttle {
    limiter: Box<dyn RateLimiter>,
}

impl Throttle {
    /// `rps` calls per second per (access key, action); 0 turns throttling off.
    pub fn new(rps: u32) -> Self {
        Throttle {
            limiter: Box::new(FixedWindowLimiter::new(rps)),
        }
    }

    /// Calls counted by `limiter`.
    pub fn with_limiter(limiter: Box<dyn RateLimiter>) -> Self {
        Throttle { limiter }
    }

    /// `Ok` if the call is within the limit (always, when throttling is off).
    pub fn check(&self, access_key_id: &str, action: &str, now_ms: i64) -> Result<(), ApiError> {
        if self.limiter.admit(access_key_id, action, now_ms) {
            Ok(())
        } else {
            Err(ApiError::THROTTLING_USER)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_limits_per_key_and_action() {
        let t = Throttle::new(2);
        assert!(t.check("k", "A", 1000).is_ok());
        assert!(t.check("k", "A", 1001).is_ok());
        assert_eq!(t.check("k", "A", 1002).unwrap_err().code, "Throttling.User");
        assert!(t.check("k", "B", 1002).is_ok());
        assert!(t.check("k", "A", 2000).is_ok());
        assert!(Throttle::new(0).check("k", "A", 0).is_ok());
    }
}
