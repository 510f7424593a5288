//! Proxies: which proxy, if any, a registry is reached through.
//!
//! reqwest's own proxy handling (on by default, from the environment) is turned off; imgcache
//! reads the environment itself, following Docker (Go's `golang.org/x/net/http/httpproxy`,
//! which dockerd, podman and skopeo use) where Docker and curl differ, so that a registry goes
//! through the proxy exactly when `docker pull` in the same environment would:
//!
//! - https registries: `HTTPS_PROXY`, else `https_proxy`; if neither is set, `ALL_PROXY`/
//!   `all_proxy` (curl's catch-all, which Go ignores).
//! - plain-http registries: `HTTP_PROXY`, else `http_proxy`, else `ALL_PROXY`/`all_proxy`.
//!   `HTTP_PROXY` in upper case is ignored when `REQUEST_METHOD` is set (a CGI environment, where
//!   a request's `Proxy:` header becomes `HTTP_PROXY`: "httpoxy"), as Go does.
//! - Upper case first, as Go does (curl reads lower case first); an empty value counts as unset.
//!   When both cases are set and differ, a warning says which one is used.
//! - A value without a scheme means `http://`. `http://` and `https://` proxies are supported
//!   (the port defaults to the scheme's, 80 or 443, as in Go; curl would use 1080). A `socks*://`
//!   proxy is refused with an error in `HTTPS_PROXY`/`HTTP_PROXY`, and ignored with a warning in
//!   `ALL_PROXY` (desktop settings often put a SOCKS proxy there for other programs; Docker
//!   ignores `ALL_PROXY` altogether). An unparseable value is an error that never echoes it.
//!   An `https://` proxy's own certificate is verified with the trust of the registry being
//!   reached (system roots, `--ca-cert`, that registry's certs.d and `ca`), and the registry's
//!   client certificate is offered to it if it asks for one: reqwest uses one TLS configuration
//!   for both.
//! - Loopback registries (`localhost`, `*.localhost`, `127.0.0.0/8`, `::1`) are never proxied, as
//!   in Go: a proxy cannot reach this machine's loopback.
//! - `NO_PROXY`, else `no_proxy`: entries separated by commas (or white space), case-insensitive:
//!   `*` (nothing is proxied); an IP address, or an IP network in CIDR notation, matching
//!   registries named by an IP address (names are never resolved for this); `name` matching that
//!   host and its subdomains; `.name` and `*.name` meaning the same (curl's rule: Go's `.name`
//!   leaves out `name` itself); and any of these with `:port`, then matching only that port (Go's
//!   rule; curl ignores ports). A trailing dot is ignored on both sides.
//! - Proxy credentials come only from the proxy URL's user info (percent-decoded), sent as
//!   `Proxy-Authorization: Basic` on the `CONNECT` of an https registry or on each request to a
//!   plain-http one. Logs and errors name a proxy as `scheme://host:port` only.
//! - An https registry is reached through a `CONNECT` tunnel: the proxy sees the host and port,
//!   never a request, so never the registry's `Authorization`. A plain-http registry's requests
//!   go to the proxy whole (absolute URIs), its credentials and tokens included: so do Docker's
//!   and curl's, and the proxy learns no more than any hop of a plain-http path does. imgcache
//!   warns when it reaches a plain-http registry through a proxy; list it in `NO_PROXY`, or serve
//!   it over https, to keep credentials away from the proxy.

use std::net::IpAddr;
use std::sync::OnceLock;

use reqwest::Url;

/// A proxy from the environment: its URL (user info included: never print it), and the
/// variable it came from.
#[derive(Clone)]
pub(super) struct ProxyUrl {
    url: Url,
    var: &'static str,
}

