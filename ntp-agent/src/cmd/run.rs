//! `ntp-agent run`: validate everything, then load, fill the maps, attach,
//! and keep the local addresses current until told to stop.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use anyhow::{bail, Context as _, Result};
use ntp_filter_common::{config_flags, AddrKey, FilterConfig, SourceEntry};

use ntp_proto::{DisciplineConfig, NtpDuration, RefId, SystemConfig};

use crate::{
    agent, caps,
    cli::RunArgs,
    clock::{Clock, ObserveOnly, SystemClock},
    control,
    filter::{
        self, links::Links, local_addrs, lock::PinLock, reconcile, slots, Attachment, Desired,
        FilterMaps, PinDir,
    },
    metrics,
    model::{
        acl::{self, AclRule},
        addr, policy, seconds, PollSettings, RateLimit, Role, Settings, SourceArg, SourceRole,
        SourceSpec,
    },
    notify::{self, Notifier, ReadyWhen},
};

/// Where a server's replies may arrive before its first request: nowhere
/// (0) when each request picks a random port, which the sync loop registers
/// before sending; the fixed port when the operator set one.
fn initial_reply_port(args: &RunArgs) -> u16 {
    args.source_port.map_or(0, |p| p.get())
}

/// The sources known by address at start. An NTS source's address is
/// that of its key establishment server: the NTP server it names joins the
/// sources map once the key establishment is done.
fn addresses(args: &[SourceArg]) -> Vec<IpAddr> {
    args.iter()
        .filter(|a| a.nts_ke_port().is_none())
        .filter_map(|a| match &a.spec {
            SourceSpec::Addr(ip) => Some(*ip),
            SourceSpec::Name(_) => None,
        })
        .collect()
}

/// `--allow` and `--deny` as rules, refusing a range given both ways.
fn access_list(args: &RunArgs) -> Result<Vec<AclRule>> {
    let rules: Vec<AclRule> = args
        .allow
        .iter()
        .map(|c| AclRule::allow(*c))
        .chain(args.deny.iter().map(|c| AclRule::deny(*c)))
        .collect();
    acl::table(&rules)?;
    Ok(rules)
}

/// The filter's state from the configuration. Sources given by name join
/// the sources map when the sync loop has resolved them.
pub fn desired(args: &RunArgs) -> Result<Desired> {
    let servers = addresses(&args.servers);
    let mut sources = BTreeMap::new();
    for &ip in &servers {
        sources.insert(
            AddrKey::from_ip(ip),
            SourceEntry::server(initial_reply_port(args), args.ntp_port.get()),
        );
    }
    for ip in addresses(&args.peers) {
        if servers.contains(&ip) {
            bail!("{ip} is given both as --server and as --peer: an address is one or the other");
        }
        sources.insert(AddrKey::from_ip(ip), SourceEntry::peer());
    }
    let mut flags = 0;
    if args.bpf_log {
        flags |= config_flags::LOG_DROPS;
    }
    if args.count_out_of_scope {
        flags |= config_flags::OUT_OF_SCOPE_COUNTED;
    }
    if args.pass_non_first_fragments {
        flags |= config_flags::PASS_NON_FIRST_FRAGMENTS;
    }
    Ok(Desired {
        config: FilterConfig {
            ntp_port: args.ntp_port.get(),
            flags,
        },
        policy: policy::table(args.role, &args.allow_modes),
        sources,
        acl: access_list(args)?,
    })
}

/// Everything that can be checked without touching the kernel (also what
/// `check-config` runs).
pub fn check(args: &RunArgs) -> Result<(Desired, Settings)> {
    if args.ifaces.is_empty() {
        bail!("no interface to filter: give --iface IF (or `iface = [\"IF\"]` in the config file)");
    }
    if args.ready_after_sync
        && args.servers.is_empty()
        && args.peers.is_empty()
        && args.pools.is_empty()
    {
        bail!("--ready-after-sync (ready-after-sync = true) needs a --server or --peer: without a source the clock never synchronizes and systemd would time the start out");
    }
    crate::model::no_iface_twice(&args.ifaces).map_err(anyhow::Error::msg)?;
    policy::no_class_twice(&args.allow_modes).map_err(anyhow::Error::msg)?;
    let desired = desired(args)?;
    no_source_twice(args)?;
    fits_the_filter(args)?;
    source_port_fits(args)?;
    crate::nts::trust::check_ca_files(&args.nts_ca)?;
    no_own_address(args)?;
    for iface in &args.ifaces {
        filter::ifindex(iface)?;
    }
    Ok((desired, settings(args)?))
}

