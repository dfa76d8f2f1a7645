//! Which addresses outbound requests (source sync, webhooks) may reach: the egress guard's rules,
//! without I/O. An address is refused unless it is global unicast — checked on every address a
//! name resolves to, and on the IPv4 address embedded in IPv6 spellings (IPv4-mapped,
//! IPv4-compatible, NAT64, 6to4), so an internal address cannot hide behind another form.
//! An operator may allow private ranges (`allow_private`) or named networks (CIDRs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Unspecified,
    Loopback,
    /// RFC 1918, RFC 6598 shared space, IPv6 unique local.
    Private,
    LinkLocal,
    Multicast,
    Broadcast,
    /// Documentation, benchmarking, IETF and other special-purpose blocks.
    Reserved,
    /// Teredo, NAT64 local use and other tunnels whose endpoint cannot be vetted.
    Tunnel,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unspecified => "unspecified",
            Refusal::Loopback => "loopback",
            Refusal::Private => "private",
            Refusal::LinkLocal => "link-local",
            Refusal::Multicast => "multicast",
            Refusal::Broadcast => "broadcast",
            Refusal::Reserved => "reserved",
            Refusal::Tunnel => "tunnel",
        }
    }
}

fn v4_in(a: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    (u32::from(a) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn v6_in(a: Ipv6Addr, net: [u16; 8], prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    };
    (u128::from(a) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

/// `None` when an IPv4 address is global unicast, else why not.
pub fn check_v4(a: Ipv4Addr) -> Option<Refusal> {
    let r = |net, prefix| v4_in(a, net, prefix);
    if a.is_unspecified() || r([0, 0, 0, 0], 8) {
        Some(Refusal::Unspecified)
    } else if a.is_loopback() {
        Some(Refusal::Loopback)
    } else if a.is_private() || r([100, 64, 0, 0], 10) {
        Some(Refusal::Private)
    } else if a.is_link_local() {
        Some(Refusal::LinkLocal)
    } else if a.is_broadcast() {
        Some(Refusal::Broadcast)
    } else if a.is_multicast() {
        Some(Refusal::Multicast)
    } else if r([192, 0, 0, 0], 24)
        || r([192, 0, 2, 0], 24)
        || r([198, 51, 100, 0], 24)
        || r([203, 0, 113, 0], 24)
        || r([198, 18, 0, 0], 15)
        || r([192, 88, 99, 0], 24)
        || r([240, 0, 0, 0], 4)
    {
        Some(Refusal::Reserved)
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address stands for, where it is a spelling of one: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4
/// (`2002:AABB:CCDD::`).
pub fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(a);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if v6_in(a, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || v6_in(a, [0, 0, 0, 0, 0, 0, 0, 0], 96)
        || v6_in(a, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96)
    {
        Some(low32)
    } else if v6_in(a, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32))
    } else {
        None
    }
}

/// `None` when an IPv6 address is global unicast (and the IPv4 address it spells, if any, is
/// too), else why not.
pub fn check_v6(a: Ipv6Addr) -> Option<Refusal> {
    if a.is_unspecified() {
        return Some(Refusal::Unspecified);
    }
    if a.is_loopback() {
        return Some(Refusal::Loopback);
    }
    if let Some(v4) = embedded_v4(a) {
        // `::` and `::1` are handled above; the rest of ::/96 spells an IPv4 address
        return check_v4(v4);
    }
    let r = |net, prefix| v6_in(a, net, prefix);
    if r([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7) {
        Some(Refusal::Private)
    } else if r([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10) || r([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10) {
        Some(Refusal::LinkLocal)
    } else if a.is_multicast() {
        Some(Refusal::Multicast)
    } else if r([0x2001, 0, 0, 0, 0, 0, 0, 0], 32) || r([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48) {
        Some(Refusal::Tunnel)
    } else if r([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32)
        || r([0x100, 0, 0, 0, 0, 0, 0, 0], 64)
        || r([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28)
        || r([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48)
        || !r([0x2000, 0, 0, 0, 0, 0, 0, 0], 3)
    {
        // documentation, discard, ORCHID, benchmarking, and everything outside 2000::/3 (the
        // only block allocated for global unicast)
        Some(Refusal::Reserved)
    } else {
        None
    }
}

pub fn check(a: IpAddr) -> Option<Refusal> {
    match a {
        IpAddr::V4(v4) => check_v4(v4),
        IpAddr::V6(v6) => check_v6(v6),
    }
}

/// The guard's configuration: what besides global unicast may be reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Every address may be reached (development and tests only).
    pub allow_private: bool,
    /// Networks that may be reached although they are not global (an internal API gateway).
    pub allow: Vec<IpNet>,
}

impl EgressPolicy {
    /// `Ok` when `a` may be reached, else why not.
    pub fn vet(&self, a: IpAddr) -> Result<(), Refusal> {
        let Some(why) = check(a) else { return Ok(()) };
        // an allowed network matches the address as written and the IPv4 address it spells
        let spelled = match a {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = self.allow_private
            || self
                .allow
                .iter()
                .any(|n| n.contains(&a) || spelled.is_some_and(|s| n.contains(&s)));
        if allowed { Ok(()) } else { Err(why) }
    }

    /// Parses a comma-separated CIDR list (`10.1.0.0/16, fd00::/8`).
    pub fn parse_allow(list: &str) -> Result<Vec<IpNet>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .map_err(|_| format!("'{s}' is not a CIDR network (10.0.0.0/8, fd00::/8)"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_in_every_spelling() {
        for (a, why) in [
            ("127.0.0.1", Refusal::Loopback),
            ("10.1.2.3", Refusal::Private),
            ("172.16.0.1", Refusal::Private),
            ("192.168.1.1", Refusal::Private),
            ("100.64.0.1", Refusal::Private),
            ("169.254.169.254", Refusal::LinkLocal),
            ("0.0.0.0", Refusal::Unspecified),
            ("0.1.2.3", Refusal::Unspecified),
            ("255.255.255.255", Refusal::Broadcast),
            ("224.0.0.1", Refusal::Multicast),
            ("192.0.2.1", Refusal::Reserved),
            ("240.0.0.1", Refusal::Reserved),
            ("::1", Refusal::Loopback),
            ("::", Refusal::Unspecified),
            ("::ffff:127.0.0.1", Refusal::Loopback),
            ("::ffff:169.254.169.254", Refusal::LinkLocal),
            ("::10.0.0.1", Refusal::Private),
            ("64:ff9b::10.0.0.1", Refusal::Private),
            ("64:ff9b::7f00:1", Refusal::Loopback),
            ("2002:7f00:0001::", Refusal::Loopback),
            ("2002:a9fe:a9fe::1", Refusal::LinkLocal),
            ("fd00::1", Refusal::Private),
            ("fe80::1", Refusal::LinkLocal),
            ("ff02::1", Refusal::Multicast),
            ("2001:db8::1", Refusal::Reserved),
            ("2001:0:4136:e378::1", Refusal::Tunnel),
            ("64:ff9b:1::1", Refusal::Tunnel),
            ("100::1", Refusal::Reserved),
        ] {
            assert_eq!(check(ip(a)), Some(why), "{a}");
            assert_eq!(EgressPolicy::default().vet(ip(a)), Err(why), "{a}");
        }
    }

    #[test]
    fn global_addresses_pass_in_every_spelling() {
        for a in [
            "93.184.215.14",
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(check(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn allowances_open_only_what_they_name() {
        let open = EgressPolicy {
            allow_private: true,
            allow: Vec::new(),
        };
        assert_eq!(open.vet(ip("127.0.0.1")), Ok(()));
        let gateway = EgressPolicy {
            allow_private: false,
            allow: EgressPolicy::parse_allow("10.1.0.0/16, fd00::/8").unwrap(),
        };
        assert_eq!(gateway.vet(ip("10.1.2.3")), Ok(()));
        assert_eq!(
            gateway.vet(ip("::ffff:10.1.2.3")),
            Ok(()),
            "its mapped spelling too"
        );
        assert_eq!(gateway.vet(ip("10.2.0.1")), Err(Refusal::Private));
        assert_eq!(gateway.vet(ip("fd00::5")), Ok(()));
        assert_eq!(gateway.vet(ip("127.0.0.1")), Err(Refusal::Loopback));
        assert!(EgressPolicy::parse_allow("10.0.0.0/33").is_err());
        assert!(EgressPolicy::parse_allow("nope").is_err());
        assert_eq!(EgressPolicy::parse_allow(" ").unwrap(), Vec::new());
    }

    proptest! {
        /// Every IPv4 address gets the same verdict in all its IPv6 spellings.
        #[test]
        fn ipv6_spellings_of_an_ipv4_address_get_its_verdict(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            let want = check_v4(v4);
            let mapped = v4.to_ipv6_mapped();
            let nat64 = Ipv6Addr::from((0x64_ff9b_u128 << 96) | u128::from(bits));
            let six_to_four = Ipv6Addr::from((0x2002_u128 << 112) | (u128::from(bits) << 80) | 1);
            prop_assert_eq!(check_v6(mapped), want);
            prop_assert_eq!(check_v6(nat64), want);
            prop_assert_eq!(check_v6(six_to_four), want);
            if bits > 1 {
                // ::0 and ::1 are the IPv6 unspecified and loopback addresses themselves
                prop_assert_eq!(check_v6(v4.to_ipv6_compatible()), want);
            }
        }
    }
}
