//! `Topology`: namespaces joined by veth pairs, with addresses, routes and
//! permanent neighbour entries.

use crate::journal::Lifetime;
use crate::netns::Netns;
use anyhow::{anyhow, bail, Context, Result};
use std::net::IpAddr;

#[derive(Debug, Clone)]
struct End {
    role: String,
    ifname: String,
    mac: [u8; 6],
    /// A port of a bridge: hosts behind it learn addresses by ARP/ND.
    bridged: bool,
}

#[derive(Debug)]
struct Veth {
    a: End,
    b: End,
}

/// Namespaces addressed by role ("router", "outside", …). Dropping the
/// topology deletes every namespace, which also destroys the veths (unless
/// it was made in persist mode).
#[derive(Debug)]
pub struct Topology {
    tag: String,
    lifetime: Lifetime,
    namespaces: Vec<(String, Netns)>,
    links: Vec<Veth>,
}

impl Topology {
    /// `tag` goes into the namespace names; keep it short and per-test.
    pub fn new(tag: &str) -> Self {
        Self::with_lifetime(tag, Lifetime::Scoped)
    }

    /// In persist mode the namespaces are named exactly `<tag>-<role>`.
    pub fn with_lifetime(tag: &str, lifetime: Lifetime) -> Self {
        Self {
            tag: tag.to_string(),
            lifetime,
            namespaces: Vec::new(),
            links: Vec::new(),
        }
    }

    /// Adds a namespace for `role`. DAD is off so IPv6 addresses are usable
    /// at once, and rp_filter is off so spoofed sources reach the stack.
    pub fn add_ns(&mut self, role: &str) -> Result<&Netns> {
        if self.namespaces.iter().any(|(r, _)| r == role) {
            bail!("role {role} already exists");
        }
        let ns = match self.lifetime {
            Lifetime::Scoped => {
                let short: String = role.chars().take(3).collect();
                Netns::new(&format!("{}{short}", self.tag))?
            }
            Lifetime::Persist(_) => Netns::create(format!("{}-{role}", self.tag), &self.lifetime)?,
        };
        self.namespaces.push((role.to_string(), ns));
        let ns = &self.namespaces.last().expect("just pushed").1;
        for (k, v) in [
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_ra", "0"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ] {
            ns.sysctl(k, v)?;
        }
        Ok(ns)
    }

