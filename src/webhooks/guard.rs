//! The SSRF guard: webhooks reach only globally routable addresses, unless the operator
//! allow-lists a host or network. The check runs in the HTTP client's resolver, on the very
//! addresses it connects to, so a name that resolves differently later (DNS rebinding) gains
//! nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Which non-global targets the operator allows.
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    networks: Vec<IpNet>,
    hosts: Vec<String>,
}

impl AddressGuard {
    /// Builds the guard from `allow_private` entries: addresses, networks or host names.
    pub fn new(entries: &[String]) -> Result<Self, String> {
        let mut guard = Self::default();
        for entry in entries {
            let entry = entry.trim();
            if let Ok(network) = entry.parse::<IpNet>() {
                guard.networks.push(network);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                guard.networks.push(IpNet::from(ip));
            } else if !entry.is_empty() && !entry.contains(['/', ' ', ':']) {
                guard.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!("`{entry}` is not a host, address or network"));
            }
        }
        Ok(guard)
    }

    /// Whether `ip` may be connected to.
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_global(ip) || self.networks.iter().any(|n| n.contains(&ip))
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Checks a target URL: `http`/`https`, a host, no credentials, no control characters
    /// (which the URL parser would silently drop), and an IP literal the guard permits (names
    /// are checked when they resolve). Messages never repeat credentials.
    pub fn check_url(&self, url: &str) -> Result<Url, String> {
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("a webhook URL contains no spaces or control characters".into());
        }
        let parsed = Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(
                "a webhook URL carries no user name or password (receivers verify the signature instead)"
                    .into(),
            );
        }
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{url}` is not an http or https URL"));
        }
        let refused = |ip: IpAddr| {
            format!(
                "`{url}` points at {ip}, which is not a public address; allow it in \
                 `webhooks.allow_private` to deliver there"
            )
        };
        let Some(host) = parsed.host_str() else {
            return Err(format!("`{url}` has no host"));
        };
        match literal(host) {
            Some(ip) if !self.permits(ip) => Err(refused(ip)),
            _ => Ok(parsed),
        }
    }

    /// Resolves `url`'s host now and checks every address (for subscriptions made through
    /// the admin API, so a refused target is reported when it is registered).
    pub async fn check_resolved(&self, url: &Url) -> Result<(), String> {
        let host = url.host_str().unwrap_or_default();
        if literal(host).is_some() || self.host_allowed(host) {
            return Ok(());
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("`{host}` does not resolve: {e}"))?
            .collect();
        match addresses.iter().find(|a| !self.permits(a.ip())) {
            Some(a) => Err(format!(
                "`{host}` resolves to {}, which is not a public address; allow it in \
                 `webhooks.allow_private` to deliver there",
                a.ip()
            )),
            None => Ok(()),
        }
    }
}

/// The address of a URL host that is an IP literal (`[::1]` included).
fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The HTTP client's resolver: only addresses the guard permits are returned.
#[derive(Debug, Clone)]
pub struct GuardedResolver(pub Arc<AddressGuard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = guard.host_allowed(&host);
            let permitted: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| allowed || guard.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(format!(
                    "`{host}` resolves to no public address (allow it in `webhooks.allow_private`)"
                )
                .into());
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// Whether `ip` is globally routable (not loopback, private, link-local, shared,
/// documentation, benchmarking, discard, reserved, multicast or unspecified). An IPv6 address
/// that carries an IPv4 one (mapped, compatible, translated, NAT64, 6to4) is judged by the IPv4
/// address, since that is where its packets end up.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_global_v4(v4),
            None => is_global_v6(v6),
        },
    }
}

/// The IPv4 address an IPv6 address stands for, in the forms that reach IPv4 hosts.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let last =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match s {
        // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible, deprecated; :: and ::1 land in
        // 0.0.0.0/8, which is not global either), ::ffff:0:a.b.c.d (SIIT translated).
        [0, 0, 0, 0, 0, 0xffff, hi, lo]
        | [0, 0, 0, 0, 0, 0, hi, lo]
        | [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(last(hi, lo)),
        // 64:ff9b::/96, the well-known NAT64 prefix (RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(last(hi, lo)),
        // 2002::/16, 6to4 (RFC 3056): the IPv4 address follows the prefix.
        [0x2002, hi, lo, ..] => Some(last(hi, lo)),
        _ => None,
    }
}

fn is_global_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    let in_prefix = |prefix: [u16; 2], bits: u32| {
        let value = (u32::from(s[0]) << 16) | u32::from(s[1]);
        let base = (u32::from(prefix[0]) << 16) | u32::from(prefix[1]);
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        value & mask == base & mask
    };
    // Global unicast is 2000::/3; everything outside it (loopback, unspecified, 100::/64
    // discard, 64:ff9b:1::/48 local NAT64, unique and link local, multicast) is not.
    in_prefix([0x2000, 0], 3)
        // IETF protocol assignments (RFC 2928), Teredo (2001::/32) and benchmarking among them.
        && !in_prefix([0x2001, 0], 23)
        // Documentation (RFC 3849, RFC 9637).
        && !in_prefix([0x2001, 0x0db8], 32)
        && !in_prefix([0x3fff, 0], 20)
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast (deprecated)
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_global_addresses_pass_unless_allowed() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "198.18.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
            // Every form that embeds a private IPv4 address (the security review's list).
            "::127.0.0.1",
            "::169.254.169.254",
            "::10.0.0.1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "64:ff9b:1::a9fe:a9fe",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "100::1",
            "::ffff:0:7f00:1",
            "3fff::1",
            "2001:2::1",
            "192.88.99.1",
            "5f00::1",
        ] {
            assert!(!is_global(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
            "64:ff9b::808:808",
        ] {
            assert!(is_global(ip.parse().unwrap()), "{ip}");
        }
        let guard = AddressGuard::new(&[
            "10.1.0.0/16".into(),
            "127.0.0.1".into(),
            "hooks.internal".into(),
        ])
        .unwrap();
        assert!(guard.permits("10.1.9.9".parse().unwrap()));
        assert!(!guard.permits("10.2.0.1".parse().unwrap()));
        assert!(guard.check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(guard.host_allowed("HOOKS.internal"));
        assert!(AddressGuard::new(&["not a host".into()]).is_err());
    }

    #[test]
    fn urls_with_private_literals_or_other_schemes_are_refused() {
        let guard = AddressGuard::default();
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.5/",
            "ftp://example.com/",
            "not a url",
            "http://user:pass@hooks.example.com/x",
            "http://token@hooks.example.com/x",
            "http://hooks.example.com/x\r\n2026-01-01T00:00:00Z INFO forged",
            "http://hooks.example.com/\tx",
            "http://hooks.example.com/ x",
        ] {
            assert!(guard.check_url(url).is_err(), "{url}");
        }
        let message = guard
            .check_url("https://alice:s3cret@hooks.example.com/x")
            .unwrap_err();
        assert!(!message.contains("s3cret"), "{message}");
        let message = guard.check_url("http://192.168.0.10/x").unwrap_err();
        assert!(message.contains("allow_private"), "{message}");
        assert!(guard.check_url("https://hooks.example.com/portico").is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_at_registration_and_connection() {
        let guard = Arc::new(AddressGuard::default());
        let url = guard.check_url("http://localhost:9/hook").unwrap();
        let message = guard.check_resolved(&url).await.unwrap_err();
        assert!(message.contains("not a public address"), "{message}");
        let resolved = GuardedResolver(guard)
            .resolve("localhost".parse().unwrap())
            .await;
        assert!(resolved.is_err());
        let allowed = Arc::new(AddressGuard::new(&["localhost".into()]).unwrap());
        assert!(allowed.check_resolved(&url).await.is_ok());
        assert!(GuardedResolver(allowed)
            .resolve("localhost".parse().unwrap())
            .await
            .is_ok());
    }
}
