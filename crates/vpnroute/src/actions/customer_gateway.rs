//! Customer gateways: CreateCustomerGateway, DescribeCustomerGateway(s), DeleteCustomerGateway.

use serde_json::{json, Value};
use vpnroute_domain::ids::new_id;
use vpnroute_domain::model::CustomerGateway;
use vpnroute_domain::validate;
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, ResourceKind, Tx, WriteTxExt};

use super::{all_in_region, dry_run, opt_text, owned, page_fields, page_of, params, region};
use crate::app::Ctx;
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

pub fn create_customer_gateway(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let ip = validate::customer_gateway_ip(p.str("IpAddress")?)?.to_string();
    let name = opt_text(ctx, "Name", validate::name)?;
    let description = opt_text(ctx, "Description", validate::description)?;
    let asn = p.opt_str("Asn").map(parse_asn).transpose()?;
    let auth_key = p.opt_str("AuthKey").unwrap_or("").to_string();
    if auth_key.len() > 64 || auth_key.contains([' ', '?']) || !auth_key.is_ascii() {
        return Err(ApiError::invalid_parameter("AuthKey"));
    }
    let tags = p.tags("Tags")?;
    let existing = all_in_region::<CustomerGateway>(ctx, tx, region, None)?;
    let count = existing.len() as u64;
    if existing.iter().any(|c| c.ip_address == ip) {
        return Err(ApiError::CUSTOMER_GATEWAY_IP_EXISTS);
    }
    if count >= ctx.app.config.quotas.customer_gateways_per_region {
        return Err(ApiError::QUOTA_FULL);
    }
    dry_run(ctx)?;
    let id = new_id("cgw");
    let cgw = CustomerGateway {
        name: if name.is_empty() { id.clone() } else { name },
        id,
        region_id: region.to_string(),
        ip_address: ip,
        description,
        asn,
        auth_key,
        create_time: ctx.now_ms,
        resource_group_id: p.opt_str("ResourceGroupId").unwrap_or("rg-acfmdefault0001").to_string(),
        tags,
    };
    tx.insert_resource(
        ResourceKind::CustomerGateway,
        &cgw.id,
        &ctx.account_id,
        region,
        "",
        &cgw,
    )?;
    Ok(json!({
        "CustomerGatewayId": cgw.id,
        "IpAddress": cgw.ip_address,
        "Name": cgw.name,
        "Description": cgw.description,
        "CreateTime": cgw.create_time,
    }))
}

fn cgw_json(c: &CustomerGateway) -> Value {
    json!({
        "CustomerGatewayId": c.id,
        "IpAddress": c.ip_address,
        "Name": c.name,
        "Description": c.description,
        "Asn": c.asn.unwrap_or(0),
        "AuthKey": c.auth_key,
        "CreateTime": c.create_time,
        "ResourceGroupId": c.resource_group_id,
        "Tags": tags_json(&c.tags),
    })
}

pub fn describe_customer_gateway(ctx: &Ctx<'_>, tx: &dyn ReadTx) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let id = params(ctx).str("CustomerGatewayId")?;
    let c: CustomerGateway = owned(ctx, tx, region, id)?;
    Ok(cgw_json(&c))
}

pub fn describe_customer_gateways(ctx: &Ctx<'_>, tx: &dyn ReadTx) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let paging = p.paging()?;
    let tags = p.tags("Tag")?;
    let all = all_in_region::<CustomerGateway>(ctx, tx, region, None)?;
    let all: Vec<CustomerGateway> = all
        .into_iter()
        .filter(|c| p.opt_str("CustomerGatewayId").is_none_or(|v| v == c.id))
        .filter(|c| p.opt_str("ResourceGroupId").is_none_or(|v| v == c.resource_group_id))
        .filter(|c| tags.iter().all(|t| c.tags.contains(t)))
        .collect();
    let (page, total) = page_of(all, paging);
    let items: Vec<Value> = page.iter().map(cgw_json).collect();
    let mut body = json!({"CustomerGateways": {"CustomerGateway": items}});
    page_fields(&mut body, paging, total);
    Ok(body)
}

pub fn delete_customer_gateway(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let id = params(ctx).str("CustomerGatewayId")?;
    let c: CustomerGateway = owned(ctx, tx, region, id)?;
    let conns = all_in_region::<vpnroute_domain::model::VpnConnection>(ctx, tx, region, None)?;
    if conns.iter().any(|v| v.customer_gateway_id == c.id) {
        return Err(ApiError::DEPENDENCY_VPN_CONNECTION);
    }
    dry_run(ctx)?;
    tx.delete_resource(ResourceKind::CustomerGateway, &c.id)?;
    Ok(json!({}))
}

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
