//! IPsec connection configuration: the `IkeConfig` / `IpsecConfig` / `HealthCheckConfig` /
//! `BgpConfig` JSON members of CreateVpnConnection and ModifyVpnConnectionAttribute, and the
//! dual-tunnel `TunnelOptionsSpecification.N.*` parameters.
//!
//! Each config is validated member by member, completed with Alibaba's defaults (surface
//! §2.16) and returned in Alibaba's response shape (`IkeConfig{IkeVersion, …}`,
//! `VcoHealthCheck{Enable, Dip, …}`, `VpnBgpConfig{…}`). Rules (docs/compatibility.md §4.5):
//! * a member that is absent, `null` or `""` keeps the base value: the current one on Modify,
//!   the default on Create;
//! * a number `0` means "default" (Terraform sends 0 for every unset number): lifetimes 86400,
//!   health-check interval 3 and retry 3.

use serde_json::{json, Map, Value};

use crate::error::{ApiError, Result};

/// A JSON object given as a parameter.
pub type Object = Map<String, Value>;

const ENC: &[&str] = &["aes", "aes192", "aes256", "des", "3des", "sm4"];
const AUTH: &[&str] = &["md5", "sha1", "sha256", "sha384", "sha512", "sm3"];
const PFS: &[&str] = &["group2", "group1", "group5", "group14", "group24"];
const IPSEC_PFS: &[&str] = &["group2", "group1", "group5", "group14", "group24", "disabled"];
const DEFAULT_LIFETIME: i64 = 86_400;
/// Alibaba's own ASN: the default LocalAsn, and not allowed for customer gateways.
pub const ALIBABA_ASN: i64 = 45_104;

/// `text` as a JSON object; absent → empty; anything else → `InvalidParameter` `param`.
pub fn parse_object(text: Option<&str>, param: &str) -> Result<Object> {
    match text {
        None => Ok(Map::new()),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(ApiError::invalid_parameter(param)),
        },
    }
}

/// A member that counts as given: not absent, `null` or `""`.
fn given<'a>(m: &'a Object, key: &str) -> Option<&'a Value> {
    match m.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(v) => Some(v),
    }
}

