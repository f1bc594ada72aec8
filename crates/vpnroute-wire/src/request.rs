//! Turning a raw HTTP request into a [`ParsedRequest`].
//!
//! This module owns *what a request says*: its parameters (query + form body, decoded),
//! the API action and version, the requested response format, and which signature scheme
//! it uses with that scheme's credentials. It does **not** check the signature (see
//! [`crate::verify()`]), look up secrets, check timestamps or nonces, or validate
//! operation parameters — those are the server's jobs.
//!
//! Rules (from `sdk-wire.md` §0 and §7):
//! * Parameters: the query string, then — only when `Content-Type` is
//!   `application/x-www-form-urlencoded` (parameters such as `;charset=utf-8` ignored) —
//!   the body. pop-core POST sends *everything*, `Signature` included, in the body.
//! * `Action`/`Version`: the first non-empty `Action`/`Version` parameter, else the
//!   `x-acs-action`/`x-acs-version` header (ACS3 clients send only the headers).
//! * `Format`: [`Format::Xml`] only when the `Format` parameter equals `xml` in any case;
//!   JSON otherwise (ACS3 clients send no `Format`).
//! * Signature scheme:
//!   1. `Authorization` starting with `ACS3-` → [`AuthInfo::Acs3`]. The algorithm must be
//!      `ACS3-HMAC-SHA256` and the header must carry non-empty `Credential`,
//!      `SignedHeaders` and `Signature`; `x-acs-date` and `x-acs-signature-nonce` must be
//!      present. Headers that decide what the request means or protect it from replay
//!      (`x-acs-action`, `x-acs-version`, `x-acs-date`, `x-acs-signature-nonce`,
//!      `x-acs-security-token`, `x-acs-content-sha256`), when present, must be listed in
//!      `SignedHeaders` (every real client signs them) — otherwise `IncompleteSignature`.
//!   2. Else any of `Signature`, `AccessKeyId`, `SignatureMethod`, `SignatureVersion`,
//!      `SignatureNonce` as a parameter → [`AuthInfo::V1`]; then `AccessKeyId`,
//!      `Signature`, `SignatureMethod` (must be `HMAC-SHA1`, any case), `SignatureVersion`
//!      (must be `1.0`), `SignatureNonce` and `Timestamp` are all mandatory and checked in
//!      that order (`MissingParameter` names the first one missing or empty).
//!   3. Else an `Authorization` header of another scheme → `IncompleteSignature`.
//!   4. Else [`AuthInfo::Missing`] (the server decides; Alibaba would answer
//!      `MissingParameter` for `Signature`, see [`AuthInfo::require`]).
//! * Header names are matched case-insensitively; the first occurrence wins except in
//!   the ACS3 canonical headers, where repeated headers are combined.
//!
//! Cost: one `String` per decoded key and value plus one small `Vec`; nothing is copied
//! twice (query parameters are the leading slice of [`ParsedRequest::params`]).

use crate::encoding::{pair_count_hint, parse_urlencoded_into};
use crate::error::{ParamSource, WireError};
use crate::params::Params;

/// Most `&`-separated components accepted in the query and form body together (the
/// largest real request, CreateVpnConnection with 20 tags, has under 100). Counted before
/// any decoding, so a hostile body costs one byte scan.
pub const MAX_PARAMS: usize = 1000;

/// The media type whose body carries parameters.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The parts of an HTTP request the wire protocol needs; borrowed, framework-agnostic.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    /// HTTP method as received (`GET`, `POST`).
    pub method: &'a str,
    /// Request path as received, without the query (`/`).
    pub path: &'a str,
    /// Raw query string without the leading `?` (a leading `?` is tolerated).
    pub raw_query: &'a str,
    /// Headers in wire order; names as received, matched case-insensitively.
    pub headers: &'a [(String, String)],
    /// Raw request body.
    pub body: &'a [u8],
}

impl<'a> RawRequest<'a> {
    /// Value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        header_value(self.headers, name)
    }
}

/// First value of header `name` (ASCII case-insensitive) in `headers`.
pub(crate) fn header_value<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Response format requested by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// JSON (the default and what every observed client asks for).
    #[default]
    Json,
    /// XML (`Format=XML`, any case).
    Xml,
}

