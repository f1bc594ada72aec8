//! Policy routes compiled into nftables: the fast alternative to one `ip rule` per policy
//! route (the kernel walks rules as a list: 10,000 of them cost most of a gateway's
//! throughput).
//!
//! Table `ip vpnroute` in the gateway namespace:
//!
//! * a `prerouting` chain (hook prerouting, priority mangle) with one rule per *level* and
//!   prefix-length class present on it: `iifname VPC ip saddr & SMASK . ip daddr & DMASK
//!   vmap @mLEVEL_SLEN_DLEN`;
//! * per (level, class) a hash map whose elements are policy groups, `S . D : goto cSLOT`:
//!   exact keys of masked addresses, O(1) to look up and to insert (interval maps would take
//!   the prefixes directly, but the kernel pays time proportional to their size for every
//!   element inserted: over a second for 10,000);
//! * per connection a chain `cSLOT` setting the connection's packet mark and accepting, and
//!   `nt` (the mark of "connection without a tunnel"); one `fwmark` rule per connection sends
//!   marked packets to the connection's table (the probes' rules, see `layout`).
//!
//! Levels make first-match order out of maps that hold no order: groups in engine rank order
//! (priority, longer destination, longer source), each on the level after the highest level
//! of any earlier group it overlaps. So every level is disjoint, and the first level holding a
//! match holds exactly the engine's choice: if an earlier-ranked match existed it would sit on
//! a lower level. A level's class maps are disjoint as well, so their order does not matter.
//! Unmarked packets fall to destination routes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::Command;

use crate::kernel::run_with_input;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

/// The table name in each gateway namespace.
pub const TABLE: &str = "vpnroute";
/// The chain of packets routed to a connection without a tunnel.
pub const NO_TUNNEL_CHAIN: &str = "nt";
const PREROUTING: &str = "prerouting";
/// `priority mangle`.
const PREROUTING_PRIORITY: i64 = -150;

/// One map element: a policy group and the chain it jumps to.
pub type Element = (Ipv4Net, Ipv4Net, String);

/// What the table should hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NftWant {
    pub vpc_if: String,
    /// Chain name → mark it sets.
    pub mark_chains: BTreeMap<String, u32>,
    /// Level maps, first evaluated first.
    pub levels: Vec<BTreeSet<Element>>,
}

/// Which map: (level, source prefix length, destination prefix length).
pub type MapKey = (usize, u8, u8);

pub fn map_name((level, source_len, dest_len): MapKey) -> String {
    format!("m{level}_{source_len}_{dest_len}")
}

pub fn parse_map_name(name: &str) -> Option<MapKey> {
    let mut parts = name.strip_prefix('m')?.split('_');
    let key = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    (parts.next().is_none() && key.1 <= 32 && key.2 <= 32).then_some(key)
}

impl NftWant {
    /// The maps of the levels, in evaluation order.
    pub fn maps(&self) -> BTreeMap<MapKey, BTreeSet<Element>> {
        let mut maps: BTreeMap<MapKey, BTreeSet<Element>> = BTreeMap::new();
        for (level, elements) in self.levels.iter().enumerate() {
            for element in elements {
                let key = (level, element.0.prefix_len(), element.1.prefix_len());
                maps.entry(key).or_default().insert(element.clone());
            }
        }
        maps
    }
}

/// A policy group to place: rank (smaller first), source, destination, target chain.
pub type Placed = ((u8, u8, u8, u64), Ipv4Net, Ipv4Net, String);

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn supernet(net: Ipv4Net, len: u8) -> Ipv4Net {
    Ipv4Net::new(net.network(), len).expect("len <= 32").trunc()
}

