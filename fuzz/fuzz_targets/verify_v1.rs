//! v1 (HMAC-SHA1) signatures: a request signed by the client code always verifies after
//! parsing, whatever the parameters; the same request with any parameter changed never does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpnroute_wire::{parse, v1_signed_query, verify, Params, RawRequest};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut params = Params::new();
    for (i, field) in text.split('\u{1}').take(64).enumerate() {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        if k.is_empty() {
            continue;
        }
        params.push(format!("{k}{i}"), v);
    }
    for (k, v) in [
        ("AccessKeyId", "ak"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", "n"),
        ("Timestamp", "2024-05-10T08:00:00Z"),
    ] {
        params.push(k, v);
    }
    let query = v1_signed_query("GET", &params, "secret");
    let raw = RawRequest {
        method: "GET",
        path: "/",
        raw_query: &query,
        headers: &[],
        body: b"",
    };
    let parsed = parse(&raw).expect("a signed query parses");
    assert!(
        verify(&raw, &parsed, "secret").is_ok(),
        "own signature rejected: {query}"
    );
    assert!(verify(&raw, &parsed, "other").is_err());
    // Tampering with the request (an extra parameter) breaks the signature.
    let tampered = format!("{query}&Extra=1");
    let raw = RawRequest {
        raw_query: &tampered,
        ..raw
    };
    let parsed = parse(&raw).expect("still parses");
    assert!(verify(&raw, &parsed, "secret").is_err(), "tampered request verified");
});
