//! User tags as typed operations: TagResources, UnTagResources, ListTagResources, over the
//! five taggable resource kinds (VPC, vswitch, VPN gateway, IPsec connection, customer
//! gateway). The rules (limits, key/value syntax, codes, filters, NextToken) are
//! [`vpnroute_domain::tags`]; tags live in each resource's document.

use serde::Serialize;
use vpnroute_domain::model::{CustomerGateway, VSwitch, Vpc, VpnConnection, VpnGateway};
use vpnroute_domain::tags::{self, TagParam, TagResourceType, Tags};
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, Tx, WriteTxExt};

use super::{all_in_region, owned, params, Regional};
use crate::ops::{arn, Done};
use crate::reply::Reply;
use crate::rpc::{self, FromRpc};
use crate::state::{Ctx, OpCtx};

/// A resource that carries user tags.
pub trait Tagged: Regional + Serialize {
    /// The type name in ARNs (`acs:vpc:…:<type>/<id>`).
    const ARN_TYPE: &'static str;
    fn id(&self) -> &str;
    fn tags_mut(&mut self) -> &mut Tags;
    fn tags(&self) -> &Tags;
}

macro_rules! tagged {
    ($t:ty, $arn:literal) => {
        impl Tagged for $t {
            const ARN_TYPE: &'static str = $arn;
            fn id(&self) -> &str {
                &self.id
            }
            fn tags_mut(&mut self) -> &mut Tags {
                &mut self.tags
            }
            fn tags(&self) -> &Tags {
                &self.tags
            }
        }
    };
}

tagged!(Vpc, "vpc");
tagged!(VSwitch, "vswitch");
tagged!(VpnGateway, "vpngateway");
tagged!(VpnConnection, "vpnconnection");
tagged!(CustomerGateway, "customergateway");

/// The ARN type name of a tag resource type.
fn arn_type(t: TagResourceType) -> &'static str {
    match t {
        TagResourceType::Vpc => Vpc::ARN_TYPE,
        TagResourceType::VSwitch => VSwitch::ARN_TYPE,
        TagResourceType::VpnGateway => VpnGateway::ARN_TYPE,
        TagResourceType::VpnConnection => VpnConnection::ARN_TYPE,
        TagResourceType::CustomerGateway => CustomerGateway::ARN_TYPE,
    }
}

fn resource_arns(region: &str, account: &str, t: TagResourceType, ids: &[String]) -> Vec<String> {
    if ids.is_empty() {
        return vec![arn(region, account, arn_type(t), "*")];
    }
    ids.iter().map(|id| arn(region, account, arn_type(t), id)).collect()
}

/// `ResourceType` and `ResourceId.N` (1–50) of a tag request.
fn target(ctx: &Ctx<'_>, ids_required: bool) -> Result<(TagResourceType, Vec<String>), ApiError> {
    let p = params(ctx);
    let resource_type = TagResourceType::parse(p.str("ResourceType")?)?;
    let ids = tags::indexed_list(
        ctx.params,
        "ResourceId",
        tags::MAX_RESOURCE_IDS,
        tags::TOO_MANY_RESOURCE_IDS,
    )?;
    if ids_required && ids.is_empty() {
        return Err(ApiError::missing_parameter("ResourceId.1"));
    }
    Ok((resource_type, ids))
}

/// Load every id (each must be the caller's, of that kind, in the region: else
/// `InvalidResourceId.NotFound` before any tag rule), change each, then store all: nothing is
/// written when one id is unknown or one change fails.
fn change_all<T: Tagged>(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    region: &str,
    ids: &[String],
    change: &dyn Fn(&mut Tags) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let mut docs = ids
        .iter()
        .map(|id| {
            owned::<T>(ctx, tx, region, id).map_err(|e| {
                if e == T::NOT_FOUND {
                    tags::RESOURCE_ID_NOT_FOUND
                } else {
                    e
                }
            })
        })
        .collect::<Result<Vec<T>, ApiError>>()?;
    for doc in &mut docs {
        change(doc.tags_mut())?;
    }
    for doc in &docs {
        tx.update_resource(T::KIND, doc.id(), doc)?;
    }
    Ok(())
}