/// Assigns groups to levels (see the module doc). Groups must have distinct (source, dest).
pub fn levels(mut groups: Vec<Placed>) -> Vec<BTreeSet<Element>> {
    groups.sort_by_key(|g| g.0);
    // Earlier groups by destination (network, length): overlapping destinations are the
    // supernets of ours (at most 33 exact lookups) and those inside ours (one range).
    let mut by_dest: BTreeMap<(u32, u8), Vec<(Ipv4Net, usize)>> = BTreeMap::new();
    // Destination lengths present so far: supernet lookups only where one can hit.
    let mut lengths: u64 = 0;
    let mut out: Vec<BTreeSet<Element>> = Vec::new();
    for (_, source, dest, chain) in groups {
        let mut level = 0;
        let mut consider = |earlier: &[(Ipv4Net, usize)]| {
            for (other_source, other_level) in earlier {
                if overlaps(source, *other_source) {
                    level = level.max(other_level + 1);
                }
            }
        };
        for len in (0..dest.prefix_len()).filter(|len| lengths & (1 << len) != 0) {
            let supernet = supernet(dest, len);
            if let Some(earlier) = by_dest.get(&(u32::from(supernet.network()), len)) {
                consider(earlier);
            }
        }
        let inside = (u32::from(dest.network()), dest.prefix_len())..=(u32::from(dest.broadcast()), 32);
        for ((_, len), earlier) in by_dest.range(inside) {
            if *len >= dest.prefix_len() {
                consider(earlier);
            }
        }
        by_dest
            .entry((u32::from(dest.network()), dest.prefix_len()))
            .or_default()
            .push((source, level));
        lengths |= 1 << dest.prefix_len();
        if out.len() <= level {
            out.resize_with(level + 1, BTreeSet::new);
        }
        out[level].insert((source, dest, chain));
    }
    out
}

/// The table read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftState {
    /// Chains with the read-back of their definition and rules, in order.
    pub chains: BTreeMap<String, (Value, Vec<Value>)>,
    /// Maps: `None` when its type or an element is not of the shape this module writes.
    pub maps: BTreeMap<String, Option<BTreeSet<Element>>>,
    pub other_objects: usize,
}

