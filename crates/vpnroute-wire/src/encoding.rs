//! Percent-encoding (RFC 3986) and `application/x-www-form-urlencoded` decoding.
//!
//! This module owns the byte-level text transforms both signature schemes depend on:
//!
//! * **Encoding** ([`percent_encode`]): RFC 3986 over UTF-8 — `A-Z a-z 0-9 - _ . ~` are
//!   kept, every other byte becomes `%XX` with upper-case hex (space → `%20`, `*` → `%2A`,
//!   `/` → `%2F`). This is the `pe()` of Alibaba's v1 and ACS3 specifications.
//! * **Decoding** ([`form_decode`], [`parse_urlencoded`]): `+` decodes to a space (the
//!   Python SDKs send spaces as `+`), `%XX` (either hex case) to the byte, everything
//!   else (including raw `*`, `!`, `(`, `)` sent by the Node Tea SDK) as is; the resulting
//!   bytes must be UTF-8.
//!
//! Choices:
//! * A `%` not followed by two hex digits is an error ([`DecodeError::BadEscape`]), not
//!   passed through: no real client sends one, and accepting it would make two different
//!   wire strings decode to the same parameter.
//! * `a=1&&b=2` — empty segments are skipped; `k` without `=` is the key `k` with an empty
//!   value, exactly like `k=`. Empty values are **kept** (the legacy Python SDK signs
//!   `SignatureType=`) and duplicate keys are kept in order.
//!
//! Decoding never panics on any input and allocates only the output strings (no
//! intermediate buffer when a component needs no unescaping).

use std::borrow::Cow;

use crate::error::{DecodeError, ParamSource, WireError};

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// `true` for the RFC 3986 unreserved bytes `A-Z a-z 0-9 - _ . ~`.
#[inline]
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes `s` per RFC 3986 (see the module docs).
///
/// ```
/// assert_eq!(vpnroute_wire::percent_encode("a b+c/d*e~f"), "a%20b%2Bc%2Fd%2Ae~f");
/// assert_eq!(vpnroute_wire::percent_encode("ü"), "%C3%BC");
/// ```
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    percent_encode_into(&mut out, s);
    out
}

/// Appends the RFC 3986 percent-encoding of `s` to `out`.
pub fn percent_encode_into(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            push_escape(out, b);
        }
    }
}

/// Appends `pe(pe(s))` to `out` in one pass.
///
/// The output of `pe` only contains unreserved bytes and `%`, so encoding it again only
/// turns every `%` into `%25`: each non-unreserved input byte becomes `%25XX`.
pub(crate) fn percent_encode_twice_into(out: &mut String, s: &str) {
    for &b in s.as_bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str("%25");
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
        }
    }
}

#[inline]
fn push_escape(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
    out.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
}

/// Appends lower-case hex of `bytes` to `out`.
pub(crate) fn push_hex_lower(out: &mut String, bytes: &[u8]) {
    const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(HEX_LOWER[usize::from(b >> 4)]));
        out.push(char::from(HEX_LOWER[usize::from(b & 0x0f)]));
    }
}

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Unescapes one form component to bytes (`+` → space, `%XX` → byte).
fn unescape(input: &[u8]) -> Result<Cow<'_, [u8]>, DecodeError> {
    if !input.iter().any(|&b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(input));
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = input.get(i + 1).copied().and_then(hex_val);
                let lo = input.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
                    _ => return Err(DecodeError::BadEscape),
                }
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// Decodes one form/query component to a `String`.
fn decode_component(input: &[u8]) -> Result<String, DecodeError> {
    match unescape(input)? {
        Cow::Borrowed(bytes) => std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8),
        Cow::Owned(bytes) => String::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8),
    }
}

/// Decodes one form/query component: `+` → space, `%XX` → byte, result must be UTF-8.
///
/// ```
/// assert_eq!(vpnroute_wire::form_decode("a+b%2Bc*d").unwrap(), "a b+c*d");
/// assert!(vpnroute_wire::form_decode("100%").is_err());
/// ```
pub fn form_decode(input: &str) -> Result<String, DecodeError> {
    decode_component(input.as_bytes())
}

/// Number of `k=v` pairs in a form/query string, an upper bound for pre-allocation.
#[inline]
pub(crate) fn pair_count_hint(input: &[u8]) -> usize {
    if input.is_empty() {
        0
    } else {
        input.iter().filter(|&&b| b == b'&').count() + 1
    }
}

/// Decodes `input` (`k=v&k2=v2…`) and appends the pairs to `out` in wire order.
pub(crate) fn parse_urlencoded_into(
    input: &[u8],
    location: ParamSource,
    out: &mut Vec<(String, String)>,
) -> Result<(), WireError> {
    for segment in input.split(|&b| b == b'&') {
        if segment.is_empty() {
            continue;
        }
        let (raw_key, raw_value) = match segment.iter().position(|&b| b == b'=') {
            Some(eq) => (&segment[..eq], &segment[eq + 1..]),
            None => (segment, &segment[segment.len()..]),
        };
        let key = decode_component(raw_key).map_err(|kind| WireError::InvalidEncoding {
            location,
            name: None,
            kind,
        })?;
        let value = match decode_component(raw_value) {
            Ok(v) => v,
            Err(kind) => {
                return Err(WireError::InvalidEncoding {
                    location,
                    name: Some(key),
                    kind,
                })
            }
        };
        out.push((key, value));
    }
    Ok(())
}

