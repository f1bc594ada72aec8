//! Retry delays after failed reconciles: exponential, capped, with jitter so that gateways
//! failing together do not retry together.

use std::time::Duration;

/// `base · 2^(attempts-1)`, at most `max`, then shortened by up to `jitter` (a fraction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// 0.0 = no jitter; 0.2 = the delay is between 80% and 100% of the exponential value.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay before the next attempt after `attempts` failures in a row (≥ 1).
    pub fn delay(&self, attempts: u32) -> Duration {
        self.delay_with(attempts, rand::random::<f64>())
    }

    /// [`delay`](Self::delay) with the random draw `unit` (in `[0, 1)`) given.
    pub fn delay_with(&self, attempts: u32, unit: f64) -> Duration {
        let exponent = attempts.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.max);
        let keep = 1.0 - self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        full.mul_f64(keep).max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_jitter_only_shortens() {
        let b = Backoff::default();
        let ms = |a, u| b.delay_with(a, u).as_millis();
        assert_eq!([ms(1, 0.0), ms(2, 0.0), ms(3, 0.0), ms(4, 0.0)], [100, 200, 400, 800]);
        assert_eq!(ms(9, 0.0), 25_600);
        assert_eq!(ms(10, 0.0), 30_000);
        assert_eq!(ms(u32::MAX, 0.0), 30_000);
        assert_eq!(ms(1, 0.999_999), 80);
        assert_eq!(ms(10, 0.5), 27_000);
        for attempts in 1..40 {
            let d = b.delay(attempts);
            assert!(d <= b.max && d >= b.delay_with(attempts, 1.0), "{attempts}: {d:?}");
        }
    }
}
