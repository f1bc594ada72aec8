//! Signature v1: HMAC-SHA1 over the sorted, re-encoded parameters (`Signature` parameter).
//!
//! This module owns the v1 algorithm in both directions — computing the string-to-sign
//! and signature for verification, and signing parameter lists for a client or load
//! generator ([`v1_signed_query`]).
//!
//! ```text
//! canonical    = join("&", pe(k) "=" pe(v))   for all params but Signature, sorted by key bytes
//! StringToSign = METHOD "&" pe("/") "&" pe(canonical)
//! Signature    = base64(HMAC-SHA1(key = secret + "&", StringToSign))
//! ```
//!
//! Parameters are always the *decoded* ones, re-encoded canonically: the raw query text is
//! never signed (clients disagree on `+`/`%20`, `*`/`%2A`, …). Empty values are kept
//! (`SignatureType=`). Equal keys keep their wire order (stable sort). METHOD is the real
//! HTTP method (`GET` for pop-core's default, `POST` otherwise).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::encoding::{percent_encode_into, percent_encode_twice_into};
use crate::params::{encode_pairs, Params};

type HmacSha1 = Hmac<Sha1>;

/// The v1 string-to-sign of `params` (all but `Signature`) for HTTP `method`.
pub fn v1_string_to_sign(method: &str, params: &Params) -> String {
    let mut sorted: Vec<&(String, String)> = params.as_slice().iter().filter(|(k, _)| k != "Signature").collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));

    let payload: usize = sorted.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(method.len() + 5 + payload * 2);
    out.push_str(method);
    out.push_str("&%2F&");
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push_str("%26"); // pe("&")
        }
        percent_encode_twice_into(&mut out, k);
        out.push_str("%3D"); // pe("=")
        percent_encode_twice_into(&mut out, v);
    }
    out
}

