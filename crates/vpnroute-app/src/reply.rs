//! What a read action answers. Most actions build a [`serde_json::Value`]; the Describe
//! actions called most often (one gateway, the gateway list, the route lists) answer typed
//! views that serialise straight from the stored records. Building a `Value` tree first (a
//! `BTreeMap` insert and a `String` key per field) cost about a fifth of a Describe call's
//! CPU. Both kinds encode the same way, through [`vpnroute_wire::encode_reply`]: JSON
//! directly, XML through a `Value` (so element order stays the sorted key order).

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};
use serde_json::Value;
use vpnroute_domain::params::Paging;

use crate::actions::gateway::{GatewayView, GatewaysPage};
use crate::actions::routes::RoutesPage;

/// The body of a successful read, without `RequestId`.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Reply {
    Value(Value),
    Gateway(Box<GatewayView>),
    Gateways(GatewaysPage),
    Routes(RoutesPage),
}

impl From<Value> for Reply {
    fn from(v: Value) -> Self {
        Reply::Value(v)
    }
}

/// Alibaba's list wrapper, `{"<item name>": [items…]}`, serialising each item through `view`.
pub struct List<'a, T, F> {
    pub item_name: &'static str,
    pub items: &'a [T],
    pub view: F,
}

impl<'a, T, F, V> Serialize for List<'a, T, F>
where
    F: Fn(&'a T) -> V,
    V: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Items<'b, 'a, T, F>(&'b List<'a, T, F>);
        impl<'b, 'a, T, F, V> Serialize for Items<'b, 'a, T, F>
        where
            F: Fn(&'a T) -> V,
            V: Serialize,
        {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.items.iter().map(&self.0.view))
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.item_name, &Items(self))?;
        m.end()
    }
}

/// `PageNumber`, `PageSize` and `TotalCount` of a list answer.
pub fn page_fields<S: SerializeStruct>(m: &mut S, paging: Paging, total: u64) -> Result<(), S::Error> {
    m.serialize_field("PageNumber", &paging.number)?;
    m.serialize_field("PageSize", &paging.size)?;
    m.serialize_field("TotalCount", &total)
}
