//! Corporate proxies: which HTTP CONNECT proxy, if any, to use for the frontend address.
//!
//! Variables (upper case wins over lower case): `HTTPS_PROXY` / `https_proxy` names the proxy
//! (`http://[user:password@]host:port`; gRPC is HTTP/2 over TLS or not, and like gRPC-Go we use
//! the HTTPS variable for both); `NO_PROXY` / `no_proxy` lists exceptions separated by commas:
//! `*` (everything), host names and domains (`example.com` and `.example.com` match the domain
//! and its subdomains), IP addresses, CIDR blocks (`10.0.0.0/8`), each optionally with `:port`.
//!
//! Unlike Go's net/http, loopback addresses are proxied too when not excluded (curl's rule):
//! what is configured is what happens.
//!
//! The tunnel itself is `temporalio_client::HttpConnectProxyOptions` (an HTTP/1.1 CONNECT
//! request, then TLS and HTTP/2 through the tunnel). TLS *to* the proxy (`https://` proxy URLs)
//! is not supported and refused with a clear message.

use std::net::IpAddr;

/// The proxy variables, read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

/// The proxy to use for one destination.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyChoice {
    /// host:port of the proxy.
    pub address: String,
    /// Basic credentials from the URL, percent-decoded. Never printed.
    pub basic_auth: Option<(String, String)>,
}

impl std::fmt::Debug for ProxyChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self)
    }
}

impl std::fmt::Display for ProxyChoice {
    /// The proxy URL with credentials redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.basic_auth {
            Some(_) => write!(f, "http://***@{}", self.address),
            None => write!(f, "http://{}", self.address),
        }
    }
}

fn var(upper: &str, lower: &str) -> Option<String> {
    std::env::var(upper)
        .ok()
        .or_else(|| std::env::var(lower).ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl ProxyEnv {
    pub fn from_env() -> Self {
        Self {
            https_proxy: var("HTTPS_PROXY", "https_proxy"),
            no_proxy: var("NO_PROXY", "no_proxy"),
        }
    }

    /// The proxy for `host:port`, `None` for a direct connection.
    pub fn resolve(&self, host: &str, port: u16) -> Result<Option<ProxyChoice>, String> {
        let Some(url) = &self.https_proxy else {
            return Ok(None);
        };
        if let Some(list) = &self.no_proxy
            && no_proxy_matches(list, host, port)
        {
            return Ok(None);
        }
        parse_proxy_url(url).map(Some)
    }
}

/// Parses `http://[user:password@]host:port` (scheme optional, port defaults to 80).
pub fn parse_proxy_url(raw: &str) -> Result<ProxyChoice, String> {
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| {
        format!("HTTPS_PROXY is not a valid proxy URL ({e}); expected http://host:port")
    })?;
    if url.scheme() != "http" {
        return Err(format!(
            "HTTPS_PROXY uses the `{}` scheme; only http:// proxies (HTTP CONNECT) are supported",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("HTTPS_PROXY has no host; expected http://host:port")?;
    let port = url.port().unwrap_or(80);
    let basic_auth = if url.username().is_empty() {
        None
    } else {
        Some((
            percent_decode(url.username()),
            percent_decode(url.password().unwrap_or("")),
        ))
    };
    Ok(ProxyChoice {
        address: format!("{host}:{port}"),
        basic_auth,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `NO_PROXY` excludes `host:port`.
pub fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    list.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| entry_matches(&entry.to_ascii_lowercase(), &host, host_ip, port))
}

fn entry_matches(entry: &str, host: &str, host_ip: Option<IpAddr>, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    // Split an optional :port, minding IPv6 literals ([::1]:80, or a bare ::1 without port).
    let (name, entry_port) = split_port(entry);
    if let Some(p) = entry_port
        && p != port
    {
        return false;
    }
    if let Some((net, bits)) = name.split_once('/') {
        return match (net.parse::<IpAddr>(), bits.parse::<u8>(), host_ip) {
            (Ok(net), Ok(bits), Some(ip)) => in_cidr(ip, net, bits),
            _ => false,
        };
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return host_ip == Some(ip);
    }
    let domain = name.trim_start_matches("*.").trim_start_matches('.');
    !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}")))
}

fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((addr, tail)) = rest.split_once(']') {
            return (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
        return (entry, None);
    }
    if entry.matches(':').count() == 1
        && let Some((name, p)) = entry.split_once(':')
        && let Ok(p) = p.parse()
    {
        return (name, Some(p));
    }
    (entry, None)
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(proxy: Option<&str>, no: Option<&str>) -> ProxyEnv {
        ProxyEnv {
            https_proxy: proxy.map(String::from),
            no_proxy: no.map(String::from),
        }
    }

    #[test]
    fn no_proxy_entries() {
        let cases = [
            ("*", "anything.example", 7233, true),
            ("example.com", "example.com", 7233, true),
            ("example.com", "temporal.example.com", 7233, true),
            (".example.com", "temporal.example.com", 7233, true),
            ("*.example.com", "temporal.example.com", 7233, true),
            ("example.com", "badexample.com", 7233, false),
            ("127.0.0.1", "127.0.0.1", 7233, true),
            ("127.0.0.1:7233", "127.0.0.1", 7233, true),
            ("127.0.0.1:7234", "127.0.0.1", 7233, false),
            ("10.0.0.0/8", "10.1.2.3", 7233, true),
            ("10.0.0.0/8", "11.1.2.3", 7233, false),
            ("::1", "[::1]", 7233, true),
            ("[::1]:7233", "::1", 7233, true),
            ("fd00::/8", "fd12::1", 7233, true),
            ("localhost, .corp", "svc.corp", 1, true),
            ("localhost,.corp", "127.0.0.1", 1, false),
            ("", "example.com", 1, false),
        ];
        for (list, host, port, want) in cases {
            assert_eq!(
                no_proxy_matches(list, host, port),
                want,
                "NO_PROXY={list:?} host={host} port={port}"
            );
        }
    }

    #[test]
    fn resolves_proxy_unless_excluded() {
        let e = env(Some("http://127.0.0.1:58888"), Some("temporal.internal"));
        assert_eq!(
            e.resolve("127.0.0.1", 7233).unwrap().unwrap().address,
            "127.0.0.1:58888"
        );
        assert_eq!(e.resolve("temporal.internal", 7233).unwrap(), None);
        assert_eq!(env(None, None).resolve("x", 1).unwrap(), None);
    }

    #[test]
    fn proxy_urls() {
        let p = parse_proxy_url("proxy.corp:3128").unwrap();
        assert_eq!(
            (p.address.as_str(), p.basic_auth),
            ("proxy.corp:3128", None)
        );
        let p = parse_proxy_url("http://u%40corp:p%3Ass@proxy.corp:3128/").unwrap();
        assert_eq!(p.address, "proxy.corp:3128");
        assert_eq!(
            p.basic_auth,
            Some(("u@corp".to_string(), "p:ss".to_string()))
        );
        assert_eq!(p.to_string(), "http://***@proxy.corp:3128");
        assert!(!format!("{p:?}").contains("p:ss"));
        assert_eq!(parse_proxy_url("http://proxy").unwrap().address, "proxy:80");
        let err = parse_proxy_url("https://proxy:443").unwrap_err();
        assert!(err.contains("only http://"), "{err}");
        assert!(parse_proxy_url("http://:8080").is_err());
    }
}