/// The signature scheme of a request and its credentials, as sent (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthInfo {
    /// v1: HMAC-SHA1 `Signature` parameter.
    V1 {
        /// `AccessKeyId` parameter.
        access_key_id: String,
        /// `Signature` parameter (base64).
        signature: String,
        /// `SignatureMethod` parameter (`HMAC-SHA1`).
        signature_method: String,
        /// `SignatureVersion` parameter (`1.0`).
        signature_version: String,
        /// `SignatureNonce` parameter (opaque).
        nonce: String,
        /// `Timestamp` parameter (`YYYY-MM-DDThh:mm:ssZ`, not validated here).
        timestamp: String,
        /// `SecurityToken` parameter (STS), if present and non-empty.
        security_token: Option<String>,
    },
    /// ACS3-HMAC-SHA256: `Authorization` header.
    Acs3 {
        /// `Credential=` of the `Authorization` header.
        access_key_id: String,
        /// `SignedHeaders=` of the `Authorization` header: lower-cased, sorted, deduplicated.
        signed_headers: Vec<String>,
        /// `Signature=` of the `Authorization` header (hex).
        signature: String,
        /// `x-acs-date` header (not validated here).
        date: String,
        /// `x-acs-signature-nonce` header (opaque).
        nonce: String,
        /// `x-acs-security-token` header (STS), if present and non-empty.
        security_token: Option<String>,
    },
    /// No signature at all.
    Missing,
}

impl AuthInfo {
    /// The access key id the request claims, if it is signed.
    pub fn access_key_id(&self) -> Option<&str> {
        match self {
            AuthInfo::V1 { access_key_id, .. } | AuthInfo::Acs3 { access_key_id, .. } => Some(access_key_id),
            AuthInfo::Missing => None,
        }
    }

    /// The anti-replay nonce (`SignatureNonce` / `x-acs-signature-nonce`).
    pub fn nonce(&self) -> Option<&str> {
        match self {
            AuthInfo::V1 { nonce, .. } | AuthInfo::Acs3 { nonce, .. } => Some(nonce),
            AuthInfo::Missing => None,
        }
    }

    /// The request time (`Timestamp` / `x-acs-date`), unparsed.
    pub fn timestamp(&self) -> Option<&str> {
        match self {
            AuthInfo::V1 { timestamp, .. } => Some(timestamp),
            AuthInfo::Acs3 { date, .. } => Some(date),
            AuthInfo::Missing => None,
        }
    }

    /// The STS security token, if any.
    pub fn security_token(&self) -> Option<&str> {
        match self {
            AuthInfo::V1 { security_token, .. } | AuthInfo::Acs3 { security_token, .. } => security_token.as_deref(),
            AuthInfo::Missing => None,
        }
    }

    /// `Ok(self)` if the request is signed, else `MissingParameter` for `Signature`.
    pub fn require(&self) -> Result<&Self, WireError> {
        match self {
            AuthInfo::Missing => Err(WireError::MissingParameter { name: "Signature" }),
            signed => Ok(signed),
        }
    }
}

/// Everything the wire layer extracts from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    /// All decoded parameters: query first, then form body, wire order, duplicates and
    /// empty values kept. The v1 signature covers all of them.
    pub params: Params,
    /// Number of leading entries of `params` that came from the query string.
    query_len: usize,
    /// `Action` parameter, else `x-acs-action` header.
    pub action: Option<String>,
    /// `Version` parameter, else `x-acs-version` header.
    pub version: Option<String>,
    /// Requested response format.
    pub format: Format,
    /// Signature scheme and credentials.
    pub auth: AuthInfo,
}

impl ParsedRequest {
    /// Parameters from the query string only (the ACS3 canonical query uses only these).
    ///
    /// A slice of [`ParsedRequest::params`], not a copy.
    pub fn query_params(&self) -> &[(String, String)] {
        self.params.as_slice().get(..self.query_len).unwrap_or(&[])
    }

    /// Parameters from the form body only.
    pub fn body_params(&self) -> &[(String, String)] {
        self.params.as_slice().get(self.query_len..).unwrap_or(&[])
    }

    /// The action, or `MissingParameter` for `Action`.
    pub fn require_action(&self) -> Result<&str, WireError> {
        self.action
            .as_deref()
            .ok_or(WireError::MissingParameter { name: "Action" })
    }

    /// The version, or `MissingParameter` for `Version`.
    pub fn require_version(&self) -> Result<&str, WireError> {
        self.version
            .as_deref()
            .ok_or(WireError::MissingParameter { name: "Version" })
    }
}

