//! Response bodies: success and error, JSON and XML.
//!
//! This module owns how an answer is serialised; *what* goes in it (fields, types,
//! `RequestId`) is the server's business. Responses are modelled as
//! [`serde_json::Value`] objects using Alibaba's field names and JSON types; lists are
//! wrapped the Alibaba way (`"VpnRouteEntries":{"VpnRouteEntry":[…]}`).
//!
//! * JSON: the value as is, `Content-Type: application/json;charset=utf-8`.
//! * XML: `<?xml version="1.0" encoding="UTF-8"?>` then `<{Action}Response>` (success) or
//!   `<Error>` (error), `Content-Type: text/xml;charset=utf-8` — exactly that string,
//!   which is what the Tea clients test for before parsing an XML error.
//!   * an object becomes nested elements, one per key (in the map's key order);
//!   * an array under key `K` becomes repeated `<K>` elements (so
//!     `"VpnRouteEntries":{"VpnRouteEntry":[a,b]}` →
//!     `<VpnRouteEntries><VpnRouteEntry>a</VpnRouteEntry><VpnRouteEntry>b</VpnRouteEntry></VpnRouteEntries>`;
//!     an empty array emits nothing; nested arrays are flattened);
//!   * strings are XML-escaped (`&`, `<`, `>`; `\r` as `&#13;` so it survives parsing;
//!     characters XML 1.0 forbids, such as U+0000, become U+FFFD); numbers and booleans
//!     as in JSON; `null` becomes an empty element `<K/>`;
//!   * element names are the keys when they are valid ASCII XML names; otherwise every
//!     character outside `A-Z a-z 0-9 _ - .` becomes `_` (and a name not starting with
//!     a letter or `_` gets a `_` prefix), so no key — nor an `Action` taken from the
//!     request — can inject markup;
//!   * a top-level value that is not an object: a scalar is written as the root's text,
//!     an array as repeated `<item>` elements.
//! * Error bodies are [`ErrorBody`]: JSON keys `RequestId, HostId, Code, Message,
//!   Recommend` (capitalised; legacy Python reads nothing else) in that order.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::encoding::percent_encode;
use crate::request::Format;

/// `Content-Type` of JSON responses.
pub const CONTENT_TYPE_JSON: &str = "application/json;charset=utf-8";
/// `Content-Type` of XML responses (Tea clients require exactly this string).
pub const CONTENT_TYPE_XML: &str = "text/xml;charset=utf-8";
const XML_PROLOG: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

impl Format {
    /// The `Content-Type` header value for this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => CONTENT_TYPE_JSON,
            Format::Xml => CONTENT_TYPE_XML,
        }
    }
}

/// An Alibaba error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    /// Request id (also used in `Recommend`).
    pub request_id: String,
    /// Endpoint host, e.g. `vpc.aliyuncs.com`.
    pub host_id: String,
    /// Error code, e.g. `MissingParameter`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Troubleshooting link.
    pub recommend: String,
    /// RAM's explanation of a 403 denial (`AuthAction`, `NoPermissionType`, …): what the Tea
    /// SDKs surface as `access_denied_detail` / `accessDeniedDetail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_denied_detail: Option<Value>,
}

impl ErrorBody {
    /// An error body whose `Recommend` is Alibaba's troubleshooting link
    /// (see [`ErrorBody::recommend_url`]).
    pub fn new(
        request_id: impl Into<String>,
        host_id: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let request_id = request_id.into();
        let code = code.into();
        let recommend = Self::recommend_url(&code, &request_id);
        Self {
            request_id,
            host_id: host_id.into(),
            code,
            message: message.into(),
            recommend,
            access_denied_detail: None,
        }
    }

    /// The same body with an `AccessDeniedDetail` member.
    pub fn with_access_denied_detail(mut self, detail: Option<Value>) -> Self {
        self.access_denied_detail = detail;
        self
    }

    /// `https://api.aliyun.com/troubleshoot?q=<Code>&product=Vpc&requestId=<RequestId>`.
    pub fn recommend_url(code: &str, request_id: &str) -> String {
        format!(
            "https://api.aliyun.com/troubleshoot?q={}&product=Vpc&requestId={}",
            percent_encode(code),
            percent_encode(request_id)
        )
    }
}