/// A source that is one of the box's own addresses (or subnet
/// broadcasts) could only ever time out; refuse it with its flag.
fn no_own_address(args: &RunArgs) -> Result<()> {
    let own = local_addrs::own_addresses()?;
    for (flag, ip) in addresses(&args.servers)
        .into_iter()
        .map(|ip| ("--server", ip))
        .chain(addresses(&args.peers).into_iter().map(|ip| ("--peer", ip)))
    {
        if let Some(why) = addr::refuse_source(ip, &own) {
            bail!("{flag} {why}");
        }
    }
    Ok(())
}

/// More sources than the filter's table holds would fail the reconcile
/// (or leave later ones out at run time); refuse them with the limit.
fn fits_the_filter(args: &RunArgs) -> Result<()> {
    use crate::model::source::{filter_entries, too_many_sources};
    let n: usize = (args
        .servers
        .iter()
        .map(|s| filter_entries(s, SourceRole::Server)))
    .chain(
        args.peers
            .iter()
            .map(|p| filter_entries(p, SourceRole::Peer)),
    )
    .chain(
        args.pools
            .iter()
            .map(|p| filter_entries(p, SourceRole::Pool)),
    )
    .sum();
    match too_many_sources(n) {
        Some(why) => bail!("{why}"),
        None => Ok(()),
    }
}

/// Peers talk from the NTP port, so requests from another fixed port
/// cannot serve them; the sync loop would refuse this only after the
/// filter is attached.
fn source_port_fits(args: &RunArgs) -> Result<()> {
    if let Some(port) = args.source_port.map(|p| p.get()) {
        if port != args.ntp_port.get() && !args.peers.is_empty() {
            bail!(
                "--source-port {port} cannot be combined with --peer: symmetric peers talk from the NTP port {} (give --source-port {} or no --source-port)",
                args.ntp_port,
                args.ntp_port
            );
        }
    }
    Ok(())
}

/// A source given twice (even with other poll options) would be refused by
/// the sync loop after the filter is attached; refuse it up front.
fn no_source_twice(args: &RunArgs) -> Result<()> {
    let all: Vec<(&str, &SourceArg)> = args
        .servers
        .iter()
        .map(|s| ("--server", s))
        .chain(args.peers.iter().map(|p| ("--peer", p)))
        .chain(args.pools.iter().map(|p| ("--pool", p)))
        .collect();
    for (i, (flag, arg)) in all.iter().enumerate() {
        if let Some((first_flag, first)) = all[..i].iter().find(|(_, a)| a.spec == arg.spec) {
            bail!(
                "{} is given twice ({first_flag} {first} and {flag} {arg}): give each source once",
                arg.spec
            );
        }
    }
    Ok(())
}