impl ProxyUrl {
    fn parse(var: &'static str, value: &str) -> Result<Self, String> {
        let value = value.trim();
        let text = if value.contains("://") {
            value.to_owned()
        } else {
            format!("http://{value}")
        };
        let bad = || {
            format!(
                "{var} is not a proxy URL (expected http://[USER:PASSWORD@]HOST[:PORT] or https://...)"
            )
        };
        let url = Url::parse(&text).map_err(|_| bad())?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad());
        }
        match url.scheme() {
            "http" | "https" => Ok(Self { url, var }),
            s if s.starts_with("socks") => Err(format!(
                "{var} names a {s} proxy: imgcache supports http:// and https:// proxies only"
            )),
            s => Err(format!(
                "{var} names a {s}:// proxy: imgcache supports http:// and https:// proxies only"
            )),
        }
    }

    /// `scheme://host:port`, never the credentials.
    pub(super) fn redacted(&self) -> String {
        let port = self
            .url
            .port_or_known_default()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let host = self.url.host_str().unwrap_or("");
        format!("{}://{host}{port}", self.url.scheme())
    }

    fn has_credentials(&self) -> bool {
        !self.url.username().is_empty() || self.url.password().is_some()
    }
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyUrl")
            .field("url", &self.redacted())
            .field("var", &self.var)
            .field("credentials", &self.has_credentials())
            .finish()
    }
}

/// The proxy settings of the environment, read as the module docs say.
#[derive(Clone, Debug, Default)]
pub(super) struct ProxyEnv {
    https: Option<ProxyUrl>,
    http: Option<ProxyUrl>,
    no_proxy: NoProxy,
}

/// How one URL is reached.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    Direct(&'static str),
    /// Through this proxy (redacted), named by its variable.
    Proxy(String, &'static str),
}

impl ProxyEnv {
    /// From this process's environment.
    pub(super) fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// From the variables `get` gives.
    pub(super) fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let first = |names: [&'static str; 2]| -> Option<(&'static str, String)> {
            let found: Vec<(&'static str, String)> = names
                .iter()
                .filter_map(|n| get(n).map(|v| (*n, v)))
                .collect();
            if let [(a, va), (b, vb)] = found.as_slice()
                && va.trim() != vb.trim()
            {
                warn_once(format!(
                    "{a} and {b} differ: using {a}, as Docker does (curl would use {b})"
                ));
            }
            found.into_iter().next()
        };
        let cgi = get("REQUEST_METHOD").is_some();
        let all = match first(["ALL_PROXY", "all_proxy"]) {
            None => None,
            Some((var, value)) => match ProxyUrl::parse(var, &value) {
                Ok(p) => Some(p),
                Err(e) if value.trim().to_ascii_lowercase().starts_with("socks") => {
                    warn_once(format!("{e}; ignoring {var}"));
                    None
                }
                Err(e) => return Err(e),
            },
        };
        let https = match first(["HTTPS_PROXY", "https_proxy"]) {
            Some((var, value)) => Some(ProxyUrl::parse(var, &value)?),
            None => all.clone(),
        };
        let http_vars = if cgi {
            if get("HTTP_PROXY").is_some() {
                warn_once(
                    "REQUEST_METHOD is set (a CGI environment): ignoring HTTP_PROXY".to_owned(),
                );
            }
            get("http_proxy").map(|v| ("http_proxy", v))
        } else {
            first(["HTTP_PROXY", "http_proxy"])
        };
        let http = match http_vars {
            Some((var, value)) => Some(ProxyUrl::parse(var, &value)?),
            None => all,
        };
        let no_proxy = first(["NO_PROXY", "no_proxy"])
            .map(|(_, v)| NoProxy::parse(&v))
            .unwrap_or_default();
        Ok(Self {
            https,
            http,
            no_proxy,
        })
    }

    /// The proxy for `url` (user info included), if it goes through one.
    pub(super) fn proxy_for(&self, url: &Url) -> Option<Url> {
        self.pick(url).map(|p| p.url.clone())
    }