fn v1_mac(secret: &str, string_to_sign: &str) -> HmacSha1 {
    let mut key = String::with_capacity(secret.len() + 1);
    key.push_str(secret);
    key.push('&');
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha1::new_from_slice(key.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(string_to_sign.as_bytes());
    mac
}

/// `base64(HMAC-SHA1(secret + "&", string_to_sign))`.
pub fn v1_signature(secret: &str, string_to_sign: &str) -> String {
    let tag = v1_mac(secret, string_to_sign).finalize().into_bytes();
    base64::engine::general_purpose::STANDARD.encode(tag)
}

/// Constant-time check of a base64 v1 signature.
pub(crate) fn v1_verify(secret: &str, string_to_sign: &str, provided_b64: &str) -> bool {
    let mut buf = [0u8; 32];
    let Ok(n) = base64::engine::general_purpose::STANDARD.decode_slice(provided_b64, &mut buf) else {
        return false;
    };
    let Some(provided) = buf.get(..n) else {
        return false;
    };
    v1_mac(secret, string_to_sign).verify_slice(provided).is_ok()
}

/// Signs `params` for `method` and returns the request's query string (or form body):
/// the parameters in their given order, RFC 3986-encoded, with `&Signature=…` last.
///
/// Any `Signature` already in `params` is dropped. The caller supplies the common
/// parameters (`Action`, `Version`, `Format`, `AccessKeyId`, `SignatureMethod=HMAC-SHA1`,
/// `SignatureVersion=1.0`, `SignatureNonce`, `Timestamp`, optional `SecurityToken`):
///
/// ```
/// use vpnroute_wire::{parse, v1_signed_query, verify, Params, RawRequest};
/// let params: Params = [
///     ("Action", "DescribeVpnGateway"), ("Version", "2016-04-28"), ("Format", "JSON"),
///     ("AccessKeyId", "testid"), ("SignatureMethod", "HMAC-SHA1"),
///     ("SignatureVersion", "1.0"), ("SignatureNonce", "6a4c9e"),
///     ("Timestamp", "2024-05-10T08:00:00Z"), ("RegionId", "cn-hangzhou"),
/// ].into_iter().collect();
/// let query = v1_signed_query("GET", &params, "testsecret");
/// let req = RawRequest { method: "GET", path: "/", raw_query: &query, headers: &[], body: b"" };
/// let parsed = parse(&req).unwrap();
/// assert!(verify(&req, &parsed, "testsecret").is_ok());
/// ```
pub fn v1_signed_query(method: &str, params: &Params, secret: &str) -> String {
    let signature = v1_signature(secret, &v1_string_to_sign(method, params));
    let mut out = encode_pairs(params.iter().filter(|(k, _)| *k != "Signature"));
    if !out.is_empty() {
        out.push('&');
    }
    out.push_str("Signature=");
    percent_encode_into(&mut out, &signature);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of alibaba-api-surface.md §4.3 (computed with the Python SDK).
    #[test]
    fn api_surface_vector() {
        let params: Params = [
            ("AccessKeyId", "testid"),
            ("Action", "CreateVpnRouteEntry"),
            ("Description", "my route"),
            ("Format", "JSON"),
            ("NextHop", "vco-bp15oes1py4i66rmd****"),
            ("PublishVpc", "true"),
            ("RegionId", "cn-hangzhou"),
            ("RouteDest", "10.0.0.0/24"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0a00000000"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-05-23T12:46:24Z"),
            ("Version", "2016-04-28"),
            ("VpnGatewayId", "vpn-bp1a3kqjiiq9legfx****"),
            ("Weight", "100"),
        ]
        .into_iter()
        .rev() // order on the wire must not matter
        .collect();
        let sts = v1_string_to_sign("POST", &params);
        assert_eq!(
            sts,
            "POST&%2F&AccessKeyId%3Dtestid%26Action%3DCreateVpnRouteEntry%26Description%3Dmy%2520route%26Format%3DJSON%26NextHop%3Dvco-bp15oes1py4i66rmd%252A%252A%252A%252A%26PublishVpc%3Dtrue%26RegionId%3Dcn-hangzhou%26RouteDest%3D10.0.0.0%252F24%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0a00000000%26SignatureVersion%3D1.0%26Timestamp%3D2016-05-23T12%253A46%253A24Z%26Version%3D2016-04-28%26VpnGatewayId%3Dvpn-bp1a3kqjiiq9legfx%252A%252A%252A%252A%26Weight%3D100"
        );
        assert_eq!(v1_signature("testsecret", &sts), "VPIOqSfRkz3DBHKkM4vQ2HvTT3A=");
        assert!(v1_verify("testsecret", &sts, "VPIOqSfRkz3DBHKkM4vQ2HvTT3A="));
        assert!(!v1_verify("testsecret2", &sts, "VPIOqSfRkz3DBHKkM4vQ2HvTT3A="));
    }

    #[test]
    fn sort_is_by_bytes_and_signature_excluded() {
        let params: Params = [("b", "1"), ("Signature", "x"), ("B", "2"), ("a", ""), ("_", "3")]
            .into_iter()
            .collect();
        assert_eq!(
            v1_string_to_sign("GET", &params),
            "GET&%2F&B%3D2%26_%3D3%26a%3D%26b%3D1"
        );
        assert_eq!(v1_string_to_sign("GET", &Params::new()), "GET&%2F&");
    }

    #[test]
    fn verify_rejects_garbage_signatures() {
        let sts = "GET&%2F&";
        let good = v1_signature("s", sts);
        assert!(v1_verify("s", sts, &good));
        for bad in ["", "!!!", "AAAA", &"A".repeat(400), &good[..good.len() - 2]] {
            assert!(!v1_verify("s", sts, bad), "{bad}");
        }
    }

    #[test]
    fn signed_query_drops_old_signature() {
        let params: Params = [("A", "x y"), ("Signature", "old")].into_iter().collect();
        let q = v1_signed_query("GET", &params, "s");
        let sig = v1_signature("s", "GET&%2F&A%3Dx%2520y");
        let mut want = "A=x%20y&Signature=".to_owned();
        percent_encode_into(&mut want, &sig);
        assert_eq!(q, want);
        assert_eq!(
            v1_signed_query("GET", &Params::new(), "s"),
            format!("Signature={}", crate::percent_encode(&v1_signature("s", "GET&%2F&")))
        );
    }
}
