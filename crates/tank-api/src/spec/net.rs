//! `Ipv4Cidr`: an IPv4 interface address with its prefix length, written
//! `10.0.0.20/24` in the spec.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 address together with the length of its subnet prefix, e.g.
/// `10.0.0.20/24` (address `10.0.0.20` in subnet `10.0.0.0/24`).
///
/// Parsing guarantees `prefix_len <= 32`; the methods treat a larger value
/// (only possible by building the struct by hand) as 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// The subnet mask, e.g. `255.255.255.0` for a /24.
    pub fn netmask(&self) -> Ipv4Addr {
        let host_bits = 32 - u32::from(self.prefix_len.min(32));
        Ipv4Addr::from(u32::MAX.checked_shl(host_bits).unwrap_or(0))
    }

    /// The first address of the subnet, e.g. `10.0.0.0` for `10.0.0.20/24`.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & u32::from(self.netmask()))
    }

    /// The last address of the subnet, e.g. `10.0.0.255` for `10.0.0.20/24`.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !u32::from(self.netmask()))
    }

    /// Whether `addr` lies in this subnet (network and broadcast included).
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & u32::from(self.netmask()) == u32::from(self.network())
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a string is not an `address/prefix` IPv4 CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an IPv4 CIDR: {reason}")]
pub struct ParseCidrError {
    input: String,
    reason: String,
}

impl FromStr for Ipv4Cidr {
    type Err = ParseCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ParseCidrError {
            input: s.to_owned(),
            reason,
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| fail("missing the \"/prefix\" part (e.g. \"10.0.0.20/24\")".into()))?;
        let addr = addr
            .parse()
            .map_err(|_| fail(format!("{addr:?} is not an IPv4 address")))?;
        // `u8::from_str` would also take "+24": insist on plain digits.
        let prefix_len = Some(prefix)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse().ok())
            .filter(|&len| len <= 32)
            .ok_or_else(|| {
                fail(format!(
                    "prefix length {prefix:?} is not a number from 0 to 32"
                ))
            })?;
        Ok(Ipv4Cidr { addr, prefix_len })
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CidrVisitor;

        impl Visitor<'_> for CidrVisitor {
            type Value = Ipv4Cidr;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IPv4 CIDR such as \"10.0.0.20/24\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ipv4Cidr, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(CidrVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        let c = cidr("10.0.0.20/24");
        assert_eq!(c.addr, Ipv4Addr::new(10, 0, 0, 20));
        assert_eq!(c.prefix_len, 24);
        assert_eq!(c.to_string(), "10.0.0.20/24");
    }

    #[test]
    fn subnet_arithmetic() {
        let c = cidr("10.0.0.20/24");
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.network(), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 0, 0, 255));
        assert!(c.contains(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 1, 1)));

        let all = cidr("1.2.3.4/0");
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);
        assert!(all.contains(Ipv4Addr::BROADCAST));

        let host = cidr("192.168.1.7/32");
        assert_eq!(host.network(), host.addr);
        assert_eq!(host.broadcast(), host.addr);
        assert!(!host.contains(Ipv4Addr::new(192, 168, 1, 8)));

        let oversized = Ipv4Cidr {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            prefix_len: 40,
        };
        assert_eq!(oversized.netmask(), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn rejects_bad_text_with_reason() {
        let err = |s: &str| s.parse::<Ipv4Cidr>().unwrap_err().to_string();
        assert_eq!(
            err("10.0.0.20"),
            r#""10.0.0.20" is not an IPv4 CIDR: missing the "/prefix" part (e.g. "10.0.0.20/24")"#
        );
        assert_eq!(
            err("10.0.0.300/24"),
            r#""10.0.0.300/24" is not an IPv4 CIDR: "10.0.0.300" is not an IPv4 address"#
        );
        assert_eq!(
            err("10.0.0.1/33"),
            r#""10.0.0.1/33" is not an IPv4 CIDR: prefix length "33" is not a number from 0 to 32"#
        );
        assert_eq!(
            err("10.0.0.1/+8"),
            r#""10.0.0.1/+8" is not an IPv4 CIDR: prefix length "+8" is not a number from 0 to 32"#
        );
        assert_eq!(
            err("10.0.0.1/"),
            r#""10.0.0.1/" is not an IPv4 CIDR: prefix length "" is not a number from 0 to 32"#
        );
    }

    #[test]
    fn serde_uses_the_text_form() {
        let c = cidr("10.0.0.20/24");
        let json = serde_json::to_value(c).unwrap();
        assert_eq!(json, serde_json::json!("10.0.0.20/24"));
        assert_eq!(serde_json::from_value::<Ipv4Cidr>(json).unwrap(), c);
    }
}
