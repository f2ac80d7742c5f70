//! Plain S3 requests to a moto server, for tests that need their own view of a bucket: not
//! through coffer, so a bug in coffer's S3 code cannot hide itself.
#![allow(dead_code)]

use super::servers::Moto;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response: status, headers (names lower-cased), body.
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Plain S3 requests to moto.
pub struct S3<'a> {
    pub moto: &'a Moto,
}

pub fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

impl S3<'_> {
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let port = self.moto.server.port;
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to moto");
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        // Any signature will do: moto checks only that there is one.
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=coffer-test/20260101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=0000\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).expect("send request");
        s.write_all(body).expect("send body");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read response");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of headers");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .get("transfer-encoding")
            .is_some_and(|t| t == "chunked")
        {
            body = dechunk(&body);
        }
        Response {
            status,
            headers,
            body,
        }
    }

    pub fn create_bucket(&self, bucket: &str) {
        let r = self.request("PUT", &format!("/{bucket}"), &[], b"");
        assert_eq!(
            r.status,
            200,
            "create bucket {bucket}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        content_type: &str,
        meta: &[(&str, &str)],
    ) {
        let meta: Vec<(String, &str)> = meta
            .iter()
            .map(|(k, v)| (format!("x-amz-meta-{k}"), *v))
            .collect();
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", content_type)];
        headers.extend(meta.iter().map(|(k, v)| (k.as_str(), *v)));
        let r = self.request(
            "PUT",
            &format!("/{bucket}/{}", encode_key(key)),
            &headers,
            body,
        );
        assert_eq!(
            r.status,
            200,
            "put {key}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        let r = self.request(
            "DELETE",
            &format!("/{bucket}/{}", encode_key(key)),
            &[],
            b"",
        );
        assert_eq!(r.status, 204, "delete {key}");
    }

    pub fn last_modified(&self, bucket: &str, key: &str) -> String {
        let r = self.request("HEAD", &format!("/{bucket}/{}", encode_key(key)), &[], b"");
        assert_eq!(r.status, 200, "head {bucket}/{key}");
        r.headers["last-modified"].clone()
    }

    pub fn get(&self, bucket: &str, key: &str) -> Response {
        let r = self.request("GET", &format!("/{bucket}/{}", encode_key(key)), &[], b"");
        assert_eq!(r.status, 200, "get {bucket}/{key}");
        r
    }

    /// Keys below `prefix` (fewer than 1000 here, so one page).
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let r = self.request(
            "GET",
            &format!(
                "/{bucket}?list-type=2&prefix={}",
                encode_key(prefix).replace('/', "%2F")
            ),
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "list {bucket}");
        let xml = String::from_utf8(r.body).expect("XML listing");
        assert!(xml.contains("<IsTruncated>false</IsTruncated>"), "{xml}");
        let mut keys: Vec<String> = xml
            .split("<Key>")
            .skip(1)
            .map(|rest| xml_unescape(rest.split("</Key>").next().expect("closing tag")))
            .collect();
        keys.sort();
        keys
    }
}

pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&body[..eol]).unwrap().trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 2 + size + 2..];
    }
}
