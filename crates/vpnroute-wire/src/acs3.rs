//! Signature v3: `ACS3-HMAC-SHA256` (`Authorization` header).
//!
//! This module owns the ACS3 algorithm in both directions — the canonical request,
//! string-to-sign and signature used for verification, and [`acs3_sign`], which builds
//! the headers a client (the project's load generator) must send.
//!
//! ```text
//! CanonicalRequest = METHOD \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n HashedPayload
//! StringToSign     = "ACS3-HMAC-SHA256\n" + hex(SHA-256(CanonicalRequest))
//! Signature        = hex(HMAC-SHA256(key = secret, StringToSign))
//! ```
//!
//! * CanonicalURI: the path as sent (`/` when empty).
//! * CanonicalQuery: the decoded **query** parameters only (never form-body ones),
//!   sorted by key (byte order, stable for equal keys), `k=pe(v)` joined by `&`. Keys are
//!   written as decoded, not re-encoded — the Python SDK encodes only values, and every
//!   real key is made of unreserved characters anyway.
//! * CanonicalHeaders: for each name of the `SignedHeaders` list (lower-cased, sorted,
//!   deduplicated): `name:value\n`, the value trimmed; a header sent several times
//!   contributes its trimmed values sorted and joined by `,`; a listed header that is
//!   absent contributes `name:\n` (and the signature then fails unless the client did the
//!   same). The SignedHeaders line is that normalised list joined by `;`.
//! * HashedPayload: hex SHA-256 of the raw body (the `x-acs-content-sha256` header is not
//!   trusted for this).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::encoding::{percent_encode_into, push_hex_lower};
use crate::params::Params;
use crate::request::{AuthInfo, ParsedRequest, RawRequest, ACS3_ALGORITHM};

type HmacSha256 = Hmac<Sha256>;

/// Hex SHA-256 of the empty body.
pub const EMPTY_BODY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Lower-case hex SHA-256 of `body` (the ACS3 HashedPayload / `x-acs-content-sha256`).
pub fn hashed_payload(body: &[u8]) -> String {
    if body.is_empty() {
        return EMPTY_BODY_SHA256.to_owned();
    }
    let mut out = String::with_capacity(64);
    push_hex_lower(&mut out, &Sha256::digest(body));
    out
}

/// Writes the canonical request from its parts. `signed` must be lower-case and sorted.
pub(crate) fn write_canonical_request(
    out: &mut String,
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    signed: &[String],
    body: &[u8],
) {
    out.push_str(method);
    out.push('\n');
    out.push_str(if path.is_empty() { "/" } else { path });
    out.push('\n');

    let mut sorted: Vec<&(String, String)> = query.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        percent_encode_into(out, v);
    }
    out.push('\n');

    for name in signed {
        out.push_str(name);
        out.push(':');
        let mut values = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim());
        if let Some(first) = values.next() {
            match values.next() {
                None => out.push_str(first),
                Some(second) => {
                    let mut all: Vec<&str> = vec![first, second];
                    all.extend(values);
                    all.sort_unstable();
                    out.push_str(&all.join(","));
                }
            }
        }
        out.push('\n');
    }
    out.push('\n');

    for (i, name) in signed.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(name);
    }
    out.push('\n');
    if body.is_empty() {
        out.push_str(EMPTY_BODY_SHA256);
    } else {
        push_hex_lower(out, &Sha256::digest(body));
    }
}

/// The ACS3 canonical request of `req`.
///
/// Uses the query parameters of `parsed` and the signed-header list of `parsed.auth`; for
/// a request that is not ACS3-signed the header block is empty.
pub fn acs3_canonical_request(req: &RawRequest<'_>, parsed: &ParsedRequest) -> String {
    let signed: &[String] = match &parsed.auth {
        AuthInfo::Acs3 { signed_headers, .. } => signed_headers,
        _ => &[],
    };
    let mut out = String::with_capacity(256 + req.raw_query.len() * 2 + signed.len() * 64);
    write_canonical_request(
        &mut out,
        req.method,
        req.path,
        parsed.query_params(),
        req.headers,
        signed,
        req.body,
    );
    out
}

/// `"ACS3-HMAC-SHA256\n" + hex(SHA-256(canonical_request))`.
pub fn acs3_string_to_sign(canonical_request: &str) -> String {
    let mut out = String::with_capacity(ACS3_ALGORITHM.len() + 1 + 64);
    out.push_str(ACS3_ALGORITHM);
    out.push('\n');
    push_hex_lower(&mut out, &Sha256::digest(canonical_request.as_bytes()));
    out
}

fn acs3_mac(secret: &str, string_to_sign: &str) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(string_to_sign.as_bytes());
    mac
}