/// Serialises a success body for `action` in `format`; returns `(content_type, body)`.
///
/// `body` should be an object containing `RequestId` and no `Code` key.
///
/// ```
/// use serde_json::json;
/// use vpnroute_wire::{encode_success, Format};
/// let body = json!({"RequestId": "r1", "Tags": {"Tag": [{"Key": "k", "Value": "a&b"}]}});
/// let (ct, xml) = encode_success("DescribeVpnGateway", &body, Format::Xml);
/// assert_eq!(ct, "text/xml;charset=utf-8");
/// assert_eq!(xml, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeVpnGatewayResponse>\
///     <RequestId>r1</RequestId><Tags><Tag><Key>k</Key><Value>a&amp;b</Value></Tag></Tags>\
///     </DescribeVpnGatewayResponse>");
/// ```
pub fn encode_success(action: &str, body: &Value, format: Format) -> (&'static str, String) {
    match format {
        // `to_string` of the serializer, not `Display`: no `fmt::Formatter` per fragment.
        Format::Json => (CONTENT_TYPE_JSON, serde_json::to_string(body).unwrap_or_default()),
        Format::Xml => {
            let root = format!("{}Response", xml_name(action));
            let mut out = String::with_capacity(128 + root.len() * 2);
            out.push_str(XML_PROLOG);
            open(&mut out, &root);
            match body {
                Value::Object(map) => {
                    for (k, v) in map {
                        write_element(&mut out, k, v);
                    }
                }
                Value::Array(items) => {
                    for item in items {
                        write_element(&mut out, "item", item);
                    }
                }
                scalar => write_scalar(&mut out, scalar),
            }
            close(&mut out, &root);
            (CONTENT_TYPE_XML, out)
        }
    }
}

/// Serialises a success body with `RequestId` added in front; returns `(content_type, body)`.
///
/// `body` is anything that serialises as a map or struct with Alibaba's field names: a
/// [`serde_json::Value`] object or a typed view. JSON is written straight from `body` (no
/// intermediate `Value`); XML goes through a `Value`, so both formats follow the rules of
/// [`encode_success`].
///
/// ```
/// use vpnroute_wire::{encode_reply, Format};
/// #[derive(serde::Serialize)]
/// struct Answer { #[serde(rename = "VpnGatewayId")] id: &'static str }
/// let (_, json) = encode_reply("DescribeVpnGateway", "r1", &Answer { id: "vpn-1" }, Format::Json);
/// assert_eq!(json, r#"{"RequestId":"r1","VpnGatewayId":"vpn-1"}"#);
/// let (_, xml) = encode_reply("DescribeVpnGateway", "r1", &Answer { id: "vpn-1" }, Format::Xml);
/// assert!(xml.ends_with("<DescribeVpnGatewayResponse><RequestId>r1</RequestId><VpnGatewayId>vpn-1</VpnGatewayId></DescribeVpnGatewayResponse>"));
/// ```
pub fn encode_reply<B: Serialize>(action: &str, request_id: &str, body: &B, format: Format) -> (&'static str, String) {
    #[derive(Serialize)]
    struct WithRequestId<'a, B> {
        #[serde(rename = "RequestId")]
        request_id: &'a str,
        #[serde(flatten)]
        body: &'a B,
    }
    let with_id = WithRequestId { request_id, body };
    match format {
        Format::Json => match serde_json::to_string(&with_id) {
            Ok(text) => (CONTENT_TYPE_JSON, text),
            // Only a body that is not a map (which no action answers) cannot be flattened.
            Err(_) => encode_success(action, &serde_json::to_value(body).unwrap_or_default(), format),
        },
        Format::Xml => {
            let value = serde_json::to_value(&with_id)
                .or_else(|_| serde_json::to_value(body))
                .unwrap_or_default();
            encode_success(action, &value, format)
        }
    }
}

