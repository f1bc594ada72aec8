//! The request rate limiter (`Throttling.User`): one fixed window per access key and action,
//! in this process's memory.

use std::collections::HashMap;
use std::sync::Mutex;

use vpnroute_domain::ApiError;

/// Fixed-window per (access key, action) rate limiter; `Throttling.User` beyond the limit.
pub struct Throttle {
    rps: u32,
    windows: Mutex<HashMap<(String, String), (i64, u32)>>,
}

impl Throttle {
    pub fn new(rps: u32) -> Self {
        Throttle {
            rps,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` if the call is within the limit (always, when throttling is off).
    pub fn check(&self, access_key_id: &str, action: &str, now_ms: i64) -> Result<(), ApiError> {
        if self.rps == 0 {
            return Ok(());
        }
        let second = now_ms / 1000;
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() > 100_000 {
            w.retain(|_, (s, _)| *s == second);
        }
        let entry = w
            .entry((access_key_id.to_string(), action.to_string()))
            .or_insert((second, 0));
        if entry.0 != second {
            *entry = (second, 0);
        }
        if entry.1 >= self.rps {
            return Err(ApiError::THROTTLING_USER);
        }
        entry.1 += 1;
        Ok(())
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
