//! A real DNS server for the pool tests: `dnsmasq` in a namespace,
//! answering only for the names it is given (from a hosts file of its own,
//! no upstream, no cache), and a `resolv.conf` pointing at it for the agent
//! to see in a private mount namespace ([`Dnsmasq::resolver_prefix`]).

use std::{net::IpAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};

use crate::{Child, Netns, TempDir};

pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A running dnsmasq, killed on drop.
pub struct Dnsmasq {
    _child: Child,
    dir: TempDir,
}

impl Dnsmasq {
    /// Serves `records` (name, address; a name given several times has
    /// several addresses) on `listen` port 53 in `ns`.
    pub fn start(ns: &Netns, listen: IpAddr, records: &[(&str, IpAddr)]) -> Result<Self> {
        let dir = TempDir::new("dns")?;
        let hosts: String = records
            .iter()
            .map(|(name, addr)| format!("{addr} {name}\n"))
            .collect();
        let hosts_path = dir.path().join("hosts");
        std::fs::write(&hosts_path, hosts)?;
        std::fs::write(
            dir.path().join("resolv.conf"),
            format!("nameserver {listen}\noptions timeout:1 attempts:2\n"),
        )?;
        let args = [
            "--keep-in-foreground".to_string(),
            "--log-facility=-".into(),
            "--conf-file=/dev/null".into(),
            "--pid-file=".into(),
            "--user=root".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            format!("--addn-hosts={}", hosts_path.display()),
            "--bind-interfaces".into(),
            format!("--listen-address={listen}"),
            "--port=53".into(),
            "--cache-size=0".into(),
            "--local-ttl=0".into(),
            "--log-queries".into(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = Child::spawn_in(ns, "dnsmasq", DNSMASQ, &args)?;
        child
            .wait_for_line("read ", Duration::from_secs(10))
            .context("dnsmasq did not read its hosts file")?;
        Ok(Self { _child: child, dir })
    }

    /// A `resolv.conf` naming this server.
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.path().join("resolv.conf")
    }

    /// A command prefix that runs the next program with this server as
    /// its resolver: a private mount namespace in which `/etc/resolv.conf`
    /// is ours (nothing outside it sees the change; bpffs stays the same).
    pub fn resolver_prefix(&self) -> Vec<String> {
        vec![
            "unshare".into(),
            "--mount".into(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-c".into(),
            format!(
                "mount --bind {} /etc/resolv.conf && exec \"$0\" \"$@\"",
                self.resolv_conf().display()
            ),
        ]
    }
}