/// Serialises an error body in `format`; returns `(content_type, body)`.
pub fn encode_error(err: &ErrorBody, format: Format) -> (&'static str, String) {
    match format {
        Format::Json => {
            // Serialising five strings cannot fail; fall back to a hand-written body anyway.
            let json = serde_json::to_string(err).unwrap_or_else(|_| {
                format!(
                    "{{\"RequestId\":{},\"Code\":{}}}",
                    Value::from(err.request_id.as_str()),
                    Value::from(err.code.as_str())
                )
            });
            (CONTENT_TYPE_JSON, json)
        }
        Format::Xml => {
            let mut out = String::with_capacity(160 + err.message.len() + err.recommend.len() + err.request_id.len());
            out.push_str(XML_PROLOG);
            out.push_str("<Error>");
            for (name, value) in [
                ("RequestId", &err.request_id),
                ("HostId", &err.host_id),
                ("Code", &err.code),
                ("Message", &err.message),
                ("Recommend", &err.recommend),
            ] {
                open(&mut out, name);
                escape_text(&mut out, value);
                close(&mut out, name);
            }
            if let Some(Value::Object(detail)) = &err.access_denied_detail {
                open(&mut out, "AccessDeniedDetail");
                for (name, value) in detail {
                    open(&mut out, name);
                    escape_text(&mut out, value.as_str().unwrap_or_default());
                    close(&mut out, name);
                }
                close(&mut out, "AccessDeniedDetail");
            }
            out.push_str("</Error>");
            (CONTENT_TYPE_XML, out)
        }
    }
}

fn open(out: &mut String, name: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
}

