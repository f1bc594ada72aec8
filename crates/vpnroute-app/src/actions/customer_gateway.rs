//! Customer gateways as typed operations: CreateCustomerGateway, DescribeCustomerGateway(s),
//! ModifyCustomerGatewayAttribute, DeleteCustomerGateway.

use serde::Serialize;
use serde_json::{json, Value};
use vpnroute_domain::ids::{new_id, CustomerGatewayId};
use vpnroute_domain::model::CustomerGateway;
use vpnroute_domain::params::Paging;
use vpnroute_domain::tags::{self, TagParam};
use vpnroute_domain::validate;
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, ResourceKind, Tx, WriteTxExt};

use super::{all_in_region, opt_text, owned, page_fields, page_of, params};
use crate::ops::{arn, check_dry_run, Deferred, Done};
use crate::reply::Reply;
use crate::rpc::{self, FromRpc};
use crate::state::{Ctx, OpCtx};
use crate::util::tags_json;

/// ASN: 1–4294967295 except 45104 (Alibaba's own); `a.b` notation means a×65536+b.
fn parse_asn(text: &str) -> Result<i64, ApiError> {
    let v = match text.split_once('.') {
        Some((a, b)) => {
            let a: i64 = a.parse().map_err(|_| ApiError::invalid_parameter("Asn"))?;
            let b: i64 = b.parse().map_err(|_| ApiError::invalid_parameter("Asn"))?;
            if !(0..=65535).contains(&a) || !(0..=65535).contains(&b) {
                return Err(ApiError::invalid_parameter("Asn"));
            }
            a * 65536 + b
        }
        None => text.parse().map_err(|_| ApiError::invalid_parameter("Asn"))?,
    };
    if !(1..=4_294_967_295).contains(&v) || v == 45104 {
        return Err(ApiError::invalid_parameter("Asn"));
    }
    Ok(v)
}

/// A BGP authentication key: at most 64 ASCII characters, no space or `?`.
fn auth_key(text: &str) -> Result<String, ApiError> {
    if text.len() > 64 || text.contains([' ', '?']) || !text.is_ascii() {
        return Err(ApiError::invalid_parameter("AuthKey"));
    }
    Ok(text.to_string())
}

/// CreateCustomerGateway's input.
#[derive(Debug, Clone)]
pub struct CreateCustomerGatewayInput {
    pub region: String,
    /// The peer's public address.
    pub ip_address: String,
    pub name: String,
    pub description: String,
    pub asn: Option<i64>,
    pub auth_key: String,
    pub tags: Vec<(String, String)>,
    pub resource_group_id: Option<String>,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for CreateCustomerGatewayInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let ip_address = validate::customer_gateway_ip(p.str("IpAddress")?)?.to_string();
        let name = opt_text(ctx, "Name", validate::name)?;
        let description = opt_text(ctx, "Description", validate::description)?;
        let asn = p.opt_str("Asn").map(parse_asn).transpose()?;
        let auth_key = auth_key(p.opt_str("AuthKey").unwrap_or(""))?;
        let tags = tags::tags_to_set(ctx.params, "Tags")?;
        Ok(CreateCustomerGatewayInput {
            region,
            ip_address,
            name,
            description,
            asn,
            auth_key,
            tags,
            resource_group_id: p.opt_str("ResourceGroupId").map(str::to_string),
            dry_run: rpc::dry_run(ctx),
        })
    }
}

/// CreateCustomerGateway's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreatedCustomerGateway {
    pub customer_gateway_id: String,
    pub ip_address: String,
    pub name: String,
    pub description: String,
    pub create_time: i64,
}

fn create_customer_gateway(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    input: CreateCustomerGatewayInput,
) -> Result<CreatedCustomerGateway, ApiError> {
    let region = input.region.as_str();
    let existing = all_in_region::<CustomerGateway>(ctx, tx, region, None)?;
    let count = existing.len() as u64;
    if existing.iter().any(|c| c.ip_address == input.ip_address) {
        return Err(ApiError::CUSTOMER_GATEWAY_IP_EXISTS);
    }
    if count >= ctx.app.config.quotas.customer_gateways_per_region {
        return Err(ApiError::QUOTA_FULL);
    }
    check_dry_run(&input.dry_run)?;
    let id = new_id("cgw");
    let cgw = CustomerGateway {
        name: if input.name.is_empty() { id.clone() } else { input.name },
        id,
        region_id: region.to_string(),
        ip_address: input.ip_address,
        description: input.description,
        asn: input.asn,
        auth_key: input.auth_key,
        create_time: ctx.now_ms,
        resource_group_id: input
            .resource_group_id
            .unwrap_or_else(|| "rg-acfmdefault0001".to_string()),
        tags: input.tags,
    };
    tx.insert_resource(
        ResourceKind::CustomerGateway,
        &cgw.id,
        &ctx.account_id,
        region,
        "",
        &cgw,
    )?;
    Ok(CreatedCustomerGateway {
        customer_gateway_id: cgw.id,
        ip_address: cgw.ip_address,
        name: cgw.name,
        description: cgw.description,
        create_time: cgw.create_time,
    })
}