/// Decodes a whole query string or form body into ordered `(key, value)` pairs
/// (empty values and duplicates kept; see the module docs).
///
/// `location` only labels the error.
///
/// ```
/// use vpnroute_wire::{parse_urlencoded, ParamSource};
/// let pairs = parse_urlencoded(b"A=1&SignatureType=&A=x+y", ParamSource::Query).unwrap();
/// assert_eq!(pairs, vec![
///     ("A".to_string(), "1".to_string()),
///     ("SignatureType".to_string(), String::new()),
///     ("A".to_string(), "x y".to_string()),
/// ]);
/// ```
pub fn parse_urlencoded(input: &[u8], location: ParamSource) -> Result<Vec<(String, String)>, WireError> {
    let mut out = Vec::with_capacity(pair_count_hint(input));
    parse_urlencoded_into(input, location, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encode_keeps_unreserved_only() {
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~", "unreserved bytes are kept");
        assert_eq!(percent_encode(" "), "%20");
        assert_eq!(percent_encode("+"), "%2B");
        assert_eq!(percent_encode("*"), "%2A");
        assert_eq!(percent_encode("/"), "%2F");
        assert_eq!(percent_encode("!'()"), "%21%27%28%29");
        assert_eq!(percent_encode("ü中"), "%C3%BC%E4%B8%AD");
        assert_eq!(percent_encode(""), "");
        assert_eq!(percent_encode("=&%"), "%3D%26%25");
    }

    #[test]
    fn encode_twice_matches_two_passes() {
        for s in ["", "abc", "a b+c/d*e~f'g!h(i)j", "ü中=&%", "2024-05-10T08:00:00Z"] {
            let mut once = String::new();
            percent_encode_twice_into(&mut once, s);
            assert_eq!(once, percent_encode(&percent_encode(s)), "{s:?}");
        }
    }

    #[test]
    fn decode_plus_space_star_utf8() {
        assert_eq!(form_decode("a+b").unwrap(), "a b");
        assert_eq!(form_decode("a%20b").unwrap(), "a b");
        assert_eq!(form_decode("a%2Bb").unwrap(), "a+b");
        assert_eq!(form_decode("a*b%2Ac").unwrap(), "a*b*c");
        assert_eq!(form_decode("%c3%bc%C3%BC").unwrap(), "üü");
        assert_eq!(form_decode("!'()~").unwrap(), "!'()~");
        assert_eq!(form_decode("").unwrap(), "");
    }

    #[test]
    fn client_specific_encodings_decode_alike() {
        // sdk-wire.md §3: the same value as sent by Py Tea, Py legacy/pop and Node Tea.
        let want = "a b+c/d*e~f'g!h(i)j";
        for raw in [
            "a+b%2Bc%2Fd%2Ae~f%27g%21h%28i%29j",
            "a%20b%2Bc%2Fd%2Ae~f%27g%21h%28i%29j",
            "a%20b%2Bc%2Fd*e~f%27g!h(i)j",
        ] {
            assert_eq!(form_decode(raw).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn decode_errors_are_typed() {
        assert_eq!(form_decode("100%"), Err(DecodeError::BadEscape));
        assert_eq!(form_decode("%4"), Err(DecodeError::BadEscape));
        assert_eq!(form_decode("%zz"), Err(DecodeError::BadEscape));
        assert_eq!(form_decode("%C3"), Err(DecodeError::InvalidUtf8));
        assert_eq!(form_decode("%FF%FE"), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn parse_keeps_empty_and_duplicates() {
        let pairs = parse_urlencoded(b"a=1&&b&c=&a=2&", ParamSource::Query).unwrap();
        let got: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![("a", "1"), ("b", ""), ("c", ""), ("a", "2")],
            "empty segments skipped, empty values kept, duplicates in order"
        );
        assert!(parse_urlencoded(b"", ParamSource::Query).unwrap().is_empty());
        // '=' inside a value is part of the value.
        let pairs = parse_urlencoded(b"Sig=ab%3D=", ParamSource::Query).unwrap();
        assert_eq!(pairs[0].1, "ab==");
    }

    #[test]
    fn parse_errors_name_the_parameter() {
        let err = parse_urlencoded(b"Ok=1&Description=%FF", ParamSource::Body).unwrap_err();
        assert_eq!(
            err,
            WireError::InvalidEncoding {
                location: ParamSource::Body,
                name: Some("Description".into()),
                kind: DecodeError::InvalidUtf8,
            }
        );
        let err = parse_urlencoded(b"%ZZ=1", ParamSource::Query).unwrap_err();
        assert_eq!(
            err,
            WireError::InvalidEncoding {
                location: ParamSource::Query,
                name: None,
                kind: DecodeError::BadEscape,
            }
        );
        // Raw non-UTF-8 bytes in a body are rejected too.
        assert!(parse_urlencoded(b"A=\xff", ParamSource::Body).is_err());
    }

    proptest! {
        #[test]
        fn decode_encode_roundtrip(s in any::<String>()) {
            prop_assert_eq!(form_decode(&percent_encode(&s)).unwrap(), s);
        }

        #[test]
        fn encoded_is_unreserved_or_escape(s in any::<String>()) {
            let e = percent_encode(&s);
            prop_assert!(e.bytes().all(|b| is_unreserved(b) || b == b'%'));
        }

        #[test]
        fn pairs_roundtrip(pairs in proptest::collection::vec((any::<String>(), any::<String>()), 0..8)) {
            let wire: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
                .collect();
            let parsed = parse_urlencoded(wire.join("&").as_bytes(), ParamSource::Query).unwrap();
            prop_assert_eq!(parsed, pairs);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_urlencoded(&bytes, ParamSource::Body);
        }
    }
}
