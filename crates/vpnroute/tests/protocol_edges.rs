//! Protocol edge cases no SDK produces: errors before a request can be parsed keep the
//! requested format, unknown paths and methods get Alibaba's error body.

mod common;

use std::io::{Read, Write};

use common::Server;

fn raw(server: &Server, request: &str) -> vpnroute_client::Response {
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    vpnroute_client::parse_response(&buf).expect("a complete response").0
}

#[test]
fn unparseable_requests_answer_in_the_requested_format() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // v1 request without Signature/Timestamp/...: rejected while parsing.
    let r = raw(
        &server,
        "GET /?Format=XML&Action=DescribeRegions&Version=2016-04-28&AccessKeyId=x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/xml;charset=utf-8"));
    assert!(
        r.body.contains("<Error>") && r.body.contains("<Code>MissingParameter</Code>"),
        "{}",
        r.body
    );

    let r = raw(
        &server,
        "GET /?Action=DescribeRegions&Version=2016-04-28&AccessKeyId=x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["Code"], "MissingParameter", "{}", r.body);
}

#[test]
fn unknown_paths_and_methods_get_alibaba_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let r = raw(&server, "GET /nope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["Code"], "InvalidAction.NotFound");
    assert!(r.header("x-acs-request-id").is_some());
    let r = raw(
        &server,
        "PUT /?Action=DescribeRegions HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["Code"], "UnsupportedHTTPMethod");
}
