//! Pure helpers of the registry client: media types and distribution error bodies,
//! `Content-Range`, registry and repository name checks, base URLs, loopback hosts, origins,
//! URL redaction, header values, and the classification of reqwest errors (TLS, retryable) and
//! their URL-free description.

use std::error::Error as _;
use std::net::IpAddr;

use base64::Engine as _;
use reqwest::Url;
use reqwest::header::{CONTENT_RANGE, HeaderMap, HeaderValue};
use serde_json::Value;

use super::{Credentials, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST};
use crate::digest::{Digest, truncate_for_message};
use crate::error::Error;
use crate::reference::Reference;

/// The media type: `Content-Type` when it names a manifest type, else the document's own
/// `mediaType`, else its shape (`manifests` = index, `config` = manifest).
pub(super) fn media_type(content_type: Option<&str>, bytes: &[u8]) -> String {
    let generic = |t: &str| {
        t.is_empty()
            || matches!(
                t,
                "application/json" | "text/plain" | "application/octet-stream"
            )
    };
    if let Some(t) = content_type
        && !generic(t)
    {
        return t.to_owned();
    }
    let doc: Option<Value> = serde_json::from_slice(bytes).ok();
    if let Some(doc) = &doc {
        if let Some(t) = doc.get("mediaType").and_then(Value::as_str)
            && !t.is_empty()
        {
            return t.to_owned();
        }
        if doc.get("manifests").is_some() {
            return MEDIA_TYPE_OCI_INDEX.to_owned();
        }
        if doc.get("config").is_some() {
            return MEDIA_TYPE_OCI_MANIFEST.to_owned();
        }
    }
    content_type
        .filter(|t| !t.is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// `code: message` of a distribution error body (`{"errors":[{"code","message"}]}`), bounded.
pub(super) fn registry_error_detail(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let Some(errors) = v.get("errors").and_then(Value::as_array) else {
        return String::new();
    };
    let parts: Vec<String> = errors
        .iter()
        .take(3)
        .map(|e| {
            let code = e.get("code").and_then(Value::as_str).unwrap_or("");
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
            format!("{code}: {msg}")
        })
        .collect();
    truncate_for_message(&parts.join("; "))
}

/// `bytes start-end/total` → (start, Some(end)); `bytes start-*/...` forms are refused.
pub(super) fn parse_content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?.trim();
    let rest = v.strip_prefix("bytes ")?.trim();
    let (range, _total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    (end >= start).then_some((start, Some(end)))
}

/// Registry names as references allow them, and never a path.
pub(super) fn check_registry(registry: &str) -> Result<(), Error> {
    let ok = !registry.is_empty()
        && registry.len() <= 255
        && !registry.starts_with('.')
        && !registry.contains("..")
        && registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidReference {
            text: truncate_for_message(registry),
            reason: "invalid registry host".to_owned(),
        })
    }
}

/// `registry/repository@digest`, after checking both parts as a reference would.
pub(super) fn checked_name(
    registry: &str,
    repository: &str,
    digest: &Digest,
) -> Result<String, Error> {
    check_registry(registry)?;
    let name = format!("{registry}/{repository}@{digest}");
    match Reference::parse(&name) {
        Ok(r) if r.registry == registry && r.repository == repository => Ok(name),
        Ok(_) => Err(Error::InvalidReference {
            text: truncate_for_message(&name),
            reason: "registry and repository do not form a normalized reference".to_owned(),
        }),
        Err(e) => Err(e),
    }
}

