//! Small formatting helpers shared by actions.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::reply::List;
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
    serde_json::to_value(TagList(tags)).unwrap_or_default()
}

/// A resource's tags as Alibaba lists them: `{"Tag":[{"Key":…,"Value":…}]}`.
pub struct TagList<'a>(pub &'a [(String, String)]);

impl Serialize for TagList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Tag<'a>(&'a (String, String));
        impl Serialize for Tag<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_struct("Tag", 2)?;
                m.serialize_field("Key", &self.0 .0)?;
                m.serialize_field("Value", &self.0 .1)?;
                m.end()
            }
        }
        List {
            item_name: "Tag",
            items: self.0,
            view: Tag,
        }
        .serialize(s)
    }
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
