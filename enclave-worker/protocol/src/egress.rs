//! The egress allowlist the host checks before opening a connection for the enclave.
//!
//! Entries are `host`, `host:port`, `ipv4`, `ipv4:port`, `[ipv6]` or `[ipv6]:port`.
//! - Host names match **exactly** (ASCII case-insensitive, one trailing dot ignored). There
//!   are no wildcards: every model and KMS endpoint is a fixed, known name, and a wildcard
//!   (`*.amazonaws.com`) would admit hosts anyone can create (S3 buckets, API gateways) and
//!   so become an exfiltration path.
//! - An entry without a port allows [`DEFAULT_EGRESS_PORT`] (443) only, never any port:
//!   egress exists for TLS to HTTPS endpoints.
//! - IP literals are rejected unless that exact address (and port) is listed. Host names
//!   that end in a numeric label (`127.1`, `0x7f.1`) are rejected outright, since some
//!   resolvers read them as IP addresses.
//!
//! The policy decides on names; the host proxy that resolves a name should in addition
//! refuse to connect to loopback, link-local (instance metadata) and unspecified addresses.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::error::Error;

/// The port an entry without an explicit port allows.
pub const DEFAULT_EGRESS_PORT: u16 = 443;

/// Longest host name (RFC 1035, without the trailing dot).
const MAX_NAME_LEN: usize = 253;
/// Longest label.
const MAX_LABEL_LEN: usize = 63;

/// A destination host, normalised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EgressHost {
    /// A DNS name, lower case, without a trailing dot.
    Name(String),
    /// An IP address literal.
    Ip(IpAddr),
}

impl std::fmt::Display for EgressHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EgressHost::Name(name) => f.write_str(name),
            EgressHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            EgressHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl EgressHost {
    /// Parses a bare host (name, IPv4 literal or unbracketed IPv6 literal).
    pub fn parse(host: &str) -> Result<Self, Error> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(EgressHost::Ip(ip));
        }
        let invalid = |reason| Error::InvalidPolicyEntry {
            entry: host.to_owned(),
            reason,
        };
        let name = host.strip_suffix('.').unwrap_or(host);
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(invalid("a host name is 1 to 253 characters long"));
        }
        for label in name.split('.') {
            let bytes = label.as_bytes();
            let ldh = bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-');
            if bytes.is_empty() || bytes.len() > MAX_LABEL_LEN || !ldh {
                return Err(invalid("each label is 1 to 63 letters, digits or hyphens"));
            }
            if bytes.first() == Some(&b'-') || bytes.last() == Some(&b'-') {
                return Err(invalid("a label neither starts nor ends with a hyphen"));
            }
        }
        let last = name.rsplit('.').next().unwrap_or(name);
        if last.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return Err(invalid(
                "a name ending in a numeric label may be read as an IP address",
            ));
        }
        Ok(EgressHost::Name(name.to_ascii_lowercase()))
    }
}

/// An allowed destination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Destination {
    /// The host.
    pub host: EgressHost,
    /// The port.
    pub port: u16,
}

impl Destination {
    /// Parses an allowlist entry: `host[:port]`, `ipv4[:port]` or `[ipv6][:port]`.
    pub fn parse_entry(entry: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidPolicyEntry {
            entry: entry.to_owned(),
            reason,
        };
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (ip, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 literal needs a closing bracket"))?;
            let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| invalid("not an IPv6 address"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid("expected :port after the IPv6 literal"))?,
                ),
            };
            (EgressHost::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = match entry.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (entry, None),
            };
            if host.contains(':') {
                return Err(invalid("write an IPv6 literal in brackets"));
            }
            let host = EgressHost::parse(host)
                .map_err(|_| invalid("not a valid host name or IP address"))?;
            (host, port)
        };
        let port = match port {
            None => DEFAULT_EGRESS_PORT,
            Some(port) => {
                let ok = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| ok && *p != 0)
                    .ok_or_else(|| invalid("the port is 1 to 65535"))?;
                port
            }
        };
        Ok(Destination { host, port })
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// An allowlist of destinations. The default policy denies everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allowed: BTreeSet<Destination>,
}

impl EgressPolicy {
    /// A policy that allows nothing.
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// A policy from allowlist entries (see the module docs for their syntax).
    pub fn from_entries<I, S>(entries: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut policy = Self::default();
        for entry in entries {
            policy
                .allowed
                .insert(Destination::parse_entry(entry.as_ref())?);
        }
        Ok(policy)
    }

    /// The allowed destinations.
    pub fn destinations(&self) -> impl Iterator<Item = &Destination> {
        self.allowed.iter()
    }

    /// Checks a destination requested by the enclave (an `EgressOpen` frame's host and
    /// port). Returns the normalised destination to connect to, or
    /// [`Error::EgressDenied`] / [`Error::InvalidPolicyEntry`].
    pub fn check(&self, host: &str, port: u16) -> Result<Destination, Error> {
        let host = EgressHost::parse(host)?;
        let destination = Destination { host, port };
        if self.allowed.contains(&destination) {
            Ok(destination)
        } else {
            Err(Error::EgressDenied {
                host: destination.host.to_string(),
                port,
            })
        }
    }
}