    /// How `url` is reached, for logs.
    pub(super) fn route(&self, url: &Url) -> Route {
        let has_proxy = match url.scheme() {
            "https" => self.https.is_some(),
            _ => self.http.is_some(),
        };
        if !has_proxy {
            return Route::Direct("no proxy is set for its scheme");
        }
        match self.pick(url) {
            Some(p) => Route::Proxy(p.redacted(), p.var),
            None if host_of(url).is_some_and(|h| is_loopback(&h)) => {
                Route::Direct("loopback registries are never proxied")
            }
            None => Route::Direct("NO_PROXY matches it"),
        }
    }

    fn pick(&self, url: &Url) -> Option<&ProxyUrl> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref()?,
            "http" => self.http.as_ref()?,
            _ => return None,
        };
        let host = host_of(url)?;
        if is_loopback(&host) {
            return None;
        }
        let port = url.port_or_known_default().unwrap_or(0);
        (!self.no_proxy.matches(&host, port)).then_some(proxy)
    }
}

fn warn_once(message: String) {
    static SEEN: OnceLock<std::sync::Mutex<Vec<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.contains(&message) {
        tracing::warn!("{message}");
        seen.push(message);
    }
}

/// A URL's host: an IP address, or a name (lower case, without a trailing dot).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Host {
    Ip(IpAddr),
    Name(String),
}

fn host_of(url: &Url) -> Option<Host> {
    let h = url.host_str()?;
    let bare = h.trim_start_matches('[').trim_end_matches(']');
    Some(match bare.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(h.trim_end_matches('.').to_ascii_lowercase()),
    })
}

fn is_loopback(host: &Host) -> bool {
    match host {
        Host::Name(d) => d == "localhost" || d.ends_with(".localhost"),
        Host::Ip(ip) => ip.is_loopback(),
    }
}

/// `NO_PROXY`, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct NoProxy(Vec<NoProxyEntry>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum NoProxyEntry {
    All,
    /// An address or a network (`prefix` bits), any port or one.
    Ip {
        ip: IpAddr,
        prefix: u8,
        port: Option<u16>,
    },
    /// A name and its subdomains (lower case, no leading or trailing dot).
    Domain {
        name: String,
        port: Option<u16>,
    },
}

impl NoProxy {
    pub(super) fn parse(text: &str) -> Self {
        let entries = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .filter_map(|e| {
                let parsed = Self::entry(&e.to_ascii_lowercase());
                if parsed.is_none() {
                    tracing::debug!(entry = e, "ignoring a NO_PROXY entry imgcache cannot read");
                }
                parsed
            })
            .collect();
        Self(entries)
    }

    fn entry(e: &str) -> Option<NoProxyEntry> {
        if e == "*" {
            return Some(NoProxyEntry::All);
        }
        if let Some((ip, bits)) = e.split_once('/') {
            let ip: IpAddr = ip.trim_matches(['[', ']']).parse().ok()?;
            let prefix: u8 = bits.parse().ok()?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            return (prefix <= max).then_some(NoProxyEntry::Ip {
                ip,
                prefix,
                port: None,
            });
        }
        if let Ok(ip) = e.parse::<IpAddr>() {
            return Some(NoProxyEntry::Ip {
                ip,
                prefix: if ip.is_ipv4() { 32 } else { 128 },
                port: None,
            });
        }
        // `host:port`, `[v6]:port`, `[v6]`
        let (host, port) = match e.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || (h.starts_with('[') && h.ends_with(']')) => {
                (h, Some(p.parse::<u16>().ok()?))
            }
            _ => (e, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(NoProxyEntry::Ip {
                ip,
                prefix: if ip.is_ipv4() { 32 } else { 128 },
                port,
            });
        }
        let name = host
            .strip_prefix("*.")
            .unwrap_or(host)
            .trim_start_matches('.')
            .trim_end_matches('.');
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        ok.then(|| NoProxyEntry::Domain {
            name: name.to_owned(),
            port,
        })
    }

