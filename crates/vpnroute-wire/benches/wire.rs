//! Cost of the per-request wire work: parse + verify for both signature schemes, and
//! encoding a typical success body. Run with `cargo bench -p vpnroute-wire`.

use divan::black_box;
use vpnroute_wire::{
    acs3_sign, encode_success, parse, v1_signed_query, verify, Acs3SignInput, Format, Params, RawRequest,
};

fn main() {
    divan::main();
}

const SECRET: &str = "testsecret";

fn op_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ClientToken", "d7d24a21-f4ba-4454-9173-b3828dae****"),
        ("Description", "a b+c*d~e/ü中"),
        ("NextHop", "vco-bp15oes1py4i66rmd****"),
        ("OverlayMode", "Ipsec"),
        ("PublishVpc", "True"),
        ("RegionId", "cn-hangzhou"),
        ("RouteDest", "10.0.0.0/24"),
        ("VpnGatewayId", "vpn-bp1a3kqjiiq9legfx****"),
        ("Weight", "0"),
    ]
}

#[divan::bench]
fn parse_verify_v1(bencher: divan::Bencher) {
    let mut params: Params = [
        ("Action", "CreateVpnRouteEntry"),
        ("Version", "2016-04-28"),
        ("Format", "JSON"),
        ("AccessKeyId", "testid"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", "3f1c2f0e-4b4a-4f0e-9d8a-0123456789ab"),
        ("Timestamp", "2024-05-10T08:00:00Z"),
    ]
    .into_iter()
    .collect();
    params.extend(op_params());
    let query = v1_signed_query("POST", &params, SECRET);
    let headers = vec![("Host".to_string(), "127.0.0.1:18080".to_string())];
    bencher.bench(|| {
        let req = RawRequest {
            method: "POST",
            path: "/",
            raw_query: black_box(&query),
            headers: &headers,
            body: b"",
        };
        let parsed = parse(&req).map_err(|e| e.to_string())?;
        verify(&req, &parsed, SECRET).map_err(|e| e.to_string())
    });
}

#[divan::bench]
fn parse_verify_acs3(bencher: divan::Bencher) {
    let query: Params = op_params().into_iter().collect();
    let headers: Vec<(String, String)> = [
        ("host", "127.0.0.1:18080"),
        ("x-acs-action", "CreateVpnRouteEntry"),
        ("x-acs-version", "2016-04-28"),
        (
            "user-agent",
            "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2",
        ),
        ("accept", "application/json"),
        ("x-acs-credentials-provider", "static_ak"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect();
    let signed = acs3_sign(&Acs3SignInput {
        method: "POST",
        path: "/",
        query: &query,
        headers: &headers,
        body: b"",
        access_key_id: "testid",
        secret: SECRET,
        date: "2024-05-10T08:00:00Z",
        nonce: "3f1c2f0e4b4a4f0e9d8a0123456789ab",
        security_token: None,
        sign_all_headers: true,
    });
    bencher.bench(|| {
        let req = RawRequest {
            method: "POST",
            path: "/",
            raw_query: black_box(&signed.raw_query),
            headers: &signed.headers,
            body: b"",
        };
        let parsed = parse(&req).map_err(|e| e.to_string())?;
        verify(&req, &parsed, SECRET).map_err(|e| e.to_string())
    });
}

#[divan::bench(args = [Format::Json, Format::Xml])]
fn encode_describe_route_entries(bencher: divan::Bencher, format: Format) {
    let entries: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            serde_json::json!({
                "VpnInstanceId": "vpn-bp1a3kqjiiq9legfx****",
                "RouteDest": format!("10.0.{i}.0/24"),
                "NextHop": "vco-bp15oes1py4i66rmd****",
                "Weight": 100, "CreateTime": 1715328000000u64, "State": "published",
                "RouteEntryType": "custom", "Source": "", "AsPath": "", "Community": ""
            })
        })
        .collect();
    let body = serde_json::json!({
        "RequestId": "0ED8D006-F706-4D23-88ED-E11ED28DCAC0",
        "PageNumber": 1, "PageSize": 10, "TotalCount": 10,
        "VpnRouteEntries": {"VpnRouteEntry": entries},
    });
    bencher.bench(|| encode_success("DescribeVpnRouteEntries", black_box(&body), format));
}