fn run_nft(ns: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns, "nft"]).args(args);
    let output = run_with_input(command, input.unwrap_or_default().as_bytes().to_vec())
        .map_err(|e| format!("nft in {ns}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "nft {} in {ns}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// `true` when `nft` can run here.
pub fn available() -> bool {
    Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Reads the table back (`None`: there is none).
pub fn read(ns: &str) -> Result<Option<NftState>, String> {
    let text = match run_nft(ns, &["-j", "list", "table", "ip", TABLE], None) {
        Ok(text) => text,
        Err(e) if e.contains("No such file or directory") => return Ok(None),
        Err(e) => return Err(e),
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("nft -j output: {e}"))?;
    let mut state = NftState::default();
    for object in value["nftables"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        if let Some(chain) = object.get("chain") {
            let name = chain["name"].as_str().unwrap_or_default().to_string();
            let mut definition = chain.clone();
            if let Some(map) = definition.as_object_mut() {
                for key in ["handle", "family", "table", "name"] {
                    map.remove(key);
                }
            }
            state.chains.entry(name).or_insert_with(|| (Value::Null, Vec::new())).0 = definition;
        } else if let Some(rule) = object.get("rule") {
            let name = rule["chain"].as_str().unwrap_or_default().to_string();
            state
                .chains
                .entry(name)
                .or_insert_with(|| (Value::Null, Vec::new()))
                .1
                .push(rule["expr"].clone());
        } else if let Some(map) = object.get("map") {
            let name = map["name"].as_str().unwrap_or_default().to_string();
            let elements = parse_map_name(&name).and_then(|key| parse_map(map, key));
            state.maps.insert(name, elements);
        } else if object.get("table").is_none() && object.get("metainfo").is_none() {
            state.other_objects += 1;
        }
    }
    Ok(Some(state))
}

/// A key part read back: a masked address, as a prefix of the map's class length.
fn parse_part(part: &Value, len: u8) -> Option<Ipv4Net> {
    let net = Ipv4Net::new(part.as_str()?.parse().ok()?, len).ok()?;
    // A key with host bits set is not one this module wrote.
    (net.trunc() == net).then_some(net)
}

fn parse_map(map: &Value, (_, source_len, dest_len): MapKey) -> Option<BTreeSet<Element>> {
    if map["type"] != json!(["ipv4_addr", "ipv4_addr"]) || map["map"] != "verdict" || !map["flags"].is_null() {
        return None;
    }
    let mut elements = BTreeSet::new();
    for element in map["elem"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let parts = element[0]["concat"].as_array()?;
        let [source, dest] = parts.as_slice() else { return None };
        let target = element[1]["goto"]["target"].as_str()?;
        elements.insert((
            parse_part(source, source_len)?,
            parse_part(dest, dest_len)?,
            target.to_string(),
        ));
    }
    Some(elements)
}

fn mask(len: u8) -> Ipv4Addr {
    Ipv4Net::new(Ipv4Addr::UNSPECIFIED, len).expect("len <= 32").netmask()
}

/// `ip saddr & MASK` (plain `ip saddr` for /32, as nft prints it back).
fn key_part_text(field: &str, len: u8) -> String {
    if len == 32 {
        format!("ip {field}")
    } else {
        format!("ip {field} & {}", mask(len))
    }
}

fn key_part_json(field: &str, len: u8) -> Value {
    let payload = json!({"payload": {"protocol": "ip", "field": field}});
    if len == 32 {
        payload
    } else {
        json!({"&": [payload, mask(len).to_string()]})
    }
}

fn mark_rule(mark: u32) -> Value {
    json!([{"mangle": {"key": {"meta": {"key": "mark"}}, "value": mark}}, {"accept": null}])
}

fn map_rule(vpc_if: &str, key: MapKey) -> Value {
    json!([
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": vpc_if}},
        {"vmap": {
            "key": {"concat": [key_part_json("saddr", key.1), key_part_json("daddr", key.2)]},
            "data": format!("@{}", map_name(key)),
        }}
    ])
}

fn prerouting_definition() -> Value {
    json!({"type": "filter", "hook": "prerouting", "prio": PREROUTING_PRIORITY, "policy": "accept"})
}

fn key_text((source, dest, _): &Element) -> String {
    format!("{} . {}", source.network(), dest.network())
}

fn element_text(element: &Element) -> String {
    format!("{} : goto {}", key_text(element), element.2)
}

/// Elements per `nft` line (keeps single lines of a 10,000-route script reasonable).
const ELEMENTS_PER_LINE: usize = 2000;

fn element_lines(out: &mut Vec<String>, verb: &str, map: &str, items: Vec<String>) {
    for chunk in items.chunks(ELEMENTS_PER_LINE) {
        out.push(format!("{verb} element ip {TABLE} {map} {{ {} }}", chunk.join(", ")));
    }
}

/// The whole table from scratch, replacing whatever is there, as one transaction.
fn rebuild(want: &NftWant) -> Vec<String> {
    let mut lines = vec![
        format!("add table ip {TABLE}"),
        format!("delete table ip {TABLE}"),
        format!("add table ip {TABLE}"),
    ];
    for (chain, mark) in &want.mark_chains {
        lines.push(format!("add chain ip {TABLE} {chain}"));
        lines.push(format!("add rule ip {TABLE} {chain} meta mark set {mark:#x} accept"));
    }
    let maps = want.maps();
    for (key, elements) in &maps {
        let name = map_name(*key);
        lines.push(format!(
            "add map ip {TABLE} {name} {{ type ipv4_addr . ipv4_addr : verdict; }}"
        ));
        element_lines(&mut lines, "add", &name, elements.iter().map(element_text).collect());
    }
    lines.push(format!(
        "add chain ip {TABLE} {PREROUTING} {{ type filter hook prerouting priority mangle; policy accept; }}"
    ));
    for key in maps.keys() {
        lines.push(format!(
            "add rule ip {TABLE} {PREROUTING} iifname \"{}\" {} . {} vmap @{}",
            want.vpc_if,
            key_part_text("saddr", key.1),
            key_part_text("daddr", key.2),
            map_name(*key)
        ));
    }
    lines
}

/// The `nft -f` script that makes `found` what `want` says (`None`: in sync). Only elements
/// differ → element updates; anything else → the table is rebuilt (atomically).
pub fn diff(want: Option<&NftWant>, found: Option<&NftState>) -> Option<Vec<String>> {
    let (want, found) = match (want, found) {
        (None, None) => return None,
        (None, Some(_)) => return Some(vec![format!("delete table ip {TABLE}")]),
        (Some(want), None) => return Some(rebuild(want)),
        (Some(want), Some(found)) => (want, found),
    };
    let expected = assumed_state(want);
    let map_names: BTreeSet<&String> = expected.maps.keys().collect();
    let shape_matches = found.other_objects == 0
        && found.chains == expected.chains
        && found.maps.keys().collect::<BTreeSet<_>>() == map_names
        && found.maps.values().all(Option::is_some);
    if !shape_matches {
        return Some(rebuild(want));
    }
    let mut deletes = Vec::new();
    let mut adds = Vec::new();
    for (name, wanted) in &expected.maps {
        let (Some(Some(current)), Some(wanted)) = (found.maps.get(name), wanted) else {
            continue;
        };
        element_lines(
            &mut deletes,
            "delete",
            name,
            current.difference(wanted).map(key_text).collect(),
        );
        element_lines(
            &mut adds,
            "add",
            name,
            wanted.difference(current).map(element_text).collect(),
        );
    }
    if deletes.is_empty() && adds.is_empty() {
        return None;
    }
    // Deletes first: a group changing its chain is deleted, then added again.
    deletes.append(&mut adds);
    Some(deletes)
}

/// The read-back `want` would give once in force (the base of a quick update).
pub fn assumed_state(want: &NftWant) -> NftState {
    let mut chains: BTreeMap<String, (Value, Vec<Value>)> = want
        .mark_chains
        .iter()
        .map(|(chain, mark)| (chain.clone(), (json!({}), vec![mark_rule(*mark)])))
        .collect();
    let maps = want.maps();
    let map_rules = maps.keys().map(|key| map_rule(&want.vpc_if, *key)).collect();
    chains.insert(PREROUTING.to_string(), (prerouting_definition(), map_rules));
    NftState {
        chains,
        maps: maps
            .into_iter()
            .map(|(key, elements)| (map_name(key), Some(elements)))
            .collect(),
        other_objects: 0,
    }
}

/// Runs a script as one `nft -f` transaction.
pub fn apply(ns: &str, lines: &[String]) -> Result<(), String> {
    let mut script = lines.join("\n");
    script.push('\n');
    run_nft(ns, &["-f", "-"], Some(&script)).map(|_| ())
}

/// The maps of a read-back in evaluation order.
pub fn map_order(found: &NftState) -> Vec<MapKey> {
    let mut keys: Vec<MapKey> = found.maps.keys().filter_map(|name| parse_map_name(name)).collect();
    keys.sort();
    keys
}

/// The packet's key in a map of `key`'s class: its addresses masked to the class lengths.
pub fn masked(key: MapKey, source: Ipv4Addr, dest: Ipv4Addr) -> (Ipv4Net, Ipv4Net) {
    let net = |addr, len| Ipv4Net::new(addr, len).expect("len <= 32").trunc();
    (net(source, key.1), net(dest, key.2))
}

/// The first map holding an element matching the packet, from a read-back.
pub fn first_match(found: &NftState, source: Ipv4Addr, dest: Ipv4Addr) -> Option<(MapKey, String)> {
    map_order(found).into_iter().find_map(|key| {
        let elements = found.maps.get(&map_name(key))?.as_ref()?;
        let (s, d) = masked(key, source, dest);
        elements
            .range((s, d, String::new())..)
            .next()
            .filter(|(es, ed, _)| (*es, *ed) == (s, d))
            .map(|(_, _, chain)| (key, chain.clone()))
    })
}

/// The kernel's own answer for one map (`nft get element` with the packet's masked key, as
/// the prerouting rule builds it): the chain, or `None`.
pub fn kernel_get(ns: &str, key: MapKey, source: Ipv4Addr, dest: Ipv4Addr) -> Result<Option<String>, String> {
    let (s, d) = masked(key, source, dest);
    let element = format!("{{ {} . {} }}", s.network(), d.network());
    match run_nft(ns, &["get", "element", "ip", TABLE, &map_name(key), &element], None) {
        Ok(text) => Ok(text.split("goto ").nth(1).map(|rest| {
            rest.split(|c: char| c.is_whitespace() || c == '}' || c == ',')
                .next()
                .unwrap_or("")
                .to_string()
        })),
        Err(e) if e.contains("No such file or directory") => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    #[test]
    fn overlapping_groups_go_to_later_levels() {
        let placed = |rank: u8, s: &str, d: &str, c: &str| ((rank, 0, 0, 0), net(s), net(d), c.to_string());
        let levels = levels(vec![
            placed(2, "10.0.0.0/8", "192.168.0.0/16", "c1"),
            placed(1, "10.0.0.0/24", "192.168.1.0/24", "c0"),
            placed(3, "11.0.0.0/8", "192.168.0.0/16", "c1"),
            placed(4, "10.0.0.0/16", "0.0.0.0/0", "c2"),
        ]);
        assert_eq!(levels.len(), 3);
        assert!(levels[0].contains(&(net("10.0.0.0/24"), net("192.168.1.0/24"), "c0".into())));
        assert!(levels[0].contains(&(net("11.0.0.0/8"), net("192.168.0.0/16"), "c1".into())));
        assert!(levels[1].contains(&(net("10.0.0.0/8"), net("192.168.0.0/16"), "c1".into())));
        assert!(levels[2].contains(&(net("10.0.0.0/16"), net("0.0.0.0/0"), "c2".into())));
    }

    #[test]
    fn element_diff_or_rebuild() {
        let want = NftWant {
            vpc_if: "vrvpc".into(),
            mark_chains: [("c0".to_string(), 7)].into(),
            levels: vec![[(net("10.0.0.0/8"), net("1.0.0.0/8"), "c0".to_string())].into()],
        };
        assert_eq!(diff(None, None), None);
        assert!(diff(Some(&want), None)
            .unwrap()
            .iter()
            .any(|l| l.starts_with("delete table")));
        let mut found = NftState::default();
        found.chains.insert("c0".into(), (json!({}), vec![mark_rule(7)]));
        found.chains.insert(
            PREROUTING.into(),
            (prerouting_definition(), vec![map_rule("vrvpc", (0, 8, 8))]),
        );
        found.maps.insert("m0_8_8".into(), Some(BTreeSet::new()));
        assert_eq!(
            diff(Some(&want), Some(&found)).unwrap(),
            vec!["add element ip vpnroute m0_8_8 { 10.0.0.0 . 1.0.0.0 : goto c0 }".to_string()]
        );
        found.maps.insert("m0_8_8".into(), Some(want.levels[0].clone()));
        assert_eq!(diff(Some(&want), Some(&found)), None);
        found.chains.get_mut("c0").unwrap().1.push(mark_rule(8));
        assert!(diff(Some(&want), Some(&found)).unwrap()[1].starts_with("delete table"));
    }

    proptest! {
        /// Levels are disjoint and the first level's match is the first match in rank order.
        #[test]
        fn first_level_match_is_first_rank_match(
            raw in prop::collection::btree_map((0u8..4, 0u8..4, 0u8..3, 0u8..3), (0u8..3, 0u8..4), 1..24),
            probes in prop::collection::vec((0u8..4, 0u8..4), 16),
        ) {
            let lens = [8u8, 16, 24];
            let groups: Vec<Placed> = raw
                .iter()
                .enumerate()
                .map(|(i, (&(s, d, sl, dl), &(prio, chain)))| {
                    let source = Ipv4Net::new(Ipv4Addr::new(10, s, 0, 0), lens[sl as usize]).unwrap().trunc();
                    let dest = Ipv4Net::new(Ipv4Addr::new(20, d, 0, 0), lens[dl as usize]).unwrap().trunc();
                    ((prio, 32 - dest.prefix_len(), 32 - source.prefix_len(), i as u64), source, dest, format!("c{chain}"))
                })
                .collect();
            let mut unique = BTreeMap::new();
            for g in groups {
                unique.entry((g.1, g.2)).or_insert(g);
            }
            let groups: Vec<Placed> = unique.into_values().collect();
            let levels = levels(groups.clone());
            for level in &levels {
                let items: Vec<_> = level.iter().collect();
                for (i, a) in items.iter().enumerate() {
                    for b in &items[i + 1..] {
                        prop_assert!(!(overlaps(a.0, b.0) && overlaps(a.1, b.1)), "{:?} overlaps {:?}", a, b);
                    }
                }
            }
            let mut state = NftState::default();
            let want = NftWant { levels: levels.clone(), ..NftWant::default() };
            for (key, elements) in want.maps() {
                state.maps.insert(map_name(key), Some(elements));
            }
            let mut sorted = groups.clone();
            sorted.sort_by_key(|g| g.0);
            for (s, d) in probes {
                let (source, dest) = (Ipv4Addr::new(10, s, 1, 1), Ipv4Addr::new(20, d, 1, 1));
                let expected = sorted.iter().find(|g| g.1.contains(&source) && g.2.contains(&dest)).map(|g| g.3.clone());
                prop_assert_eq!(first_match(&state, source, dest).map(|m| m.1), expected);
            }
        }
    }
}
