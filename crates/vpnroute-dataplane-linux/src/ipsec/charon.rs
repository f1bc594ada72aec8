//! One charon per tunnel (a connection's, or one of a dual-tunnel connection's two): its
//! directory, start (inside the tunnel's namespace with a private `/run`), adoption after a
//! restart of vpnroute, stop — always by pid — and its SA state read over VICI.
//!
//! The directory (`<state dir>/<connection namespace>/`) holds `strongswan.conf`, the VICI
//! socket, charon's log, `charon.pid` (written by us: the pid we started) and `meta.json`
//! (which gateway and connection the instance serves, and the hash of the configuration
//! loaded). It lives outside `/run` because every instance mounts its own tmpfs there (so
//! the pid files of several charons cannot collide).

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vpnroute_vici::{Client, Message};

use super::config::StrongswanConf;

/// The charon binary of Debian's strongswan-charon.
pub const CHARON: &str = "/usr/lib/ipsec/charon";
/// How long a started charon may take to open its VICI socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on every VICI exchange.
pub const VICI_TIMEOUT: Duration = Duration::from_secs(5);

/// What an instance serves, kept next to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub gateway_id: String,
    /// The tunnel key: the connection id, or a dual-tunnel connection's tunnel id.
    pub connection_id: String,
    /// Hash of the configuration last loaded (to re-key in place when it changes).
    pub config_hash: u64,
}

/// The files of one instance.
#[derive(Debug, Clone)]
pub struct Instance {
    pub ns: String,
    pub dir: PathBuf,
}

fn netns_inode(ns: &str) -> Option<u64> {
    std::fs::metadata(Path::new("/run/netns").join(ns))
        .ok()
        .map(|m| m.ino())
}

/// Whether `pid` is a charon whose network namespace is `ns`.
pub fn is_charon_in(pid: u32, ns: &str) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let exe_ok = std::fs::read(proc_dir.join("cmdline"))
        .map(|cmd| cmd.split(|b| *b == 0).next() == Some(CHARON.as_bytes()))
        .unwrap_or(false);
    let state_ok = std::fs::read_to_string(proc_dir.join("stat"))
        .ok()
        .and_then(|stat| stat.rsplit(')').next().map(|rest| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false);
    let ns_ok = match (std::fs::metadata(proc_dir.join("ns/net")), netns_inode(ns)) {
        (Ok(meta), Some(inode)) => meta.ino() == inode,
        _ => false,
    };
    exe_ok && state_ok && ns_ok
}

/// Sends `signal` to `pid` (`kill` the tool: no libc binding needed).
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

