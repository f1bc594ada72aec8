//! User tags: the rules of TagResources / UnTagResources / ListTagResources and of the `Tag.N` /
//! `Tags.N` parameters of the Create and Describe actions.
//!
//! Limits (Alibaba's TagResources pages, VPC SDK 7.2.2 field docs): at most 20 tags per
//! resource and per request, 50 resource ids per request; a key is 1–128 characters, a value
//! 0–128; neither may start with `aliyun` or `acs:` (reserved for system tags) nor contain
//! `http://` or `https://`. Codes and messages are Alibaba's common tag codes (shared by the
//! ECS, SMC, … tag pages; the VPC page lists only `Forbidden`): see docs/compatibility.md §3.5.

use crate::error::{ApiError, Result};

/// Tags a resource may carry.
pub const MAX_TAGS_PER_RESOURCE: usize = 20;
/// `Tag.N` / `TagKey.N` entries one request may carry.
pub const MAX_TAGS_PER_REQUEST: usize = 20;
/// `ResourceId.N` entries one tag request may carry.
pub const MAX_RESOURCE_IDS: usize = 50;
/// Longest key or value.
const MAX_LEN: usize = 128;

pub const INVALID_TAG_KEY: ApiError =
    ApiError::new_static("InvalidTagKey.Malformed", "The specified Tag.n.Key is not valid.", 400);
pub const INVALID_TAG_VALUE: ApiError = ApiError::new_static(
    "InvalidTagValue.Malformed",
    "The specified Tag.n.Value is not valid.",
    400,
);
pub const DUPLICATE_TAG_KEY: ApiError =
    ApiError::new_static("Duplicate.TagKey", "The Tag.N.Key contain duplicate key.", 400);
pub const TAG_QUOTA_EXCEEDED: ApiError = ApiError::new_static(
    "OperationDenied.QuotaExceed",
    "The quota of tags on resource is beyond permitted range.",
    400,
);
pub const TOO_MANY_TAGS: ApiError = ApiError::new_static(
    "NumberExceed.Tags",
    "The maximum number of the Tag parameters cannot exceed 20.",
    400,
);
pub const TOO_MANY_RESOURCE_IDS: ApiError = ApiError::new_static(
    "NumberExceed.ResourceIds",
    "The maximum number of ResourceId parameters cannot exceed 50.",
    400,
);
pub const RESOURCE_TYPE_NOT_FOUND: ApiError = ApiError::new_static(
    "InvalidResourceType.NotFound",
    "The ResourceType provided does not exist in our records.",
    404,
);
pub const RESOURCE_ID_NOT_FOUND: ApiError = ApiError::new_static(
    "InvalidResourceId.NotFound",
    "The specified ResourceIds are not found in our records.",
    404,
);

/// A resource's tags, in the order their keys were first set.
pub type Tags = Vec<(String, String)>;

/// The resource types the tag actions accept (the value is case-insensitive: Terraform sends
/// `VpnGateWay`, the SDK documents `VPNGATEWAY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagResourceType {
    Vpc,
    VSwitch,
    VpnGateway,
    VpnConnection,
    CustomerGateway,
}

impl TagResourceType {
    pub const ALL: [TagResourceType; 5] = [
        TagResourceType::Vpc,
        TagResourceType::VSwitch,
        TagResourceType::VpnGateway,
        TagResourceType::VpnConnection,
        TagResourceType::CustomerGateway,
    ];

    /// `InvalidResourceType.NotFound` for anything else (also for Alibaba types vpnroute does
    /// not model, such as `EIP` or `NATGATEWAY`).
    pub fn parse(text: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
            .ok_or(RESOURCE_TYPE_NOT_FOUND)
    }

    /// The name ListTagResources answers with.
    pub fn as_str(self) -> &'static str {
        match self {
            TagResourceType::Vpc => "VPC",
            TagResourceType::VSwitch => "VSWITCH",
            TagResourceType::VpnGateway => "VPNGATEWAY",
            TagResourceType::VpnConnection => "VPNCONNECTION",
            TagResourceType::CustomerGateway => "CUSTOMERGATEWAY",
        }
    }
}

fn reserved_or_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.starts_with("aliyun") || lower.starts_with("acs:") || lower.contains("http://") || lower.contains("https://")
}

/// A tag key: 1–128 characters, not reserved, no URL.
pub fn check_key(key: &str) -> Result<()> {
    let n = key.chars().count();
    if n == 0 || n > MAX_LEN || reserved_or_url(key) {
        return Err(INVALID_TAG_KEY);
    }
    Ok(())
}

/// A tag value: up to 128 characters (may be empty), not reserved, no URL.
pub fn check_value(value: &str) -> Result<()> {
    if value.chars().count() > MAX_LEN || reserved_or_url(value) {
        return Err(INVALID_TAG_VALUE);
    }
    Ok(())
}

