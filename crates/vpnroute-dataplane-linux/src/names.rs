//! Names of everything the data plane creates, derived from the prefix and stable ids.
//!
//! Interface names are limited to 15 bytes (IFNAMSIZ - 1), so gateway ids are shortened to
//! an 8-hex-digit hash; the full ids are kept in the kernel itself as interface aliases
//! (`vpnroute.gateway=…` on the VPC-side interface, `vpnroute.connection=…` on the tunnel of
//! a single-tunnel connection, `vpnroute.tunnel=…` on each of a dual-tunnel connection's two),
//! which is the name map a restarted process reads back.

/// Longest prefix accepted: `{prefix}g{8 hex}` must fit in 15 bytes.
pub const PREFIX_MAX_LEN: usize = 6;

const GATEWAY_ALIAS: &str = "vpnroute.gateway=";
const CONNECTION_ALIAS: &str = "vpnroute.connection=";
const TUNNEL_ALIAS: &str = "vpnroute.tunnel=";

/// FNV-1a, 64 bit: stable across processes and releases (unlike `DefaultHasher`).
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Checks a prefix: 1..=6 bytes of `[a-z0-9-]`, starting with a letter.
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    let ok_chars = prefix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let starts_with_letter = prefix.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if prefix.is_empty() || prefix.len() > PREFIX_MAX_LEN || !ok_chars || !starts_with_letter {
        return Err(format!(
            "netns prefix {prefix:?} must be 1 to {PREFIX_MAX_LEN} characters of a-z, 0-9 or '-', starting with a letter"
        ));
    }
    Ok(())
}

/// Every name the data plane uses, for one prefix.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Names {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// 8 hex digits standing for a gateway id in names.
    pub fn short(gateway_id: &str) -> String {
        let hash = stable_hash(gateway_id);
        format!("{:08x}", (hash >> 32) as u32 ^ hash as u32)
    }

    /// The gateway's own namespace.
    pub fn gateway_ns(&self, gateway_id: &str) -> String {
        format!("{}g-{}", self.prefix, Self::short(gateway_id))
    }

    /// The namespace holding the gateway's VPC bridge (where VPC hosts attach).
    pub fn vpc_ns(&self, gateway_id: &str) -> String {
        format!("{}v-{}", self.prefix, Self::short(gateway_id))
    }

    /// The one underlay (public network) namespace shared by all gateways and sites.
    pub fn underlay_ns(&self) -> String {
        format!("{}ul", self.prefix)
    }

    /// `true` for a namespace name that is a gateway namespace of this prefix.
    pub fn is_gateway_ns(&self, ns: &str) -> bool {
        ns.strip_prefix(&self.prefix)
            .and_then(|rest| rest.strip_prefix("g-"))
            .is_some_and(|short| short.len() == 8 && short.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// VPC-side interface in the gateway namespace.
    pub fn vpc_if(&self) -> String {
        format!("{}vpc", self.prefix)
    }

    /// Underlay (public) interface in the gateway namespace.
    pub fn underlay_if(&self) -> String {
        format!("{}ul", self.prefix)
    }

    /// Tunnel interface of the connection in `slot`, in the gateway namespace.
    pub fn tunnel_if(&self, slot: u32) -> String {
        format!("{}t{}", self.prefix, slot)
    }

    /// The slot of a tunnel interface name, if it is one.
    pub fn tunnel_slot(&self, ifname: &str) -> Option<u32> {
        let digits = ifname.strip_prefix(&self.prefix)?.strip_prefix('t')?;
        if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
            return None;
        }
        digits.parse().ok()
    }

    /// The bridge in the VPC and underlay namespaces.
    pub fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// The gateway's port on the VPC bridge.
    pub fn vpc_port(&self) -> String {
        format!("{}gw", self.prefix)
    }

    /// The gateway's port on the underlay bridge (one per gateway in the shared namespace).
    pub fn underlay_port(&self, gateway_id: &str) -> String {
        format!("{}g{}", self.prefix, Self::short(gateway_id))
    }

    pub fn gateway_alias(gateway_id: &str) -> String {
        format!("{GATEWAY_ALIAS}{gateway_id}")
    }

    pub fn parse_gateway_alias(alias: &str) -> Option<&str> {
        alias.strip_prefix(GATEWAY_ALIAS).filter(|id| !id.is_empty())
    }

    pub fn connection_alias(connection_id: &str) -> String {
        format!("{CONNECTION_ALIAS}{connection_id}")
    }

    pub fn parse_connection_alias(alias: &str) -> Option<&str> {
        alias.strip_prefix(CONNECTION_ALIAS).filter(|id| !id.is_empty())
    }

    /// The alias of one tunnel of a dual-tunnel connection (its tunnel id).
    pub fn tunnel_alias(tunnel_id: &str) -> String {
        format!("{TUNNEL_ALIAS}{tunnel_id}")
    }

    /// The tunnel key an interface's alias names: a connection id or a tunnel id.
    pub fn parse_tunnel_key(alias: &str) -> Option<&str> {
        Self::parse_connection_alias(alias).or_else(|| alias.strip_prefix(TUNNEL_ALIAS).filter(|id| !id.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz_and_read_back() {
        let names = Names::new("vrt123");
        assert!(names.underlay_port("vpn-anything").len() <= 15);
        assert!(names.tunnel_if(99_999).len() <= 15);
        assert_eq!(names.tunnel_slot(&names.tunnel_if(42)), Some(42));
        assert_eq!(names.tunnel_slot("vrt123t042"), None);
        assert_eq!(names.tunnel_slot("vrt123vpc"), None);
        assert!(names.is_gateway_ns(&names.gateway_ns("vpn-1")));
        assert!(!names.is_gateway_ns(&names.vpc_ns("vpn-1")));
        assert_eq!(Names::short("vpn-1"), Names::short("vpn-1"));
        assert_ne!(Names::short("vpn-1"), Names::short("vpn-2"));
        assert_eq!(
            Names::parse_gateway_alias(&Names::gateway_alias("vpn-x")),
            Some("vpn-x")
        );
        assert_eq!(
            Names::parse_connection_alias(&Names::connection_alias("vco-x")),
            Some("vco-x")
        );
        assert_eq!(Names::parse_tunnel_key(&Names::tunnel_alias("tun-x")), Some("tun-x"));
        assert_eq!(
            Names::parse_tunnel_key(&Names::connection_alias("vco-x")),
            Some("vco-x")
        );
        assert_eq!(Names::parse_tunnel_key("vpnroute.tunnel="), None);
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(validate_prefix("vr-").is_ok());
        assert!(validate_prefix("vrt999").is_ok());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("toolong").is_err());
        assert!(validate_prefix("Vr").is_err());
        assert!(validate_prefix("1vr").is_err());
        assert!(validate_prefix("v r").is_err());
    }
}