pub fn run(args: RunArgs) -> Result<()> {
    // SIGHUP's default is to die, leaving a stale control socket; the
    // agent re-reads nothing on it. Ignored until the loop's handler (which
    // says so in the log) takes over.
    // SAFETY: setting a signal disposition to SIG_IGN before any thread
    // is started; no handler code runs.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    // Checked first, so a bad argument leaves nothing behind.
    let (desired, settings) = check(&args)?;
    caps::require(caps::Needs {
        clock: !args.no_clock_adjust,
        low_port: low_port(&args),
    })?;
    let pins = PinDir::new(&args.pin_dir);
    // Before anything is touched, the control socket included: a second
    // agent on the same pins stops here, whatever its control socket.
    // Held until `run` returns.
    let lock = PinLock::acquire(&pins)?;
    let (control, metrics) = match bind_sockets(&args) {
        Ok(bound) => bound,
        Err(e) => {
            lock.abandon();
            return Err(e);
        }
    };
    pins.check_layout()?;
    let fresh = !pins.has_maps();

    // What this run attached, undone if the start fails after all.
    let undo = |attached: &[(String, Attachment)]| {
        if fresh {
            // Nothing of ours was here before this run: leave nothing.
            let _ = pins.remove_all();
        } else {
            // A link reused from the previous run keeps filtering (fail
            // closed); the ones this run created go.
            for (iface, how) in attached {
                if *how != Attachment::Reused {
                    let _ = std::fs::remove_file(pins.link(iface));
                }
            }
        }
    };
    match setup(&args, &pins, &desired) {
        Ok((ebpf, attached)) => {
            let ready_when = if args.ready_after_sync {
                ReadyWhen::Synchronized
            } else {
                ReadyWhen::Filtering
            };
            let notify = Notifier::from_env(ready_when, notify::describe_filter(&attached));
            // `serve` fails only while starting (binding the sync loop's
            // sockets, the first sources): the loop itself ends only when
            // told to stop, and then leaves the filter enforcing.
            let served = serve(args, settings, control, metrics, pins.clone(), ebpf, notify);
            if served.is_err() {
                tracing::warn!("the start failed after the filter was attached: attach undone");
                undo(&attached);
            }
            served
        }
        Err(e) => {
            undo(&[]);
            Err(e)
        }
    }
}

/// Bound before anything is attached: a second agent with the same
/// control socket stops here, and a bad or busy metrics address too (the
/// control socket goes away with its `Bound`).
fn bind_sockets(args: &RunArgs) -> Result<(control::Bound, Option<std::net::TcpListener>)> {
    let control = control::bind_std(&args.control_socket)?;
    let metrics = args.metrics.map(metrics::bind).transpose()?;
    // The UDP ports the sync loop binds at start, tried now: a port taken
    // by another NTP daemon must not fail the start after the attach.
    crate::net::probe_ports(&udp_ports(args))?;
    Ok((control, metrics))
}

/// The UDP ports the sync loop binds as it starts: the fixed source port,
/// and the NTP port for server mode, peers, or requests sent from it.
fn udp_ports(args: &RunArgs) -> Vec<u16> {
    let ntp = args.ntp_port.get();
    let source = args.source_port.map(|p| p.get());
    let mut ports = Vec::new();
    if args.role == Role::Server || !args.peers.is_empty() || source == Some(ntp) {
        ports.push(ntp);
    }
    ports.extend(source.filter(|&p| p != ntp));
    ports
}

/// A port below the unprivileged range this run binds at start: the NTP
/// port for server mode or peers, or `--source-port`.
fn low_port(args: &RunArgs) -> Option<u16> {
    let start = caps::unprivileged_port_start();
    let ntp = (args.role == Role::Server || !args.peers.is_empty()).then_some(args.ntp_port.get());
    [ntp, args.source_port.map(|p| p.get())]
        .into_iter()
        .flatten()
        .filter(|&p| p < start)
        .min()
}