/// The base value of `key` (the current config's member) if there is one.
fn base_str(base: Option<&Value>, key: &str) -> Option<String> {
    match base?.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn bad(param: &str, key: &str) -> ApiError {
    ApiError::invalid_parameter(&format!("{param}.{key}"))
}

/// A string member restricted to `allowed` (the first is the default).
fn pick(m: &Object, key: &str, base: Option<&Value>, allowed: &[&str], param: &str) -> Result<String> {
    match given(m, key) {
        None => Ok(base_str(base, key).unwrap_or_else(|| allowed[0].to_string())),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(s.clone()),
        Some(_) => Err(bad(param, key)),
    }
}

/// A free-text member.
fn text(m: &Object, key: &str, base: Option<&Value>, default: impl FnOnce() -> String) -> String {
    match given(m, key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => base_str(base, key).unwrap_or_else(default),
    }
}

/// An integer member in `min..=max`; `0` is the default when `zero_is_default`.
fn int(
    m: &Object,
    key: &str,
    base: Option<&Value>,
    default: i64,
    range: (i64, i64),
    zero_is_default: bool,
    param: &str,
) -> Result<i64> {
    let v = match given(m, key) {
        None => return Ok(base_str(base, key).and_then(|s| s.parse().ok()).unwrap_or(default)),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match v {
        Some(0) if zero_is_default => Ok(default),
        Some(v) if (range.0..=range.1).contains(&v) => Ok(v),
        _ => Err(bad(param, key)),
    }
}

/// A boolean member: JSON bool or `"true"`/`"false"` in any case.
fn boolean(m: &Object, key: &str, base: Option<&Value>, default: bool, param: &str) -> Result<bool> {
    match given(m, key) {
        None => Ok(base_str(base, key).map(|s| s == "true").unwrap_or(default)),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(bad(param, key)),
    }
}

/// The IKE phase: `{IkeVersion, IkeMode, IkeEncAlg, IkeAuthAlg, IkePfs, IkeLifetime, LocalId,
/// RemoteId, Psk}`. LocalId/RemoteId default to the two ends' addresses; Psk to `new_psk()`.
pub fn ike(
    m: &Object,
    base: Option<&Value>,
    local_id: &str,
    remote_id: &str,
    new_psk: impl FnOnce() -> String,
    param: &str,
) -> Result<Value> {
    let psk = text(m, "Psk", base, new_psk);
    if psk.chars().count() > 100 {
        return Err(bad(param, "Psk"));
    }
    Ok(json!({
        "IkeVersion": pick(m, "IkeVersion", base, &["ikev1", "ikev2"], param)?,
        "IkeMode": pick(m, "IkeMode", base, &["main", "aggressive"], param)?,
        "IkeEncAlg": pick(m, "IkeEncAlg", base, ENC, param)?,
        "IkeAuthAlg": pick(m, "IkeAuthAlg", base, AUTH, param)?,
        "IkePfs": pick(m, "IkePfs", base, PFS, param)?,
        "IkeLifetime": int(m, "IkeLifetime", base, DEFAULT_LIFETIME, (1, 86_400), true, param)?,
        "LocalId": text(m, "LocalId", base, || local_id.to_string()),
        "RemoteId": text(m, "RemoteId", base, || remote_id.to_string()),
        "Psk": psk,
    }))
}

/// The IPsec phase: `{IpsecEncAlg, IpsecAuthAlg, IpsecPfs, IpsecLifetime}`.
pub fn ipsec(m: &Object, base: Option<&Value>, param: &str) -> Result<Value> {
    Ok(json!({
        "IpsecEncAlg": pick(m, "IpsecEncAlg", base, ENC, param)?,
        "IpsecAuthAlg": pick(m, "IpsecAuthAlg", base, AUTH, param)?,
        "IpsecPfs": pick(m, "IpsecPfs", base, IPSEC_PFS, param)?,
        "IpsecLifetime": int(m, "IpsecLifetime", base, DEFAULT_LIFETIME, (1, 86_400), true, param)?,
    }))
}

/// `HealthCheckConfig{enable, dip, sip, interval, retry}` → `VcoHealthCheck{Enable ("true" /
/// "false"), Dip, Sip, Interval 1–60 (3), Retry 1–100 (3), Policy, Status}`.
pub fn health_check(m: &Object, base: Option<&Value>) -> Result<Value> {
    const P: &str = "HealthCheckConfig";
    // The request members are lower-case, the response members capitalised.
    let base_of = |key: &str| base.and_then(|b| b.get(key)).cloned();
    let b = base.map(|_| {
        json!({"enable": base_of("Enable"), "dip": base_of("Dip"), "sip": base_of("Sip"),
               "interval": base_of("Interval"), "retry": base_of("Retry")})
    });
    let b = b.as_ref();
    let enabled = boolean(m, "enable", b, false, P)?;
    Ok(json!({
        "Enable": if enabled { "true" } else { "false" },
        "Dip": text(m, "dip", b, String::new),
        "Sip": text(m, "sip", b, String::new),
        "Interval": int(m, "interval", b, 3, (1, 60), true, P)?,
        "Retry": int(m, "retry", b, 3, (1, 100), true, P)?,
        "Policy": "revoke_route",
        "Status": if enabled { "success" } else { "" },
    }))
}

/// `BgpConfig{EnableBgp, LocalAsn, TunnelCidr, LocalBgpIp}` → `VpnBgpConfig{EnableBgp ("true" /
/// "false"), LocalAsn (number, 45104), TunnelCidr, LocalBgpIp, PeerBgpIp, Status, AuthKey
/// [, PeerAsn]}`; `PeerAsn` only when the customer gateway has one.
pub fn bgp(m: &Object, base: Option<&Value>, peer_asn: Option<i64>, auth_key: &str) -> Result<Value> {
    const P: &str = "BgpConfig";
    let enabled = boolean(m, "EnableBgp", base, false, P)?;
    let mut v = json!({
        "EnableBgp": if enabled { "true" } else { "false" },
        "LocalAsn": int(m, "LocalAsn", base, ALIBABA_ASN, (1, 4_294_967_295), true, P)?,
        "TunnelCidr": text(m, "TunnelCidr", base, String::new),
        "LocalBgpIp": text(m, "LocalBgpIp", base, String::new),
        "PeerBgpIp": "",
        "Status": if enabled { "success" } else { "" },
        "AuthKey": auth_key,
    });
    if let Some(asn) = peer_asn {
        v["PeerAsn"] = json!(asn);
    }
    Ok(v)
}

/// The role of a tunnel of a dual-tunnel connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Slave,
}

impl Role {
    pub fn parse(text: &str, param: &str) -> Result<Self> {
        match text {
            "master" => Ok(Role::Master),
            "slave" => Ok(Role::Slave),
            _ => Err(ApiError::invalid_parameter(param)),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Slave => "slave",
        }
    }
}

/// One `TunnelOptionsSpecification.N` as sent: everything optional, the three configs as
/// objects of their flattened members (`…N.TunnelIkeConfig.Psk` → `{"Psk": …}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TunnelInput {
    pub index: usize,
    pub tunnel_id: Option<String>,
    pub customer_gateway_id: Option<String>,
    pub role: Option<String>,
    pub enable_dpd: Option<bool>,
    pub enable_nat_traversal: Option<bool>,
    pub remote_ca_certificate: Option<String>,
    pub ike: Object,
    pub ipsec: Object,
    pub bgp: Object,
}

