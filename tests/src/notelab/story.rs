//! The note's story, told live on a running lab: each step says what it
//! shows, runs the real commands, prints their real output, and fails
//! (naming itself) when what it sees contradicts the story.

use super::{step, Lab, LabOpts, HOSTS, HOST_IF, ROUTER_V4};
use crate::addrs::{OUTSIDER_V4, WAN_IF};
use crate::packet::{mode, NtpPacket};
use crate::{agent_bin, Child, Frame, Observer, UdpEndpoint};
use anyhow::{bail, Result};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the probe listens for an answer of any kind.
const PROBE_LISTEN: Duration = Duration::from_secs(2);
const PROBE_PORT: u16 = 40123;
const NTPDATE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the lab is, said before it is built.
pub(super) fn intro(o: &LabOpts) {
    say!(
        "ntp-filter lab: the router note's story, live, in network namespaces\n\
         (documentation addresses only; chronyd runs with -x and the agent with\n\
         --no-clock-adjust: nothing here touches this machine's clock)\n"
    );
    let hosts = HOSTS.map(|(role, _, ip, what)| (role, ip.to_string(), what));
    for (role, ip, what) in
        hosts
            .into_iter()
            .chain([("wan", String::new(), "the switch between them (bridge br0)")])
    {
        say!(
            "  {:<width$}  {ip:<10}  {what}",
            o.netns(role),
            width = o.prefix.len() + 9
        );
    }
}