/// Loads, reconciles and attaches; returns how each interface is filtered.
fn setup(
    args: &RunArgs,
    pins: &PinDir,
    desired: &Desired,
) -> Result<(aya::Ebpf, Vec<(String, Attachment)>)> {
    let mut ebpf = filter::load(
        pins,
        filter::LoadOptions {
            bpf_log: args.bpf_log,
            count_out_of_scope: args.count_out_of_scope,
        },
    )?;
    let mut maps = FilterMaps::open(pins)?;
    maps.seed_tables()?;
    let changes = reconcile::apply(&mut maps, desired)?;
    tracing::info!(?changes, "filter maps reconciled");
    reconcile::apply_local(&mut maps, &local_addrs::current()?)?;
    // Before attaching, so a freshly attached interface's first packets
    // already count under its own name.
    let wanted = args
        .ifaces
        .iter()
        .map(|name| {
            Ok(slots::Iface {
                name: name.clone(),
                index: filter::ifindex(name)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let slots = slots::assign(&mut maps, &wanted)?;

    let prog = filter::program(&mut ebpf)?;
    let older = pins.older_versions();
    let mut attached: Vec<(String, Attachment)> = Vec::new();
    for iface in &args.ifaces {
        let legacy = older
            .iter()
            .rev()
            .map(|o| o.link(iface))
            .find(|p| p.exists());
        match filter::attach::attach(
            prog,
            iface,
            args.xdp_mode,
            &pins.link(iface),
            legacy.as_deref(),
        ) {
            Ok(how) => attached.push((iface.clone(), how)),
            Err(e) => {
                // Undo only the links this run created; a reused link keeps
                // the previous (still valid) program.
                for (iface, how) in &attached {
                    if *how != Attachment::Reused {
                        let _ = std::fs::remove_file(pins.link(iface));
                    }
                }
                return Err(e);
            }
        }
    }
    retire_leftovers(args, pins, &older)?;
    for (iface, how) in &attached {
        let slot = slots
            .iter()
            .find(|(i, _)| &i.name == iface)
            .and_then(|(_, a)| a.slot())
            .map_or_else(|| slots::OTHER.to_string(), |s| s.to_string());
        tracing::info!(
            iface = %iface,
            xdp = ?how,
            counter_slot = %slot,
            servers = ?args.servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            peers = ?args.peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            mode = ?args.role,
            "filter attached"
        );
    }
    Ok((ebpf, attached))
}

/// After every configured interface is filtered: detach interfaces that
/// are no longer configured, and remove what older-layout agents left.
fn retire_leftovers(args: &RunArgs, pins: &PinDir, older: &[PinDir]) -> Result<()> {
    for iface in pins.linked_interfaces()? {
        if !args.ifaces.contains(&iface) {
            std::fs::remove_file(pins.link(&iface))
                .with_context(|| format!("detaching {iface}"))?;
            tracing::info!(iface = %iface, "filter detached: the interface is no longer configured");
        }
    }
    for old in older {
        for path in old.remove_all()? {
            tracing::info!(path = %path.display(), "removed a pin of an older map layout");
        }
    }
    Ok(())
}

fn settings(args: &RunArgs) -> Result<Settings> {
    if args.minpoll > args.maxpoll {
        bail!(
            "--minpoll {} is larger than --maxpoll {}",
            args.minpoll,
            args.maxpoll
        );
    }
    let step_threshold = seconds::STEP_THRESHOLD
        .check(args.step_threshold)
        .map_err(anyhow::Error::msg)?;
    let panic_threshold = seconds::PANIC_THRESHOLD
        .check(args.panic_threshold)
        .map_err(anyhow::Error::msg)?;
    let ratelimit_interval = seconds::RATELIMIT_INTERVAL
        .duration(args.ratelimit_interval)
        .map_err(anyhow::Error::msg)?
        .expect("the rate-limit interval is never 0");
    let poll = PollSettings {
        minpoll: args.minpoll.get(),
        maxpoll: args.maxpoll.get(),
        iburst: !args.no_iburst,
    };
    for (flag, role, source) in args
        .servers
        .iter()
        .map(|s| ("--server", SourceRole::Server, s))
        .chain(args.peers.iter().map(|p| ("--peer", SourceRole::Peer, p)))
        .chain(args.pools.iter().map(|p| ("--pool", SourceRole::Pool, p)))
    {
        source
            .poll_settings(&poll)
            .and_then(|_| source.check_role(role))
            .map_err(|e| anyhow::anyhow!("{flag} {source}: {e}"))?;
    }
    let own_refids = local_addrs::current()?
        .keys()
        .map(|k| RefId::from_ip(k.to_ip()))
        .collect();
    let discipline = DisciplineConfig {
        step_threshold: NtpDuration::from_seconds(step_threshold),
        step_limit: args.step_limit,
        panic_threshold: (panic_threshold > 0.0)
            .then(|| NtpDuration::from_seconds(panic_threshold)),
        allow_panic_step_at_start: args.allow_panic_step,
        ..DisciplineConfig::default()
    };
    Ok(Settings {
        servers: args.servers.clone(),
        peers: args.peers.clone(),
        pools: args.pools.clone(),
        nts_ca: args.nts_ca.clone(),
        poll,
        system: SystemConfig {
            discipline,
            own_refids,
            ..SystemConfig::default()
        },
        drift_file: Some(args.drift_file.clone()),
        ntp_port: args.ntp_port.get(),
        source_port: args.source_port.map(|p| p.get()),
        role: args.role,
        policy_overrides: args.allow_modes.clone(),
        acl: access_list(args)?,
        rate_limit: RateLimit {
            burst: args.ratelimit_burst.get(),
            interval: ratelimit_interval,
        },
    })
}

fn serve(
    args: RunArgs,
    settings: Settings,
    control: control::Bound,
    metrics: Option<std::net::TcpListener>,
    pins: PinDir,
    mut ebpf: aya::Ebpf,
    notify: Notifier,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        if args.bpf_log {
            start_bpf_log(&mut ebpf)?;
        }
        let maps = Arc::new(Mutex::new(FilterMaps::open(&pins)?));
        let _watcher = local_addrs::watch(maps.clone())?;
        let links = Links::new(ebpf, pins.clone(), args.xdp_mode, maps.clone(), &args.ifaces);
        let _link_watcher = links.watch()?;
        let (control_tx, control_rx) = tokio::sync::mpsc::channel(16);
        if let Some(listener) = metrics {
            let addr = metrics::spawn(listener, control_tx.clone(), pins.clone())?;
            tracing::info!("metrics at http://{addr}/metrics");
        }
        control.listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(control.listener.try_clone()?)?;
        tokio::spawn(control::serve(listener, control_tx));
        let clock: Box<dyn Clock> = if args.no_clock_adjust {
            Box::new(ObserveOnly::default())
        } else {
            Box::new(SystemClock::new()?)
        };
        agent::run(
            settings,
            clock,
            !args.no_clock_adjust,
            Some(agent::Filter { maps, links }),
            control_rx,
            async {
                if let Err(e) = wait_for_stop().await {
                    tracing::error!("signal handling failed: {e:#}");
                }
            },
            notify,
        )
        .await?;
        tracing::info!(
            "stopping; the filter stays attached with the last policy (fail closed). `ntp-agent detach --pin-dir {}` removes it",
            args.pin_dir.display()
        );
        drop(control);
        Ok(())
    })
}

async fn wait_for_stop() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break tracing::info!("SIGTERM received"),
            _ = int.recv() => break tracing::info!("SIGINT received"),
            _ = hup.recv() => tracing::info!(
                "SIGHUP received and ignored: the agent re-reads nothing; change a running agent with its control commands (server, peer, mode, allow, deny) or restart it to apply a changed config file"
            ),
        }
    }
    Ok(())
}