/// `true` if the `Content-Type` value names the form media type (parameters ignored).
fn is_form_content_type(value: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE))
}

/// Parses a request; see the module docs for the rules.
///
/// ```
/// use vpnroute_wire::{parse, AuthInfo, Format, RawRequest};
/// let headers = vec![("Host".to_string(), "127.0.0.1".to_string())];
/// let req = RawRequest {
///     method: "GET",
///     path: "/",
///     raw_query: "Action=DescribeVpnGateway&Format=xml&Version=2016-04-28&RegionId=cn-hangzhou",
///     headers: &headers,
///     body: b"",
/// };
/// let parsed = parse(&req).unwrap();
/// assert_eq!(parsed.action.as_deref(), Some("DescribeVpnGateway"));
/// assert_eq!(parsed.format, Format::Xml);
/// assert_eq!(parsed.params.get("RegionId"), Some("cn-hangzhou"));
/// assert_eq!(parsed.auth, AuthInfo::Missing);
/// ```
pub fn parse(req: &RawRequest<'_>) -> Result<ParsedRequest, WireError> {
    let query = req.raw_query.strip_prefix('?').unwrap_or(req.raw_query);
    let form_body = !req.body.is_empty() && req.header("content-type").is_some_and(is_form_content_type);

    let components = pair_count_hint(query.as_bytes()) + if form_body { pair_count_hint(req.body) } else { 0 };
    if components > MAX_PARAMS {
        return Err(WireError::TooManyParameters { limit: MAX_PARAMS });
    }
    let mut pairs = Vec::with_capacity(components);
    parse_urlencoded_into(query.as_bytes(), ParamSource::Query, &mut pairs)?;
    let query_len = pairs.len();
    if form_body {
        parse_urlencoded_into(req.body, ParamSource::Body, &mut pairs)?;
    }
    let params = Params::from(pairs);

    let non_empty_param = |name: &str| params.get(name).filter(|v| !v.is_empty());
    let action = non_empty_param("Action")
        .or_else(|| req.header("x-acs-action"))
        .map(str::to_owned);
    let version = non_empty_param("Version")
        .or_else(|| req.header("x-acs-version"))
        .map(str::to_owned);
    let format = match params.get("Format") {
        Some(f) if f.eq_ignore_ascii_case("xml") => Format::Xml,
        _ => Format::Json,
    };

    let auth = parse_auth(req, &params)?;

    Ok(ParsedRequest {
        params,
        query_len,
        action,
        version,
        format,
        auth,
    })
}

/// v1 parameters whose presence marks a request as v1-signed.
const V1_MARKERS: [&str; 5] = [
    "Signature",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
];

fn parse_auth(req: &RawRequest<'_>, params: &Params) -> Result<AuthInfo, WireError> {
    let authorization = req.header("authorization");
    if let Some(value) = authorization {
        let value = value.trim();
        if value.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("ACS3-")) {
            return parse_acs3(req, value);
        }
    }
    if V1_MARKERS.iter().any(|name| params.contains(name)) {
        return parse_v1(params);
    }
    match authorization {
        Some(value) => Err(WireError::UnsupportedSignature {
            what: "Authorization scheme",
            value: value.split_whitespace().next().unwrap_or("").to_owned(),
        }),
        None => Ok(AuthInfo::Missing),
    }
}

fn parse_v1(params: &Params) -> Result<AuthInfo, WireError> {
    let required = |name: &'static str| -> Result<String, WireError> {
        params
            .get(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or(WireError::MissingParameter { name })
    };
    let access_key_id = required("AccessKeyId")?;
    let signature = required("Signature")?;
    let signature_method = required("SignatureMethod")?;
    if !signature_method.eq_ignore_ascii_case("HMAC-SHA1") {
        return Err(WireError::UnsupportedSignature {
            what: "SignatureMethod",
            value: signature_method,
        });
    }
    let signature_version = required("SignatureVersion")?;
    if signature_version != "1.0" {
        return Err(WireError::UnsupportedSignature {
            what: "SignatureVersion",
            value: signature_version,
        });
    }
    let nonce = required("SignatureNonce")?;
    let timestamp = required("Timestamp")?;
    let security_token = params.get("SecurityToken").filter(|v| !v.is_empty()).map(str::to_owned);
    Ok(AuthInfo::V1 {
        access_key_id,
        signature,
        signature_method,
        signature_version,
        nonce,
        timestamp,
        security_token,
    })
}

