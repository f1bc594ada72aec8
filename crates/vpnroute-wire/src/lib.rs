//! # vpnroute-wire — the Alibaba Cloud VPC RPC wire protocol (API version 2016-04-28)
//!
//! Everything between "bytes a real Alibaba SDK put on the wire" and "an operation with
//! parameters", and back from "a response value" to "bytes the SDK accepts". No HTTP
//! framework: requests come in as a borrowed [`RawRequest`] (method, path, raw query,
//! headers, body) and responses go out as `(content_type, body)` pairs.
//!
//! | module | owns |
//! |---|---|
//! | [`encoding`] | RFC 3986 percent-encoding, form/query decoding (`+` = space) |
//! | [`params`] | [`Params`], the ordered decoded parameter list |
//! | [`request`] | [`parse`]: params (query + form body), `Action`/`Version`, [`Format`], [`AuthInfo`] |
//! | [`v1`] | HMAC-SHA1 signature v1: string-to-sign, signature, client-side signing |
//! | [`acs3`] | `ACS3-HMAC-SHA256`: canonical request, string-to-sign, signature, client-side signing |
//! | [`mod@verify`] | [`verify()`]: constant-time check of either scheme |
//! | [`response`] | JSON/XML success and error bodies ([`encode_success`], [`encode_error`]) |
//! | [`error`] | [`WireError`] and its Alibaba `(Code, Message, status)` mapping, [`SignatureMismatch`] |
//!
//! The behaviour follows `shared/spec/sdk-wire.md` (what the Python Tea, legacy Python,
//! Node Tea and Node pop-core clients actually send and accept) and is pinned by the ten
//! captured requests in `tests/data/signature-vectors.json`.
//!
//! Typical server flow:
//!
//! ```
//! use vpnroute_wire::{encode_error, encode_success, parse, verify, RawRequest};
//! # let headers: Vec<(String, String)> = Vec::new();
//! # let req = RawRequest { method: "GET", path: "/", raw_query: "", headers: &headers, body: b"" };
//! match parse(&req) {
//!     Err(e) => {
//!         let body = e.to_alibaba().into_body("request-id", "vpc.aliyuncs.com");
//!         let (_content_type, _text) = encode_error(&body, Default::default());
//!     }
//!     Ok(parsed) => {
//!         if let Some(_ak) = parsed.auth.access_key_id() {
//!             // look up the secret for the access key, then:
//!             let _ok = verify(&req, &parsed, "secret");
//!         }
//!         let (_content_type, _text) =
//!             encode_success("DescribeVpnGateway", &serde_json::json!({"RequestId": "r"}), parsed.format);
//!     }
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acs3;
pub mod encoding;
pub mod error;
pub mod params;
pub mod request;
pub mod response;
pub mod v1;
pub mod verify;

#[cfg(test)]
mod vector_tests;

pub use acs3::{
    acs3_canonical_request, acs3_sign, acs3_signature, acs3_string_to_sign, hashed_payload, Acs3SignInput, Acs3Signed,
    EMPTY_BODY_SHA256,
};
pub use encoding::{form_decode, is_unreserved, parse_urlencoded, percent_encode, percent_encode_into};
pub use error::{AlibabaError, DecodeError, ParamSource, SignatureMismatch, WireError};
pub use params::Params;
pub use request::{parse, AuthInfo, Format, ParsedRequest, RawRequest, ACS3_ALGORITHM, FORM_CONTENT_TYPE};
pub use response::{encode_error, encode_reply, encode_success, ErrorBody, CONTENT_TYPE_JSON, CONTENT_TYPE_XML};
pub use v1::{v1_signature, v1_signed_query, v1_string_to_sign};
pub use verify::verify;