/// `hex(HMAC-SHA256(secret, string_to_sign))` (lower-case).
pub fn acs3_signature(secret: &str, string_to_sign: &str) -> String {
    let mut out = String::with_capacity(64);
    push_hex_lower(&mut out, &acs3_mac(secret, string_to_sign).finalize().into_bytes());
    out
}

/// Constant-time check of a hex ACS3 signature (either hex case).
pub(crate) fn acs3_verify(secret: &str, string_to_sign: &str, provided_hex: &str) -> bool {
    let mut buf = [0u8; 32];
    if hex::decode_to_slice(provided_hex, &mut buf).is_err() {
        return false;
    }
    acs3_mac(secret, string_to_sign).verify_slice(&buf).is_ok()
}

/// What [`acs3_sign`] needs to sign a request.
#[derive(Debug, Clone, Copy)]
pub struct Acs3SignInput<'a> {
    /// HTTP method (`POST` for every Tea client).
    pub method: &'a str,
    /// Path (`/`).
    pub path: &'a str,
    /// Decoded query parameters (operation parameters; no `Action`/`Version`).
    pub query: &'a Params,
    /// Headers to send besides the ones `acs3_sign` adds: at least `host`, `x-acs-action`,
    /// `x-acs-version`, plus e.g. `content-type` when there is a body.
    pub headers: &'a [(String, String)],
    /// Raw body (empty for the usual RPC call).
    pub body: &'a [u8],
    /// Access key id (`Credential=`).
    pub access_key_id: &'a str,
    /// Access key secret.
    pub secret: &'a str,
    /// `x-acs-date` value, `YYYY-MM-DDThh:mm:ssZ`.
    pub date: &'a str,
    /// `x-acs-signature-nonce` value.
    pub nonce: &'a str,
    /// STS token: adds `x-acs-security-token` and `x-acs-accesskey-id`.
    pub security_token: Option<&'a str>,
    /// `false`: sign `host`, `content-type` and `x-acs-*` (Node Tea, Alibaba docs);
    /// `true`: sign every header given (Python Tea).
    pub sign_all_headers: bool,
}

/// A request signed by [`acs3_sign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acs3Signed {
    /// The query string to send (`pe(k)=pe(v)&…`, in the given order).
    pub raw_query: String,
    /// Every header to send: the input headers (any `Authorization` dropped), then the
    /// added `x-acs-*` headers and `Authorization`. Existing `x-acs-date`,
    /// `x-acs-signature-nonce`, `x-acs-content-sha256`, `x-acs-security-token` and
    /// `x-acs-accesskey-id` headers are overwritten in place.
    pub headers: Vec<(String, String)>,
    /// The canonical request that was signed.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
    /// The hex signature (also inside the `Authorization` header).
    pub signature: String,
}

fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    match headers.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
        Some(slot) => value.clone_into(&mut slot.1),
        None => headers.push((name.to_owned(), value.to_owned())),
    }
}