/// The only ACS3 algorithm implemented.
pub const ACS3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Headers that, when present, must be covered by the ACS3 signature.
const ACS3_MUST_SIGN: [&str; 6] = [
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-security-token",
    "x-acs-content-sha256",
];

/// The three fields of an ACS3 `Authorization` header.
pub(crate) struct Acs3Authorization<'v> {
    pub(crate) credential: &'v str,
    pub(crate) signed_headers: &'v str,
    pub(crate) signature: &'v str,
}

/// Parses `ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…`.
pub(crate) fn parse_authorization(value: &str) -> Result<Acs3Authorization<'_>, WireError> {
    let value = value.trim();
    let (algorithm, rest) =
        value
            .split_once(|c: char| c.is_ascii_whitespace())
            .ok_or(WireError::IncompleteSignature {
                reason: "Authorization header has no credentials after the algorithm",
            })?;
    if algorithm != ACS3_ALGORITHM {
        return Err(WireError::UnsupportedSignature {
            what: "algorithm",
            value: algorithm.to_owned(),
        });
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for item in rest.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (key, val) = item.split_once('=').ok_or(WireError::IncompleteSignature {
            reason: "Authorization header item is not key=value",
        })?;
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.is_some() {
            return Err(WireError::IncompleteSignature {
                reason: "Authorization header repeats an item",
            });
        }
        *slot = Some(val.trim());
    }
    let credential = credential
        .filter(|v| !v.is_empty())
        .ok_or(WireError::IncompleteSignature {
            reason: "Authorization header lacks Credential",
        })?;
    let signed_headers = signed_headers
        .filter(|v| !v.is_empty())
        .ok_or(WireError::IncompleteSignature {
            reason: "Authorization header lacks SignedHeaders",
        })?;
    let signature = signature
        .filter(|v| !v.is_empty())
        .ok_or(WireError::IncompleteSignature {
            reason: "Authorization header lacks Signature",
        })?;
    Ok(Acs3Authorization {
        credential,
        signed_headers,
        signature,
    })
}