pub(super) fn tell(lab: &Lab, started: Instant) -> Result<()> {
    let agent_started = Instant::now();
    say_part!("\nwaiting for the router to synchronize with its server and its peer ... ");
    let st = step("waiting for the router to synchronize", || {
        lab.agent.wait_status(
            lab.router(),
            SYNC_TIMEOUT,
            "synchronized, both sources selected or combined",
            |v| {
                v["host"]["synchronized"] == true
                    && v["peers"].as_array().is_some_and(|p| {
                        p.len() == 2 && p.iter().all(|s| s["tally"] == "*" || s["tally"] == "+")
                    })
            },
        )
    })?;
    say!(
        "synchronized after {:.0} s",
        agent_started.elapsed().as_secs_f64()
    );

    heading("1. Client mode: the router keeps its clock in sync with its server and its peer");
    step("1: status in client mode", || {
        say_part!("{}", router_status(lab, "")?);
        Ok(())
    })?;

    heading("2. Asked for the time from outside, it does not answer");
    let before = dropped_requests(&st);
    step("2: ntpdate from outside in client mode", || {
        if ntpdate(lab)? {
            bail!("ntpdate -q {ROUTER_V4} got an answer in client mode");
        }
        Ok(())
    })?;

    heading("3. Nor does a probe of UDP port 123: no NTP reply, and no ICMP port unreachable");
    say!(
        "(the note's firmware discarded NTP in its daemon, so its port 123 still answered probes)"
    );
    step("3: probe in client mode", || {
        let answers = probe(lab)?;
        if !answers.is_empty() {
            bail!("the router answered the probe in client mode");
        }
        Ok(())
    })?;

    heading("4. The XDP filter dropped those requests at the NIC, before any socket");
    say!("(client mode passes only replies from its server and symmetric modes from its peer)");
    step("4: the drop counters", || {
        let after = dropped_requests(&lab.agent.status(lab.router())?);
        say!(
            "NTP client requests (mode 3) from other addresses, dropped: {before} before step 2, {after} now"
        );
        let text = router_status(lab, " | sed -n '/^filter drops:/,$p'")?;
        text.lines()
            .skip_while(|l| !l.starts_with("filter drops:"))
            .for_each(|l| say!("{l}"));
        if after <= before {
            bail!("the drop counter did not move ({before} -> {after})");
        }
        Ok(())
    })?;

    heading("5. Server mode, switched on in the running agent: now it answers");
    step("5: server mode", || {
        switch_mode(lab, "server")?;
        if !ntpdate(lab)? {
            bail!("ntpdate -q {ROUTER_V4} got no answer in server mode");
        }
        let answers = probe(lab)?;
        let answered = answers
            .iter()
            .any(|f| f.udp().is_some_and(|u| u.ntp_mode() == Some(mode::SERVER)));
        if !answered {
            bail!("the probe got no NTP reply in server mode");
        }
        Ok(())
    })?;

    heading("6. And back to client mode: silent again, still synchronized");
    step("6: back to client mode", || {
        switch_mode(lab, "client")?;
        if ntpdate(lab)? {
            bail!("ntpdate -q {ROUTER_V4} still got an answer back in client mode");
        }
        let text = router_status(lab, " | sed '/^peer info:/,$d'")?;
        text.lines()
            .take_while(|l| !l.starts_with("peer info:"))
            .for_each(|l| say!("{l}"));
        if !text.contains("mode:  client") || !text.contains("status:   synchronized") {
            bail!("not synchronized in client mode after the switch back");
        }
        Ok(())
    })?;
    say!(
        "\n(lab built and story told in {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn heading(text: &str) {
    say!("\n== {text}");
}

/// `ntp-agent status` on the router; `shown` is the shell filter the
/// caller applies to what it prints.
fn router_status(lab: &Lab, shown: &str) -> Result<String> {
    say!("router# ntp-agent status{shown}");
    lab.agent.status_text(lab.router())
}

/// Mode-3 packets from addresses that are neither server nor peer, dropped.
fn dropped_requests(status: &Value) -> u64 {
    status["filter"]["counters"]["by_class_mode"]["other"]["3"]["dropped"]
        .as_u64()
        .unwrap_or(0)
}

fn switch_mode(lab: &Lab, to: &str) -> Result<()> {
    say!("router# ntp-agent mode {to}");
    let out = lab.agent.control(lab.router(), &["mode", to])?;
    say_part!("{}", out.log);
    if !out.status.success() {
        bail!("`ntp-agent mode {to}` failed ({})", out.status);
    }
    Ok(())
}

/// `ntpdate -q ROUTER` from the outside host; whether it got the time.
fn ntpdate(lab: &Lab) -> Result<bool> {
    let router = ROUTER_V4.to_string();
    say!("outside# ntpdate -q {router}");
    let mut c = Child::spawn_in(lab.outside(), "ntpdate", "ntpdate", &["-q", &router])?;
    let status = c.wait_exit(NTPDATE_TIMEOUT)?;
    say_part!("{}", c.log());
    if !status.success() {
        say!("({status})");
    }
    Ok(status.success())
}

/// One NTP client request from the outside host to the router's port 123
/// (what a scanner sends), then everything the router sends back to the
/// outside host, whatever it is, within `PROBE_LISTEN`.
fn probe(lab: &Lab) -> Result<Vec<Frame>> {
    let from = SocketAddr::new(OUTSIDER_V4.into(), PROBE_PORT);
    let to = SocketAddr::new(ROUTER_V4.into(), 123);
    say!(
        "outside# (probe: one NTP client request {from} -> {to}; then {} s listening on {HOST_IF} \
         for anything from {})",
        PROBE_LISTEN.as_secs(),
        to.ip()
    );
    let obs = Observer::start(lab.outside(), HOST_IF)?;
    let sock = UdpEndpoint::bind(lab.outside(), from)?;
    let from_router = |f: &Frame| {
        f.ip()
            .is_some_and(|ip| ip.src == to.ip() && ip.dst == IpAddr::from(OUTSIDER_V4))
    };
    sock.send_to(&NtpPacket::new(mode::CLIENT).to_bytes(), to)?;
    // Returns at the first answer; without one it has listened long enough.
    let _ = obs.wait_for(from_router, PROBE_LISTEN);
    let answers: Vec<Frame> = obs.frames().into_iter().filter(from_router).collect();
    if answers.is_empty() {
        say!("nothing came back: no NTP reply, no ICMP");
    }
    for f in &answers {
        say!("answered: {}", describe(f));
    }
    Ok(answers)
}

fn describe(f: &Frame) -> String {
    if let Some(u) = f.udp() {
        let ntp = match (u.ntp_mode(), u.payload.get(1)) {
            (Some(m), Some(stratum)) if u.payload.len() >= 48 => {
                format!(", NTP mode {m}, stratum {stratum}")
            }
            _ => String::new(),
        };
        return format!(
            "UDP {}:{} -> {}:{}{ntp}",
            u.src, u.src_port, u.dst, u.dst_port
        );
    }
    match f.ip() {
        Some(ip) if ip.protocol == 1 => format!("ICMP {} -> {}", ip.src, ip.dst),
        Some(ip) => format!("IP protocol {} {} -> {}", ip.protocol, ip.src, ip.dst),
        None => format!("{} bytes", f.data.len()),
    }
}

/// `path` relative to the current directory when it is below it.
fn short(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}

/// The commands to go on with, exactly as they work on this lab.
pub(super) fn how_to_play(o: &LabOpts) {
    let agent = agent_bin()
        .map(|a| short(&a))
        .unwrap_or_else(|_| "ntp-agent".into());
    let agent = agent.display();
    let router = format!("nsenter --net=/var/run/netns/{}", o.netns("router"));
    let outside = format!("nsenter --net=/var/run/netns/{}", o.netns("outside"));
    let sock = o.control_socket();
    let sock = sock.display();
    let down = if o.is_default() {
        "cargo xtask lab --down".to_string()
    } else {
        let me = std::env::current_exe()
            .map(|p| short(&p))
            .unwrap_or_default();
        format!(
            "{} down --prefix {} --state-dir {}",
            me.display(),
            o.prefix,
            o.state_dir.display()
        )
    };
    say!(
        "\n== The lab stays up. Play with it (as root):\n\n\
         # the router's status (time sync, then the filter and its counters)\n\
         {router} {agent} status --control-socket {sock} --pin-dir {pins}\n\
         # ask the router for the time from the outside host\n\
         {outside} ntpdate -q {ROUTER_V4}\n\
         # switch the running agent to server mode and back\n\
         {router} {agent} mode server --control-socket {sock}\n\
         {router} {agent} mode client --control-socket {sock}\n\
         # logs of the agent and both chronyds\n\
         ls {logs}\n\
         # remove the lab: stops its processes, detaches the filter from {WAN_IF}, deletes the namespaces\n\
         {down}",
        pins = o.pin_dir().display(),
        logs = o.state_dir.join("log").display(),
    );
}
