//! Health probes: one thread per connection with a health check, sending one bounded ping
//! (`ping -c 1 -W 0.5`) from the check's source address through the connection's tunnel (the
//! probe's mark selects the tunnel's table) every interval, until stopped.
//!
//! The 0.5 s reply timeout keeps detection within `Interval × Retry + 0.5 s` of a path
//! breaking (Interval 1 s, Retry 3: at most 3.5 s), so traffic is on a standby within 4 s.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vpnroute_dataplane::TunnelState;

/// What a probe thread does, and so whether a running one still fits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeConfig {
    pub ns: String,
    pub source: Ipv4Addr,
    pub dest: Ipv4Addr,
    pub mark: u32,
    pub interval: Duration,
    pub retry: u32,
}

/// A running probe thread.
pub struct Probe {
    pub config: ProbeConfig,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Probe {
    /// Starts probing; `report(ok)` is called after every probe and returns `false` to stop.
    pub fn spawn(config: ProbeConfig, report: impl Fn(bool) -> bool + Send + 'static) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_stop, thread_config) = (stop.clone(), config.clone());
        let handle = std::thread::Builder::new()
            .name("vpnroute-probe".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let ok = ping(&thread_config);
                    if thread_stop.load(Ordering::Relaxed) || !report(ok) {
                        break;
                    }
                    sleep_unless_stopped(thread_config.interval.saturating_sub(started.elapsed()), &thread_stop);
                }
            })
            .ok();
        Probe { config, stop, handle }
    }

    /// Asks the thread to stop (it ends after its current probe, at most ~1 s).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops and waits for the thread. Never call while holding a lock the report takes.
    pub fn join(mut self) {
        self.stop();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let deadline = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// One echo request from the check's source through the tunnel, waiting at most 0.5 s.
fn ping(config: &ProbeConfig) -> bool {
    let (source, dest, mark) = (
        config.source.to_string(),
        config.dest.to_string(),
        config.mark.to_string(),
    );
    Command::new("ip")
        .args(["netns", "exec", &config.ns, "ping", "-n", "-q", "-c", "1", "-W", "0.5"])
        .args(["-I", &source, "-m", &mark, &dest])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A connection's probe results folded into a tunnel state: up after a success, down after
/// `retry` consecutive failures, unchanged in between. Starts up (no flap on creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeHealth {
    pub state: TunnelState,
    pub failures: u32,
}

impl Default for ProbeHealth {
    fn default() -> Self {
        ProbeHealth {
            state: TunnelState::Up,
            failures: 0,
        }
    }
}

impl ProbeHealth {
    /// Folds one result in; returns `true` when the state changed.
    pub fn record(&mut self, ok: bool, retry: u32) -> bool {
        let before = self.state;
        if ok {
            self.failures = 0;
            self.state = TunnelState::Up;
        } else {
            self.failures = self.failures.saturating_add(1);
            if self.failures >= retry.max(1) {
                self.state = TunnelState::Down;
            }
        }
        before != self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_retry_failures_up_after_one_success() {
        let mut health = ProbeHealth::default();
        assert!(!health.record(false, 3));
        assert!(!health.record(false, 3));
        assert!(health.record(false, 3));
        assert_eq!(health.state, TunnelState::Down);
        assert!(!health.record(false, 3));
        assert!(health.record(true, 3));
        assert_eq!(health.state, TunnelState::Up);
        let mut zero_retry = ProbeHealth::default();
        assert!(zero_retry.record(false, 0));
    }
}