fn change_tags(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    region: &str,
    t: TagResourceType,
    ids: &[String],
    change: &dyn Fn(&mut Tags) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    match t {
        TagResourceType::Vpc => change_all::<Vpc>(ctx, tx, region, ids, change),
        TagResourceType::VSwitch => change_all::<VSwitch>(ctx, tx, region, ids, change),
        TagResourceType::VpnGateway => change_all::<VpnGateway>(ctx, tx, region, ids, change),
        TagResourceType::VpnConnection => change_all::<VpnConnection>(ctx, tx, region, ids, change),
        TagResourceType::CustomerGateway => change_all::<CustomerGateway>(ctx, tx, region, ids, change),
    }
}

/// TagResources' input.
#[derive(Debug, Clone)]
pub struct TagResourcesInput {
    pub region: String,
    pub resource_type: TagResourceType,
    pub resource_ids: Vec<String>,
    pub tags: Tags,
}

impl FromRpc for TagResourcesInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let (resource_type, resource_ids) = target(ctx, true)?;
        let tags = tags::tags_to_set(ctx.params, "Tag")?;
        if tags.is_empty() {
            return Err(ApiError::missing_parameter("Tag.1.Key"));
        }
        Ok(TagResourcesInput {
            region,
            resource_type,
            resource_ids,
            tags,
        })
    }
}

operation!(
    /// TagResources: set tags on up to 50 resources of one type, all or none.
    TagResources: Write, TagResourcesInput => Done,
    resources(|input, account| resource_arns(&input.region, account, input.resource_type, &input.resource_ids)),
    handle(|ctx, tx, input| {
        let new = input.tags;
        change_tags(ctx, tx, &input.region, input.resource_type, &input.resource_ids, &|t| tags::set(t, &new))?;
        Ok(Done {})
    }),
);

/// Which tags UnTagResources removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untag {
    All,
    Keys(Vec<String>),
}

/// UnTagResources' input.
#[derive(Debug, Clone)]
pub struct UnTagResourcesInput {
    pub region: String,
    pub resource_type: TagResourceType,
    pub resource_ids: Vec<String>,
    pub untag: Untag,
}

impl FromRpc for UnTagResourcesInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let (resource_type, resource_ids) = target(ctx, true)?;
        let keys = tags::indexed_list(ctx.params, "TagKey", tags::MAX_TAGS_PER_REQUEST, tags::TOO_MANY_TAGS)?;
        for k in &keys {
            tags::check_key(k)?;
        }
        let all = params(ctx).bool_or("All", false)?;
        let untag = match (all, keys.is_empty()) {
            (true, _) => Untag::All,
            (false, false) => Untag::Keys(keys),
            (false, true) => return Err(ApiError::missing_parameter("TagKey")),
        };
        Ok(UnTagResourcesInput {
            region,
            resource_type,
            resource_ids,
            untag,
        })
    }
}

operation!(
    /// UnTagResources: remove the named tags (or all) from up to 50 resources of one type.
    UnTagResources: Write, UnTagResourcesInput => Done,
    resources(|input, account| resource_arns(&input.region, account, input.resource_type, &input.resource_ids)),
    handle(|ctx, tx, input| {
        let untag = input.untag;
        change_tags(ctx, tx, &input.region, input.resource_type, &input.resource_ids, &|t| {
            match &untag {
                Untag::All => t.clear(),
                Untag::Keys(keys) => tags::remove(t, keys),
            }
            Ok(())
        })?;
        Ok(Done {})
    }),
);

/// ListTagResources' input.
#[derive(Debug, Clone)]
pub struct ListTagResourcesInput {
    pub region: String,
    pub resource_type: TagResourceType,
    /// Empty: every resource of the type (then `filters` is not empty).
    pub resource_ids: Vec<String>,
    pub filters: Vec<TagParam>,
    pub max_results: usize,
    pub offset: usize,
}

