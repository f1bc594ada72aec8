//! Request parsing (query, form body, headers) and, when it parses, both signature
//! verifications: never a panic, and a parsed request's parameters stay within the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpnroute_wire::{parse, verify, RawRequest};

/// Split `data` at the first three `\n`-free separators (0xff): query, headers, body.
fn split(data: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0xff);
    (
        parts.next().unwrap_or(&[]),
        parts.next().unwrap_or(&[]),
        parts.next().unwrap_or(&[]),
    )
}

fuzz_target!(|data: &[u8]| {
    let (query, headers, body) = split(data);
    let query = String::from_utf8_lossy(query);
    // Header lines `name: value`; a few fixed ones make the interesting paths reachable.
    let mut header_vec: Vec<(String, String)> = String::from_utf8_lossy(headers)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    if body.first() == Some(&b'F') {
        header_vec.push(("content-type".into(), "application/x-www-form-urlencoded".into()));
    }
    for method in ["GET", "POST"] {
        let raw = RawRequest {
            method,
            path: "/",
            raw_query: &query,
            headers: &header_vec,
            body,
        };
        if let Ok(parsed) = parse(&raw) {
            assert!(parsed.params.len() <= vpnroute_wire::request::MAX_PARAMS);
            let _ = verify(&raw, &parsed, "secret");
        }
    }
});
