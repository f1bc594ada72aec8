//! Parameter decoding and typed parameter access: form decoding, the typed getters
//! (integers, booleans, paging, tags), names and descriptions — never a panic; decoded
//! values round-trip through the client-side encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpnroute_domain::params::Params;
use vpnroute_domain::validate;
use vpnroute_wire::{parse_urlencoded, percent_encode, ParamSource};

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = parse_urlencoded(data, ParamSource::Body) else {
        return;
    };
    // Encoding what was decoded and decoding it again gives the same pairs.
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let again = parse_urlencoded(encoded.join("&").as_bytes(), ParamSource::Body).expect("re-encoded parses");
    let non_empty = |ps: &[(String, String)]| {
        ps.iter()
            .filter(|(k, v)| !k.is_empty() || !v.is_empty())
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(non_empty(&again), non_empty(&pairs));
    let p = Params::new(&pairs);
    for (k, v) in pairs.iter().take(16) {
        let _ = p.opt_i64(k);
        let _ = p.opt_bool(k);
        let _ = p.opt_int_in(k, 1, 100);
        let _ = vpnroute_domain::rules::parse_weight(v);
        let _ = vpnroute_domain::rules::parse_priority(v, "Priority");
        let _ = validate::name(v);
        let _ = validate::description(v);
    }
    let _ = p.paging();
    let _ = p.tags("Tag");
});
