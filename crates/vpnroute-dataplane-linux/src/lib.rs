//! # vpnroute-dataplane-linux
//!
//! The Linux kernel [`DataPlane`]: each gateway's routes in force in a network namespace of
//! its own, where real packets cross them. It owns:
//!
//! * the **topology** (module `layout`): per gateway a namespace `{prefix}g-<hash>` with a
//!   VPC-side veth (`{prefix}vpc`, address [`layout::vpc_addresses`]) whose peer sits on the
//!   bridge of a VPC namespace `{prefix}v-<hash>` (where VPC hosts attach with a veth), an
//!   underlay veth (`{prefix}ul`, the gateway's InternetIp) on the bridge of the one shared
//!   underlay namespace `{prefix}ul` (where customer sites attach), and one tunnel interface
//!   per tunnel (`{prefix}t<slot>`, a [`tunnel::TunnelDriver`]: VXLAN for `plain`; a
//!   single-tunnel connection has one, a dual-tunnel connection two, its routes following the
//!   tunnel in use);
//! * the **routes and rules** computed from the [`GatewaySpec`] and the tunnels' health with
//!   the engine's rules (see `layout` for the table and preference layout), policy routes
//!   either as nftables maps marking packets (module `nft`, [`PolicyMode::Nftables`], the
//!   default) or as one `ip rule` each ([`PolicyMode::Rules`]);
//! * **reconciliation** (module `kernel`): every apply reads the namespaces back (`ip -j`,
//!   `nft -j`), diffs them against the layout and writes the difference with one `ip -batch`
//!   per namespace and one `nft -f` transaction; link changes are read back again in further
//!   rounds (ports join bridges once they exist), route, rule and element writes that `ip` and
//!   `nft` accepted are read back by `observe` and the next apply. Nothing is assumed from
//!   earlier writes, so routes deleted by hand, links flapped, foreign rules, forwarding turned
//!   off and a restarted process (which adopts the interfaces it finds, named in their
//!   aliases) all converge the same way; a watcher thread does it on a timer and reports
//!   [`DataPlaneEvent::Drift`];
//! * **health** (module `health`): probes through each tunnel; a state change writes what it
//!   moves at once (then converges fully) and is reported as a [`DataPlaneEvent::Tunnel`];
//! * **introspection**: `observe().details` and `explain` (the kernel's own lookups — `nft get
//!   element`, `ip route get … mark` — next to the engine's answer);
//! * a **lab** (module `lab`) of namespaces for tests and benchmarks, whose attach helpers
//!   show how VPC hosts and sites join.
//!
//! It creates and touches only namespaces whose names start with its prefix (and links inside
//! them); veths are created directly between those namespaces, so nothing is ever created in,
//! or changed of, the root namespace.

pub mod health;
pub mod ipsec;
pub mod kernel;
pub mod lab;
pub mod layout;
pub mod monitor;
pub mod names;
pub mod nft;
pub mod tunnel;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vpnroute_dataplane::{
    DataPlane, DataPlaneError, DataPlaneEvent, EventWaker, GatewaySpec, Observed, RouteClass, TunnelState,
};
use vpnroute_engine::{LinkState, Route as EngineRoute, RouteTable};

use crate::health::{Probe, ProbeConfig, ProbeHealth};
use crate::kernel::NsState;
pub use crate::layout::PolicyMode;
use crate::layout::{Layout, NsWant, PROBE_MARK_BASE};
use crate::monitor::{Monitor, Wake, Wakeup};
use crate::names::Names;
use crate::nft::NftState;
use crate::tunnel::TunnelDriver;
pub use crate::tunnel::TunnelKind;

/// How many read-back/repair rounds one apply may take (creation needs two: a veth's peer
/// joins its bridge once it exists).
const MAX_ROUNDS: usize = 4;
/// How long an apply waits for new links' carrier (the kernel's link watch needs up to 1 s).
const CARRIER_WAIT: Duration = Duration::from_secs(2);
/// Events kept for [`DataPlane::drain_events`] (oldest dropped first).
const MAX_EVENTS: usize = 10_000;

/// Settings of the Linux data plane.
#[derive(Debug, Clone)]
pub struct LinuxConfig {
    /// Prefix of every namespace (and link) the data plane owns (1–6 of `a-z0-9-`).
    pub prefix: String,
    pub tunnels: TunnelKind,
    /// How policy-based routes are put in force (`nftables` needs the `nft` tool).
    pub policy: PolicyMode,
    /// How often a watcher reads every gateway back, reports drift and repairs it; it also
    /// does so at once for a gateway whose namespace reports a change over netlink (module
    /// `monitor`). `None`: no watcher (repairs happen on `apply`).
    pub watch_interval: Option<Duration>,
}

impl Default for LinuxConfig {
    fn default() -> Self {
        LinuxConfig {
            prefix: "vr-".into(),
            tunnels: TunnelKind::Plain,
            policy: PolicyMode::Nftables,
            watch_interval: Some(Duration::from_secs(2)),
        }
    }
}

/// Why the Linux data plane cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the Linux data plane needs CAP_NET_ADMIN and CAP_SYS_ADMIN (run as root); missing: {0}")]
    MissingCapabilities(String),
    #[error("{0}")]
    BadPrefix(String),
    #[error("the Linux data plane needs `{tool}` ({package}): {error}")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
        error: String,
    },
}

