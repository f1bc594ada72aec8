//! Single-process implementations of the per-host state traits.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::RateLimiter;

/// Fixed one-second windows per (access key, action), in this process's memory; `rps` 0
/// admits everything.
pub struct FixedWindowLimiter {
    rps: u32,
    windows: Mutex<HashMap<(String, String), (i64, u32)>>,
}

impl FixedWindowLimiter {
    pub fn new(rps: u32) -> Self {
        FixedWindowLimiter {
            rps,
            windows: Mutex::new(HashMap::new()),
        }
    }
}

impl RateLimiter for FixedWindowLimiter {
    fn admit(&self, access_key_id: &str, action: &str, now_ms: i64) -> bool {
        if self.rps == 0 {
            return true;
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
            return false;
        }
        entry.1 += 1;
        true
    }
}