impl FromRpc for ListTagResourcesInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let (resource_type, resource_ids) = target(ctx, false)?;
        let filters = tags::tag_params(ctx.params, "Tag")?;
        if resource_ids.is_empty() && filters.is_empty() {
            return Err(ApiError::missing_parameter("ResourceId.1"));
        }
        let p = params(ctx);
        let max_results = p.opt_int_in("MaxResults", 1, 50)?.unwrap_or(50) as usize;
        let offset = tags::decode_next_token(p.opt_str("NextToken"))?;
        Ok(ListTagResourcesInput {
            region,
            resource_type,
            resource_ids,
            filters,
            max_results,
            offset,
        })
    }
}

/// One (resource, tag) pair of ListTagResources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResource {
    pub resource_id: String,
    pub resource_type: &'static str,
    pub tag_key: String,
    pub tag_value: String,
}

/// ListTagResources' answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagResourcesPage {
    pub items: Vec<TagResource>,
    /// `""` on the last page.
    pub next_token: String,
}

impl From<TagResourcesPage> for Reply {
    fn from(page: TagResourcesPage) -> Reply {
        Reply::Value(serde_json::json!({
            "NextToken": page.next_token,
            "TagResources": {"TagResource": page.items},
        }))
    }
}

/// Every (resource, tag) pair of the caller's resources of kind `T` in the region that the
/// input selects, in resource creation order, then tag order; with tag filters only the
/// matching tags of the resources that match every filter.
fn pairs_of<T: Tagged>(
    ctx: &OpCtx<'_>,
    tx: &dyn ReadTx,
    input: &ListTagResourcesInput,
) -> Result<Vec<TagResource>, ApiError> {
    let name = input.resource_type.as_str();
    Ok(all_in_region::<T>(ctx, tx, &input.region, None)?
        .into_iter()
        .filter(|r| input.resource_ids.is_empty() || input.resource_ids.iter().any(|i| i == r.id()))
        .filter(|r| tags::matches(&input.filters, r.tags()))
        .flat_map(|r| {
            let id = r.id().to_string();
            r.tags()
                .iter()
                .filter(|(k, v)| {
                    // Filtering by tag lists the matching tags, not every tag of the resource.
                    input.filters.is_empty()
                        || input
                            .filters
                            .iter()
                            .any(|f| f.key == *k && f.value.as_ref().is_none_or(|want| want == v))
                })
                .map(|(k, v)| TagResource {
                    resource_id: id.clone(),
                    resource_type: name,
                    tag_key: k.clone(),
                    tag_value: v.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect())
}

fn list_tag_resources(
    ctx: &OpCtx<'_>,
    tx: &dyn ReadTx,
    input: ListTagResourcesInput,
) -> Result<TagResourcesPage, ApiError> {
    let all = match input.resource_type {
        TagResourceType::Vpc => pairs_of::<Vpc>(ctx, tx, &input)?,
        TagResourceType::VSwitch => pairs_of::<VSwitch>(ctx, tx, &input)?,
        TagResourceType::VpnGateway => pairs_of::<VpnGateway>(ctx, tx, &input)?,
        TagResourceType::VpnConnection => pairs_of::<VpnConnection>(ctx, tx, &input)?,
        TagResourceType::CustomerGateway => pairs_of::<CustomerGateway>(ctx, tx, &input)?,
    };
    let end = input.offset.saturating_add(input.max_results);
    let next_token = if end < all.len() {
        end.to_string()
    } else {
        String::new()
    };
    let items = all.into_iter().skip(input.offset).take(input.max_results).collect();
    Ok(TagResourcesPage { items, next_token })
}

operation!(
    /// ListTagResources: the tags of resources, by id and/or by tag, paged by NextToken.
    ListTagResources: Read, ListTagResourcesInput => TagResourcesPage,
    resources(|input, account| resource_arns(&input.region, account, input.resource_type, &input.resource_ids)),
    handle(|ctx, tx, input| list_tag_resources(ctx, tx, input)),
);
