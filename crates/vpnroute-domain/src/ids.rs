//! Resource identifiers in Alibaba's shape: a type prefix (`vpn-`, `vco-`, …), a two-letter
//! region hint and 19 lowercase alphanumerics, e.g. `vpn-bp1a3kqjiiq9legfx1234`.

use rand::Rng;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A new random id with the given prefix (without the dash), e.g. `new_id("vpn")`.
pub fn new_id(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + 22);
    s.push_str(prefix);
    s.push_str("-bp1");
    for _ in 0..17 {
        s.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    s
}

/// A request id in Alibaba's format (an upper-case UUID).
pub fn new_request_id() -> String {
    let mut rng = rand::rng();
    let b: [u8; 16] = rng.random();
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02X}")).collect::<String>();
    format!("{}-{}-{}-{}-{}", h(0..4), h(4..6), h(6..8), h(8..10), h(10..16))
}

/// A random secret of `len` alphanumeric characters (access key secrets, PSKs).
pub fn new_secret(len: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| A[rng.random_range(0..A.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_length() {
        let id = new_id("vpn");
        assert!(id.starts_with("vpn-bp1"));
        assert_eq!(id.len(), 3 + 1 + 3 + 17);
        assert_ne!(new_id("vpn"), id);
        assert_eq!(new_request_id().len(), 36);
    }
}

macro_rules! id_newtype {
    ($(#[$doc:meta])* $t:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $t(pub String);

        impl $t {
            pub fn new(id: impl Into<String>) -> Self {
                $t(id.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<String> for $t {
            fn from(s: String) -> Self {
                $t(s)
            }
        }
        impl PartialEq<$t> for String {
            fn eq(&self, other: &$t) -> bool {
                *self == other.0
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                $t(s.to_string())
            }
        }
    };
}

id_newtype!(
    /// A VPN gateway id (`vpn-…`).
    GatewayId
);
id_newtype!(
    /// An IPsec connection id (`vco-…`).
    ConnectionId
);
id_newtype!(
    /// An account id (numeric text, e.g. `1234567890123456`).
    AccountId
);
id_newtype!(
    /// A VPC id (`vpc-…`).
    VpcId
);
id_newtype!(
    /// A customer gateway id (`cgw-…`).
    CustomerGatewayId
);
