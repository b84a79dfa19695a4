//! Section 1: what each path through the filter costs per packet, with
//! BPF_PROG_TEST_RUN, next to an empty XDP_PASS program and an XDP_DROP-all
//! program measured in the same rounds.
//!
//! The kernel's `duration` is already per repeat (`bpf_test_timer_continue`
//! divides by the number of runs) and excludes the time the loop was
//! preempted; it is whole nanoseconds. The wall-clock figure (syscall time /
//! repeat) has fractions of a ns but counts preemption. Rounds interleave
//! the programs (each round in a rotated order), so a noisy moment of this
//! shared machine hits all of them alike.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use aya::Ebpf;
use ntp_agent::filter::{self, reconcile, FilterMaps, PinDir};
use ntp_filter_common::{local_kind, AddrKey};
use ntp_filter_tests::{Ipv6Ext, NtpPacket, UdpFrame};
use serde::Serialize;

use crate::objects::{self, Baseline};
use crate::stats::{ratio, Summary};
use crate::{flood, progress};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

const LOCAL4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const SERVER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PEER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const OTHER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99);
const TRANSIT4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 50);

pub struct Opts {
    pub repeat: u32,
    pub rounds: usize,
    /// Another build of the filter (same map layout), measured on every
    /// filter path in the same rounds: an A/B of a change.
    pub before: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    Filter,
    /// The `--filter-before` object.
    FilterBefore,
    EmptyPass,
    DropAll,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub program: Program,
    pub verdict: &'static str,
    /// Kernel figure per round, ns per packet.
    pub kernel_ns: Vec<f64>,
    /// Wall-clock figure per round, ns per packet.
    pub wall_ns: Vec<f64>,
    pub kernel: Summary,
    pub wall: Summary,
    /// Kernel median over the empty program's kernel median.
    pub ratio_to_empty: f64,
    /// Same from the wall-clock medians.
    pub ratio_to_empty_wall: f64,
    /// Kernel median minus the empty program's: what the filter's own work costs.
    pub extra_ns: f64,
    /// The program's size after the verifier's rewrites (xlated), in
    /// instructions, and how many instructions the verifier processed
    /// proving it safe (`verified_insns`). Whole-program figures: every
    /// row of the filter shows the same.
    pub xlated_insns: Option<u32>,
    pub verified_insns: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct CostResult {
    pub repeat: u32,
    pub rounds: usize,
    pub rows: Vec<Row>,
}

struct Entry {
    name: &'static str,
    program: Program,
    frame: Vec<u8>,
    verdict: u32,
}

fn sock(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

fn ntp(src: SocketAddr, dst: SocketAddr, mode: u8) -> UdpFrame {
    UdpFrame::new(src, dst, NtpPacket::new(mode).to_bytes())
        .macs([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
}

fn entries() -> Vec<Entry> {
    let outsider = ntp(sock(OTHER4, 50000), sock(LOCAL4, 123), 3);
    let path = |name, frame: Vec<u8>, verdict| Entry {
        name,
        program: Program::Filter,
        frame,
        verdict,
    };
    vec![
        Entry {
            name: "empty XDP_PASS program",
            program: Program::EmptyPass,
            frame: outsider.frame(),
            verdict: XDP_PASS,
        },
        Entry {
            name: "XDP_DROP-all program",
            program: Program::DropAll,
            frame: outsider.frame(),
            verdict: XDP_DROP,
        },
        path("outsider, mode 3 (v4)", outsider.frame(), XDP_DROP),
        path(
            "server, mode 4, registered port",
            ntp(sock(SERVER4, 123), sock(LOCAL4, 123), 4).frame(),
            XDP_PASS,
        ),
        path(
            "peer, mode 1",
            ntp(sock(PEER4, 123), sock(LOCAL4, 123), 1).frame(),
            XDP_PASS,
        ),
        path(
            "server, mode 4, wrong reply port",
            ntp(sock(SERVER4, 123), sock(LOCAL4, 40000), 4).frame(),
            XDP_DROP,
        ),
        path(
            "first fragment, NTP ports",
            outsider.fragments(16).swap_remove(0),
            XDP_DROP,
        ),
        path(
            "transit NTP (to a LAN host)",
            ntp(sock(OTHER4, 50000), sock(TRANSIT4, 123), 3).frame(),
            XDP_PASS,
        ),
        path(
            "non-NTP UDP (DNS)",
            ntp(sock(OTHER4, 50000), sock(LOCAL4, 53), 3).frame(),
            XDP_PASS,
        ),
        path(
            "TCP (to the box, HTTPS)",
            ntp_filter_tests::packet::tcp(OTHER4.into(), LOCAL4.into(), 50000, 443),
            XDP_PASS,
        ),
        path(
            "IPv6 + 2 extension headers, outsider mode 3",
            ntp(sock(OTHER6, 50000), sock(LOCAL6, 123), 3)
                .ipv6_ext(Ipv6Ext::HopByHop)
                .ipv6_ext(Ipv6Ext::DestOpts)
                .frame(),
            XDP_DROP,
        ),
        path(
            "QinQ, outsider mode 3",
            outsider.clone().qinq(100, 200).frame(),
            XDP_DROP,
        ),
    ]
}

/// The real filter (the object the agent embeds) in a private pin
/// directory, its maps filled from the flood's agent configuration. Field
/// order is drop order: program and map fds first, then the pins.
pub struct LoadedFilter {
    pub ebpf: Ebpf,
    _maps: FilterMaps,
    pins: PinDir,
}

impl Drop for LoadedFilter {
    fn drop(&mut self) {
        if let Err(e) = self.pins.remove_all() {
            eprintln!("warning: removing {}: {e:#}", self.pins.root().display());
        }
        let _ = std::fs::remove_dir_all(self.pins.root());
    }
}

impl LoadedFilter {
    pub fn load(tag: &str) -> Result<Self> {
        let base = Path::new("/sys/fs/bpf").join(format!("nf-{tag}-{}-0", std::process::id()));
        let pins = PinDir::new(&base);
        pins.prepare()?;
        // From here on, Drop removes the pins whatever fails.
        let mut this = LoadedFilterBuilder { pins: Some(pins) };
        let pins = this.pins.as_ref().expect("set above");
        let ebpf = filter::load(pins, filter::LoadOptions::default())?;
        let mut maps = FilterMaps::open(pins)?;
        maps.seed_tables()?;
        reconcile::apply(&mut maps, &flood::desired()?)?;
        let local: BTreeMap<AddrKey, u8> = BTreeMap::from([
            (AddrKey::from_ip(LOCAL4.into()), local_kind::UNICAST),
            (AddrKey::from_ip(LOCAL6.into()), local_kind::UNICAST),
            (
                AddrKey::from_ip(Ipv4Addr::new(192, 0, 2, 255).into()),
                local_kind::BROADCAST,
            ),
        ]);
        reconcile::apply_local(&mut maps, &local)?;
        Ok(Self {
            ebpf,
            _maps: maps,
            pins: this.pins.take().expect("set above"),
        })
    }

    pub fn program(&mut self) -> Result<&mut Xdp> {
        filter::program(&mut self.ebpf)
    }
}

/// Removes the pins if loading fails half way.
struct LoadedFilterBuilder {
    pins: Option<PinDir>,
}

impl Drop for LoadedFilterBuilder {
    fn drop(&mut self) {
        if let Some(p) = &self.pins {
            let _ = p.remove_all();
            let _ = std::fs::remove_dir_all(p.root());
        }
    }
}

fn verdict_name(v: u32) -> &'static str {
    match v {
        XDP_DROP => "drop",
        XDP_PASS => "pass",
        _ => "?",
    }
}

pub fn run(opts: &Opts) -> Result<CostResult> {
    let mut filter = LoadedFilter::load("bcost")?;
    // The older build shares the filter's maps (pins of the same names).
    let mut before = match &opts.before {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            Some(
                filter::load_object(&bytes, &filter.pins, filter::LoadOptions::default())
                    .with_context(|| format!("loading {} as the filter before", path.display()))?,
            )
        }
        None => None,
    };
    let mut pass = Baseline::Pass.load()?;
    let mut drop_all = Baseline::Drop.load()?;
    let mut entries = entries();
    if before.is_some() {
        let olds: Vec<Entry> = entries
            .iter()
            .filter(|e| e.program == Program::Filter)
            .map(|e| Entry {
                name: e.name,
                program: Program::FilterBefore,
                frame: e.frame.clone(),
                verdict: e.verdict,
            })
            .collect();
        entries.extend(olds);
    }
    let mut kernel = vec![Vec::with_capacity(opts.rounds); entries.len()];
    let mut wall = vec![Vec::with_capacity(opts.rounds); entries.len()];

    let mut sizes = BTreeMap::new();
    if let Some(b) = before.as_mut() {
        let info = filter::program(b)?
            .info()
            .context("reading the program's info")?;
        let xlated = info.size_translated().map(|b| b / 8);
        sizes.insert(
            Program::FilterBefore as u8,
            (xlated, info.verified_instruction_count()),
        );
    }
    for (program, prog) in [
        (Program::Filter, filter.program()?),
        (
            Program::EmptyPass,
            objects::xdp(&mut pass, Baseline::Pass.program_name())?,
        ),
        (
            Program::DropAll,
            objects::xdp(&mut drop_all, Baseline::Drop.program_name())?,
        ),
    ] {
        let info = prog.info().context("reading the program's info")?;
        let xlated = info.size_translated().map(|b| b / 8);
        sizes.insert(program as u8, (xlated, info.verified_instruction_count()));
    }
    let mut run_one = |e: &Entry, repeat: u32| -> Result<(u32, f64, f64)> {
        let prog: &mut Xdp = match e.program {
            Program::Filter => filter.program()?,
            Program::FilterBefore => filter::program(before.as_mut().context("no before")?)?,
            Program::EmptyPass => objects::xdp(&mut pass, Baseline::Pass.program_name())?,
            Program::DropAll => objects::xdp(&mut drop_all, Baseline::Drop.program_name())?,
        };
        let t = Instant::now();
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&e.frame),
                repeat,
                ..Default::default()
            })
            .with_context(|| format!("BPF_PROG_TEST_RUN of {}", e.name))?;
        let wall = t.elapsed().as_nanos() as f64 / f64::from(repeat);
        Ok((r.return_value, r.duration.as_nanos() as f64, wall))
    };

    for e in &entries {
        let (v, _, _) = run_one(e, 1)?;
        if v != e.verdict {
            bail!(
                "{}: the program said {} ({v}), expected {}",
                e.name,
                verdict_name(v),
                verdict_name(e.verdict)
            );
        }
    }
    for round in 0..opts.rounds {
        for k in 0..entries.len() {
            let i = (round + k) % entries.len();
            let (_, k_ns, w_ns) = run_one(&entries[i], opts.repeat)?;
            kernel[i].push(k_ns);
            wall[i].push(w_ns);
        }
        progress(
            "cost",
            &format!(
                "round {}/{}: {} programs x {} runs; outsider drop {:.0} ns, empty program {:.0} ns",
                round + 1,
                opts.rounds,
                entries.len(),
                opts.repeat,
                kernel[2].last().copied().unwrap_or(f64::NAN),
                kernel[0].last().copied().unwrap_or(f64::NAN),
            ),
        );
    }
    let empty_k = Summary::of(&kernel[0]).median;
    let empty_w = Summary::of(&wall[0]).median;
    let rows = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let k = Summary::of(&kernel[i]);
            let w = Summary::of(&wall[i]);
            let (xlated_insns, verified_insns) = sizes[&(e.program as u8)];
            Row {
                xlated_insns,
                verified_insns,
                name: match e.program {
                    Program::FilterBefore => format!("before: {}", e.name),
                    _ => e.name.to_string(),
                },
                program: e.program,
                verdict: verdict_name(e.verdict),
                kernel_ns: kernel[i].clone(),
                wall_ns: wall[i].clone(),
                ratio_to_empty: ratio(k.median, empty_k),
                ratio_to_empty_wall: ratio(w.median, empty_w),
                extra_ns: k.median - empty_k,
                kernel: k,
                wall: w,
            }
        })
        .collect();
    Ok(CostResult {
        repeat: opts.repeat,
        rounds: opts.rounds,
        rows,
    })
}
