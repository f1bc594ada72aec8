//! ACS3-HMAC-SHA256 signatures: a request signed by the client code always verifies after
//! parsing, for any query, body and extra headers; a changed body never does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpnroute_wire::{acs3_sign, parse, verify, Acs3SignInput, Params, RawRequest};

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(head);
    let mut query = Params::new();
    let mut headers = vec![
        ("host".to_string(), "127.0.0.1".to_string()),
        ("x-acs-action".to_string(), "DescribeRegions".to_string()),
        ("x-acs-version".to_string(), "2016-04-28".to_string()),
    ];
    for (i, field) in text.split('\u{1}').take(32).enumerate() {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k.strip_prefix("h:") {
            // Header values as an HTTP stack delivers them: no line breaks, trimmed.
            Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
                let value = v.replace(['\r', '\n'], " ").trim().to_string();
                headers.push((format!("x-f{i}-{name}"), value));
            }
            _ if !k.is_empty() => query.push(format!("{k}{i}"), v),
            _ => {}
        }
    }
    let signed = acs3_sign(&Acs3SignInput {
        method: "POST",
        path: "/",
        query: &query,
        headers: &headers,
        body,
        access_key_id: "ak",
        secret: "secret",
        date: "2024-05-10T08:00:00Z",
        nonce: "n",
        security_token: None,
        sign_all_headers: true,
    });
    let raw = RawRequest {
        method: "POST",
        path: "/",
        raw_query: &signed.raw_query,
        headers: &signed.headers,
        body,
    };
    let parsed = parse(&raw).expect("a signed request parses");
    assert!(verify(&raw, &parsed, "secret").is_ok(), "own signature rejected");
    let mut other_body = body.to_vec();
    other_body.push(b'x');
    let raw = RawRequest {
        body: &other_body,
        ..raw
    };
    if let Ok(parsed) = parse(&raw) {
        assert!(verify(&raw, &parsed, "secret").is_err(), "changed body verified");
    }
});
