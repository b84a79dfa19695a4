//! The access list in the filter: the `NF_ACL` LPM trie's keys and values
//! for the rules of [`crate::model::acl`]. Keys are the 16-byte address as
//! in `AddrKey`, IPv4 as `::ffff:a.b.c.d`, so an IPv4 `/n` is an LPM prefix
//! of `96 + n` bits. An IPv6 rule shorter than /96 that covers
//! `::ffff:0:0/96` (e.g. `::/0`) therefore covers every IPv4 client too;
//! `0.0.0.0/0` covers IPv4 only.

use aya::maps::lpm_trie::Key;
use ntp_filter_common::AclKey;

use crate::model::acl::{AclRule, Cidr, CidrError};

impl Cidr {
    /// The `NF_ACL` key for this range.
    pub fn key(&self) -> Key<AclKey> {
        let (data, len) = self.mapped();
        Key::new(len, data)
    }

    /// The range an `NF_ACL` key stands for (bits after the prefix
    /// cleared).
    pub fn from_key(key: &Key<AclKey>) -> Result<Self, CidrError> {
        Self::from_mapped(key.data().addr, key.prefix_len())
    }
}

impl AclRule {
    /// The `NF_ACL` value.
    pub fn value(&self) -> u8 {
        if self.allow {
            ntp_filter_common::acl::ALLOW
        } else {
            ntp_filter_common::acl::DENY
        }
    }
}

#[cfg(test)]
mod tests {
    use ntp_filter_common::AddrKey;

    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn keys_put_ipv4_after_the_mapped_prefix() {
        let k = c("192.0.2.0/24").key();
        assert_eq!(k.prefix_len(), 96 + 24);
        assert_eq!(
            k.data().addr,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 0]
        );
        assert_eq!(c("0.0.0.0/0").key().prefix_len(), 96);
        assert_eq!(c("192.0.2.99").key().prefix_len(), 128);

        let k = c("2001:db8:1:2::/64").key();
        assert_eq!(k.prefix_len(), 64);
        assert_eq!(
            k.data().addr,
            [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(c("::/0").key().prefix_len(), 0);
        // The packed key the kernel sees: 4-byte length, then the address.
        assert_eq!(std::mem::size_of::<Key<AclKey>>(), 20);
    }

    #[test]
    fn keys_round_trip() {
        for s in [
            "192.0.2.0/24",
            "192.0.2.99/32",
            "0.0.0.0/0",
            "2001:db8::/32",
            "2001:db8::99/128",
            "::/0",
            "::/95",
            "::fffe:0:0/95",
        ] {
            let cidr = c(s);
            assert_eq!(Cidr::from_key(&cidr.key()).unwrap(), cidr, "{s}");
        }
        // Host bits in a foreign key are cleared; an impossible length is refused.
        let k = Key::new(96 + 24, AddrKey::from_v4([192, 0, 2, 99]));
        assert_eq!(Cidr::from_key(&k).unwrap(), c("192.0.2.0/24"));
        assert!(Cidr::from_key(&Key::new(129, AddrKey::from_v6([0; 16]))).is_err());
    }
}