const TUNNEL_PREFIX: &str = "TunnelOptionsSpecification.";

/// Every `TunnelOptionsSpecification.N.*` group, in order of `N`. Unknown members →
/// `InvalidParameter`; a non-boolean EnableDpd/EnableNatTraversal → `InvalidParameter`.
pub fn tunnel_inputs(params: &[(String, String)]) -> Result<Vec<TunnelInput>> {
    let mut out: Vec<TunnelInput> = Vec::new();
    for (name, value) in params {
        let Some(rest) = name.strip_prefix(TUNNEL_PREFIX) else {
            continue;
        };
        let Some((n, member)) = rest.split_once('.') else {
            return Err(ApiError::invalid_parameter(name));
        };
        let index: usize = match n.parse() {
            Ok(i) if i >= 1 && n.bytes().all(|b| b.is_ascii_digit()) => i,
            _ => return Err(ApiError::invalid_parameter(name)),
        };
        if value.is_empty() {
            continue;
        }
        let t = match out.iter().position(|t| t.index == index) {
            Some(p) => &mut out[p],
            None => {
                out.push(TunnelInput {
                    index,
                    ..TunnelInput::default()
                });
                out.last_mut().expect("just pushed")
            }
        };
        let flag = |v: &str| -> Result<bool> {
            if v.eq_ignore_ascii_case("true") {
                Ok(true)
            } else if v.eq_ignore_ascii_case("false") {
                Ok(false)
            } else {
                Err(ApiError::invalid_parameter(name))
            }
        };
        let first = |slot: &mut Option<String>| {
            if slot.is_none() {
                *slot = Some(value.clone());
            }
        };
        match member {
            "TunnelId" => first(&mut t.tunnel_id),
            "CustomerGatewayId" => first(&mut t.customer_gateway_id),
            "Role" => first(&mut t.role),
            "RemoteCaCertificate" => first(&mut t.remote_ca_certificate),
            "EnableDpd" => t.enable_dpd = Some(flag(value)?),
            "EnableNatTraversal" => t.enable_nat_traversal = Some(flag(value)?),
            _ => {
                let (block, key) = member
                    .split_once('.')
                    .ok_or_else(|| ApiError::invalid_parameter(name))?;
                let obj = match block {
                    "TunnelIkeConfig" => &mut t.ike,
                    "TunnelIpsecConfig" => &mut t.ipsec,
                    "TunnelBgpConfig" => &mut t.bgp,
                    _ => return Err(ApiError::invalid_parameter(name)),
                };
                obj.entry(key.to_string())
                    .or_insert_with(|| Value::String(value.clone()));
            }
        }
    }
    out.sort_by_key(|t| t.index);
    Ok(out)
}

/// A tunnel's `TunnelBgpConfig` in its stored shape: `{LocalAsn (number), TunnelCidr, LocalBgpIp}`.
pub fn tunnel_bgp(m: &Object, base: Option<&Value>, param: &str) -> Result<Value> {
    Ok(json!({
        "LocalAsn": int(m, "LocalAsn", base, ALIBABA_ASN, (1, 4_294_967_295), true, param)?,
        "TunnelCidr": text(m, "TunnelCidr", base, String::new),
        "LocalBgpIp": text(m, "LocalBgpIp", base, String::new),
    }))
}