impl Instance {
    pub fn new(state_dir: &Path, ns: &str) -> Self {
        Instance {
            ns: ns.to_string(),
            dir: state_dir.join(ns),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("charon.vici")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("charon.log")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("charon.pid")
    }

    fn meta_file(&self) -> PathBuf {
        self.dir.join("meta.json")
    }

    pub fn meta(&self) -> Option<Meta> {
        let text = std::fs::read_to_string(self.meta_file()).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write_meta(&self, meta: &Meta) -> Result<(), String> {
        let text = serde_json::to_string(meta).map_err(|e| e.to_string())?;
        let tmp = self.dir.join("meta.json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, self.meta_file()))
            .map_err(|e| format!("writing {}: {e}", self.meta_file().display()))
    }

    /// The pid of this instance's charon if it runs (in its namespace).
    pub fn running_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()?;
        is_charon_in(pid, &self.ns).then_some(pid)
    }

    /// Starts charon unless it already runs; `Ok(true)` when it was started. A charon left
    /// by an earlier process is adopted as it is (its SAs stay up).
    pub fn ensure_running(&self) -> Result<bool, String> {
        if self.running_pid().is_some() {
            return Ok(false);
        }
        self.stop_stray();
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        let conf = self.dir.join("strongswan.conf");
        std::fs::write(&conf, StrongswanConf::render(&self.dir))
            .map_err(|e| format!("writing {}: {e}", conf.display()))?;
        let _ = std::fs::remove_file(self.socket());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("charon.stderr"))
            .map_err(|e| e.to_string())?;
        // `ip netns exec` gives the process a mount namespace of its own; the tmpfs on /run
        // stays in it. `exec` keeps the pid: the one we record is charon's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "sh", "-c"])
            .arg(format!("mount -t tmpfs tmpfs /run && exec {CHARON}"))
            .env("STRONGSWAN_CONF", &conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: a signal to vpnroute's group does not reach it.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting charon in {}: {e}", self.ns))?;
        let pid = child.id();
        // Never waited for in line: a charon outlives a killed vpnroute; `reap` collects it.
        CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).push(child);
        std::fs::write(self.pid_file(), pid.to_string()).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.client().is_ok() {
                tracing::info!(ns = %self.ns, pid, "charon started");
                return Ok(true);
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "charon in {} did not open {} within {START_TIMEOUT:?} (see {})",
                    self.ns,
                    self.socket().display(),
                    self.log().display()
                ));
            }
            reap();
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The recorded pid if that process is ours: its environment names this instance's
    /// `strongswan.conf` (true from the spawn on: for `ip`, `sh` and, after `exec`, charon).
    fn owned_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()?;
        let wanted = format!("STRONGSWAN_CONF={}", self.dir.join("strongswan.conf").display());
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit(')').next().map(|rest| !rest.trim_start().starts_with('Z')))
            .unwrap_or(false);
        (alive && env.split(|b| *b == 0).any(|var| var == wanted.as_bytes())).then_some(pid)
    }

    /// A charon of ours left in a namespace that was deleted (and made again): it holds no
    /// usable tunnel any more; stopped by its pid before a new one starts.
    fn stop_stray(&self) {
        if let Some(pid) = self.owned_pid() {
            tracing::warn!(ns = %self.ns, pid, "stopping a charon left in a deleted namespace");
            signal(pid, "-KILL");
            reap();
        }
    }

    pub fn client(&self) -> Result<Client, String> {
        let client = Client::connect(self.socket()).map_err(|e| e.to_string())?;
        client.set_timeout(Some(VICI_TIMEOUT)).map_err(|e| e.to_string())?;
        Ok(client)
    }

    /// Stops charon by its pid (TERM, then KILL after 3 s) and removes the directory. Any
    /// stage of a start counts (the process may not have reached `exec charon` yet).
    pub fn stop(&self) {
        if let Some(pid) = self.owned_pid() {
            signal(pid, "-TERM");
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.owned_pid() == Some(pid) && Instant::now() < deadline {
                reap();
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.owned_pid() == Some(pid) {
                signal(pid, "-KILL");
            }
            reap();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Charons this process started, until they exit (so they never linger as zombies).
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// Reaps exited charons this process started, without blocking.
pub fn reap() {
    let mut children = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    children.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
}

/// Alibaba's tunnel status values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaStatus {
    IkeSaNotEstablished,
    IkeSaEstablished,
    IpsecSaNotEstablished,
    IpsecSaEstablished,
}

impl SaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SaStatus::IkeSaNotEstablished => "ike_sa_not_established",
            SaStatus::IkeSaEstablished => "ike_sa_established",
            SaStatus::IpsecSaNotEstablished => "ipsec_sa_not_established",
            SaStatus::IpsecSaEstablished => "ipsec_sa_established",
        }
    }
}

/// The SA state of one connection, from `list-sas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaState {
    pub status: SaStatus,
    /// Introspection: IKE SA (state, SPIs, algorithms) and each CHILD SA (state, SPIs, bytes).
    pub details: Value,
}