operation!(
    /// CreateCustomerGateway.
    CreateCustomerGateway: Write, CreateCustomerGatewayInput => CreatedCustomerGateway,
    resources(|input, account| vec![arn(&input.region, account, "customergateway", "*")]),
    handle(|ctx, tx, input| create_customer_gateway(ctx, tx, input)),
);

fn cgw_json(c: &CustomerGateway) -> Value {
    let mut v = json!({
        "CustomerGatewayId": c.id,
        "IpAddress": c.ip_address,
        "Name": c.name,
        "Description": c.description,
        "AuthKey": c.auth_key,
        "CreateTime": c.create_time,
        "ResourceGroupId": c.resource_group_id,
        "Tags": tags_json(&c.tags),
    });
    // Without an ASN the key is absent: Terraform reads `0` as a configured "0" and replaces
    // the resource on every plan.
    if let Some(asn) = c.asn {
        v["Asn"] = json!(asn);
    }
    v
}

/// DescribeCustomerGateway's and DeleteCustomerGateway's input.
#[derive(Debug, Clone)]
pub struct CustomerGatewayRef {
    pub region: String,
    pub customer_gateway_id: CustomerGatewayId,
    /// DeleteCustomerGateway only.
    pub dry_run: Deferred<bool>,
}

impl FromRpc for CustomerGatewayRef {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let customer_gateway_id = params(ctx).str("CustomerGatewayId")?.into();
        Ok(CustomerGatewayRef {
            region,
            customer_gateway_id,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

/// A customer gateway as DescribeCustomerGateway answers it.
#[derive(Debug, Clone)]
pub struct CustomerGatewayView(pub CustomerGateway);

impl From<CustomerGatewayView> for Reply {
    fn from(v: CustomerGatewayView) -> Reply {
        Reply::Value(cgw_json(&v.0))
    }
}

operation!(
    /// DescribeCustomerGateway.
    DescribeCustomerGateway: Read, CustomerGatewayRef => CustomerGatewayView,
    resources(|input, account| vec![arn(&input.region, account, "customergateway", &input.customer_gateway_id)]),
    handle(|ctx, tx, input| Ok(CustomerGatewayView(owned(ctx, tx, &input.region, &input.customer_gateway_id)?))),
);

/// DescribeCustomerGateways' input: filters (each given one must hold) and the page.
#[derive(Debug, Clone)]
pub struct DescribeCustomerGatewaysInput {
    pub region: String,
    pub paging: Paging,
    pub tags: Vec<TagParam>,
    pub customer_gateway_id: Option<CustomerGatewayId>,
    pub resource_group_id: Option<String>,
}

impl FromRpc for DescribeCustomerGatewaysInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let paging = p.paging()?;
        let tags = tags::tag_params(ctx.params, "Tag")?;
        Ok(DescribeCustomerGatewaysInput {
            region,
            paging,
            tags,
            customer_gateway_id: p.opt_str("CustomerGatewayId").map(Into::into),
            resource_group_id: p.opt_str("ResourceGroupId").map(str::to_string),
        })
    }
}

/// DescribeCustomerGateways' answer.
#[derive(Debug, Clone)]
pub struct CustomerGatewaysPage {
    pub items: Vec<CustomerGateway>,
    pub paging: Paging,
    pub total: u64,
}

impl From<CustomerGatewaysPage> for Reply {
    fn from(page: CustomerGatewaysPage) -> Reply {
        let items: Vec<Value> = page.items.iter().map(cgw_json).collect();
        let mut body = json!({"CustomerGateways": {"CustomerGateway": items}});
        page_fields(&mut body, page.paging, page.total);
        Reply::Value(body)
    }
}

fn describe_customer_gateways(
    ctx: &OpCtx<'_>,
    tx: &dyn ReadTx,
    input: DescribeCustomerGatewaysInput,
) -> Result<CustomerGatewaysPage, ApiError> {
    let all = all_in_region::<CustomerGateway>(ctx, tx, &input.region, None)?;
    let all: Vec<CustomerGateway> = all
        .into_iter()
        .filter(|c| input.customer_gateway_id.as_deref().is_none_or(|v| v == c.id))
        .filter(|c| {
            input
                .resource_group_id
                .as_deref()
                .is_none_or(|v| v == c.resource_group_id)
        })
        .filter(|c| tags::matches(&input.tags, &c.tags))
        .collect();
    let (items, total) = page_of(all, input.paging);
    Ok(CustomerGatewaysPage {
        items,
        paging: input.paging,
        total,
    })
}

operation!(
    /// DescribeCustomerGateways.
    DescribeCustomerGateways: Read, DescribeCustomerGatewaysInput => CustomerGatewaysPage,
    resources(|input, account| vec![arn(&input.region, account, "customergateway", "*")]),
    handle(|ctx, tx, input| describe_customer_gateways(ctx, tx, input)),
);

fn delete_customer_gateway(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: CustomerGatewayRef) -> Result<Done, ApiError> {
    let region = input.region.as_str();
    let c: CustomerGateway = owned(ctx, tx, region, &input.customer_gateway_id)?;
    let conns = all_in_region::<vpnroute_domain::model::VpnConnection>(ctx, tx, region, None)?;
    let uses = |v: &vpnroute_domain::model::VpnConnection| {
        v.customer_gateway_id == c.id || v.tunnels.iter().any(|t| t.customer_gateway_id == c.id)
    };
    if conns.iter().any(uses) {
        return Err(ApiError::DEPENDENCY_VPN_CONNECTION);
    }
    check_dry_run(&input.dry_run)?;
    tx.delete_resource(ResourceKind::CustomerGateway, &c.id)?;
    Ok(Done {})
}

operation!(
    /// DeleteCustomerGateway.
    DeleteCustomerGateway: Write, CustomerGatewayRef => Done,
    resources(|input, account| vec![arn(&input.region, account, "customergateway", &input.customer_gateway_id)]),
    handle(|ctx, tx, input| delete_customer_gateway(ctx, tx, input)),
);

/// ModifyCustomerGatewayAttribute's input: what to change (`None`: unchanged).
#[derive(Debug, Clone)]
pub struct ModifyCustomerGatewayAttributeInput {
    pub region: String,
    pub customer_gateway_id: CustomerGatewayId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub auth_key: Option<String>,
}

/// This action's own codes (Alibaba's ModifyCustomerGatewayAttribute page).
pub const INVALID_NAME: ApiError = ApiError::new_static("InvalidName", "The name is not valid", 400);
pub const INVALID_DESCRIPTION: ApiError =
    ApiError::new_static("InvalidDescription", "The description is not valid", 400);

impl FromRpc for ModifyCustomerGatewayAttributeInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let customer_gateway_id = p.str("CustomerGatewayId")?.into();
        let checked = |name: &str, check: fn(&str) -> Result<(), ApiError>, err: ApiError| {
            p.opt_str(name)
                .map(|v| check(v).map(|_| v.to_string()).map_err(|_| err))
                .transpose()
        };
        Ok(ModifyCustomerGatewayAttributeInput {
            region,
            customer_gateway_id,
            name: checked("Name", validate::name, INVALID_NAME)?,
            description: checked("Description", validate::description, INVALID_DESCRIPTION)?,
            auth_key: p.opt_str("AuthKey").map(auth_key).transpose()?,
        })
    }
}