/// The tunnel configs are all strings in Alibaba's response models (`IkeLifetime: "3600"`,
/// `LocalAsn: "65001"`): every number of `v`'s members as its decimal text.
pub fn as_strings(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let s = match v {
                        Value::Number(n) => Value::String(n.to_string()),
                        Value::Bool(b) => Value::String(b.to_string()),
                        other => other.clone(),
                    };
                    (k.clone(), s)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn ike_defaults_and_zero() {
        let v = ike(
            &obj(json!({"IkeLifetime": 0, "Psk": "p"})),
            None,
            "1.1.1.1",
            "2.2.2.2",
            || "x".into(),
            "IkeConfig",
        )
        .unwrap();
        assert_eq!(v["IkeLifetime"], 86400);
        assert_eq!(
            (v["IkeVersion"].as_str(), v["LocalId"].as_str()),
            (Some("ikev1"), Some("1.1.1.1"))
        );
        let e = ike(
            &obj(json!({"IkeEncAlg": "rot13"})),
            None,
            "",
            "",
            String::new,
            "IkeConfig",
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "The specified parameter \"IkeConfig.IkeEncAlg\" is not valid."
        );
        // Modify: absent members keep the current value; a given one replaces it
        let cur = ike(
            &obj(json!({"IkeVersion": "ikev2", "Psk": "old", "IkeLifetime": 3600})),
            None,
            "a",
            "b",
            String::new,
            "IkeConfig",
        )
        .unwrap();
        let next = ike(
            &obj(json!({"Psk": "new"})),
            Some(&cur),
            "x",
            "y",
            || "z".into(),
            "IkeConfig",
        )
        .unwrap();
        assert_eq!(
            (next["IkeVersion"].as_str(), next["Psk"].as_str()),
            (Some("ikev2"), Some("new"))
        );
        assert_eq!(
            (next["IkeLifetime"].as_i64(), next["LocalId"].as_str()),
            (Some(3600), Some("a"))
        );
    }

    #[test]
    fn health_and_bgp() {
        let h = health_check(
            &obj(json!({"enable": true, "interval": 0, "retry": 0, "sip": "1.1.1.1"})),
            None,
        )
        .unwrap();
        assert_eq!(
            (h["Interval"].as_i64(), h["Retry"].as_i64(), h["Enable"].as_str()),
            (Some(3), Some(3), Some("true"))
        );
        let h2 = health_check(&obj(json!({"interval": 10})), Some(&h)).unwrap();
        assert_eq!(
            (h2["Interval"].as_i64(), h2["Sip"].as_str(), h2["Enable"].as_str()),
            (Some(10), Some("1.1.1.1"), Some("true"))
        );
        assert!(health_check(&obj(json!({"interval": 61})), None).is_err());
        let b = bgp(
            &obj(json!({"LocalAsn": "65001", "EnableBgp": "true"})),
            None,
            Some(7),
            "k",
        )
        .unwrap();
        assert_eq!(
            (b["LocalAsn"].as_i64(), b["PeerAsn"].as_i64(), b["EnableBgp"].as_str()),
            (Some(65001), Some(7), Some("true"))
        );
        assert!(bgp(&Map::new(), None, None, "").unwrap().get("PeerAsn").is_none());
    }

    #[test]
    fn tunnel_parameters() {
        let p: Vec<(String, String)> = [
            ("TunnelOptionsSpecification.2.Role", "slave"),
            ("TunnelOptionsSpecification.1.Role", "master"),
            ("TunnelOptionsSpecification.1.CustomerGatewayId", "cgw-1"),
            ("TunnelOptionsSpecification.1.EnableDpd", "false"),
            ("TunnelOptionsSpecification.1.TunnelIkeConfig.Psk", "s"),
            ("TunnelOptionsSpecification.1.TunnelBgpConfig.LocalAsn", "65001"),
            ("RegionId", "cn-hangzhou"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let t = tunnel_inputs(&p).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].index, t[0].role.as_deref(), t[0].enable_dpd),
            (1, Some("master"), Some(false))
        );
        assert_eq!(t[0].ike["Psk"], "s");
        let b = tunnel_bgp(&t[0].bgp, None, "TunnelBgpConfig").unwrap();
        assert_eq!(as_strings(&b)["LocalAsn"], "65001");
        let bad: Vec<(String, String)> = vec![("TunnelOptionsSpecification.1.Nope".into(), "x".into())];
        assert_eq!(tunnel_inputs(&bad).unwrap_err().code, "InvalidParameter");
        let bad: Vec<(String, String)> = vec![("TunnelOptionsSpecification.1.EnableDpd".into(), "yes".into())];
        assert_eq!(tunnel_inputs(&bad).unwrap_err().code, "InvalidParameter");
        assert_eq!(Role::parse("slave", "r").unwrap().as_str(), "slave");
        assert!(Role::parse("backup", "r").is_err());
    }
}