fn close(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn write_element(out: &mut String, key: &str, value: &Value) {
    match value {
        Value::Array(items) => {
            for item in items {
                write_element(out, key, item);
            }
        }
        Value::Null => {
            out.push('<');
            out.push_str(&xml_name(key));
            out.push_str("/>");
        }
        Value::Object(map) => {
            let name = xml_name(key);
            open(out, &name);
            for (k, v) in map {
                write_element(out, k, v);
            }
            close(out, &name);
        }
        scalar => {
            let name = xml_name(key);
            open(out, &name);
            write_scalar(out, scalar);
            close(out, &name);
        }
    }
}

fn write_scalar(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => escape_text(out, s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => {}
    }
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// `name` if it is a valid (ASCII) XML element name, else a sanitised copy.
fn xml_name(name: &str) -> Cow<'_, str> {
    let bytes = name.as_bytes();
    let valid = bytes.first().is_some_and(|&b| is_name_start(b)) && bytes.iter().all(|&b| is_name_char(b));
    if valid {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 1);
    if !name.as_bytes().first().is_some_and(|&b| is_name_start(b)) {
        out.push('_');
    }
    for c in name.chars() {
        if c.is_ascii() && is_name_char(c as u8) {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    Cow::Owned(out)
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Appends `text` escaped for XML character data.
fn escape_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_success() {
        let body = json!({"RequestId": "r", "Weight": 0, "EnableBgp": true});
        let (ct, s) = encode_success("CreateVpnRouteEntry", &body, Format::Json);
        assert_eq!(ct, "application/json;charset=utf-8");
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn xml_success_lists_and_types() {
        let body = json!({
            "RequestId": "r1",
            "TotalCount": 2,
            "VpnRouteEntries": {"VpnRouteEntry": [
                {"RouteDest": "10.0.0.0/24", "Weight": 0},
                {"RouteDest": "10.0.1.0/24", "Weight": 100}
            ]},
            "VpnRouteCounts": {"VpnRouteCount": []},
            "EnableBgp": false,
            "Tag": null
        });
        let (ct, xml) = encode_success("DescribeVpnRouteEntries", &body, Format::Xml);
        assert_eq!(ct, "text/xml;charset=utf-8");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeVpnRouteEntriesResponse>\
             <EnableBgp>false</EnableBgp>\
             <RequestId>r1</RequestId>\
             <Tag/>\
             <TotalCount>2</TotalCount>\
             <VpnRouteCounts></VpnRouteCounts>\
             <VpnRouteEntries>\
             <VpnRouteEntry><RouteDest>10.0.0.0/24</RouteDest><Weight>0</Weight></VpnRouteEntry>\
             <VpnRouteEntry><RouteDest>10.0.1.0/24</RouteDest><Weight>100</Weight></VpnRouteEntry>\
             </VpnRouteEntries>\
             </DescribeVpnRouteEntriesResponse>"
        );
    }

    #[test]
    fn xml_escapes_text_and_names() {
        let body = json!({
            "Description": "a<b>&c\r\n\u{0}\"'",
            "bad key<": "x",
            "1st": "y",
            "xmlThing": "z"
        });
        let (_, xml) = encode_success("Evil><x", &body, Format::Xml);
        assert!(xml.contains("<Evil__xResponse>"), "{xml}");
        assert!(xml.ends_with("</Evil__xResponse>"), "{xml}");
        assert!(xml.contains("<Description>a&lt;b&gt;&amp;c&#13;\n\u{FFFD}\"'</Description>"));
        assert!(xml.contains("<bad_key_>x</bad_key_>"));
        assert!(xml.contains("<_1st>y</_1st>"));
        assert!(xml.contains("<xmlThing>z</xmlThing>"));
        assert!(!xml.contains("<1st>"));
    }

    #[test]
    fn xml_non_object_roots() {
        let (_, xml) = encode_success("A", &json!("t&"), Format::Xml);
        assert!(xml.ends_with("<AResponse>t&amp;</AResponse>"));
        let (_, xml) = encode_success("A", &json!([1, 2]), Format::Xml);
        assert!(xml.ends_with("<AResponse><item>1</item><item>2</item></AResponse>"));
        let (_, xml) = encode_success("A", &json!({"L": [[1], [2, 3]]}), Format::Xml);
        assert!(xml.ends_with("<AResponse><L>1</L><L>2</L><L>3</L></AResponse>"));
    }

    #[test]
    fn json_error_keys_in_order() {
        let e = ErrorBody::new("RID-1", "vpc.aliyuncs.com", "MissingParameter", "msg \"x\"");
        let (ct, s) = encode_error(&e, Format::Json);
        assert_eq!(ct, "application/json;charset=utf-8");
        assert_eq!(
            s,
            "{\"RequestId\":\"RID-1\",\"HostId\":\"vpc.aliyuncs.com\",\"Code\":\"MissingParameter\",\"Message\":\"msg \\\"x\\\"\",\"Recommend\":\"https://api.aliyun.com/troubleshoot?q=MissingParameter&product=Vpc&requestId=RID-1\"}"
        );
        let back: ErrorBody = serde_json::from_str(&s).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn xml_error() {
        let e = ErrorBody::new("r", "h", "Code.X", "a < b & c");
        let (ct, s) = encode_error(&e, Format::Xml);
        assert_eq!(ct, "text/xml;charset=utf-8");
        assert_eq!(
            s,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><RequestId>r</RequestId><HostId>h</HostId>\
             <Code>Code.X</Code><Message>a &lt; b &amp; c</Message>\
             <Recommend>https://api.aliyun.com/troubleshoot?q=Code.X&amp;product=Vpc&amp;requestId=r</Recommend></Error>"
        );
    }

    #[test]
    fn access_denied_detail_in_both_formats() {
        let detail = serde_json::json!({"AuthAction": "vpc:CreateVpnRouteEntry", "NoPermissionType": "ImplicitDeny"});
        let e = ErrorBody::new("r", "h", "Forbidden", "m").with_access_denied_detail(Some(detail.clone()));
        let (_, json) = encode_error(&e, Format::Json);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["AccessDeniedDetail"], detail);
        let (_, xml) = encode_error(&e, Format::Xml);
        assert!(xml.ends_with(
            "<AccessDeniedDetail><AuthAction>vpc:CreateVpnRouteEntry</AuthAction>\
             <NoPermissionType>ImplicitDeny</NoPermissionType></AccessDeniedDetail></Error>"
        ));
        let (_, plain) = encode_error(&ErrorBody::new("r", "h", "X", "m"), Format::Json);
        assert!(!plain.contains("AccessDeniedDetail"));
    }

    #[test]
    fn wire_error_to_body() {
        let e = crate::WireError::MissingParameter { name: "Action" }
            .to_alibaba()
            .into_body("r", "h");
        assert_eq!(e.code, "MissingParameter");
        assert!(e.recommend.contains("q=MissingParameter"));
        assert_eq!(Format::Xml.content_type(), CONTENT_TYPE_XML);
        assert_eq!(Format::default().content_type(), CONTENT_TYPE_JSON);
    }
}