/// The status rule (docs/compatibility.md): no ESTABLISHED IKE SA → `ike_sa_not_established`;
/// every expected CHILD SA INSTALLED → `ipsec_sa_established`; some CHILD SA still being
/// negotiated (CREATED, INSTALLING, REKEYING…) → `ike_sa_established`; otherwise (a CHILD SA
/// refused or deleted) → `ipsec_sa_not_established`.
pub fn sa_state(sas: &[Message], connection: &str, children: &[String]) -> SaState {
    let ike = sas
        .iter()
        .flat_map(|m| m.sections())
        .find(|(name, ike)| *name == connection && ike.str("state").as_deref() == Some("ESTABLISHED"));
    let any = sas
        .iter()
        .flat_map(|m| m.sections())
        .find(|(name, _)| *name == connection);
    let Some((_, ike)) = ike.or(any) else {
        return SaState {
            status: SaStatus::IkeSaNotEstablished,
            details: json!({"Ike": null, "Children": []}),
        };
    };
    let established = ike.str("state").as_deref() == Some("ESTABLISHED");
    let mut child_details = Vec::new();
    let mut installed = Vec::new();
    let mut negotiating = false;
    if let Some(child_sas) = ike.sub("child-sas") {
        for (_, child) in child_sas.sections() {
            let state = child.str("state").unwrap_or_default();
            let name = child.str("name").unwrap_or_default();
            if state == "INSTALLED" || state == "REKEYED" {
                installed.push(name.clone());
            } else if !matches!(state.as_str(), "DELETING" | "DELETED" | "DESTROYING" | "FAILED") {
                negotiating = true;
            }
            let number = |key: &str| child.str(key).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            child_details.push(json!({
                "Name": name,
                "State": state,
                "SpiIn": child.str("spi-in"),
                "SpiOut": child.str("spi-out"),
                "BytesIn": number("bytes-in"),
                "BytesOut": number("bytes-out"),
                "PacketsIn": number("packets-in"),
                "PacketsOut": number("packets-out"),
                "EncrAlg": child.str("encr-alg"),
                "IntegAlg": child.str("integ-alg"),
                "DhGroup": child.str("dh-group"),
                "LocalTs": child.strings("local-ts"),
                "RemoteTs": child.strings("remote-ts"),
                "InstallTime": child.str("install-time").and_then(|v| v.parse::<u64>().ok()),
            }));
        }
    }
    let all_installed = !children.is_empty() && children.iter().all(|c| installed.contains(c));
    let status = if !established {
        SaStatus::IkeSaNotEstablished
    } else if all_installed {
        SaStatus::IpsecSaEstablished
    } else if negotiating {
        SaStatus::IkeSaEstablished
    } else {
        SaStatus::IpsecSaNotEstablished
    };
    SaState {
        status,
        details: json!({
            "Ike": {
                "State": ike.str("state"),
                "Version": ike.str("version"),
                "LocalHost": ike.str("local-host"),
                "RemoteHost": ike.str("remote-host"),
                "LocalId": ike.str("local-id"),
                "RemoteId": ike.str("remote-id"),
                "SpiInitiator": ike.str("initiator-spi"),
                "SpiResponder": ike.str("responder-spi"),
                "EncrAlg": ike.str("encr-alg"),
                "EncrKeysize": ike.str("encr-keysize"),
                "IntegAlg": ike.str("integ-alg"),
                "PrfAlg": ike.str("prf-alg"),
                "DhGroup": ike.str("dh-group"),
                "NatRemote": ike.str("nat-remote"),
                "NatLocal": ike.str("nat-local"),
                "Established": ike.str("established").and_then(|v| v.parse::<u64>().ok()),
            },
            "Children": child_details,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ike(state: &str, children: &[(&str, &str)]) -> Message {
        let mut child_sas = Message::new();
        for (i, (name, state)) in children.iter().enumerate() {
            child_sas = child_sas.section(
                &format!("{name}-{i}"),
                Message::new()
                    .kv("name", name)
                    .kv("state", state)
                    .kv("spi-in", "c1a0b0c0")
                    .kv("bytes-in", 84),
            );
        }
        Message::new().section(
            "vco-1",
            Message::new().kv("state", state).section("child-sas", child_sas),
        )
    }

    #[test]
    fn status_follows_the_documented_rule() {
        let children = vec!["ipsec".to_string()];
        let status = |sas: &[Message]| sa_state(sas, "vco-1", &children).status;
        assert_eq!(status(&[]), SaStatus::IkeSaNotEstablished);
        assert_eq!(status(&[ike("CONNECTING", &[])]), SaStatus::IkeSaNotEstablished);
        assert_eq!(status(&[ike("ESTABLISHED", &[])]), SaStatus::IpsecSaNotEstablished);
        assert_eq!(
            status(&[ike("ESTABLISHED", &[("ipsec", "INSTALLING")])]),
            SaStatus::IkeSaEstablished
        );
        assert_eq!(
            status(&[ike("ESTABLISHED", &[("ipsec", "INSTALLED")])]),
            SaStatus::IpsecSaEstablished
        );
        assert_eq!(
            status(&[ike("ESTABLISHED", &[("ipsec", "DELETING")])]),
            SaStatus::IpsecSaNotEstablished
        );
        let state = sa_state(&[ike("ESTABLISHED", &[("ipsec", "INSTALLED")])], "vco-1", &children);
        assert_eq!(state.details["Children"][0]["SpiIn"], "c1a0b0c0");
        assert_eq!(state.details["Children"][0]["BytesIn"], 84);
        let other = sa_state(&[ike("ESTABLISHED", &[("ipsec", "INSTALLED")])], "vco-2", &children);
        assert_eq!(other.status, SaStatus::IkeSaNotEstablished);
    }
}
