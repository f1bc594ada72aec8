//! Small formatting helpers shared by actions.

use serde_json::{json, Value};
use time::OffsetDateTime;

/// `2024-05-10T08:00:00Z` from epoch ms (Alibaba's string timestamps).
pub fn iso_time(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// `2024-05-10T08:00Z` (DescribeRouteEntryList's GmtModified).
pub fn iso_minute(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// `{"Tag":[{"Key":…,"Value":…}]}`.
pub fn tags_json(tags: &[(String, String)]) -> Value {
    json!({"Tag": tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(iso_time(1_715_328_000_000), "2024-05-10T08:00:00Z");
        assert_eq!(iso_minute(1_715_328_000_000), "2024-05-10T08:00Z");
    }
}
