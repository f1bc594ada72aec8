//! Netlink events: one `ip -n NS monitor` per gateway namespace marks the gateway dirty when
//! a link, address, route or rule changes there, and wakes the watcher, which reads the
//! gateway back (and repairs it) at once instead of at its next tick. Neighbour events are
//! left out (ARP churns them constantly); the watcher's timer catches a deleted static
//! neighbour, as it catches changes to the nftables table.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What woke the watcher.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    Stop,
    /// The timer: look at every gateway.
    Timer,
    /// Netlink events: look at these gateways.
    Dirty(Vec<String>),
}

#[derive(Default)]
struct WakeState {
    dirty: BTreeSet<String>,
    stop: bool,
}

/// The watcher's doorbell.
#[derive(Default)]
pub struct Wakeup {
    state: Mutex<WakeState>,
    bell: Condvar,
}

impl Wakeup {
    fn state(&self) -> std::sync::MutexGuard<'_, WakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn mark(&self, gateway_id: &str) {
        self.state().dirty.insert(gateway_id.to_string());
        self.bell.notify_all();
    }

    pub fn stop(&self) {
        self.state().stop = true;
        self.bell.notify_all();
    }

    /// Waits for a mark, the stop or `timeout`; marks are collected for `settle` more so
    /// that a burst of events (one apply writes many routes) costs one read-back.
    pub fn wait(&self, timeout: Duration, settle: Duration) -> Wake {
        let mut state = self.state();
        if !state.stop && state.dirty.is_empty() {
            state = self
                .bell
                .wait_timeout_while(state, timeout, |s| !s.stop && s.dirty.is_empty())
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if state.stop {
            return Wake::Stop;
        }
        if state.dirty.is_empty() {
            return Wake::Timer;
        }
        drop(state);
        std::thread::sleep(settle);
        let mut state = self.state();
        if state.stop {
            return Wake::Stop;
        }
        Wake::Dirty(std::mem::take(&mut state.dirty).into_iter().collect())
    }
}

/// A running `ip monitor` for one gateway namespace; dropping it kills the process (by its
/// pid) and joins the reader.
pub struct Monitor {
    child: Child,
    reader: Option<JoinHandle<()>>,
}

impl Monitor {
    pub fn spawn(ns: &str, gateway_id: &str, wakeup: Arc<Wakeup>) -> Result<Monitor, String> {
        let mut child = Command::new("ip")
            .args(["-n", ns, "monitor", "link", "address", "route", "rule"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("ip monitor in {ns}: {e}"))?;
        let stdout = child.stdout.take().ok_or("ip monitor: no stdout")?;
        let gateway_id = gateway_id.to_string();
        let reader = std::thread::Builder::new()
            .name("vpnroute-monitor".into())
            .spawn(move || {
                // Ends at EOF: the process was killed, or its namespace deleted.
                for line in BufReader::new(stdout).lines() {
                    if line.is_err() {
                        break;
                    }
                    wakeup.mark(&gateway_id);
                }
            })
            .map_err(|e| format!("ip monitor reader: {e}"))?;
        Ok(Monitor {
            child,
            reader: Some(reader),
        })
    }

    /// Whether the process still runs (it ends when its namespace is deleted).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakeup_reports_marks_timer_and_stop() {
        let wakeup = Wakeup::default();
        assert_eq!(wakeup.wait(Duration::from_millis(10), Duration::ZERO), Wake::Timer);
        wakeup.mark("vpn-1");
        wakeup.mark("vpn-1");
        assert_eq!(
            wakeup.wait(Duration::from_secs(5), Duration::ZERO),
            Wake::Dirty(vec!["vpn-1".into()])
        );
        wakeup.stop();
        assert_eq!(wakeup.wait(Duration::from_secs(5), Duration::ZERO), Wake::Stop);
    }
}