/// The `N` of `{prefix}.N{suffix}` (`N` ≥ 1, decimal), e.g. `Tag.3.Key` with prefix `Tag`,
/// suffix `.Key`.
fn index_of(name: &str, prefix: &str, suffix: &str) -> Option<usize> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('.')?;
    let digits = rest.strip_suffix(suffix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n >= 1)
}

/// Every non-empty `{prefix}.N` value (e.g. `ResourceId.N`, `TagKey.N`) in order of `N`;
/// more than `max` distinct entries → `too_many`.
pub fn indexed_list(params: &[(String, String)], prefix: &str, max: usize, too_many: ApiError) -> Result<Vec<String>> {
    let mut found: Vec<(usize, String)> = Vec::new();
    for (k, v) in params {
        if let Some(n) = index_of(k, prefix, "") {
            if !v.is_empty() && !found.iter().any(|(m, _)| *m == n) {
                found.push((n, v.clone()));
            }
        }
    }
    if found.len() > max {
        return Err(too_many);
    }
    found.sort_by_key(|(n, _)| *n);
    Ok(found.into_iter().map(|(_, v)| v).collect())
}

/// A tag parameter: key and, when given, value (`None` = only the key was sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagParam {
    pub key: String,
    pub value: Option<String>,
}

/// `{prefix}.N.Key` / `{prefix}.N.Value` pairs in order of `N`, validated: a value without a
/// key (or an empty key) → `InvalidTagKey.Malformed`; more than 20 → `NumberExceed.Tags`;
/// a key twice → `Duplicate.TagKey`.
pub fn tag_params(params: &[(String, String)], prefix: &str) -> Result<Vec<TagParam>> {
    let mut keys: Vec<(usize, &str)> = Vec::new();
    let mut values: Vec<(usize, &str)> = Vec::new();
    for (k, v) in params {
        if let Some(n) = index_of(k, prefix, ".Key") {
            if !keys.iter().any(|(m, _)| *m == n) {
                keys.push((n, v));
            }
        } else if let Some(n) = index_of(k, prefix, ".Value") {
            if !values.iter().any(|(m, _)| *m == n) {
                values.push((n, v));
            }
        }
    }
    let mut indexes: Vec<usize> = keys.iter().chain(values.iter()).map(|(n, _)| *n).collect();
    indexes.sort_unstable();
    indexes.dedup();
    if indexes.len() > MAX_TAGS_PER_REQUEST {
        return Err(TOO_MANY_TAGS);
    }
    let mut out: Vec<TagParam> = Vec::with_capacity(indexes.len());
    for n in indexes {
        let key = keys.iter().find(|(m, _)| *m == n).map(|(_, k)| *k).unwrap_or("");
        let value = values.iter().find(|(m, _)| *m == n).map(|(_, v)| v.to_string());
        if key.is_empty() && value.as_deref().unwrap_or("").is_empty() {
            // An empty `Tag.N.Key=` alone is an absent parameter, as for every other one.
            continue;
        }
        check_key(key)?;
        if let Some(v) = &value {
            check_value(v)?;
        }
        if out.iter().any(|t| t.key == key) {
            return Err(DUPLICATE_TAG_KEY);
        }
        out.push(TagParam {
            key: key.to_string(),
            value,
        });
    }
    Ok(out)
}

/// Tags to set (Create actions, TagResources): an absent value is the empty value.
pub fn tags_to_set(params: &[(String, String)], prefix: &str) -> Result<Tags> {
    Ok(tag_params(params, prefix)?
        .into_iter()
        .map(|t| (t.key, t.value.unwrap_or_default()))
        .collect())
}

/// Set `new` on `tags`: an existing key gets the new value in place, a new key is appended.
/// More than 20 tags afterwards → `OperationDenied.QuotaExceed`, `tags` unchanged.
pub fn set(tags: &mut Tags, new: &[(String, String)]) -> Result<()> {
    let added = new.iter().filter(|(k, _)| !tags.iter().any(|(t, _)| t == k)).count();
    if tags.len() + added > MAX_TAGS_PER_RESOURCE {
        return Err(TAG_QUOTA_EXCEEDED);
    }
    for (k, v) in new {
        match tags.iter_mut().find(|(t, _)| t == k) {
            Some(existing) => existing.1 = v.clone(),
            None => tags.push((k.clone(), v.clone())),
        }
    }
    Ok(())
}

/// Remove `keys` (unknown keys are ignored).
pub fn remove(tags: &mut Tags, keys: &[String]) {
    tags.retain(|(k, _)| !keys.contains(k));
}