    /// True when `host:port` must not go through a proxy.
    pub(super) fn matches(&self, host: &Host, port: u16) -> bool {
        let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == port);
        self.0.iter().any(|e| match (e, host) {
            (NoProxyEntry::All, _) => true,
            (
                NoProxyEntry::Ip {
                    ip: net,
                    prefix,
                    port: p,
                },
                Host::Ip(ip),
            ) => in_network(*ip, *net, *prefix) && port_ok(p),
            (NoProxyEntry::Domain { name: d, port: p }, Host::Name(name)) => {
                (name == d
                    || name
                        .strip_suffix(d.as_str())
                        .is_some_and(|rest| rest.ends_with('.')))
                    && port_ok(p)
            }
            _ => false,
        })
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let ip = match (ip, net) {
        // `::ffff:a.b.c.d` is the IPv4 address it maps.
        (IpAddr::V6(v6), IpAddr::V4(_)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => return false,
        },
        _ => ip,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<ProxyEnv, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ProxyEnv::from_vars(|n| map.get(n).cloned())
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    /// The proxy `u` goes through (redacted), or "direct".
    fn via(e: &ProxyEnv, u: &str) -> String {
        match e.route(&url(u)) {
            Route::Proxy(p, var) => format!("{p} ({var})"),
            Route::Direct(_) => "direct".to_owned(),
        }
    }

    fn no_proxy_matches(list: &str, u: &str) -> bool {
        let u = url(u);
        NoProxy::parse(list).matches(&host_of(&u).unwrap(), u.port_or_known_default().unwrap())
    }

    #[test]
    fn no_proxy_names_match_the_host_and_its_subdomains() {
        for list in [
            "example.com",
            ".example.com",
            "*.example.com",
            "EXAMPLE.com.",
            " other.org , example.com ",
            "other.org example.com",
        ] {
            for u in [
                "https://example.com/",
                "https://reg.example.com:5000/",
                "https://a.b.example.com./",
                "https://EXAMPLE.COM/",
            ] {
                assert!(no_proxy_matches(list, u), "{list:?} should match {u}");
            }
            for u in [
                "https://notexample.com/",
                "https://example.com.evil/",
                "https://example.org/",
            ] {
                assert!(!no_proxy_matches(list, u), "{list:?} should not match {u}");
            }
        }
    }

    #[test]
    fn no_proxy_ports_ips_networks_and_star() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "https://anything.example/", true),
            ("a.example, *", "https://b.example/", true),
            // a port narrows an entry to that port (the default port counts)
            ("reg.example:5000", "https://reg.example:5000/", true),
            ("reg.example:5000", "https://reg.example:5001/", false),
            ("reg.example:443", "https://reg.example/", true),
            ("example:80", "http://sub.example/", true),
            // addresses and networks match addresses only, never resolved names
            ("10.1.2.3", "https://10.1.2.3:5000/", true),
            ("10.1.2.3", "https://10.1.2.4/", false),
            ("10.1.2.3:5000", "https://10.1.2.3:5000/", true),
            ("10.1.2.3:5000", "https://10.1.2.3:6000/", false),
            ("10.0.0.0/8", "https://10.200.0.1/", true),
            ("10.0.0.0/8", "https://11.0.0.1/", false),
            ("192.168.1.0/24", "https://192.168.1.77/", true),
            ("192.168.1.0/24", "https://192.168.2.1/", false),
            ("0.0.0.0/0", "https://8.8.8.8/", true),
            ("2001:db8::/32", "https://[2001:db8::1]:5000/", true),
            ("2001:db8::/32", "https://[2001:db9::1]/", false),
            ("2001:db8::1", "https://[2001:db8::1]/", true),
            ("[2001:db8::1]:5000", "https://[2001:db8::1]:5000/", true),
            ("[2001:db8::1]:5000", "https://[2001:db8::1]:5001/", false),
            ("3.4", "https://1.2.3.4/", false),
            ("10.0.0.0/8", "https://ten.example/", false),
            // nonsense is ignored, the rest still applies
            (
                "10.0.0.0/99, ::/x, a:b:c, ok.example",
                "https://ok.example/",
                true,
            ),
            ("10.0.0.0/99", "https://10.0.0.1/", false),
            ("", "https://example.com/", false),
        ];
        for (list, u, want) in cases {
            assert_eq!(
                no_proxy_matches(list, u),
                *want,
                "NO_PROXY={list:?} for {u}"
            );
        }
    }

    #[test]
    fn proxy_variables_are_read_as_docker_reads_them() {
        let p = "http://proxy.example:3128";
        let e = env(&[("HTTPS_PROXY", p)]).unwrap();
        assert_eq!(
            via(&e, "https://reg.example/"),
            "http://proxy.example:3128 (HTTPS_PROXY)"
        );
        // HTTPS_PROXY is for https registries only (Go and curl alike)
        assert_eq!(via(&e, "http://reg.example/"), "direct");

        let e = env(&[("https_proxy", "proxy.example:3128")]).unwrap();
        assert_eq!(
            via(&e, "https://reg.example/"),
            "http://proxy.example:3128 (https_proxy)"
        );

        // upper case first, an empty value is unset
        let e = env(&[
            ("HTTPS_PROXY", "http://upper.example:1"),
            ("https_proxy", "http://lower.example:2"),
        ])
        .unwrap();
        assert_eq!(
            via(&e, "https://reg.example/"),
            "http://upper.example:1 (HTTPS_PROXY)"
        );
        let e = env(&[
            ("HTTPS_PROXY", " "),
            ("https_proxy", "http://lower.example:2"),
        ])
        .unwrap();
        assert_eq!(
            via(&e, "https://reg.example/"),
            "http://lower.example:2 (https_proxy)"
        );

        // HTTP_PROXY for plain http; upper-case HTTP_PROXY not in a CGI environment
        let e = env(&[("HTTP_PROXY", "http://p.example:8080")]).unwrap();
        assert_eq!(
            via(&e, "http://reg.example:5000/"),
            "http://p.example:8080 (HTTP_PROXY)"
        );
        assert_eq!(via(&e, "https://reg.example/"), "direct");
        let e = env(&[
            ("HTTP_PROXY", "http://injected.example:1"),
            ("REQUEST_METHOD", "GET"),
        ])
        .unwrap();
        assert_eq!(via(&e, "http://reg.example/"), "direct");
        let e = env(&[
            ("HTTP_PROXY", "http://injected.example:1"),
            ("http_proxy", "http://p.example:8080"),
            ("REQUEST_METHOD", "GET"),
        ])
        .unwrap();
        assert_eq!(
            via(&e, "http://reg.example/"),
            "http://p.example:8080 (http_proxy)"
        );

        // ALL_PROXY is the fallback of both
        let e = env(&[
            ("ALL_PROXY", "http://all.example:1"),
            ("HTTP_PROXY", "http://h.example:2"),
        ])
        .unwrap();
        assert_eq!(
            via(&e, "https://reg.example/"),
            "http://all.example:1 (ALL_PROXY)"
        );
        assert_eq!(
            via(&e, "http://reg.example/"),
            "http://h.example:2 (HTTP_PROXY)"
        );

        // an https proxy, its default port
        let e = env(&[("HTTPS_PROXY", "https://secure.example")]).unwrap();
        assert_eq!(
            via(&e, "https://reg.example/"),
            "https://secure.example:443 (HTTPS_PROXY)"
        );
        let e = env(&[("HTTPS_PROXY", "plain.example")]).unwrap();
        assert_eq!(
            via(&e, "https://reg.example/"),
            "http://plain.example:80 (HTTPS_PROXY)"
        );
    }

    #[test]
    fn loopback_and_no_proxy_go_direct() {
        let e = env(&[
            ("HTTPS_PROXY", "http://proxy.example:3128"),
            ("HTTP_PROXY", "http://proxy.example:3128"),
            ("NO_PROXY", ".internal.example,10.0.0.0/8"),
        ])
        .unwrap();
        for u in [
            "https://127.0.0.1:5000/",
            "https://127.9.9.9/",
            "http://[::1]:5000/",
            "https://localhost:5000/",
            "https://reg.localhost/",
            "https://LOCALHOST./",
        ] {
            assert_eq!(
                e.route(&url(u)),
                Route::Direct("loopback registries are never proxied"),
                "{u}"
            );
            assert_eq!(e.proxy_for(&url(u)), None, "{u}");
        }
        for u in [
            "https://internal.example/",
            "https://reg.internal.example:5000/",
            "http://10.1.1.1:5000/",
        ] {
            assert_eq!(
                e.route(&url(u)),
                Route::Direct("NO_PROXY matches it"),
                "{u}"
            );
        }
        assert_eq!(
            via(&e, "https://reg.example/"),
            "http://proxy.example:3128 (HTTPS_PROXY)"
        );
        // lower-case no_proxy when NO_PROXY is unset
        let e = env(&[
            ("HTTPS_PROXY", "http://proxy.example:3128"),
            ("no_proxy", "reg.example"),
        ])
        .unwrap();
        assert_eq!(via(&e, "https://reg.example/"), "direct");
    }

    #[test]
    fn proxy_credentials_are_kept_but_never_shown() {
        let e = env(&[("HTTPS_PROXY", "http://user:s3cr%40t@proxy.example:3128")]).unwrap();
        let u = e.proxy_for(&url("https://reg.example/")).unwrap();
        assert_eq!(u.username(), "user");
        assert_eq!(u.password(), Some("s3cr%40t"));
        let shown = format!("{e:?} {:?}", e.route(&url("https://reg.example/")));
        assert!(
            !shown.contains("s3cr") && !shown.contains("user"),
            "{shown}"
        );
        assert!(shown.contains("credentials: true"), "{shown}");
    }

    #[test]
    fn bad_and_socks_proxies() {
        let secret = "http://user:hunter2@[bad";
        let err = env(&[("HTTPS_PROXY", secret)]).unwrap_err();
        assert!(err.starts_with("HTTPS_PROXY is not a proxy URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = env(&[("HTTP_PROXY", "socks5://user:hunter2@p.example:1080")]).unwrap_err();
        assert!(
            err.contains("socks5") && err.contains("http:// and https://"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let err = env(&[("https_proxy", "ftp://p.example")]).unwrap_err();
        assert!(err.contains("ftp://"), "{err}");
        // a SOCKS ALL_PROXY (set for other programs) is ignored, not fatal
        let e = env(&[("ALL_PROXY", "socks5://p.example:1080")]).unwrap();
        assert_eq!(via(&e, "https://reg.example/"), "direct");
        let e = env(&[
            ("ALL_PROXY", "socks://p.example:1080"),
            ("HTTPS_PROXY", "http://p.example:3128"),
        ])
        .unwrap();
        assert_eq!(
            via(&e, "https://reg.example/"),
            "http://p.example:3128 (HTTPS_PROXY)"
        );
        assert!(env(&[("ALL_PROXY", "http://[bad")]).is_err());
    }

    /// Self-signed CA:TRUE certificates made for these tests with `openssl req -x509 -newkey ec`
    /// (P-256, 100 years): SAN DNS:localhost,IP:127.0.0.1; SAN DNS:other.example; and one for
    /// localhost whose extendedKeyUsage allows clientAuth only.

    #[test]
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_network(ip("10.1.2.3"), ip("10.0.0.0"), 8));
        assert!(in_network(ip("::ffff:10.1.2.3"), ip("10.0.0.0"), 8));
        assert!(!in_network(ip("10.1.2.3"), ip("10.0.0.0"), 16));
        assert!(in_network(ip("1.2.3.4"), ip("9.9.9.9"), 0));
        assert!(in_network(ip("1.2.3.4"), ip("1.2.3.4"), 32));
        assert!(!in_network(ip("1.2.3.5"), ip("1.2.3.4"), 32));
        assert!(in_network(ip("fd00::1"), ip("fd00::"), 8));
        assert!(!in_network(ip("fe00::1"), ip("fd00::"), 8));
        assert!(!in_network(ip("10.0.0.1"), ip("fd00::"), 8));
    }
}
