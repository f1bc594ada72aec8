//! DescribeRegions.

use serde_json::{json, Value};
use vpnroute_domain::ApiError;
use vpnroute_store::ReadTx;

use super::params;
use crate::app::Ctx;

pub fn describe_regions(ctx: &Ctx<'_>, _tx: &dyn ReadTx) -> Result<Value, ApiError> {
    let p = params(ctx);
    let lang = p.opt_str("AcceptLanguage").unwrap_or("zh-CN");
    if lang != "zh-CN" && lang != "en-US" && lang != "ja" {
        return Err(ApiError::invalid_parameter("AcceptLanguage"));
    }
    let regions: Vec<Value> = ctx
        .app
        .config
        .regions
        .iter()
        .map(|r| json!({"RegionId": r.id, "LocalName": r.local_name, "RegionEndpoint": format!("vpc.{}.aliyuncs.com", r.id)}))
        .collect();
    Ok(json!({"Regions": {"Region": regions}}))
}
