//! DescribeRegions as a typed operation.

use serde_json::{json, Value};
use vpnroute_domain::ApiError;

use super::params;
use crate::reply::Reply;
use crate::rpc::FromRpc;
use crate::state::{Ctx, Region};

/// DescribeRegions' input.
#[derive(Debug, Clone)]
pub struct DescribeRegionsInput {
    /// `zh-CN` (default), `en-US` or `ja`: validated; region names are not translated.
    pub accept_language: String,
}

impl FromRpc for DescribeRegionsInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let lang = params(ctx).opt_str("AcceptLanguage").unwrap_or("zh-CN");
        if lang != "zh-CN" && lang != "en-US" && lang != "ja" {
            return Err(ApiError::invalid_parameter("AcceptLanguage"));
        }
        Ok(DescribeRegionsInput {
            accept_language: lang.to_string(),
        })
    }
}

/// DescribeRegions' answer: the served regions.
#[derive(Debug, Clone)]
pub struct RegionsList(pub Vec<Region>);

impl From<RegionsList> for Reply {
    fn from(list: RegionsList) -> Reply {
        let regions: Vec<Value> = list
            .0
            .iter()
            .map(|r| json!({"RegionId": r.id, "LocalName": r.local_name, "RegionEndpoint": format!("vpc.{}.aliyuncs.com", r.id)}))
            .collect();
        Reply::Value(json!({"Regions": {"Region": regions}}))
    }
}

operation!(
    /// DescribeRegions: All Resources.
    DescribeRegions: Read, DescribeRegionsInput => RegionsList,
    resources(|_input, _account| vec!["*".to_string()]),
    handle(|ctx, _tx, _input| Ok(RegionsList(ctx.app.config.regions.clone()))),
);
