//! The kernel as this crate sees it: running `ip`, reading a namespace back (`ip -j`) into
//! comparable values, and the `ip -batch` lines that add or delete those values.
//!
//! One `ip -j -batch` process reads a whole namespace (links, addresses, rules, routes,
//! neighbours); one `ip -force -batch` process writes a whole difference. `-force` keeps going
//! after a failed line: the caller reads back again rather than trusting the exit status.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use serde_json::Value;

pub const TABLE_MAIN: u32 = 254;
pub const TABLE_LOCAL: u32 = 255;
pub const TABLE_DEFAULT: u32 = 253;

/// Where `ip netns` keeps its bind mounts.
const NETNS_DIR: &str = "/run/netns";

/// Runs `ip ARGS`, returning stdout, or stderr as the error.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs a command with `input` on its stdin, collecting stdout and stderr. The input is
/// written from a thread of its own: a command that answers while it still reads (`ip
/// -batch` printing errors) would otherwise block on a full pipe while we block on its stdin.
pub fn run_with_input(mut command: Command, input: Vec<u8>) -> Result<std::process::Output, String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    writer
        .join()
        .map_err(|_| "stdin writer panicked".to_string())?
        .map_err(|e| format!("writing to {:?}: {e}", command.get_program()))?;
    Ok(output)
}

