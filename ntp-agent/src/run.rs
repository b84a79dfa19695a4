//! `ntp-agent run`: validate everything, then load, fill the maps, attach,
//! and keep the local addresses current until told to stop.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use anyhow::{bail, Context as _, Result};
use ntp_filter_common::{config_flags, FilterConfig, SourceClass, SourceEntry};

use crate::{
    caps,
    cli::RunArgs,
    filter::{self, local_addrs, reconcile, Attachment, Desired, FilterMaps, PinDir},
    policy,
};

/// Until the time-sync core picks random ports, requests leave from the
/// NTP port itself, so that is where replies are expected.
fn reply_port(args: &RunArgs) -> u16 {
    args.ntp_port
}

pub fn desired(args: &RunArgs) -> Result<Desired> {
    let mut sources = BTreeMap::new();
    for &ip in &args.servers {
        sources.insert(
            local_addrs::key_of(ip),
            SourceEntry {
                class: SourceClass::Server as u8,
                _pad: 0,
                reply_port: reply_port(args),
            },
        );
    }
    for &ip in &args.peers {
        if args.servers.contains(&ip) {
            bail!("{ip} is given both as --server and as --peer: an address is one or the other");
        }
        sources.insert(
            local_addrs::key_of(ip),
            SourceEntry {
                class: SourceClass::Peer as u8,
                _pad: 0,
                reply_port: 0,
            },
        );
    }
    let mut flags = 0;
    if args.bpf_log {
        flags |= config_flags::LOG_DROPS;
    }
    if args.pass_non_first_fragments {
        flags |= config_flags::PASS_NON_FIRST_FRAGMENTS;
    }
    Ok(Desired {
        config: FilterConfig {
            ntp_port: args.ntp_port,
            flags,
        },
        policy: policy::table(args.mode, &args.allow_modes),
        sources,
    })
}

fn show(ip: &IpAddr) -> String {
    ip.to_string()
}

pub fn run(args: RunArgs) -> Result<()> {
    // Everything that can be checked without touching the kernel first, so a
    // bad argument leaves nothing behind.
    let desired = desired(&args)?;
    for iface in &args.ifaces {
        filter::ifindex(iface)?;
    }
    caps::require_filter_caps()?;
    let pins = PinDir::new(&args.pins.pin_dir);
    pins.prepare()?;
    pins.check_layout()?;
    let fresh = !pins.has_maps();

    match setup(&args, &pins, &desired) {
        Ok(ebpf) => serve(args, pins, ebpf),
        Err(e) => {
            if fresh {
                // Nothing of ours was here before this run: leave nothing.
                let _ = pins.remove_all();
            }
            Err(e)
        }
    }
}

fn setup(args: &RunArgs, pins: &PinDir, desired: &Desired) -> Result<aya::Ebpf> {
    let mut ebpf = filter::load(pins)?;
    let mut maps = FilterMaps::open(pins)?;
    let changes = reconcile::apply(&mut maps, desired)?;
    tracing::info!(?changes, "filter maps reconciled");
    reconcile::apply_local(&mut maps, &local_addrs::current()?)?;

    let prog = filter::program(&mut ebpf)?;
    let mut attached: Vec<(String, Attachment)> = Vec::new();
    for iface in &args.ifaces {
        match filter::attach::attach(prog, iface, args.xdp_mode, &pins.link(iface)) {
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
    for (iface, how) in &attached {
        tracing::info!(
            iface = %iface,
            xdp = ?how,
            servers = ?args.servers.iter().map(show).collect::<Vec<_>>(),
            peers = ?args.peers.iter().map(show).collect::<Vec<_>>(),
            mode = ?args.mode,
            "filter attached"
        );
    }
    Ok(ebpf)
}

fn serve(args: RunArgs, pins: PinDir, mut ebpf: aya::Ebpf) -> Result<()> {
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
        tracing::info!("running; SIGTERM or Ctrl-C stops the agent and leaves the filter enforcing");
        wait_for_stop().await?;
        tracing::info!(
            "stopping; the filter stays attached with the last policy (fail closed). `ntp-agent detach --pin-dir {}` removes it",
            args.pins.pin_dir.display()
        );
        Ok(())
    })
}

async fn wait_for_stop() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
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
