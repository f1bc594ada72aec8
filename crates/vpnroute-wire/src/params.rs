//! The ordered, decoded parameter list of a request.
//!
//! [`Params`] keeps parameters exactly as they arrived — wire order, duplicates, empty
//! values — because the v1 signature is computed over *all* of them. Look-ups
//! ([`Params::get`]) return the **first** occurrence of a name; the server can use
//! [`Params::get_all`] where repeated names matter.

use crate::encoding::percent_encode_into;

/// Decoded request parameters in wire order (query first, then form body).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list with room for `n` pairs.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            pairs: Vec::with_capacity(n),
        }
    }

    /// Appends a pair (duplicates allowed).
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.pairs.push((key.into(), value.into()));
    }

    /// Value of the first parameter named `key` (exact, case-sensitive match).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Values of every parameter named `key`, in wire order.
    pub fn get_all<'s>(&'s self, key: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `true` if a parameter named `key` is present (even with an empty value).
    pub fn contains(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// All pairs in wire order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// `true` when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs as a slice.
    pub fn as_slice(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Consumes the list, returning the pairs.
    pub fn into_vec(self) -> Vec<(String, String)> {
        self.pairs
    }

    /// Encodes the pairs in their current order as `pe(k)=pe(v)&…` (RFC 3986), suitable as
    /// a query string or form body.
    pub fn to_query_string(&self) -> String {
        encode_pairs(self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// `pe(k)=pe(v)` joined by `&`, in iteration order.
pub(crate) fn encode_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        percent_encode_into(&mut out, k);
        out.push('=');
        percent_encode_into(&mut out, v);
    }
    out
}

impl From<Vec<(String, String)>> for Params {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            pairs: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Params {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.pairs.extend(iter.into_iter().map(|(k, v)| (k.into(), v.into())));
    }
}

impl<'a> IntoIterator for &'a Params {
    type Item = (&'a str, &'a str);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (String, String)>, fn(&'a (String, String)) -> (&'a str, &'a str)>;

    fn into_iter(self) -> Self::IntoIter {
        fn as_strs(pair: &(String, String)) -> (&str, &str) {
            (pair.0.as_str(), pair.1.as_str())
        }
        self.pairs.iter().map(as_strs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_returns_first_and_keeps_duplicates() {
        let p: Params = [("A", "1"), ("B", ""), ("A", "2")].into_iter().collect();
        assert_eq!(p.get("A"), Some("1"));
        assert_eq!(p.get("B"), Some(""));
        assert_eq!(p.get("a"), None, "names are case-sensitive");
        assert!(p.contains("B"));
        assert_eq!(p.get_all("A").collect::<Vec<_>>(), vec!["1", "2"]);
        assert_eq!(p.len(), 3);
        assert_eq!(p.iter().next(), Some(("A", "1")));
        assert_eq!((&p).into_iter().count(), 3);
    }

    #[test]
    fn to_query_string_is_canonically_encoded_in_order() {
        let mut p = Params::new();
        p.push("Z", "a b*");
        p.push("A", "ü");
        p.push("E", "");
        assert_eq!(p.to_query_string(), "Z=a%20b%2A&A=%C3%BC&E=");
    }
}