    /// The namespace of `role`; panics on an unknown role (a test bug).
    pub fn ns(&self, role: &str) -> &Netns {
        self.namespaces
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, ns)| ns)
            .unwrap_or_else(|| panic!("no namespace with role {role}"))
    }

    /// Creates a veth pair `a.1` (in `a.0`) <-> `b.1` (in `b.0`), both up.
    /// Interface names must be ≤ 15 bytes; they live only inside the
    /// namespaces, so fixed names cannot collide between tests.
    pub fn veth(&mut self, a: (&str, &str), b: (&str, &str)) -> Result<()> {
        for (_, ifname) in [a, b] {
            if ifname.len() > 15 {
                bail!("interface name {ifname} longer than 15 bytes");
            }
        }
        let (na, nb) = (self.ns(a.0), self.ns(b.0));
        na.ip(&[
            "link",
            "add",
            "name",
            a.1,
            "type",
            "veth",
            "peer",
            "name",
            b.1,
            "netns",
            nb.name(),
        ])?;
        na.ip(&["link", "set", a.1, "up"])?;
        nb.ip(&["link", "set", b.1, "up"])?;
        let end = |role: &str, ifname: &str, ns: &Netns| -> Result<End> {
            Ok(End {
                role: role.to_string(),
                ifname: ifname.to_string(),
                mac: link_mac(ns, ifname)?,
                bridged: false,
            })
        };
        let link = Veth {
            a: end(a.0, a.1, na)?,
            b: end(b.0, b.1, nb)?,
        };
        self.links.push(link);
        Ok(())
    }

    /// Creates bridge `name` in `role` with `ports` (veth ends there) as its
    /// ports, all up: a switch for hosts that each have one interface.
    pub fn bridge(&mut self, role: &str, name: &str, ports: &[&str]) -> Result<()> {
        self.ns(role)
            .ip(&["link", "add", "name", name, "type", "bridge"])?;
        self.ns(role).ip(&["link", "set", name, "up"])?;
        for port in ports {
            self.ns(role).ip(&["link", "set", port, "master", name])?;
            let end = self
                .links
                .iter_mut()
                .flat_map(|l| [&mut l.a, &mut l.b])
                .find(|e| e.role == role && e.ifname == *port)
                .ok_or_else(|| anyhow!("{port} in {role} is not a veth end"))?;
            end.bridged = true;
        }
        Ok(())
    }

    /// MAC address of an interface (veth ends: as read when created).
    pub fn mac(&self, role: &str, ifname: &str) -> Result<[u8; 6]> {
        match self.veth_end(role, ifname) {
            Some((me, _)) => Ok(me.mac),
            None => link_mac(self.ns(role), ifname),
        }
    }

    /// Adds `cidr` (e.g. "192.0.2.1/24", "2001:db8::1/64") to an interface.
    /// IPv6 gets `nodad`. If the interface is a veth end, the peer namespace
    /// gets a permanent neighbour entry for it, so neither ARP nor ND can
    /// race with the first test packet (not behind a bridge: there the
    /// hosts resolve each other).
    pub fn addr(&self, role: &str, ifname: &str, cidr: &str) -> Result<()> {
        let ip: IpAddr = cidr
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("bad address {cidr}"))?;
        let mut args = vec!["addr", "add", cidr, "dev", ifname];
        if ip.is_ipv6() {
            args.push("nodad");
        }
        self.ns(role).ip(&args)?;
        if let Some((me, peer)) = self.veth_end(role, ifname).filter(|(_, p)| !p.bridged) {
            let ip = ip.to_string();
            self.ns(&peer.role).ip(&[
                "neigh",
                "replace",
                &ip,
                "lladdr",
                &fmt_mac(me.mac),
                "dev",
                &peer.ifname,
                "nud",
                "permanent",
            ])?;
        }
        Ok(())
    }

    /// `ip route replace DEST via VIA` in `role` ("default" works as DEST).
    pub fn route(&self, role: &str, dest: &str, via: &str) -> Result<()> {
        let family = if via.contains(':') { "-6" } else { "-4" };
        self.ns(role)
            .ip(&[family, "route", "replace", dest, "via", via])
            .map(|_| ())
    }

    /// Turns `role` into a router for IPv4 and IPv6.
    pub fn forwarding(&self, role: &str) -> Result<()> {
        let ns = self.ns(role);
        ns.sysctl("net.ipv4.ip_forward", "1")?;
        ns.sysctl("net.ipv6.conf.all.forwarding", "1")
    }

    fn veth_end(&self, role: &str, ifname: &str) -> Option<(&End, &End)> {
        self.links.iter().find_map(|l| {
            if l.a.role == role && l.a.ifname == ifname {
                Some((&l.a, &l.b))
            } else if l.b.role == role && l.b.ifname == ifname {
                Some((&l.b, &l.a))
            } else {
                None
            }
        })
    }

    /// Names of all namespaces (for leak checks in tests).
    pub fn namespace_names(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|(_, n)| n.name().to_string())
            .collect()
    }
}

/// MAC of `ifname` inside `ns`, via `ip -j link`.
pub fn link_mac(ns: &Netns, ifname: &str) -> Result<[u8; 6]> {
    let out = ns.ip(&["-j", "link", "show", "dev", ifname])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing ip -j link")?;
    let s = v[0]["address"]
        .as_str()
        .ok_or_else(|| anyhow!("no address for {ifname} in {out}"))?;
    parse_mac(s)
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        bail!("bad MAC {s}");
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).with_context(|| format!("bad MAC {s}"))?;
    }
    Ok(mac)
}

pub fn fmt_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