/// ModifyCustomerGatewayAttribute's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifiedCustomerGateway {
    pub customer_gateway_id: String,
    pub ip_address: String,
    pub name: String,
    pub description: String,
    pub create_time: i64,
    pub resource_group_id: String,
}

fn modify_customer_gateway_attribute(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    input: ModifyCustomerGatewayAttributeInput,
) -> Result<ModifiedCustomerGateway, ApiError> {
    let mut c: CustomerGateway = owned(ctx, tx, &input.region, &input.customer_gateway_id)?;
    let before = c.clone();
    if let Some(n) = input.name {
        c.name = n;
    }
    if let Some(d) = input.description {
        c.description = d;
    }
    if let Some(k) = input.auth_key {
        c.auth_key = k;
    }
    if c != before {
        tx.update_resource(ResourceKind::CustomerGateway, &c.id, &c)?;
    }
    Ok(ModifiedCustomerGateway {
        customer_gateway_id: c.id,
        ip_address: c.ip_address,
        name: c.name,
        description: c.description,
        create_time: c.create_time,
        resource_group_id: c.resource_group_id,
    })
}

operation!(
    /// ModifyCustomerGatewayAttribute: name, description, BGP key; at once.
    ModifyCustomerGatewayAttribute: Write, ModifyCustomerGatewayAttributeInput => ModifiedCustomerGateway,
    resources(|input, account| vec![arn(&input.region, account, "customergateway", &input.customer_gateway_id)]),
    handle(|ctx, tx, input| modify_customer_gateway_attribute(ctx, tx, input)),
);

#[cfg(test)]
mod tests {
    use super::parse_asn;

    #[test]
    fn asn_forms() {
        assert_eq!(parse_asn("65001").unwrap(), 65001);
        assert_eq!(parse_asn("1.10").unwrap(), 65546);
        assert!(parse_asn("45104").is_err());
        assert!(parse_asn("0").is_err());
        assert!(parse_asn("x").is_err());
    }
}