/// Signs a request with ACS3-HMAC-SHA256, the way the Tea SDKs do.
///
/// Deterministic: date and nonce come from the caller.
///
/// ```
/// use vpnroute_wire::{acs3_sign, parse, verify, Acs3SignInput, Params, RawRequest};
/// let query: Params = [("RegionId", "cn-hangzhou")].into_iter().collect();
/// let headers = vec![
///     ("host".to_string(), "127.0.0.1:18080".to_string()),
///     ("x-acs-action".to_string(), "DescribeVpnGateway".to_string()),
///     ("x-acs-version".to_string(), "2016-04-28".to_string()),
/// ];
/// let signed = acs3_sign(&Acs3SignInput {
///     method: "POST", path: "/", query: &query, headers: &headers, body: b"",
///     access_key_id: "testid", secret: "testsecret",
///     date: "2024-05-10T08:00:00Z", nonce: "3f1c2f0e", security_token: None,
///     sign_all_headers: false,
/// });
/// let req = RawRequest {
///     method: "POST", path: "/", raw_query: &signed.raw_query,
///     headers: &signed.headers, body: b"",
/// };
/// let parsed = parse(&req).unwrap();
/// assert!(verify(&req, &parsed, "testsecret").is_ok());
/// ```
pub fn acs3_sign(input: &Acs3SignInput<'_>) -> Acs3Signed {
    let mut headers: Vec<(String, String)> = input
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        .cloned()
        .collect();
    set_header(&mut headers, "x-acs-date", input.date);
    set_header(&mut headers, "x-acs-signature-nonce", input.nonce);
    set_header(&mut headers, "x-acs-content-sha256", &hashed_payload(input.body));
    if let Some(token) = input.security_token {
        set_header(&mut headers, "x-acs-accesskey-id", input.access_key_id);
        set_header(&mut headers, "x-acs-security-token", token);
    }

    let mut signed: Vec<String> = headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| input.sign_all_headers || k == "host" || k == "content-type" || k.starts_with("x-acs-"))
        .collect();
    signed.sort_unstable();
    signed.dedup();

    let mut canonical_request = String::with_capacity(512);
    write_canonical_request(
        &mut canonical_request,
        input.method,
        input.path,
        input.query.as_slice(),
        &headers,
        &signed,
        input.body,
    );
    let string_to_sign = acs3_string_to_sign(&canonical_request);
    let signature = acs3_signature(input.secret, &string_to_sign);
    let authorization = format!(
        "{ACS3_ALGORITHM} Credential={},SignedHeaders={},Signature={signature}",
        input.access_key_id,
        signed.join(";"),
    );
    headers.push(("Authorization".to_owned(), authorization));

    Acs3Signed {
        raw_query: input.query.to_query_string(),
        headers,
        canonical_request,
        string_to_sign,
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// The computed example of alibaba-api-surface.md §4.4.
    #[test]
    fn api_surface_vector() {
        let query: Params = [
            ("Description", "my route"),
            ("NextHop", "vco-bp15oes1py4i66rmd****"),
            ("PublishVpc", "true"),
            ("RegionId", "cn-hangzhou"),
            ("RouteDest", "10.0.0.0/24"),
            ("VpnGatewayId", "vpn-bp1a3kqjiiq9legfx****"),
            ("Weight", "100"),
        ]
        .into_iter()
        .collect();
        let headers = s(&[
            ("host", "vpc.cn-hangzhou.aliyuncs.com"),
            ("x-acs-action", "CreateVpnRouteEntry"),
            ("x-acs-version", "2016-04-28"),
        ]);
        let signed = acs3_sign(&Acs3SignInput {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            body: b"",
            access_key_id: "testid",
            secret: "testsecret",
            date: "2023-10-26T09:01:01Z",
            nonce: "d410180a5abf7fe235dd9b74aca91fc0",
            security_token: None,
            sign_all_headers: false,
        });
        assert_eq!(
            signed.string_to_sign,
            "ACS3-HMAC-SHA256\n3697436b8d65cb564cb2ade128916a57f5972d65237e22c81e7a4b39f7375f29"
        );
        assert_eq!(
            signed.signature,
            "41ae2cf3ca9327a7911e9172eec4fa517b3b1c248f1614627b14f89b6fe9d67e"
        );
        let auth = signed
            .headers
            .iter()
            .find(|(k, _)| k == "Authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(auth, Some("ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=41ae2cf3ca9327a7911e9172eec4fa517b3b1c248f1614627b14f89b6fe9d67e"));
        assert!(acs3_verify(
            "testsecret",
            &signed.string_to_sign,
            &signed.signature.to_uppercase()
        ));
        assert!(!acs3_verify("testsecret", &signed.string_to_sign, "zz"));
        assert!(!acs3_verify("other", &signed.string_to_sign, &signed.signature));
    }

    #[test]
    fn repeated_headers_sorted_and_joined() {
        let headers = s(&[("X-Acs-B", " 2 "), ("x-acs-a", "v"), ("x-acs-b", "1")]);
        let mut out = String::new();
        write_canonical_request(
            &mut out,
            "GET",
            "",
            &s(&[("b", "*"), ("a", ""), ("a", "z z")]),
            &headers,
            &["x-acs-a".to_owned(), "x-acs-b".to_owned(), "x-acs-c".to_owned()],
            b"",
        );
        assert_eq!(
            out,
            format!(
                "GET\n/\na=&a=z%20z&b=%2A\nx-acs-a:v\nx-acs-b:1,2\nx-acs-c:\n\nx-acs-a;x-acs-b;x-acs-c\n{EMPTY_BODY_SHA256}"
            )
        );
    }

    #[test]
    fn hashed_payload_of_body() {
        assert_eq!(hashed_payload(b""), EMPTY_BODY_SHA256);
        assert_eq!(
            hashed_payload(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn sts_and_sign_all_headers() {
        let query = Params::new();
        let headers = s(&[
            ("host", "h"),
            ("user-agent", "ua"),
            ("Authorization", "stale"),
            ("x-acs-date", "old"),
        ]);
        let signed = acs3_sign(&Acs3SignInput {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            body: b"",
            access_key_id: "ak",
            secret: "sk",
            date: "2024-01-01T00:00:00Z",
            nonce: "n",
            security_token: Some("tok"),
            sign_all_headers: true,
        });
        let names: Vec<&str> = signed.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "host",
                "user-agent",
                "x-acs-date",
                "x-acs-signature-nonce",
                "x-acs-content-sha256",
                "x-acs-accesskey-id",
                "x-acs-security-token",
                "Authorization"
            ]
        );
        assert_eq!(signed.headers[2].1, "2024-01-01T00:00:00Z");
        assert!(signed.headers[7].1.contains("SignedHeaders=host;user-agent;x-acs-accesskey-id;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce,"));
        assert_eq!(signed.raw_query, "");
    }
}