fn start_bpf_log(ebpf: &mut aya::Ebpf) -> Result<()> {
    let logger = aya_log::EbpfLogger::init(ebpf).context("starting the XDP program's log")?;
    // SAFETY: the AsyncFd owns the logger, which owns the ring buffer fd, so
    // the fd stays open for as long as it is registered.
    let mut logger = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)?
    };
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = logger.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::cli::{Cli, Command};

    fn check_of(argv: &[&str]) -> anyhow::Result<()> {
        let cli = Cli::try_parse_from(["ntp-agent", "run", "--iface", "lo"].iter().chain(argv))?;
        let Command::Run(args) = cli.command else {
            unreachable!("parsed as run")
        };
        super::check(&args).map(|_| ())
    }

    #[test]
    fn float_options_out_of_range_are_refused_by_name() {
        for (flag, value, range) in [
            ("--ratelimit-interval", "1e30", "0.001 to 3600 seconds"),
            ("--ratelimit-interval", "inf", "0.001 to 3600 seconds"),
            ("--step-threshold", "NaN", "0.000001 to 86400 seconds"),
            (
                "--panic-threshold",
                "-1",
                "0.001 to 315360000 seconds, or 0",
            ),
        ] {
            let e = format!(
                "{:#}",
                check_of(&[&format!("{flag}={value}"), "--server", "192.0.2.10"]).unwrap_err()
            );
            assert!(e.contains(flag) && e.contains(range), "{flag} {value}: {e}");
        }
        check_of(&[
            "--ratelimit-interval",
            "3600",
            "--ratelimit-burst",
            "4294967295",
            "--panic-threshold",
            "0",
            "--server",
            "192.0.2.10",
        ])
        .unwrap();
    }

    #[test]
    fn more_sources_than_the_filter_holds_and_source_port_with_peers_are_refused() {
        let e = |argv: &[String]| {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            check_of(&argv).map_err(|e| format!("{e:#}"))
        };
        let peers = |n: usize| -> Vec<String> {
            (1..=n)
                .flat_map(|i| ["--peer".to_string(), format!("2001:db8:5::{i:x}")])
                .collect()
        };
        e(&peers(1024)).unwrap();
        assert_eq!(
            e(&peers(1025)).unwrap_err(),
            "1025 sources configured; the filter holds at most 1024 (servers + peers + pool members, maxsources each; an NTS server or a name counts once)"
        );
        // A pool counts its maxsources (default 4), a name and NTS once.
        let mut argv = peers(1019);
        argv.extend(
            [
                "--pool",
                "pool.example.net",
                "--server",
                "time.example.net,nts",
            ]
            .map(String::from),
        );
        e(&argv).unwrap();
        argv.extend(["--server", "time2.example.net"].map(String::from));
        assert!(e(&argv).unwrap_err().starts_with("1025 sources configured"));

        let port = |argv: &[&str]| check_of(argv).map_err(|e| format!("{e:#}"));
        assert!(port(&["--source-port", "5000", "--peer", "192.0.2.20"])
            .unwrap_err()
            .contains("--source-port 5000 cannot be combined with --peer"));
        port(&["--source-port", "123", "--peer", "192.0.2.20"]).unwrap();
        port(&["--source-port", "5000", "--server", "192.0.2.10"]).unwrap();
    }

    #[test]
    fn a_source_given_twice_is_refused_before_anything_runs() {
        check_of(&["--server", "192.0.2.10", "--server", "192.0.2.11,minpoll=4"]).unwrap();
        let e = format!(
            "{:#}",
            check_of(&["--server", "192.0.2.10", "--server", "192.0.2.10,minpoll=4"]).unwrap_err()
        );
        assert_eq!(
            e,
            "192.0.2.10 is given twice (--server 192.0.2.10 and --server 192.0.2.10,minpoll=4): give each source once"
        );
        let e = format!(
            "{:#}",
            check_of(&["--server", "time.example.net", "--peer", "time.example.net"]).unwrap_err()
        );
        assert!(e.contains("time.example.net is given twice"), "{e}");
    }

    #[test]
    fn the_same_interface_or_class_twice_and_aliases_are_refused() {
        let e = |argv: &[&str]| format!("{:#}", check_of(argv).unwrap_err());
        assert_eq!(
            e(&["--iface", "lo"]),
            "--iface lo is given twice: give each interface once"
        );
        assert!(e(&["--allow-modes", "peer=1", "--allow-modes", "peer=1,2"])
            .contains("gives the class peer twice"),);
        // `::ffff:192.0.2.10` is 192.0.2.10: a duplicate, not a second source.
        let alias = e(&["--server", "192.0.2.10", "--peer", "::ffff:192.0.2.10"]);
        assert!(alias.contains("192.0.2.10 is "), "{alias}");
        assert!(!alias.contains("::ffff"), "{alias}");
        // Never a source: named with the address and why.
        assert!(e(&["--server", "127.0.0.1"]).contains("loopback"));
        assert!(e(&["--peer", "224.0.1.1"]).contains("multicast"));
    }
}