/// Capabilities missing from this process's effective set (CAP_NET_ADMIN = 12,
/// CAP_SYS_ADMIN = 21), from `/proc/self/status`.
pub fn missing_capabilities() -> Vec<&'static str> {
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0);
    [(12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN")]
        .into_iter()
        .filter(|(bit, _)| effective & (1u64 << bit) == 0)
        .map(|(_, name)| name)
        .collect()
}

fn check_tool(tool: &'static str, arg: &str, package: &'static str) -> Result<(), StartError> {
    match std::process::Command::new(tool).arg(arg).output() {
        Ok(_) => Ok(()),
        Err(e) => Err(StartError::MissingTool {
            tool,
            package,
            error: e.to_string(),
        }),
    }
}

/// What the data plane keeps per gateway between calls.
#[derive(Default)]
struct GatewayRuntime {
    spec: Option<GatewaySpec>,
    applied_version: Option<i64>,
    probes: HashMap<String, Probe>,
    /// The last health-driven switch: which tunnel, and how long the kernel took to follow.
    last_switch: Option<Value>,
    /// The layout last verified in the kernel: the base of a tunnel switch's quick update.
    layout: Option<Layout>,
    /// Netlink events of the gateway's namespace (with a watcher only).
    monitor: Option<Monitor>,
    /// Set by `remove` (under this lock): a repair or probe that waited for the lock must
    /// not bring the namespaces back.
    removed: bool,
}

struct Inner {
    names: Names,
    policy: PolicyMode,
    /// Whether `nft` runs here (in `rules` mode, a table left by `nftables` mode is removed).
    nft_available: bool,
    driver: Box<dyn TunnelDriver>,
    gateways: Mutex<HashMap<String, Arc<Mutex<GatewayRuntime>>>>,
    /// Probe results by (gateway, connection). Never held while taking a gateway's lock.
    health: Mutex<HashMap<(String, String), ProbeHealth>>,
    events: Mutex<VecDeque<DataPlaneEvent>>,
    /// The reconciler's waker ([`DataPlane::subscribe`]), called when an event is queued.
    waker: Mutex<Option<EventWaker>>,
    /// Gateways with a re-programming after a driver's tunnel change waiting for their lock.
    driver_repairs: Mutex<std::collections::HashSet<String>>,
    /// Wakes the watcher (`None`: no watcher, no monitors).
    wakeup: Option<Arc<Wakeup>>,
    this: Weak<Inner>,
}

/// The Linux kernel data plane (see the crate doc).
pub struct LinuxDataPlane {
    inner: Arc<Inner>,
    watcher: Option<JoinHandle<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn transient(message: impl Into<String>) -> DataPlaneError {
    DataPlaneError::Transient(message.into())
}

/// One gateway's namespaces read back: underlay, VPC, gateway, and the gateway's nftables.
struct Found {
    ns: [NsState; 3],
    nft: Option<NftState>,
}

/// What is left to do: `ip -batch` lines per namespace (as in [`Found::ns`]) and an `nft`
/// script.
struct Diffs {
    ip: [Vec<String>; 3],
    nft: Option<Vec<String>>,
    /// Namespaces whose forwarding is off although wanted on.
    sysctls: Vec<String>,
}

impl Diffs {
    fn is_empty(&self) -> bool {
        self.ip.iter().all(Vec::is_empty) && self.nft.is_none() && self.sysctls.is_empty()
    }

    fn creates_links(&self) -> bool {
        self.ip.iter().flatten().any(|line| line.starts_with("link add"))
    }

    fn changes_links(&self) -> bool {
        !self.sysctls.is_empty() || self.ip.iter().flatten().any(|line| line.starts_with("link "))
    }

    fn pending(self) -> Vec<String> {
        let nft = self.nft.into_iter().flatten().map(|line| format!("nft {line}"));
        let sysctls = self
            .sysctls
            .into_iter()
            .map(|ns| format!("sysctl net.ipv4.ip_forward=1 in {ns}"));
        self.ip.into_iter().flatten().chain(nft).chain(sysctls).collect()
    }
}

impl LinuxDataPlane {
    /// Starts the data plane: checks capabilities, tools and the prefix; adopts nothing yet
    /// (each gateway is adopted by its first `apply`).
    pub fn new(config: LinuxConfig) -> Result<Self, StartError> {
        let missing = missing_capabilities();
        if !missing.is_empty() {
            return Err(StartError::MissingCapabilities(missing.join(", ")));
        }
        names::validate_prefix(&config.prefix).map_err(StartError::BadPrefix)?;
        check_tool("ip", "-V", "iproute2")?;
        check_tool("ping", "-V", "iputils-ping")?;
        if config.policy == PolicyMode::Nftables {
            check_tool("nft", "--version", "nftables")?;
        }
        if config.tunnels == TunnelKind::Ipsec {
            // charon has no harmless flag to run: its files must be there.
            for (path, package) in ipsec::REQUIRED_FILES {
                if !std::path::Path::new(path).exists() {
                    return Err(StartError::MissingTool {
                        tool: "charon",
                        package,
                        error: format!("{path} not found"),
                    });
                }
            }
        }
        let inner = Arc::new_cyclic(|this| Inner {
            names: Names::new(&config.prefix),
            policy: config.policy,
            nft_available: nft::available(),
            driver: tunnel::driver(config.tunnels, &Names::new(&config.prefix)),
            gateways: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            events: Mutex::new(VecDeque::new()),
            waker: Mutex::new(None),
            driver_repairs: Mutex::new(Default::default()),
            wakeup: config.watch_interval.map(|_| Arc::new(Wakeup::default())),
            this: this.clone(),
        });
        let weak = Arc::downgrade(&inner);
        inner
            .driver
            .listen(Arc::new(move |gateway_id: &str, connection_id: &str| {
                if let Some(inner) = weak.upgrade() {
                    inner.driver_changed(gateway_id, connection_id);
                }
            }));
        let watcher = config.watch_interval.map(|interval| {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("vpnroute-watch".into())
                .spawn(move || watch(weak, interval))
                .expect("spawning the watcher thread")
        });
        Ok(LinuxDataPlane { inner, watcher })
    }

    /// The names this data plane uses.
    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    /// Tunnel state per connection of an applied gateway, from memory (no read-back): what
    /// the health checks, the driver and the operator override say; a connection without a
    /// tunnel is down. A dual-tunnel connection's two tunnels follow it, by tunnel id. Empty
    /// for a gateway not applied by this process.
    fn tunnels_in_memory(&self, gateway_id: &str) -> Vec<(String, TunnelState)> {
        let inner = &self.inner;
        let Some(runtime) = lock(&inner.gateways).get(gateway_id).cloned() else {
            return Vec::new();
        };
        let runtime = lock(&runtime);
        let Some(spec) = &runtime.spec else { return Vec::new() };
        let states = inner.tunnel_states(spec);
        let mut out = Vec::new();
        for c in &spec.connections {
            let has_tunnel = !c.remote_ip.is_unspecified() || c.tunnels.iter().any(|t| !t.remote_ip.is_unspecified());
            let state = states
                .get(&c.id)
                .copied()
                .filter(|_| has_tunnel)
                .unwrap_or(TunnelState::Down);
            out.push((c.id.clone(), state));
            for t in &c.tunnels {
                out.push((t.id.clone(), states.get(&t.id).copied().unwrap_or(TunnelState::Down)));
            }
        }
        out
    }
}

/// How long netlink events of one burst are collected before the gateway is read back.
const EVENT_SETTLE: Duration = Duration::from_millis(100);

/// Reads every applied gateway back on a timer, and a gateway at once when its namespace
/// reports a change; on drift, reports it and repairs it.
fn watch(inner: Weak<Inner>, interval: Duration) {
    while let Some(wakeup) = inner.upgrade().and_then(|inner| inner.wakeup.clone()) {
        let wake = wakeup.wait(interval, EVENT_SETTLE);
        let Some(inner) = inner.upgrade() else { break };
        let ids: Vec<String> = match wake {
            Wake::Stop => break,
            Wake::Timer => lock(&inner.gateways).keys().cloned().collect(),
            Wake::Dirty(ids) => ids,
        };
        for id in ids {
            inner.repair(&id, true);
        }
    }
}

impl Drop for LinuxDataPlane {
    fn drop(&mut self) {
        if let Some(wakeup) = &self.inner.wakeup {
            wakeup.stop();
        }
        if let Some(handle) = self.watcher.take() {
            let _ = handle.join();
        }
        let runtimes: Vec<_> = lock(&self.inner.gateways).values().cloned().collect();
        let monitors: Vec<Monitor> = runtimes.iter().filter_map(|rt| lock(rt).monitor.take()).collect();
        drop(monitors);
        let probes: Vec<Probe> = runtimes
            .iter()
            .flat_map(|rt| lock(rt).probes.drain().map(|(_, p)| p).collect::<Vec<_>>())
            .collect();
        for probe in &probes {
            probe.stop();
        }
        for probe in probes {
            probe.join();
        }
    }
}

impl Inner {
    fn runtime(&self, gateway_id: &str) -> Arc<Mutex<GatewayRuntime>> {
        lock(&self.gateways).entry(gateway_id.to_string()).or_default().clone()
    }

    fn push_event(&self, event: DataPlaneEvent) {
        let mut events = lock(&self.events);
        if events.len() >= MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(event);
        drop(events);
        let waker = lock(&self.waker).clone();
        if let Some(wake) = waker {
            wake();
        }
    }

    /// Tunnel state per tunnel key (a single-tunnel connection's id, each tunnel id of a
    /// dual-tunnel connection) and per connection: administratively down wins (the
    /// connection's switch, then the tunnel's), then the driver's verdict (no SA), then the
    /// probe's (it runs through a single tunnel or a dual-tunnel connection's master), else up.
    /// A dual-tunnel connection is up while either tunnel is.
    fn tunnel_states(&self, spec: &GatewaySpec) -> BTreeMap<String, TunnelState> {
        let health = lock(&self.health);
        let mut states = BTreeMap::new();
        for c in &spec.connections {
            let probed = |key: &str| {
                let driver_down = self.driver.state(&spec.gateway_id, key) == Some(TunnelState::Down);
                if driver_down {
                    TunnelState::Down
                } else if c.health_check.is_some() && key == layout::probe_key(c) {
                    health
                        .get(&(spec.gateway_id.clone(), c.id.clone()))
                        .map_or(TunnelState::Up, |h| h.state)
                } else {
                    TunnelState::Up
                }
            };
            if c.tunnels.is_empty() {
                let state = if c.admin_up { probed(&c.id) } else { TunnelState::Down };
                states.insert(c.id.clone(), state);
                continue;
            }
            let mut any_up = false;
            for t in &c.tunnels {
                let state = if c.admin_up && t.admin_up && !t.remote_ip.is_unspecified() {
                    probed(&t.id)
                } else {
                    TunnelState::Down
                };
                any_up |= state == TunnelState::Up;
                states.insert(t.id.clone(), state);
            }
            let state = if any_up { TunnelState::Up } else { TunnelState::Down };
            states.insert(c.id.clone(), state);
        }
        states
    }

    /// Tunnels found in a gateway namespace: tunnel key → (slot, key), lowest slot first.
    fn existing_tunnels(&self, found: &NsState) -> BTreeMap<String, (u32, u32)> {
        let mut tunnels = BTreeMap::new();
        let mut by_slot: Vec<_> = found
            .links
            .iter()
            .filter_map(|(name, link)| {
                let slot = self.names.tunnel_slot(name)?;
                let connection = Names::parse_tunnel_key(link.alias.as_deref()?)?;
                Some((slot, connection.to_string(), self.driver.key_of(link)?))
            })
            .collect();
        by_slot.sort();
        for (slot, connection, key) in by_slot {
            tunnels.entry(connection).or_insert((slot, key));
        }
        tunnels
    }

    /// Reads the gateway's namespaces, the four `ip`/`nft` processes running side by side.
    fn read_all(&self, spec: &GatewaySpec) -> Result<Found, DataPlaneError> {
        let names = &self.names;
        let gateway_ns = names.gateway_ns(&spec.gateway_id);
        let namespaces = [names.underlay_ns(), names.vpc_ns(&spec.gateway_id), gateway_ns.clone()];
        let (ns, nft) = std::thread::scope(|scope| {
            let readers = namespaces.each_ref().map(|ns| scope.spawn(move || kernel::read_ns(ns)));
            let nft = self.nft_available.then(|| nft::read(&gateway_ns));
            let ns = readers.map(|reader| reader.join().unwrap_or_else(|_| Err("reader panicked".into())));
            (ns, nft)
        });
        let [underlay, vpc, gateway] = ns;
        Ok(Found {
            ns: [
                underlay.map_err(transient)?,
                vpc.map_err(transient)?,
                gateway.map_err(transient)?,
            ],
            nft: nft.transpose().map_err(transient)?.flatten(),
        })
    }

    fn plan(&self, spec: &GatewaySpec, found: &Found) -> Result<(Layout, Diffs), DataPlaneError> {
        let existing = self.existing_tunnels(&found.ns[2]);
        let keys: Vec<&str> = layout::tunnel_ends(spec).iter().map(|end| end.key).collect();
        let allocation = layout::allocate(&existing, &keys, self.driver.as_ref()).map_err(DataPlaneError::Permanent)?;
        let states = self.tunnel_states(spec);
        let layout = layout::layout(
            &self.names,
            self.policy,
            spec,
            &allocation,
            &states,
            self.driver.as_ref(),
        )
        .map_err(DataPlaneError::Permanent)?;
        let wants: [&NsWant; 3] = [&layout.underlay, &layout.vpc, &layout.gateway];
        let ip = std::array::from_fn(|i| layout::diff(&self.names, wants[i], &found.ns[i]));
        let nft = nft::diff(layout.nft.as_ref(), found.nft.as_ref());
        let sysctls = wants
            .iter()
            .zip(&found.ns)
            .filter(|(want, found)| want.forwards() && !found.forwarding)
            .map(|(want, _)| want.ns.clone())
            .collect();
        Ok((layout, Diffs { ip, nft, sysctls }))
    }

    /// Reads back, writes the difference, repeats until the read-back matches.
    fn converge(&self, spec: &GatewaySpec) -> Result<Layout, DataPlaneError> {
        let names = &self.names;
        let namespaces = [
            names.underlay_ns(),
            names.vpc_ns(&spec.gateway_id),
            names.gateway_ns(&spec.gateway_id),
        ];
        let mut created = false;
        for ns in &namespaces {
            created |= kernel::ensure_netns(ns).map_err(transient)?;
        }
        let mut errors = Vec::new();
        let mut batch_failed = [false; 3];
        let carrier_deadline = Instant::now() + CARRIER_WAIT;
        let mut round = 0;
        loop {
            let started = Instant::now();
            let found = self.read_all(spec)?;
            let read = started.elapsed();
            let (layout, diffs) = self.plan(spec, &found)?;
            let planned = started.elapsed();
            // Before links are created: `default` values apply to links created later.
            if round == 0 && (created || diffs.creates_links() || !diffs.sysctls.is_empty()) {
                set_sysctls(&layout, &mut errors);
                self.driver.prepare(spec, &layout.tunnels).map_err(transient)?;
            }
            let wants = [&layout.underlay, &layout.vpc, &layout.gateway];
            let carrier_pending = wants.iter().zip(&found.ns).any(|(w, f)| layout::carrier_pending(w, f));
            if diffs.is_empty() && carrier_pending && Instant::now() < carrier_deadline {
                // Just created: in force once the links carry packets.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            if diffs.is_empty() || round == MAX_ROUNDS {
                let pending = diffs.pending();
                if !pending.is_empty() {
                    return Err(transient(format!(
                        "gateway {} not in sync after {MAX_ROUNDS} rounds; still to do: {}; errors: {}",
                        spec.gateway_id,
                        pending.join("; "),
                        errors.join("; ")
                    )));
                }
                self.driver.realize(spec, &layout.tunnels).map_err(transient)?;
                return Ok(layout);
            }
            let errors_before = errors.len();
            for ((ns, lines), failed) in namespaces.iter().zip(diffs.ip.iter()).zip(batch_failed.iter_mut()) {
                let result = if *failed {
                    kernel::each(ns, lines)
                } else {
                    kernel::batch(ns, lines)
                };
                if let Err(e) = result {
                    errors.push(e);
                    *failed = true;
                }
            }
            // After the gateway's links: the chains' marks lead to tables that exist now.
            if let Some(script) = &diffs.nft {
                if let Err(e) = nft::apply(&namespaces[2], script) {
                    errors.push(e);
                }
            }
            tracing::debug!(
                gateway = %spec.gateway_id,
                round,
                read_ms = read.as_secs_f64() * 1e3,
                plan_ms = (planned - read).as_secs_f64() * 1e3,
                write_ms = (started.elapsed() - planned).as_secs_f64() * 1e3,
                lines = diffs.ip.iter().map(Vec::len).sum::<usize>(),
                "data plane round"
            );
            // A bridge created in this round needs its per-device sysctls now.
            if diffs.creates_links() || !diffs.sysctls.is_empty() {
                set_sysctls(&layout, &mut errors);
            }
            // Routes, rules, neighbours, addresses and map elements that `ip` and `nft`
            // accepted without an error are in force: `observe` (and the next apply) read them
            // back. Link changes need another round (ports join bridges once they exist).
            if errors.len() == errors_before && !diffs.changes_links() {
                return Ok(layout);
            }
            round += 1;
        }
    }

    /// Keeps an `ip monitor` running on the gateway's namespace (with a watcher).
    fn ensure_monitor(&self, runtime: &mut GatewayRuntime, ns: &str, gateway_id: &str) {
        let Some(wakeup) = &self.wakeup else { return };
        if runtime.monitor.as_mut().is_some_and(Monitor::running) {
            return;
        }
        match Monitor::spawn(ns, gateway_id, wakeup.clone()) {
            Ok(monitor) => runtime.monitor = Some(monitor),
            Err(error) => tracing::warn!(gateway_id, %error, "no netlink events (the timer still checks)"),
        }
    }

    /// Starts, restarts or stops probe threads to match the spec.
    fn reconcile_probes(&self, runtime: &mut GatewayRuntime, spec: &GatewaySpec, layout: &Layout) {
        let mut wanted: HashMap<String, (ProbeConfig, u32)> = HashMap::new();
        for connection in spec.connections.iter().filter(|c| c.admin_up) {
            let probed = layout.tunnels.get(layout::probe_key(connection));
            let (Some(check), Some(tunnel)) = (&connection.health_check, probed) else {
                continue;
            };
            if check.dip.is_unspecified() {
                continue;
            }
            let source = if check.sip.is_unspecified() {
                layout.vpc_gateway
            } else {
                check.sip
            };
            let config = ProbeConfig {
                ns: layout.gateway.ns.clone(),
                source,
                dest: check.dip,
                mark: PROBE_MARK_BASE | tunnel.plan.slot,
                interval: Duration::from_secs(u64::from(check.interval_s.max(1))),
                retry: check.retry.max(1),
            };
            wanted.insert(connection.id.clone(), (config, check.retry.max(1)));
        }
        runtime.probes.retain(|id, probe| {
            let keep = wanted.get(id).is_some_and(|(config, _)| *config == probe.config);
            if !keep {
                probe.stop();
            }
            keep
        });
        let mut health = lock(&self.health);
        health.retain(|(gateway, connection), _| gateway != &spec.gateway_id || wanted.contains_key(connection));
        drop(health);
        for (id, (config, retry)) in wanted {
            if runtime.probes.contains_key(&id) {
                continue;
            }
            let (weak, gateway_id, connection_id) = (self.this.clone(), spec.gateway_id.clone(), id.clone());
            let probe = Probe::spawn(config, move |ok| {
                let Some(inner) = weak.upgrade() else { return false };
                inner.record_probe(&gateway_id, &connection_id, ok, retry);
                true
            });
            runtime.probes.insert(id, probe);
        }
    }

    /// Folds a probe result in; on a state change, reports it and re-programs the kernel.
    fn record_probe(&self, gateway_id: &str, connection_id: &str, ok: bool, retry: u32) {
        let changed = {
            let mut health = lock(&self.health);
            let entry = health
                .entry((gateway_id.to_string(), connection_id.to_string()))
                .or_default();
            entry.record(ok, retry).then_some(entry.state)
        };
        if let Some(state) = changed {
            tracing::info!(gateway_id, connection_id, ?state, "tunnel health changed");
            let kernel_update = self.switch_quickly(gateway_id);
            let detected = Instant::now();
            self.repair(gateway_id, false);
            let verified = detected.elapsed() + kernel_update.unwrap_or_default();
            if let Some(runtime) = lock(&self.gateways).get(gateway_id).cloned() {
                lock(&runtime).last_switch = Some(json!({
                    "VpnConnectionId": connection_id,
                    "Tunnel": tunnel_text(state),
                    "KernelUpdateMs": kernel_update.map(|d| d.as_secs_f64() * 1000.0),
                    "VerifiedAfterMs": verified.as_secs_f64() * 1000.0,
                }));
            }
            self.push_event(DataPlaneEvent::Tunnel {
                gateway_id: gateway_id.to_string(),
                connection_id: connection_id.to_string(),
                state,
            });
        }
    }

    /// The driver's verdict on a tunnel changed (an SA came up or went down): re-program the
    /// kernel and report the state of the tunnel's connection as the data plane now sees it.
    fn driver_changed(&self, gateway_id: &str, tunnel_key: &str) {
        // Changes that arrive while a repair of the gateway waits for its lock are covered
        // by that repair (it reads the tunnel states after taking the lock): one repair for
        // a burst (50 tunnels coming up), not one each.
        let first = lock(&self.driver_repairs).insert(gateway_id.to_string());
        let runtime = lock(&self.gateways).get(gateway_id).cloned();
        let Some(runtime) = runtime else { return };
        let spec = if first {
            // The kernel follows at once; the convergence below verifies it.
            let kernel_update = self.switch_quickly(gateway_id);
            let mut runtime = lock(&runtime);
            lock(&self.driver_repairs).remove(gateway_id);
            let spec = runtime.spec.clone();
            if let Some(spec) = &spec {
                match self.converge(spec) {
                    Ok(layout) => runtime.layout = Some(layout),
                    Err(error) => tracing::warn!(gateway_id, %error, "re-programming after a tunnel change failed"),
                }
            }
            runtime.last_switch = Some(json!({
                "Tunnel": tunnel_key,
                "Source": "driver",
                "KernelUpdateMs": kernel_update.map(|d| d.as_secs_f64() * 1000.0),
            }));
            spec
        } else {
            lock(&runtime).spec.clone()
        };
        let Some(spec) = spec else { return };
        let Some(connection) = spec
            .connections
            .iter()
            .find(|c| c.id == tunnel_key || c.tunnels.iter().any(|t| t.id == tunnel_key))
        else {
            return;
        };
        let connection_id = connection.id.as_str();
        if let Some(&state) = self.tunnel_states(&spec).get(connection_id) {
            tracing::info!(gateway_id, connection_id, ?state, "tunnel state changed (driver)");
            self.push_event(DataPlaneEvent::Tunnel {
                gateway_id: gateway_id.to_string(),
                connection_id: connection_id.to_string(),
                state,
            });
        }
    }

    /// Converges a gateway to its last applied spec (after a tunnel change, or on the
    /// watcher's timer: then a difference found is reported as drift first).
    fn repair(&self, gateway_id: &str, report_drift: bool) {
        let Some(runtime) = lock(&self.gateways).get(gateway_id).cloned() else {
            return;
        };
        let mut runtime = lock(&runtime);
        if runtime.removed {
            return;
        }
        let Some(spec) = runtime.spec.clone() else { return };
        self.ensure_monitor(&mut runtime, &self.names.gateway_ns(&spec.gateway_id), &spec.gateway_id);
        if report_drift {
            let drifted = self
                .read_all(&spec)
                .and_then(|found| self.plan(&spec, &found))
                .map(|(layout, diffs)| !diffs.is_empty() || self.driver.drifted(&spec, &layout.tunnels))
                .unwrap_or(true);
            if !drifted {
                return;
            }
            tracing::warn!(gateway_id, "data plane drifted from its spec; repairing");
            self.push_event(DataPlaneEvent::Drift {
                gateway_id: gateway_id.to_string(),
            });
        }
        match self.converge(&spec) {
            Ok(layout) => runtime.layout = Some(layout),
            Err(error) => tracing::warn!(gateway_id, %error, "repairing the data plane failed"),
        }
    }

    /// After a tunnel state change: writes only what the change moves (routes, rules and map
    /// elements, from the last verified layout to the new one), without reading back first,
    /// so the kernel follows at once; the full convergence that follows verifies it. Returns
    /// how long the write took.
    fn switch_quickly(&self, gateway_id: &str) -> Option<Duration> {
        let started = Instant::now();
        let runtime = lock(&self.gateways).get(gateway_id).cloned()?;
        let runtime = lock(&runtime);
        let (spec, old) = (runtime.spec.as_ref()?, runtime.layout.as_ref()?);
        let allocation = old
            .tunnels
            .iter()
            .map(|(id, t)| (id.clone(), (t.plan.slot, t.plan.key)))
            .collect();
        let states = self.tunnel_states(spec);
        let new = layout::layout(
            &self.names,
            self.policy,
            spec,
            &allocation,
            &states,
            self.driver.as_ref(),
        )
        .ok()?;
        let lines = layout::diff_wanted(&old.gateway, &new.gateway);
        if let Err(e) = kernel::batch(&new.gateway.ns, &lines) {
            tracing::warn!(gateway_id, error = %e, "quick tunnel switch");
        }
        let assumed = old.nft.as_ref().map(nft::assumed_state);
        if let Some(script) = nft::diff(new.nft.as_ref(), assumed.as_ref()) {
            if let Err(e) = nft::apply(&new.gateway.ns, &script) {
                tracing::warn!(gateway_id, error = %e, "quick tunnel switch");
            }
        }
        Some(started.elapsed())
    }

    /// What the kernel does with a packet from the VPC: in `nftables` mode the maps' own
    /// lookups (`nft get element`, level by level) give the mark, then `ip route get … iif
    /// VPC mark M` the route; in `rules` mode `ip route get` alone.
    fn kernel_decision(&self, layout: &Layout, found: &Found, source: Ipv4Addr, dest: Ipv4Addr) -> Value {
        let ns = &layout.gateway.ns;
        let vpc_if = self.names.vpc_if();
        let mut mark = None;
        let mut nft_answer = Value::Null;
        if let (Some(_), Some(state)) = (&layout.nft, &found.nft) {
            let expected = nft::first_match(state, source, dest);
            let order = nft::map_order(state);
            let last = expected
                .as_ref()
                .and_then(|(key, _)| order.iter().position(|k| k == key));
            let mut kernel_match = None;
            let mut errors = Vec::new();
            for key in order.iter().take(last.map_or(order.len(), |at| at + 1)) {
                match nft::kernel_get(ns, *key, source, dest) {
                    Ok(Some(chain)) => {
                        kernel_match = Some((nft::map_name(*key), chain));
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => errors.push(e),
                }
            }
            mark = kernel_match.as_ref().and_then(|(_, chain)| {
                layout
                    .nft
                    .as_ref()
                    .and_then(|want| want.mark_chains.get(chain).copied())
            });
            nft_answer = json!({
                "Map": kernel_match.as_ref().map(|m| m.0.clone()),
                "Chain": kernel_match.as_ref().map(|m| m.1.clone()),
                "Mark": mark.map(|m| format!("{m:#x}")),
                "ReadBackMatch": expected.map(|(key, chain)| json!({"Map": nft::map_name(key), "Chain": chain})),
                "Errors": errors,
            });
        }
        let (src, dst) = (source.to_string(), dest.to_string());
        let mark_text = mark.map(|m| m.to_string());
        let mut args = vec![
            "-j",
            "-n",
            ns.as_str(),
            "route",
            "get",
            &dst,
            "from",
            &src,
            "iif",
            &vpc_if,
        ];
        if let Some(mark) = &mark_text {
            args.extend(["mark", mark.as_str()]);
        }
        let answer = kernel::ip(&args).and_then(|out| {
            serde_json::from_str::<Value>(&out)
                .map(|v| v.as_array().and_then(|a| a.first().cloned()).unwrap_or(Value::Null))
                .map_err(|e| format!("route get: {e}"))
        });
        let (verdict, interface) = match &answer {
            Ok(route) => ("forward", route["dev"].as_str().map(str::to_string)),
            // An `unreachable` route (table 99 or 100): the connection has no tunnel.
            Err(e) if e.contains("No route to host") => ("no-tunnel", None),
            // The `iif VPC unreachable` rule: nothing matched.
            Err(e) if e.contains("Network is unreachable") => ("unreachable", None),
            Err(_) => ("error", None),
        };
        let tunnel = interface
            .as_ref()
            .and_then(|dev| layout.tunnels.values().find(|t| &t.plan.ifname == dev));
        let connection = tunnel.map(|t| t.plan.connection_id.clone());
        json!({
            "Namespace": ns,
            "Command": format!("ip -n {ns} {}", args[3..].join(" ")),
            "Nftables": nft_answer,
            "Verdict": verdict,
            "Route": answer.as_ref().ok(),
            "Error": answer.as_ref().err(),
            "Interface": interface,
            "VpnConnectionId": connection,
            "TunnelId": tunnel.and_then(|t| t.plan.role.map(|_| t.plan.id.clone())),
            "Role": tunnel.and_then(|t| t.plan.role).map(role_text),
        })
    }

    fn details(&self, spec: Option<&GatewaySpec>, layout: Option<&Layout>, found: &Found, pending: &[String]) -> Value {
        let names = &self.names;
        let gateway_ns = layout.map(|l| l.gateway.ns.clone());
        let connections: Vec<Value> = layout
            .map(|l| {
                l.tunnels
                    .iter()
                    .map(|(id, tunnel)| {
                        let link = found.ns[2].links.get(&tunnel.plan.ifname);
                        let connection = &tunnel.plan.connection_id;
                        json!({
                            "VpnConnectionId": connection,
                            "TunnelId": tunnel.plan.role.map(|_| id),
                            "Role": tunnel.plan.role.map(role_text),
                            "InUse": l.in_use.get(connection) == Some(id),
                            "ConnectionTunnel": l.connection_states.get(connection).copied().map(tunnel_text),
                            "Interface": tunnel.plan.ifname,
                            "NextHop": tunnel.want.next_hop,
                            "Tunnel": tunnel_text(tunnel.state),
                            "Table": layout::connection_table(tunnel.plan.slot),
                            "TxPackets": link.map_or(0, |l| l.tx_packets),
                            "RxPackets": link.map_or(0, |l| l.rx_packets),
                            "TunnelConfig": tunnel.want.details,
                            "TunnelLive": self.driver.live_details(spec.map_or("", |s| s.gateway_id.as_str()), id),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let vpc_ns = spec.map(|s| names.vpc_ns(&s.gateway_id));
        json!({
            "DataPlane": "linux",
            "Driver": self.driver.kind(),
            "Namespace": gateway_ns,
            "VpcInterface": names.vpc_if(),
            "VpcGateway": layout.map(|l| l.vpc_gateway),
            "VpcRouter": layout.map(|l| l.vpc_router),
            "VpcAttach": {"Namespace": vpc_ns, "Bridge": names.bridge()},
            "Underlay": {
                "Namespace": names.underlay_ns(),
                "Bridge": names.bridge(),
                "Interface": names.underlay_if(),
                "InternetIp": spec.map(|s| s.internet_ip),
            },
            "Connections": connections,
            "InSync": layout.is_some() && pending.is_empty(),
            "Pending": pending,
            "PolicyMode": format!("{:?}", self.policy).to_lowercase(),
            "RoutesInForce": spec.map_or(0, |s| s.routes.len()),
            "Kernel": layout::state_json(&found.ns[2]),
            "Nftables": found.nft.as_ref().map(nft_json),
            "VpcRoutes": found.ns[1].routes.iter().map(kernel::Route::to_json).collect::<Vec<_>>(),
        })
    }
}

fn nft_json(state: &NftState) -> Value {
    let maps: serde_json::Map<String, Value> = state
        .maps
        .iter()
        .map(|(name, elements)| {
            let elements: Option<Vec<String>> = elements.as_ref().map(|e| {
                e.iter()
                    .map(|(s, d, chain)| format!("{s} . {d} : goto {chain}"))
                    .collect()
            });
            (name.clone(), json!(elements))
        })
        .collect();
    json!({
        "Table": format!("ip {}", nft::TABLE),
        "Chains": state.chains.iter().map(|(name, (_, rules))| (name.clone(), json!(rules.len()))).collect::<serde_json::Map<_, _>>(),
        "Maps": maps,
    })
}

fn role_text(role: vpnroute_dataplane::TunnelRole) -> &'static str {
    match role {
        vpnroute_dataplane::TunnelRole::Master => "master",
        vpnroute_dataplane::TunnelRole::Slave => "slave",
    }
}

fn tunnel_text(state: TunnelState) -> &'static str {
    match state {
        TunnelState::Up => "up",
        TunnelState::Down => "down",
    }
}

fn set_sysctls(layout: &Layout, errors: &mut Vec<String>) {
    for want in [&layout.gateway, &layout.vpc] {
        if want.sysctls.is_empty() {
            continue;
        }
        let mut args = vec!["-q".to_string(), "-e".to_string(), "-w".to_string()];
        args.extend(want.sysctls.iter().map(|(key, value)| format!("{key}={value}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = kernel::netns_exec(&want.ns, "sysctl", &args) {
            errors.push(e);
        }
    }
}

/// The engine's table and link state for a spec, with the data plane's tunnel states.
fn engine_for(spec: &GatewaySpec, states: &BTreeMap<String, TunnelState>) -> (RouteTable, LinkState, Vec<String>) {
    let mut table = RouteTable::new();
    let mut refused = Vec::new();
    for route in &spec.routes {
        let engine_route = match route.class {
            RouteClass::Destination => {
                EngineRoute::destination(route.id, route.dest, &route.next_hop, route.weight, route.id)
            }
            RouteClass::Policy => EngineRoute::policy(
                route.id,
                route.source.unwrap_or_default(),
                route.dest,
                &route.next_hop,
                route.weight,
                route.priority,
                route.id,
            ),
        };
        if let Err(e) = table.insert(engine_route) {
            refused.push(e.to_string());
        }
    }
    let mut links = LinkState::new();
    for route in &spec.routes {
        let up = states.get(&route.next_hop) == Some(&TunnelState::Up);
        table.set_link_up(&mut links, &route.next_hop, up);
    }
    (table, links, refused)
}

impl DataPlane for LinuxDataPlane {
    fn name(&self) -> &'static str {
        "linux"
    }

    fn apply(&self, spec: &GatewaySpec) -> Result<(), DataPlaneError> {
        if spec.gateway_id.is_empty() {
            return Err(DataPlaneError::Permanent("gateway id is empty".into()));
        }
        let inner = &self.inner;
        let runtime = inner.runtime(&spec.gateway_id);
        let mut runtime = lock(&runtime);
        runtime.spec = Some(spec.clone());
        let result = inner.converge(spec);
        match result {
            Ok(layout) => {
                inner.reconcile_probes(&mut runtime, spec, &layout);
                inner.ensure_monitor(&mut runtime, &layout.gateway.ns, &spec.gateway_id);
                runtime.layout = Some(layout);
                runtime.applied_version = Some(spec.version);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn observe(&self, gateway_id: &str) -> Result<Option<Observed>, DataPlaneError> {
        let inner = &self.inner;
        let gateway_ns = inner.names.gateway_ns(gateway_id);
        if !kernel::netns_exists(&gateway_ns) {
            return Ok(None);
        }
        let runtime = lock(&inner.gateways).get(gateway_id).cloned();
        let (spec, applied_version, last_switch) = match &runtime {
            Some(rt) => {
                let rt = lock(rt);
                (rt.spec.clone(), rt.applied_version, rt.last_switch.clone())
            }
            None => (None, None, None),
        };
        let Some(spec) = spec else {
            // Not applied by this process yet: show what is there.
            let found = kernel::read_ns(&gateway_ns).map_err(transient)?;
            let tunnels = inner
                .existing_tunnels(&found)
                .into_iter()
                .map(|(id, (slot, _))| {
                    let up = found.links.get(&inner.names.tunnel_if(slot)).is_some_and(|l| l.up);
                    (id, if up { TunnelState::Up } else { TunnelState::Down })
                })
                .collect();
            let empty = Found {
                ns: [NsState::default(), NsState::default(), found],
                nft: None,
            };
            let mut details = inner.details(None, None, &empty, &[]);
            details["Namespace"] = json!(gateway_ns);
            return Ok(Some(Observed {
                applied_version: None,
                in_sync: false,
                tunnels,
                details,
            }));
        };
        let found = inner.read_all(&spec)?;
        let (layout, diffs) = inner.plan(&spec, &found)?;
        let pending = diffs.pending();
        let in_sync = pending.is_empty() && applied_version == Some(spec.version);
        // A connection without a tunnel (no remote address) is down.
        let tunnels = spec
            .connections
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    layout
                        .connection_states
                        .get(&c.id)
                        .copied()
                        .unwrap_or(TunnelState::Down),
                )
            })
            .collect();
        let mut details = inner.details(Some(&spec), Some(&layout), &found, &pending);
        details["InSync"] = json!(in_sync);
        details["AppliedVersion"] = json!(applied_version);
        details["LastTunnelSwitch"] = json!(last_switch);
        Ok(Some(Observed {
            applied_version,
            in_sync,
            tunnels,
            details,
        }))
    }

    fn remove(&self, gateway_id: &str) -> Result<(), DataPlaneError> {
        let inner = &self.inner;
        let runtime = lock(&inner.gateways).remove(gateway_id);
        // Held until the namespaces are gone: a repair in flight finishes first, one waiting
        // (a tunnel change, the watcher) finds the gateway removed and no spec to put back.
        let runtime = runtime.unwrap_or_default();
        let mut held = lock(&runtime);
        held.removed = true;
        held.spec = None;
        held.layout = None;
        for (_, probe) in held.probes.drain() {
            probe.stop();
        }
        drop(held.monitor.take());
        lock(&inner.health).retain(|(gateway, _), _| gateway != gateway_id);
        inner.driver.remove_gateway(gateway_id);
        kernel::delete_netns(&inner.names.gateway_ns(gateway_id)).map_err(transient)?;
        kernel::delete_netns(&inner.names.vpc_ns(gateway_id)).map_err(transient)?;
        drop(held);
        Ok(())
    }

    fn explain(&self, gateway_id: &str, source: Ipv4Addr, dest: Ipv4Addr) -> Result<Value, DataPlaneError> {
        let inner = &self.inner;
        let runtime = lock(&inner.gateways).get(gateway_id).cloned();
        let spec = runtime.and_then(|rt| lock(&rt).spec.clone());
        let Some(spec) = spec else {
            return Err(DataPlaneError::Permanent(format!(
                "gateway {gateway_id} has not been applied"
            )));
        };
        let found = inner.read_all(&spec)?;
        let (layout, _) = inner.plan(&spec, &found)?;
        let (table, links, refused) = engine_for(&spec, &layout.connection_states);
        let engine = table.explain(source, dest, &links);
        let engine_hop = engine.chosen.as_ref().map(|c| c.next_hop.clone());

        let kernel = inner.kernel_decision(&layout, &found, source, dest);
        let agree = match (&engine_hop, kernel["Verdict"].as_str()) {
            (Some(hop), Some("forward")) => kernel["VpnConnectionId"].as_str() == Some(hop.as_str()),
            (Some(hop), Some("no-tunnel")) => !layout.in_use.contains_key(hop),
            (None, Some("unreachable")) => true,
            _ => false,
        };
        Ok(json!({
            "Source": source,
            "Destination": dest,
            "Engine": engine,
            "EngineNextHop": engine_hop,
            "EngineRefusedRoutes": refused,
            "Kernel": kernel,
            "Agree": agree,
            // Every tunnel of the chosen connection (two for a dual-tunnel one), with its SA.
            "NextHopTunnels": engine_hop.as_deref().map(|hop| {
                layout
                    .tunnels
                    .values()
                    .filter(|t| t.plan.connection_id == hop)
                    .map(|t| json!({
                        "TunnelId": t.plan.role.map(|_| t.plan.id.clone()),
                        "Role": t.plan.role.map(role_text),
                        "Interface": t.plan.ifname,
                        "Tunnel": tunnel_text(t.state),
                        "InUse": layout.in_use.get(hop) == Some(&t.plan.id),
                        "Live": inner.driver.live_details(&spec.gateway_id, &t.plan.id),
                    }))
                    .collect::<Vec<_>>()
            }),
        }))
    }

    fn gateways(&self) -> Result<Vec<String>, DataPlaneError> {
        let names = &self.inner.names;
        let mut ids = Vec::new();
        for ns in kernel::netns_with_prefix(names.prefix()) {
            if !names.is_gateway_ns(&ns) {
                continue;
            }
            let out = kernel::ip(&["-j", "-n", &ns, "link", "show", "dev", &names.vpc_if()]).unwrap_or_default();
            let alias = serde_json::from_str::<Value>(&out)
                .ok()
                .and_then(|v| v[0]["ifalias"].as_str().map(str::to_string));
            if let Some(id) = alias.as_deref().and_then(Names::parse_gateway_alias) {
                ids.push(id.to_string());
            }
        }
        Ok(ids)
    }

    fn drain_events(&self) -> Vec<DataPlaneEvent> {
        lock(&self.inner.events).drain(..).collect()
    }

    fn subscribe(&self, wake: EventWaker) {
        *lock(&self.inner.waker) = Some(wake);
    }

    fn tunnel_states(&self, gateway_id: &str) -> Vec<(String, TunnelState)> {
        self.tunnels_in_memory(gateway_id)
    }

    /// What the tunnel driver cannot put in force (`ipsec`: ShangMi and other values
    /// strongSwan has no transform for; `plain`: nothing).
    fn unsupported_tunnel(&self, ike_config: &Value, ipsec_config: &Value) -> Option<vpnroute_dataplane::Unsupported> {
        self.inner.driver.unsupported(ike_config, ipsec_config)
    }

    /// The routes of the last spec applied by this process (0 before its first apply),
    /// from memory: `observe` reads the kernel back for whether they are in force.
    fn routes_in_force(&self, gateway_id: &str) -> Result<usize, DataPlaneError> {
        let Some(runtime) = lock(&self.inner.gateways).get(gateway_id).cloned() else {
            return Ok(0);
        };
        let runtime = lock(&runtime);
        Ok(match (&runtime.spec, runtime.applied_version) {
            (Some(spec), Some(_)) => spec.routes.len(),
            _ => 0,
        })
    }
}