/// Feeds `lines` to `ip -n NS -force -batch -`. Returns the failures `ip` reported (if any).
pub fn batch(ns: &str, lines: &[String]) -> Result<(), String> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut script = lines.join("\n");
    script.push('\n');
    let mut command = Command::new("ip");
    command.args(["-n", ns, "-force", "-batch", "-"]);
    let output = run_with_input(command, script.into_bytes()).map_err(|e| format!("ip -batch in {ns}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -batch in {ns}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs `lines` one `ip -n NS …` process each: slower than [`batch`], used after a batch
/// failed, since `ip` abandons a batch at the first line it cannot parse.
pub fn each(ns: &str, lines: &[String]) -> Result<(), String> {
    let mut errors = Vec::new();
    for line in lines {
        let mut args = vec!["-n", ns];
        args.extend(line.split_whitespace());
        if let Err(e) = ip(&args) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Runs a command inside a namespace (`ip netns exec NS …`).
pub fn netns_exec(ns: &str, program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip netns exec: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} in {ns}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

pub fn netns_exists(ns: &str) -> bool {
    Path::new(NETNS_DIR).join(ns).exists()
}

/// Names of the namespaces `ip netns` knows, starting with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Creates a namespace if missing; `true` when it was created.
pub fn ensure_netns(ns: &str) -> Result<bool, String> {
    if netns_exists(ns) {
        return Ok(false);
    }
    match ip(&["netns", "add", ns]) {
        Ok(_) => Ok(true),
        // Another gateway's apply created it (the underlay namespace is shared) just now.
        Err(_) if netns_exists(ns) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes a namespace if present (its interfaces go with it).
pub fn delete_netns(ns: &str) -> Result<(), String> {
    if netns_exists(ns) {
        ip(&["netns", "del", ns])?;
    }
    Ok(())
}

/// A route target as the kernel shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Via {
        gateway: Ipv4Addr,
        dev: String,
    },
    Dev {
        dev: String,
    },
    Blackhole,
    Unreachable,
    /// Anything this crate never installs (kept so that it is seen and removed).
    Other(String),
}

/// One IPv4 route outside the local table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub table: u32,
    pub dst: Ipv4Net,
    pub metric: u32,
    pub target: Target,
}

impl Route {
    pub fn new(table: u32, dst: Ipv4Net, target: Target) -> Self {
        Route {
            table,
            dst,
            metric: 0,
            target,
        }
    }

    pub fn add_line(&self) -> String {
        let table = self.table;
        let dst = self.dst;
        match &self.target {
            Target::Via { gateway, dev } => {
                format!("route replace {dst} via {gateway} dev {dev} onlink table {table}")
            }
            Target::Dev { dev } => format!("route replace {dst} dev {dev} scope link table {table}"),
            Target::Blackhole => format!("route replace blackhole {dst} table {table}"),
            Target::Unreachable => format!("route replace unreachable {dst} table {table}"),
            Target::Other(_) => String::new(),
        }
    }

    pub fn del_line(&self) -> String {
        let kind = match self.target {
            Target::Blackhole => "blackhole ",
            Target::Unreachable => "unreachable ",
            _ => "",
        };
        format!(
            "route del {kind}{} table {} metric {}",
            self.dst, self.table, self.metric
        )
    }

    pub fn to_json(&self) -> Value {
        let target = match &self.target {
            Target::Via { gateway, dev } => serde_json::json!({"Via": gateway, "Dev": dev}),
            Target::Dev { dev } => serde_json::json!({"Dev": dev}),
            Target::Blackhole => serde_json::json!("blackhole"),
            Target::Unreachable => serde_json::json!("unreachable"),
            Target::Other(text) => serde_json::json!({ "Other": text }),
        };
        serde_json::json!({"Table": self.table, "Dest": self.dst.to_string(), "Metric": self.metric, "Target": target})
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleAction {
    Lookup(u32),
    Unreachable,
    Blackhole,
    Other(String),
}

/// One IPv4 policy rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    pub pref: u32,
    pub src: Option<Ipv4Net>,
    pub dst: Option<Ipv4Net>,
    pub iif: Option<String>,
    pub fwmark: Option<u32>,
    pub action: RuleAction,
    /// The kernel showed selectors this crate does not model: never equal to a wanted rule.
    pub foreign_selectors: bool,
}

impl Rule {
    pub fn new(pref: u32, action: RuleAction) -> Self {
        Rule {
            pref,
            src: None,
            dst: None,
            iif: None,
            fwmark: None,
            action,
            foreign_selectors: false,
        }
    }

    fn selectors(&self) -> String {
        let mut text = format!("pref {}", self.pref);
        if let Some(src) = self.src {
            text.push_str(&format!(" from {src}"));
        }
        if let Some(dst) = self.dst {
            text.push_str(&format!(" to {dst}"));
        }
        if let Some(iif) = &self.iif {
            text.push_str(&format!(" iif {iif}"));
        }
        if let Some(mark) = self.fwmark {
            text.push_str(&format!(" fwmark {mark:#x}"));
        }
        text
    }

    fn action_text(&self) -> String {
        match &self.action {
            RuleAction::Lookup(table) => format!("lookup {table}"),
            RuleAction::Unreachable => "unreachable".into(),
            RuleAction::Blackhole => "blackhole".into(),
            RuleAction::Other(text) => text.clone(),
        }
    }

    pub fn add_line(&self) -> String {
        format!("rule add {} {}", self.selectors(), self.action_text())
    }

    pub fn del_line(&self) -> String {
        if self.foreign_selectors {
            // Selectors we cannot name: delete by preference; a wanted rule deleted with it
            // comes back on the next round.
            return format!("rule del pref {}", self.pref);
        }
        format!("rule del {} {}", self.selectors(), self.action_text())
    }

    pub fn to_json(&self) -> Value {
        serde_json::Value::String(format!("{} {}", self.selectors(), self.action_text()))
    }
}

/// A neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neighbour {
    pub dev: String,
    pub dst: Ipv4Addr,
    pub lladdr: String,
    pub permanent: bool,
}

impl Neighbour {
    pub fn add_line(&self) -> String {
        format!(
            "neigh replace {} lladdr {} dev {} nud permanent",
            self.dst, self.lladdr, self.dev
        )
    }
}

/// VXLAN parameters of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: u32,
    pub remote: Option<Ipv4Addr>,
    pub local: Option<Ipv4Addr>,
    pub port: u16,
    pub dev: Option<String>,
}

/// One link with what this crate compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub kind: Option<String>,
    pub up: bool,
    pub master: Option<String>,
    pub alias: Option<String>,
    pub mac: Option<String>,
    pub vxlan: Option<Vxlan>,
    pub addrs: BTreeSet<Ipv4Net>,
    /// Operational state is UP: the kernel's link watch has seen the carrier (up to a second
    /// after `link set up`; until then the link drops what it is given).
    pub running: bool,
    pub tx_packets: u64,
    pub rx_packets: u64,
}

/// A namespace read back.
#[derive(Debug, Clone, Default)]
pub struct NsState {
    pub links: BTreeMap<String, Link>,
    pub rules: Vec<Rule>,
    pub routes: BTreeSet<Route>,
    pub neighbours: BTreeSet<Neighbour>,
    /// `net.ipv4.conf.all.forwarding` (= `net.ipv4.ip_forward`), from `ip netconf`.
    pub forwarding: bool,
}

/// Reads a namespace with one `ip -j -batch` process.
pub fn read_ns(ns: &str) -> Result<NsState, String> {
    let mut command = Command::new("ip");
    command.args(["-4", "-d", "-s", "-j", "-n", ns, "-batch", "-"]);
    let script = b"link show\naddr show\nrule show\nroute show table all\nneigh show\nnetconf show\n".to_vec();
    let output = run_with_input(command, script).map_err(|e| format!("ip -batch in {ns}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "reading {ns}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let values: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading {ns}: unexpected ip -j output: {e}"))?;
    let [links, addrs, rules, routes, neighbours, netconf] = values.as_slice() else {
        return Err(format!(
            "reading {ns}: expected 6 JSON arrays from ip, got {}",
            values.len()
        ));
    };
    let mut state = NsState::default();
    for entry in array(links) {
        let Some(name) = entry["ifname"].as_str() else { continue };
        state.links.insert(name.to_string(), parse_link(entry));
    }
    for entry in array(addrs) {
        let Some(link) = entry["ifname"].as_str().and_then(|name| state.links.get_mut(name)) else {
            continue;
        };
        for info in array(&entry["addr_info"]) {
            let addr = info["local"].as_str().and_then(|a| a.parse::<Ipv4Addr>().ok());
            let len = info["prefixlen"].as_u64().and_then(|l| u8::try_from(l).ok());
            if let (Some(addr), Some(len)) = (addr, len) {
                if let Ok(net) = Ipv4Net::new(addr, len) {
                    link.addrs.insert(net);
                }
            }
        }
    }
    state.rules = array(rules).iter().filter_map(parse_rule).collect();
    state.routes = array(routes).iter().filter_map(parse_route).collect();
    state.neighbours = array(neighbours).iter().filter_map(parse_neighbour).collect();
    state.forwarding = array(netconf)
        .iter()
        .any(|conf| conf["interface"] == "all" && conf["forwarding"] == true);
    Ok(state)
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

fn parse_link(entry: &Value) -> Link {
    let flags = array(&entry["flags"]);
    let info = &entry["linkinfo"];
    let kind = text(&info["info_kind"]).or_else(|| text(&entry["link_type"]).filter(|t| t == "loopback"));
    let vxlan = (kind.as_deref() == Some("vxlan")).then(|| {
        let data = &info["info_data"];
        Vxlan {
            vni: data["id"].as_u64().unwrap_or(0) as u32,
            remote: data["remote"].as_str().and_then(|a| a.parse().ok()),
            local: data["local"].as_str().and_then(|a| a.parse().ok()),
            port: data["port"].as_u64().unwrap_or(0) as u16,
            dev: text(&data["link"]),
        }
    });
    Link {
        kind,
        up: flags.iter().any(|f| f == "UP"),
        master: text(&entry["master"]),
        alias: text(&entry["ifalias"]),
        mac: text(&entry["address"]),
        vxlan,
        addrs: BTreeSet::new(),
        running: entry["operstate"] == "UP",
        tx_packets: entry["stats64"]["tx"]["packets"].as_u64().unwrap_or(0),
        rx_packets: entry["stats64"]["rx"]["packets"].as_u64().unwrap_or(0),
    }
}

/// `"default"`, `"10.0.0.0/8"` or `"10.1.2.3"` (a host), as `ip -j` prints destinations.
fn parse_prefix(text: &str, len: Option<u64>) -> Option<Ipv4Net> {
    if text == "default" || text == "all" {
        return Some(Ipv4Net::default());
    }
    if let Ok(net) = text.parse::<Ipv4Net>() {
        return Some(net);
    }
    let addr: Ipv4Addr = text.parse().ok()?;
    Ipv4Net::new(addr, u8::try_from(len.unwrap_or(32)).ok()?).ok()
}

fn parse_table(value: &Value) -> Option<u32> {
    match value.as_str() {
        None => Some(TABLE_MAIN),
        Some("main") => Some(TABLE_MAIN),
        Some("local") => Some(TABLE_LOCAL),
        Some("default") => Some(TABLE_DEFAULT),
        Some(number) => number.parse().ok(),
    }
}

fn parse_route(entry: &Value) -> Option<Route> {
    let table = parse_table(&entry["table"])?;
    let kind = entry["type"].as_str().unwrap_or("unicast");
    // The kernel's own routes (connected, local, broadcast) follow addresses and links.
    if table == TABLE_LOCAL || entry["protocol"] == "kernel" {
        return None;
    }
    let dst = parse_prefix(entry["dst"].as_str()?, None)?;
    let dev = text(&entry["dev"]);
    let gateway = entry["gateway"].as_str().and_then(|g| g.parse().ok());
    let target = match (kind, gateway, dev) {
        ("unicast", Some(gateway), Some(dev)) => Target::Via { gateway, dev },
        ("unicast", None, Some(dev)) if entry["nexthops"].is_null() => Target::Dev { dev },
        ("blackhole", _, _) => Target::Blackhole,
        ("unreachable", _, _) => Target::Unreachable,
        _ => Target::Other(entry.to_string()),
    };
    Some(Route {
        table,
        dst,
        metric: entry["metric"].as_u64().unwrap_or(0) as u32,
        target,
    })
}

const RULE_KEYS: &[&str] = &[
    "priority", "src", "srclen", "dst", "dstlen", "iif", "fwmark", "table", "action", "protocol", "flags",
];

fn parse_rule(entry: &Value) -> Option<Rule> {
    let object = entry.as_object()?;
    let pref = u32::try_from(entry["priority"].as_u64()?).ok()?;
    let prefix = |key: &str, len_key: &str| {
        entry[key]
            .as_str()
            .filter(|t| *t != "all")
            .and_then(|t| parse_prefix(t, entry[len_key].as_u64()))
    };
    let action = match entry["action"].as_str() {
        Some("unreachable") => RuleAction::Unreachable,
        Some("blackhole") => RuleAction::Blackhole,
        Some(other) => RuleAction::Other(other.to_string()),
        None => match parse_table(&entry["table"]) {
            Some(table) if entry["table"].is_string() => RuleAction::Lookup(table),
            _ => RuleAction::Other(entry.to_string()),
        },
    };
    let fwmark = entry["fwmark"]
        .as_str()
        .and_then(|m| u32::from_str_radix(m.trim_start_matches("0x"), 16).ok());
    // "fwmask" other than all ones, "oif", "tos", "ipproto", … are not ours.
    let foreign_selectors = object.keys().any(|key| !RULE_KEYS.contains(&key.as_str()));
    Some(Rule {
        pref,
        src: prefix("src", "srclen"),
        dst: prefix("dst", "dstlen"),
        iif: text(&entry["iif"]),
        fwmark,
        action,
        foreign_selectors,
    })
}

fn parse_neighbour(entry: &Value) -> Option<Neighbour> {
    Some(Neighbour {
        dev: text(&entry["dev"])?,
        dst: entry["dst"].as_str()?.parse().ok()?,
        lladdr: text(&entry["lladdr"])?,
        permanent: array(&entry["state"]).iter().any(|s| s == "PERMANENT"),
    })
}

/// `ip -j route get DST from SRC iif IIF` in a namespace: the kernel's own decision.
pub fn route_get(ns: &str, src: Ipv4Addr, dst: Ipv4Addr, iif: &str) -> Result<Value, String> {
    let (src, dst) = (src.to_string(), dst.to_string());
    let out = ip(&["-j", "-n", ns, "route", "get", &dst, "from", &src, "iif", iif])?;
    let value: Value = serde_json::from_str(&out).map_err(|e| format!("route get: {e}"))?;
    Ok(value.as_array().and_then(|a| a.first().cloned()).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_parse_as_ip_prints_them() {
        let rule = parse_rule(&json!({"priority":2000,"src":"10.1.0.0","srclen":16,"dst":"10.2.3.4","iif":"vrvpc","table":"1000","protocol":"unspec"})).unwrap();
        assert_eq!(rule.src, Some("10.1.0.0/16".parse().unwrap()));
        assert_eq!(rule.dst, Some("10.2.3.4/32".parse().unwrap()));
        assert_eq!(rule.action, RuleAction::Lookup(1000));
        assert!(!rule.foreign_selectors);
        assert_eq!(
            rule.add_line(),
            "rule add pref 2000 from 10.1.0.0/16 to 10.2.3.4/32 iif vrvpc lookup 1000"
        );
        let main = parse_rule(&json!({"priority":32766,"src":"all","table":"main","protocol":"kernel"})).unwrap();
        assert_eq!(main.action, RuleAction::Lookup(TABLE_MAIN));
        let unreachable = parse_rule(&json!({"priority":3000,"src":"all","iif":"x","action":"unreachable"})).unwrap();
        assert_eq!(unreachable.action, RuleAction::Unreachable);
        let mark = parse_rule(&json!({"priority":100,"src":"all","fwmark":"0x7672","table":"1000"})).unwrap();
        assert_eq!(mark.fwmark, Some(0x7672));
        let odd = parse_rule(&json!({"priority":5,"src":"all","oif":"x","table":"main"})).unwrap();
        assert!(odd.foreign_selectors);
        assert_eq!(odd.del_line(), "rule del pref 5");
    }

    #[test]
    fn routes_parse_as_ip_prints_them() {
        let via = parse_route(&json!({"type":"unicast","dst":"default","gateway":"169.254.0.1","dev":"t0","table":"1000","protocol":"boot","flags":["onlink"]})).unwrap();
        assert_eq!(via.dst, Ipv4Net::default());
        assert_eq!(
            via.target,
            Target::Via {
                gateway: "169.254.0.1".parse().unwrap(),
                dev: "t0".into()
            }
        );
        let main = parse_route(&json!({"dst":"203.0.113.5","dev":"ul","scope":"link","flags":[]})).unwrap();
        assert_eq!((main.table, main.dst), (TABLE_MAIN, "203.0.113.5/32".parse().unwrap()));
        assert!(parse_route(&json!({"dst":"169.254.0.0/31","dev":"t0","protocol":"kernel","scope":"link"})).is_none());
        let hole = parse_route(&json!({"type":"blackhole","dst":"10.9.0.0/16","table":"100"})).unwrap();
        assert_eq!(hole.target, Target::Blackhole);
        assert_eq!(hole.del_line(), "route del blackhole 10.9.0.0/16 table 100 metric 0");
    }
}