pub(super) fn base_url(scheme: &str, host: &str, registry: &str) -> Result<Url, Error> {
    Url::parse(&format!("{scheme}://{host}/")).map_err(|e| Error::InvalidReference {
        text: truncate_for_message(registry),
        reason: format!("invalid registry host: {e}"),
    })
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub(crate) fn is_loopback_host(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if host_port.matches(':').count() == 1 {
        host_port.split(':').next().unwrap_or("")
    } else {
        host_port
    };
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A URL without query and fragment (signed redirect URLs carry secrets there).
pub(super) fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

pub(super) fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A header value marked sensitive (hidden from `Debug`, never indexed by HTTP/2 HPACK).
pub(super) fn sensitive(text: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(text).map_err(|_| Error::Registry {
        registry: String::new(),
        message: "credentials or token contain characters not allowed in an HTTP header".to_owned(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

pub(super) fn basic_header(c: &Credentials) -> Result<HeaderValue, Error> {
    let b64 =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
    sensitive(&format!("Basic {b64}"))
}

/// The causes of a reqwest error, innermost last, without the URL (it may carry a signed query).
pub(crate) fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".to_owned());
    }
    let mut src = e.source();
    while let Some(s) = src {
        let text = match rustls_error(s) {
            Some(tls) => super::tls::explain_tls_error(tls),
            None => super::tls::explain_error_text(&s.to_string()),
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    // hyper's "client error (Connect)" only restates what the next cause says.
    if parts.len() > 1 {
        parts.retain(|p| !p.starts_with("client error ("));
    }
    if parts.is_empty() {
        parts.push(e.without_url_string());
    }
    parts.join(": ")
}

/// The rustls error an error is, or that the I/O errors wrapping it carry (tokio-rustls wraps
/// it in one, hyper-util's connector in another).
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut e = e;
    for _ in 0..8 {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
    None
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        let mut s = self.to_string();
        if let Some(u) = self.url() {
            s = s.replace(u.as_str(), &redact_url(u));
        }
        s
    }
}

fn chain_text(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut src = e.source();
    while let Some(s) = src {
        text.push_str(&s.to_string().to_ascii_lowercase());
        text.push('\n');
        src = s.source();
    }
    text
}

/// A failure of the TLS layer: certificate verification, handshake, protocol.
pub(super) fn is_tls_error(e: &reqwest::Error) -> bool {
    let t = chain_text(e);
    [
        "certificate",
        "tls",
        "ssl",
        "handshake",
        "corrupt message",
        "peer sent",
        "alert",
    ]
    .iter()
    .any(|k| t.contains(k))
}

/// Connection failures and timeouts may pass; other errors (invalid URL, body) will not.
pub(super) fn is_retryable_error(e: &reqwest::Error) -> bool {
    // A proxy that wants other credentials will want them next time too.
    if chain_text(e).contains("proxy authorization required") {
        return false;
    }
    if e.is_timeout() || e.is_connect() {
        return true;
    }
    if e.is_request() || e.is_body() {
        let mut src = e.source();
        while let Some(s) = src {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                return matches!(
                    io.kind(),
                    ConnectionReset
                        | ConnectionAborted
                        | ConnectionRefused
                        | BrokenPipe
                        | UnexpectedEof
                        | TimedOut
                );
            }
            src = s.source();
        }
        // hyper's "connection closed before message completed" and the like.
        return chain_text(e).contains("connection");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::MEDIA_TYPE_DOCKER_MANIFEST;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost",
            "localhost:5000",
            "LOCALHOST",
            "[::1]:5000",
            "[::1]",
            "::1",
            "registry.localhost:80",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "128.0.0.1",
            "[::2]:5000",
            "localhost.example",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn content_ranges() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(CONTENT_RANGE, HeaderValue::from_str(v).unwrap());
            parse_content_range(&m)
        };
        assert_eq!(h("bytes 100-199/200"), Some((100, Some(199))));
        assert_eq!(h("bytes 100-199/*"), Some((100, Some(199))));
        assert_eq!(h("bytes */200"), None);
        assert_eq!(h("bytes 5-1/200"), None);
        assert_eq!(h("items 1-2/3"), None);
    }

    #[test]
    fn media_types() {
        assert_eq!(
            media_type(Some(MEDIA_TYPE_DOCKER_MANIFEST), b"{}"),
            MEDIA_TYPE_DOCKER_MANIFEST
        );
        assert_eq!(
            media_type(
                Some("application/json"),
                br#"{"mediaType":"application/vnd.oci.image.index.v1+json"}"#
            ),
            MEDIA_TYPE_OCI_INDEX
        );
        assert_eq!(
            media_type(None, br#"{"manifests":[]}"#),
            MEDIA_TYPE_OCI_INDEX
        );
        assert_eq!(
            media_type(None, br#"{"config":{}}"#),
            MEDIA_TYPE_OCI_MANIFEST
        );
        assert_eq!(media_type(Some("text/plain"), b"x"), "text/plain");
        assert_eq!(media_type(None, b"x"), "application/octet-stream");
    }

    #[test]
    fn registry_names_are_checked() {
        let d = Digest::of_bytes(b"");
        assert!(checked_name("127.0.0.1:5000", "busybox", &d).is_ok());
        assert!(checked_name("docker.io", "library/busybox", &d).is_ok());
        for (reg, repo) in [
            ("..", "x"),
            ("a/b", "x"),
            ("host.example", "../x"),
            ("host.example", "UPPER"),
            ("docker.io", "busybox"), // not normalized: docker.io/library/busybox
            ("", "x"),
        ] {
            assert!(checked_name(reg, repo, &d).is_err(), "{reg} {repo}");
        }
    }

    #[test]
    fn redacts_signed_urls() {
        let u = Url::parse("https://user:pw@cdn.example/blob?X-Amz-Signature=secret#f").unwrap();
        assert_eq!(redact_url(&u), "https://cdn.example/blob");
    }
}