/// Lower-cases, sorts and deduplicates a `SignedHeaders` value (`a;B;c`).
pub(crate) fn normalize_signed_headers(list: &str) -> Vec<String> {
    let mut names: Vec<String> = list
        .split(';')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn parse_acs3(req: &RawRequest<'_>, value: &str) -> Result<AuthInfo, WireError> {
    let auth = parse_authorization(value)?;
    let signed_headers = normalize_signed_headers(auth.signed_headers);
    for must in ACS3_MUST_SIGN {
        if req.header(must).is_some() && signed_headers.binary_search_by(|h| h.as_str().cmp(must)).is_err() {
            return Err(WireError::IncompleteSignature {
                reason: "a present x-acs-* header is not in SignedHeaders",
            });
        }
    }
    let required = |name: &'static str| -> Result<String, WireError> {
        req.header(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or(WireError::MissingParameter { name })
    };
    let date = required("x-acs-date")?;
    let nonce = required("x-acs-signature-nonce")?;
    let security_token = req
        .header("x-acs-security-token")
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    Ok(AuthInfo::Acs3 {
        access_key_id: auth.credential.to_owned(),
        signed_headers,
        signature: auth.signature.to_owned(),
        date,
        nonce,
        security_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DecodeError;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn req<'a>(method: &'a str, raw_query: &'a str, headers: &'a [(String, String)], body: &'a [u8]) -> RawRequest<'a> {
        RawRequest {
            method,
            path: "/",
            raw_query,
            headers,
            body,
        }
    }

    const ACS3_AUTH: &str = "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=abcdef";

    fn acs3_headers(authorization: &str) -> Vec<(String, String)> {
        h(&[
            ("host", "127.0.0.1:18080"),
            ("x-acs-action", "CreateVpnRouteEntry"),
            ("x-acs-version", "2016-04-28"),
            ("x-acs-date", "2024-05-10T08:00:00Z"),
            ("x-acs-signature-nonce", "n1"),
            ("x-acs-content-sha256", "e3b0"),
            ("Authorization", authorization),
        ])
    }

    #[test]
    fn acs3_headers_only_action() {
        let headers = acs3_headers(ACS3_AUTH);
        let r = req("POST", "RegionId=cn-hangzhou&PublishVpc=True", &headers, b"");
        let p = parse(&r).unwrap();
        assert_eq!(p.action.as_deref(), Some("CreateVpnRouteEntry"));
        assert_eq!(p.version.as_deref(), Some("2016-04-28"));
        assert_eq!(p.format, Format::Json);
        assert_eq!(p.query_params().len(), 2);
        assert!(p.body_params().is_empty());
        match &p.auth {
            AuthInfo::Acs3 {
                access_key_id,
                signed_headers,
                signature,
                date,
                nonce,
                security_token,
            } => {
                assert_eq!(access_key_id, "testid");
                assert_eq!(signed_headers.len(), 6);
                assert_eq!(signature, "abcdef");
                assert_eq!(date, "2024-05-10T08:00:00Z");
                assert_eq!(nonce, "n1");
                assert_eq!(security_token, &None);
            }
            other => panic!("expected ACS3, got {other:?}"),
        }
    }

    #[test]
    fn pop_core_post_form_body_with_signature_in_body() {
        let headers = h(&[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-acs-action", "Ignored"),
        ]);
        let body = b"AccessKeyId=testid&Action=CreateVpnPbrRouteEntry&Format=JSON&SignatureMethod=HMAC-SHA1&SignatureNonce=n&SignatureVersion=1.0&Timestamp=2024-05-10T08%3A00%3A00Z&Version=2016-04-28&Signature=jRM1%2FY%2B%3D";
        let p = parse(&req("POST", "", &headers, body)).unwrap();
        assert_eq!(p.action.as_deref(), Some("CreateVpnPbrRouteEntry"));
        assert!(p.query_params().is_empty());
        assert_eq!(p.body_params().len(), 9);
        match &p.auth {
            AuthInfo::V1 {
                signature, timestamp, ..
            } => {
                assert_eq!(signature, "jRM1/Y+=");
                assert_eq!(timestamp, "2024-05-10T08:00:00Z");
            }
            other => panic!("expected v1, got {other:?}"),
        }
    }

    #[test]
    fn body_ignored_without_form_content_type() {
        let headers = h(&[("content-type", "application/json")]);
        let p = parse(&req("POST", "A=1", &headers, b"B=2")).unwrap();
        assert_eq!(p.params.len(), 1);
        let headers = h(&[("Content-Type", "Application/X-WWW-Form-Urlencoded; charset=UTF-8")]);
        let p = parse(&req("POST", "A=1", &headers, b"B=2")).unwrap();
        assert_eq!(p.params.get("B"), Some("2"));
        assert_eq!(p.query_params().len(), 1);
        assert_eq!(p.body_params().len(), 1);
    }

    #[test]
    fn legacy_empty_signature_type_is_kept() {
        let q = "Action=CreateVpnRouteEntry&Version=2016-04-28&Format=JSON&Timestamp=2024-05-10T08%3A00%3A00Z&SignatureMethod=HMAC-SHA1&SignatureType=&SignatureVersion=1.0&SignatureNonce=3f1c&AccessKeyId=testid&Signature=abc%3D";
        let p = parse(&req("POST", q, &[], b"")).unwrap();
        assert_eq!(p.params.get("SignatureType"), Some(""));
        assert_eq!(p.format, Format::Json);
        assert!(matches!(p.auth, AuthInfo::V1 { .. }));
    }

    #[test]
    fn format_is_case_insensitive() {
        for (f, want) in [
            ("xml", Format::Xml),
            ("XML", Format::Xml),
            ("Xml", Format::Xml),
            ("json", Format::Json),
            ("JSON", Format::Json),
            ("", Format::Json),
            ("yaml", Format::Json),
        ] {
            let q = format!("Format={f}");
            assert_eq!(parse(&req("GET", &q, &[], b"")).unwrap().format, want, "{f}");
        }
    }

    #[test]
    fn action_param_wins_over_header() {
        let headers = h(&[("X-Acs-Action", "FromHeader"), ("x-acs-version", "v-h")]);
        let p = parse(&req("GET", "Action=FromParam", &headers, b"")).unwrap();
        assert_eq!(p.action.as_deref(), Some("FromParam"));
        assert_eq!(p.version.as_deref(), Some("v-h"));
        let p = parse(&req("GET", "Action=", &headers, b"")).unwrap();
        assert_eq!(p.action.as_deref(), Some("FromHeader"));
        let p = parse(&req("GET", "", &[], b"")).unwrap();
        assert_eq!(p.require_action(), Err(WireError::MissingParameter { name: "Action" }));
        assert_eq!(
            p.require_version(),
            Err(WireError::MissingParameter { name: "Version" })
        );
        assert_eq!(p.auth.require(), Err(WireError::MissingParameter { name: "Signature" }));
    }

    #[test]
    fn v1_missing_pieces_are_missing_parameter() {
        let full = [
            ("AccessKeyId", "testid"),
            ("Signature", "abc="),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "n"),
            ("Timestamp", "2024-05-10T08:00:00Z"),
        ];
        for skip in 0..full.len() {
            let q: Params = full
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, kv)| *kv)
                .collect();
            let q = q.to_query_string();
            let err = parse(&req("GET", &q, &[], b"")).unwrap_err();
            assert_eq!(
                err,
                WireError::MissingParameter { name: full[skip].0 },
                "without {}",
                full[skip].0
            );
            assert_eq!(err.code(), "MissingParameter");
        }
        // Empty counts as missing.
        let err = parse(&req("GET", "AccessKeyId=&Signature=x", &[], b"")).unwrap_err();
        assert_eq!(err, WireError::MissingParameter { name: "AccessKeyId" });
    }

    #[test]
    fn v1_unsupported_method_or_version() {
        let base = "AccessKeyId=a&Signature=s&SignatureNonce=n&Timestamp=t";
        let q = format!("{base}&SignatureMethod=HMAC-SHA256&SignatureVersion=1.0");
        let err = parse(&req("GET", &q, &[], b"")).unwrap_err();
        assert_eq!(err.code(), "IncompleteSignature");
        let q = format!("{base}&SignatureMethod=hmac-sha1&SignatureVersion=2.0");
        let err = parse(&req("GET", &q, &[], b"")).unwrap_err();
        assert!(matches!(
            err,
            WireError::UnsupportedSignature {
                what: "SignatureVersion",
                ..
            }
        ));
        let q = format!("{base}&SignatureMethod=hmac-sha1&SignatureVersion=1.0&SecurityToken=tok");
        let p = parse(&req("GET", &q, &[], b"")).unwrap();
        assert_eq!(p.auth.security_token(), Some("tok"));
        assert_eq!(p.auth.access_key_id(), Some("a"));
        assert_eq!(p.auth.nonce(), Some("n"));
        assert_eq!(p.auth.timestamp(), Some("t"));
    }

    #[test]
    fn malformed_authorization_is_incomplete_signature() {
        for bad in [
            "ACS3-HMAC-SHA256",
            "ACS3-HMAC-SHA256 ",
            "ACS3-HMAC-SHA256 Credential=testid",
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host",
            "ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=ab",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=,Signature=ab",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=",
            "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=ab,Signature=cd",
            "ACS3-HMAC-SHA256 garbage",
            "ACS3-HMAC-SM3 Credential=a,SignedHeaders=host,Signature=ab",
            "Bearer abc",
        ] {
            let headers = acs3_headers(bad);
            let err = parse(&req("POST", "", &headers, b"")).unwrap_err();
            assert_eq!(err.code(), "IncompleteSignature", "{bad}");
            assert_eq!(
                err.message(),
                "The request signature does not conform to Aliyun standards."
            );
        }
    }

    #[test]
    fn acs3_unsigned_semantic_header_is_rejected() {
        let auth = "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host;x-acs-date;x-acs-signature-nonce,Signature=ab";
        let headers = acs3_headers(auth);
        let err = parse(&req("POST", "", &headers, b"")).unwrap_err();
        assert_eq!(err.code(), "IncompleteSignature");
    }

    #[test]
    fn acs3_missing_date_or_nonce() {
        let auth = "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=ab";
        let headers = h(&[("host", "x"), ("authorization", auth)]);
        let err = parse(&req("POST", "", &headers, b"")).unwrap_err();
        assert_eq!(err, WireError::MissingParameter { name: "x-acs-date" });
        let headers = h(&[("host", "x"), ("authorization", auth), ("x-acs-date", "d")]);
        let auth2 = "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host;x-acs-date,Signature=ab";
        let mut headers2 = headers.clone();
        headers2[1].1 = auth2.to_owned();
        let err = parse(&req("POST", "", &headers2, b"")).unwrap_err();
        assert_eq!(
            err,
            WireError::MissingParameter {
                name: "x-acs-signature-nonce"
            }
        );
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn signed_headers_are_normalized() {
        let auth = "ACS3-HMAC-SHA256  Credential=testid, SignedHeaders=X-Acs-Version;host;x-acs-action;HOST;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce , Signature=ab";
        let headers = acs3_headers(auth);
        let p = parse(&req("POST", "", &headers, b"")).unwrap();
        match p.auth {
            AuthInfo::Acs3 { signed_headers, .. } => assert_eq!(
                signed_headers,
                vec![
                    "host",
                    "x-acs-action",
                    "x-acs-content-sha256",
                    "x-acs-date",
                    "x-acs-signature-nonce",
                    "x-acs-version"
                ]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn acs3_sts_token() {
        let auth = "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-security-token;x-acs-signature-nonce;x-acs-version,Signature=ab";
        let mut headers = acs3_headers(auth);
        headers.push(("x-acs-security-token".into(), "sts".into()));
        let p = parse(&req("POST", "", &headers, b"")).unwrap();
        assert_eq!(p.auth.security_token(), Some("sts"));
        assert_eq!(p.auth.timestamp(), Some("2024-05-10T08:00:00Z"));
    }

    #[test]
    fn invalid_utf8_is_typed_not_panic() {
        let err = parse(&req("GET", "Description=%FF", &[], b"")).unwrap_err();
        assert_eq!(
            err,
            WireError::InvalidEncoding {
                location: ParamSource::Query,
                name: Some("Description".into()),
                kind: DecodeError::InvalidUtf8
            }
        );
        assert_eq!(err.code(), "InvalidParameter");
        let headers = h(&[("content-type", "application/x-www-form-urlencoded")]);
        let err = parse(&req("POST", "", &headers, b"A=\xc3\x28")).unwrap_err();
        assert_eq!(err.code(), "InvalidParameter");
        let err = parse(&req("POST", "A=%", &[], b"")).unwrap_err();
        assert_eq!(err.code(), "InvalidParameter");
    }

    #[test]
    fn leading_question_mark_tolerated() {
        let p = parse(&req("GET", "?A=1", &[], b"")).unwrap();
        assert_eq!(p.params.get("A"), Some("1"));
    }

    #[test]
    fn too_many_parameters_are_refused_before_decoding() {
        let headers = h(&[("content-type", "application/x-www-form-urlencoded")]);
        let at_limit = vec!["A=1"; MAX_PARAMS].join("&");
        assert!(parse(&req("POST", "", &headers, at_limit.as_bytes())).is_ok());
        // 1.3 M empty components (the junk body of issue 9), and the limit split across
        // query and body.
        let junk = "&".repeat(1_300_000);
        let err = parse(&req("POST", "", &headers, junk.as_bytes())).unwrap_err();
        assert_eq!(err, WireError::TooManyParameters { limit: MAX_PARAMS });
        assert_eq!(err.code(), "InvalidParameter");
        assert_eq!(err.http_status(), 400);
        let half = vec!["A=1"; MAX_PARAMS / 2 + 1].join("&");
        assert!(parse(&req("POST", &half, &headers, half.as_bytes())).is_err());
        // A body that is not a form does not count.
        assert!(parse(&req("POST", "", &[], junk.as_bytes())).is_ok());
    }

    #[test]
    fn acs3_unknown_authorization_items_are_ignored() {
        // Unknown `key=value` items (a newer client's extension) change nothing; the three
        // known items still decide, each at most once; a bare word is still malformed.
        let auth = "ACS3-HMAC-SHA256 Region=cn-hangzhou,Credential=testid,Future=x=y,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=abcdef,Credential2=z";
        let with = parse(&req("POST", "A=1", &acs3_headers(auth), b"")).unwrap();
        let without = parse(&req("POST", "A=1", &acs3_headers(ACS3_AUTH), b"")).unwrap();
        assert_eq!(with.auth, without.auth);
        let bare = "ACS3-HMAC-SHA256 Credential=testid,junk,SignedHeaders=host,Signature=ab";
        let err = parse(&req("POST", "", &acs3_headers(bare), b"")).unwrap_err();
        assert_eq!(err.code(), "IncompleteSignature");
    }
}