/// Describe / ListTagResources filters: every filter must match; a filter without a value
/// matches the key with any value.
pub fn matches(filters: &[TagParam], tags: &[(String, String)]) -> bool {
    filters.iter().all(|f| {
        tags.iter()
            .any(|(k, v)| *k == f.key && f.value.as_ref().is_none_or(|want| want == v))
    })
}

/// ListTagResources paging: `NextToken` is the decimal offset of the next item (`""` at the end).
pub fn decode_next_token(token: Option<&str>) -> Result<usize> {
    match token {
        None => Ok(0),
        Some(t) => t.parse().map_err(|_| ApiError::invalid_parameter("NextToken")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn resource_types_are_case_insensitive() {
        assert_eq!(
            TagResourceType::parse("VpnGateWay").unwrap(),
            TagResourceType::VpnGateway
        );
        assert_eq!(TagResourceType::parse("vpc").unwrap().as_str(), "VPC");
        assert_eq!(TagResourceType::parse("EIP").unwrap_err(), RESOURCE_TYPE_NOT_FOUND);
    }

    #[test]
    fn keys_and_values() {
        assert!(check_key("env").is_ok());
        for bad in ["", "aliyun", "Aliyun-x", "acs:k", "a http://b", &"x".repeat(129)] {
            assert_eq!(check_key(bad).unwrap_err(), INVALID_TAG_KEY, "{bad}");
        }
        assert!(check_value("").is_ok());
        assert!(check_value(&"v".repeat(128)).is_ok());
        assert_eq!(check_value("https://v").unwrap_err(), INVALID_TAG_VALUE);
    }

    #[test]
    fn tag_parameters() {
        let src = p(&[
            ("Tag.2.Key", "b"),
            ("Tag.1.Key", "a"),
            ("Tag.1.Value", "1"),
            ("Other", "x"),
        ]);
        let t = tag_params(&src, "Tag").unwrap();
        assert_eq!(
            t,
            vec![
                TagParam {
                    key: "a".into(),
                    value: Some("1".into())
                },
                TagParam {
                    key: "b".into(),
                    value: None
                }
            ]
        );
        assert_eq!(tags_to_set(&src, "Tag").unwrap()[1], ("b".to_string(), String::new()));
        assert_eq!(
            tag_params(&p(&[("Tag.1.Value", "v")]), "Tag").unwrap_err(),
            INVALID_TAG_KEY
        );
        let dup = p(&[("Tag.1.Key", "a"), ("Tag.2.Key", "a")]);
        assert_eq!(tag_params(&dup, "Tag").unwrap_err(), DUPLICATE_TAG_KEY);
        let many: Vec<(String, String)> = (1..=21).map(|n| (format!("Tags.{n}.Key"), format!("k{n}"))).collect();
        assert_eq!(tag_params(&many, "Tags").unwrap_err(), TOO_MANY_TAGS);
        assert!(tag_params(&many, "Tag").unwrap().is_empty(), "other prefix");
        assert!(tag_params(&p(&[("Tag.x.Key", "a"), ("Tag.0.Key", "b")]), "Tag")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn indexed_lists() {
        let src = p(&[("ResourceId.2", "b"), ("ResourceId.1", "a"), ("ResourceId.3", "")]);
        assert_eq!(
            indexed_list(&src, "ResourceId", 50, TOO_MANY_RESOURCE_IDS).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(
            indexed_list(&src, "ResourceId", 1, TOO_MANY_RESOURCE_IDS).unwrap_err(),
            TOO_MANY_RESOURCE_IDS
        );
    }

    #[test]
    fn set_remove_and_match() {
        let mut tags: Tags = (0..19).map(|n| (format!("k{n}"), "v".to_string())).collect();
        set(&mut tags, &[("k0".into(), "new".into()), ("x".into(), "1".into())]).unwrap();
        assert_eq!((tags.len(), tags[0].1.as_str()), (20, "new"));
        let before = tags.clone();
        assert_eq!(
            set(&mut tags, &[("y".into(), "".into())]).unwrap_err(),
            TAG_QUOTA_EXCEEDED
        );
        assert_eq!(tags, before);
        remove(&mut tags, &["k0".into(), "nope".into()]);
        assert_eq!(tags.len(), 19);
        let f = |k: &str, v: Option<&str>| TagParam {
            key: k.into(),
            value: v.map(String::from),
        };
        assert!(matches(&[f("x", None)], &tags));
        assert!(matches(&[f("x", Some("1")), f("k1", Some("v"))], &tags));
        assert!(!matches(&[f("x", Some("2"))], &tags));
        assert!(matches(&[], &[]));
    }

    #[test]
    fn next_tokens() {
        assert_eq!(decode_next_token(None).unwrap(), 0);
        assert_eq!(decode_next_token(Some("25")).unwrap(), 25);
        assert_eq!(decode_next_token(Some("zz")).unwrap_err().code, "InvalidParameter");
    }
}
