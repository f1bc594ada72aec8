//! CIDR parsing and the route rules: no panic; canonicalisation is idempotent, yields a
//! block without host bits, and whatever a route rule accepts is already canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpnroute_domain::validate;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let canon = validate::canonical_cidr(text);
    assert_eq!(validate::canonical_cidr(&canon), canon, "not idempotent for {text:?}");
    if let Some(net) = validate::parse_cidr(text) {
        let c = validate::parse_cidr(&canon).expect("canonical form parses");
        assert_eq!(c.addr(), c.network());
        assert_eq!(c.prefix_len(), net.prefix_len());
        assert!(c.contains(&net.addr()));
    }
    for accepted in [
        validate::route_dest(text),
        validate::route_source(text),
        validate::vpc_cidr(text),
    ]
    .into_iter()
    .flatten()
    {
        assert_eq!(accepted.to_string(), canon, "accepted {text:?} is not canonical");
    }
    let _ = validate::cidr_list(text, "LocalSubnet");
    let _ = validate::customer_gateway_ip(text);
});
