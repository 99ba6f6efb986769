//! Which addresses a webhook may reach: public ones, and the networks an operator allowed.
//!
//! Loopback, private (RFC 1918, unique local), link-local (cloud metadata services among them),
//! carrier-grade NAT, unspecified, multicast, broadcast, documentation and benchmarking
//! addresses, and IPv6 forms that embed such an IPv4 address, are refused unless a network of
//! `webhook.allow_networks` holds them. The accepter checks literal addresses when an endpoint
//! is registered; the dispatcher checks every address a name resolves to before it connects.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The addresses webhooks may reach.
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    allowed: Vec<IpNet>,
}

impl AddressGuard {
    /// A guard that lets public addresses and the `allowed` networks through.
    pub fn new(allowed: &[IpNet]) -> AddressGuard {
        AddressGuard {
            allowed: allowed.to_vec(),
        }
    }

    /// Whether a webhook may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed.iter().any(|network| network.contains(&ip))
    }

    /// A resolver for HTTP clients that keeps only the addresses this guard permits, so that a
    /// name cannot lead a webhook to a private network, whatever it resolves to at the time.
    pub fn resolver(&self) -> std::sync::Arc<GuardedResolver> {
        std::sync::Arc::new(GuardedResolver {
            guard: self.clone(),
        })
    }

    /// Whether the URL's host, when it is a literal address, may be reached (names are checked
    /// when they are resolved).
    pub fn permits_host(&self, host: &url::Host<&str>) -> bool {
        match host {
            url::Host::Domain(_) => true,
            url::Host::Ipv4(ip) => self.permits(IpAddr::V4(*ip)),
            url::Host::Ipv6(ip) => self.permits(IpAddr::V6(*ip)),
        }
    }
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0                                  // "this network"
        || (a == 100 && (64..128).contains(&b))    // carrier-grade NAT
        || (a == 192 && b == 0 && c == 0)          // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))      // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address that must be public too.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [_, _, _, _, _, _, high, low] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    if segments[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::from(
            (u32::from(segments[1]) << 16) | u32::from(segments[2]),
        ));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || segments[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn private_loopback_and_link_local_addresses_are_refused() {
        let guard = AddressGuard::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(!guard.permits(ip(refused)), "{refused} must be refused");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(guard.permits(ip(public)), "{public} is public");
        }
    }

    #[test]
    fn allowed_networks_let_their_addresses_through() {
        let guard = AddressGuard::new(&["127.0.0.0/8".parse().expect("net")]);
        assert!(guard.permits(ip("127.0.0.1")));
        assert!(!guard.permits(ip("10.0.0.1")));
    }
}

/// A name that resolved to no address a webhook may reach.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to no public address (see webhook.allow_networks)")]
pub struct NoPublicAddress {
    host: String,
}

/// Resolves webhook hosts and keeps only the addresses the guard permits (see
/// [`AddressGuard::resolver`]).
pub struct GuardedResolver {
    guard: AddressGuard,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let permitted: Vec<std::net::SocketAddr> = resolved
                .filter(|address| guard.permits(address.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(
                    Box::new(NoPublicAddress { host }) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The guard's refusal behind a send error, if that is what it was.
pub fn refused_by_guard(error: &reqwest::Error) -> Option<&NoPublicAddress> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<NoPublicAddress>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}
