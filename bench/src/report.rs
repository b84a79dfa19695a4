//! results.md, results.json and the SVG plots, from one run's results.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::attack::{AttackResult, Phase};
use crate::cost::{CostResult, Program};
use crate::flood::{Case, FloodResult, Placement, GEN_CPU, RX_CPU};
use crate::footprint::{FootprintResult, Window};
use crate::quality::{RealtimeResult, SimResult};
use crate::svg::{self, Axes, Bar, Panel, Series};
use crate::{Outcome, Results};

fn f(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "–".into()
    }
}

fn x(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}×")
    } else {
        "–".into()
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "**no**"
    }
}

fn status<T>(o: &Outcome<T>) -> Option<String> {
    match o {
        Outcome::Ok(_) => None,
        Outcome::Failed(e) => Some(format!(
            "**Not measured: failed.** {}\n",
            e.replace('\n', " ")
        )),
        Outcome::Skipped(why) => Some(format!("Not measured in this run: {why}.\n")),
    }
}

/// Writes everything; returns the files written.
pub fn write(out: &Path, r: &Results) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut put = |name: &str, text: &str| -> Result<()> {
        let p = out.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        files.push(p);
        Ok(())
    };
    put("results.json", &(serde_json::to_string_pretty(r)? + "\n"))?;
    if let Outcome::Ok(c) = &r.cost {
        put("cost.svg", &cost_svg(c))?;
    }
    if let Outcome::Ok(fl) = &r.flood {
        put("flood.svg", &flood_svg(fl))?;
    }
    if let Outcome::Ok(a) = &r.attack {
        put("attack.svg", &attack_svg(a))?;
    }
    if let Outcome::Ok(s) = &r.simulation {
        put("sim-offsets.svg", &sim_svg(s))?;
    }
    if let Outcome::Ok(rt) = &r.realtime {
        put("realtime.svg", &realtime_svg(rt))?;
    }
    put("results.md", &markdown(r))?;
    Ok(files)
}

// ------------------------------------------------------------------ summary

struct Headline {
    what: String,
    value: String,
}

fn headlines(r: &Results) -> Vec<Headline> {
    let mut h = Vec::new();
    let mut add = |what: &str, value: String| {
        h.push(Headline {
            what: what.into(),
            value,
        })
    };
    if let Some(c) = r.cost.ok() {
        let empty = &c.rows[0];
        for row in c
            .rows
            .iter()
            .filter(|r| r.program == Program::Filter)
            .take(1)
        {
            add(
                "cost: outsider mode-3 drop / empty XDP program",
                format!(
                    "{} ({} ns vs {} ns, kernel median)",
                    x(row.ratio_to_empty),
                    f(row.kernel.median, 0),
                    f(empty.kernel.median, 0)
                ),
            );
        }
        let worst = c
            .rows
            .iter()
            .filter(|r| r.program == Program::Filter)
            .max_by(|a, b| a.kernel.median.total_cmp(&b.kernel.median));
        if let Some(w) = worst {
            add(
                "cost: dearest path / empty XDP program",
                format!(
                    "{} ({}: {} ns)",
                    x(w.ratio_to_empty),
                    w.name,
                    f(w.kernel.median, 0)
                ),
            );
        }
    }
    if let Some(fl) = r.flood.ok() {
        for placement in Placement::ALL {
            let find = |case| {
                fl.cases
                    .iter()
                    .find(|c| c.case == case && c.placement == placement)
            };
            let tag = match placement {
                Placement::Shared => "flood",
                Placement::Split => "flood (receiver on its own core)",
            };
            if let Some(c) = find(Case::Filter) {
                add(
                    &format!("{tag}: filter / XDP_DROP-all"),
                    format!(
                        "{} ({} Mpps median)",
                        x(c.ratio_to_drop_all),
                        f(c.mpps.median, 2)
                    ),
                );
                add(
                    &format!("{tag}: filter / nftables netdev"),
                    x(c.ratio_to_nftables),
                );
            }
            if let Some(c) = find(Case::NoFilter) {
                add(
                    &format!("{tag}: no filter (stack) / nftables netdev"),
                    x(c.ratio_to_nftables),
                );
            }
        }
    }
    if let Some(a) = r.attack.ok() {
        add(
            "attack: synchronized throughout / reach 377 throughout",
            format!("{} / {}", yes(a.stays_synchronized), yes(a.reach_stays_377)),
        );
        add(
            "attack: offset RMS / jitter median, flood over quiet",
            format!("{} / {}", x(a.offset_ratio), x(a.jitter_ratio)),
        );
    }
    if let Some(s) = r.simulation.ok() {
        let ratios: Vec<String> = s
            .rows
            .iter()
            .filter(|r| r.chrony_rms_us.is_some())
            .map(|r| {
                format!(
                    "{} {}",
                    r.scenario.trim_start_matches("jitter "),
                    x(r.rms_ratio_to_chrony)
                )
            })
            .collect();
        add(
            "simulation: RMS error / chrony's (by jitter)",
            ratios.join(", "),
        );
    }
    if let Some(rt) = r.realtime.ok() {
        for c in &rt.conditions {
            add(
                &format!(
                    "real time, {} ({} ms jitter): agent RMS error / chronyd's; settled after",
                    c.condition.name,
                    f(c.max_delay_ms, 2)
                ),
                format!(
                    "{} ({} ms vs {} ms); {} s vs {} s",
                    x(c.rms_ratio_agent_to_chronyd),
                    f(c.agent.error_rms_ms, 3),
                    f(c.chronyd.error_rms_ms, 3),
                    c.agent.settle_s.map_or("–".into(), |t| f(t, 0)),
                    c.chronyd.settle_s.map_or("–".into(), |t| f(t, 0)),
                ),
            );
        }
    }
    if let Some(fp) = r.footprint.ok() {
        if let Some(i) = fp.idle {
            add(
                "footprint: idle, 4 sources",
                format!(
                    "{} % of a core, RSS {} KiB",
                    f(i.cpu_percent, 3),
                    i.rss_kib_max
                ),
            );
        }
        if let Some(fw) = fp.flood {
            add(
                "footprint: during the flood (CPU ratio to quiet)",
                format!(
                    "{} % of a core ({}), RSS {} KiB",
                    f(fw.cpu_percent, 3),
                    x(fp.flood_cpu_ratio),
                    fw.rss_kib_max
                ),
            );
        }
    }
    if let Some(n) = r.nts.ok() {
        add(
            "NTS key establishment with chronyd (TLS 1.3, median)",
            format!(
                "{} ms wall, {} ms client CPU, {} B sent / {} B received",
                f(n.ke_wall_ms.median, 2),
                f(n.ke_cpu_ms.median, 2),
                n.ke_bytes_sent,
                n.ke_bytes_received
            ),
        );
        add(
            "NTS exchange vs plain (same chronyd, interleaved)",
            format!(
                "round trip {} ({} vs {} µs), {} B request / {} B reply vs 48 B, client CPU {} ({} vs {} ns)",
                x(n.rtt_ratio),
                f(n.nts_rtt_us.median, 1),
                f(n.plain_rtt_us.median, 1),
                n.nts_request_bytes,
                n.nts_reply_bytes,
                x(n.cpu_ratio),
                f(n.nts_cpu_ns, 0),
                f(n.plain_cpu_ns, 0)
            ),
        );
    }
    h
}

/// A few lines for the terminal.
pub fn summary(r: &Results) -> String {
    let mut s = String::new();
    for h in headlines(r) {
        let _ = writeln!(s, "{:<56} {}", h.what, h.value.replace("**", ""));
    }
    let _ = writeln!(s, "total runtime {:.0} s", r.meta.total_runtime_s);
    s
}

// ----------------------------------------------------------------- markdown

fn markdown(r: &Results) -> String {
    let m = &r.meta;
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# ntp-filter benchmark results\n");
    let _ = writeln!(
        w,
        "`cargo xtask bench{}` on {}, commit `{}`: {}, {} cores, kernel {}. Load average at the start `{}`, at the end `{}`. Total runtime {:.0} s ({}).\n",
        if m.quick { " --quick" } else { "" },
        m.date_utc,
        m.commit,
        m.cpu,
        m.cores,
        m.kernel,
        m.loadavg_start,
        m.loadavg_end,
        m.total_runtime_s,
        m.section_runtime_s
            .iter()
            .map(|(n, t)| format!("{n} {t:.0} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        w,
        "This machine is shared and noisy: every figure that matters is a ratio to a baseline measured in the same run (rounds interleaved), and absolute figures are min and median over rounds. Nothing here is asserted by a test.\n"
    );
    let _ = writeln!(w, "## Summary\n\n| figure | value |\n| --- | --- |");
    for h in headlines(r) {
        let _ = writeln!(w, "| {} | {} |", h.what, h.value);
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## 1. Cost per packet\n");
    match r.cost.ok() {
        Some(c) => cost_md(w, c),
        None => {
            let _ = writeln!(w, "{}", status(&r.cost).unwrap_or_default());
        }
    }
    let _ = writeln!(w, "## 2. Drop rate under a flood\n");
    match r.flood.ok() {
        Some(fl) => flood_md(w, fl),
        None => {
            let _ = writeln!(w, "{}", status(&r.flood).unwrap_or_default());
        }
    }
    let _ = writeln!(w, "## 3. Sync under attack\n");
    match r.attack.ok() {
        Some(a) => attack_md(w, a),
        None => {
            let _ = writeln!(w, "{}", status(&r.attack).unwrap_or_default());
        }
    }
    let _ = writeln!(w, "## 4. Sync quality\n\n### Simulation\n");
    match r.simulation.ok() {
        Some(sm) => sim_md(w, sm),
        None => {
            let _ = writeln!(w, "{}", status(&r.simulation).unwrap_or_default());
        }
    }
    let _ = writeln!(w, "### Real time, next to chronyd\n");
    match r.realtime.ok() {
        Some(rt) => realtime_md(w, rt),
        None => {
            let _ = writeln!(w, "{}", status(&r.realtime).unwrap_or_default());
        }
    }
    let _ = writeln!(w, "## 5. Footprint\n");
    match r.footprint.ok() {
        Some(fp) => footprint_md(w, fp),
        None => {
            let _ = writeln!(w, "{}", status(&r.footprint).unwrap_or_default());
        }
    }
    let _ = writeln!(w, "## 6. What NTS costs\n");
    match r.nts.ok() {
        Some(n) => nts_md(w, n),
        None => {
            let _ = writeln!(w, "{}", status(&r.nts).unwrap_or_default());
        }
    }
    let _ = writeln!(
        w,
        "## Reproduce\n\n    sudo -E env \"PATH=$PATH\" cargo xtask bench            # about 8 minutes\n    sudo -E env \"PATH=$PATH\" cargo xtask bench --quick    # about 2-3 minutes\n    cargo xtask bench --only cost,flood                   # some sections\n\nRaw figures of every round are in `results.json`."
    );
    s
}

fn cost_md(w: &mut String, c: &CostResult) {
    let _ = writeln!(
        w,
        "BPF_PROG_TEST_RUN, {} runs per round, {} rounds; the filter (the object the agent embeds, maps filled for 2 servers with `--source-port 123` and 2 peers) and two baselines in the same rounds. *Kernel*: the kernel's per-run figure (whole ns, preemption excluded); *wall*: syscall time / runs. *× empty*: median over the empty XDP_PASS program's median; *extra*: the filter's own work, kernel median minus the empty program's.\n",
        c.repeat, c.rounds
    );
    let _ = writeln!(
        w,
        "| path | verdict | kernel min ns | kernel median ns | × empty | extra ns | wall median ns | × empty (wall) | program insns (xlated) | verifier processed |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let n = |v: Option<u32>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
    for r in &c.rows {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.verdict,
            f(r.kernel.min, 0),
            f(r.kernel.median, 0),
            x(r.ratio_to_empty),
            f(r.extra_ns, 0),
            f(r.wall.median, 2),
            x(r.ratio_to_empty_wall),
            n(r.xlated_insns),
            n(r.verified_insns),
        );
    }
    let _ = writeln!(w, "\n![cost per packet](cost.svg)\n");
}

fn flood_md(w: &mut String, fl: &FloodResult) {
    let _ = writeln!(
        w,
        "Live frames (BPF_PROG_TEST_RUN with `xdp_live_frames({})`) of one frame, {}, each given a random source by the generator program and redirected into a veth; the peer `wan0` runs the case natively. The nftables ruleset is generated from the same agent configuration (shown below); it and the no-filter case get `xdp_pass` natively so the frames reach the stack. {} rounds of {:.0} s, cases and placements interleaved; Mpps = frames `wan0`'s XDP program saw per second (rx_packets); offered = frames the generator produced per second. Ratios are medians of per-round ratios to the baseline of the same placement.\n",
        fl.batch, fl.frame, fl.rounds, fl.round_s
    );
    let _ = writeln!(
        w,
        "Placement. **Generator and receiver on one core** (the default, and the figures above): both pinned to CPU {GEN_CPU}; the veth's NAPI poll runs in the softirq of the CPU that redirected, right after the generator, on frames still in its cache, so each rate includes the generator's per-frame cost, the same in every case (it makes the ratios between receivers smaller, never larger). **Receiver on its own core** (only with `--flood-split`): `wan0` gets threaded NAPI (`/sys/class/net/wan0/threaded` = 1) with its kthread pinned to CPU {RX_CPU} at SCHED_FIFO (softirq work preempts tasks too), the generator on CPU {GEN_CPU}. It looks like a router's RX core but on this VM it is not one: the NAPI thread sleeps whenever the veth's 256-frame ring runs empty and is woken from the other CPU for the next batch, so it measures the cross-CPU hand-off (wake-ups, and the frames' cache lines and pages moving between the CPUs) — rates below the shared core's although the receiver has a core to itself, frames lost at the ring while the thread was waking, and a filter that reads each frame paying for its cache line coming over from the generator's CPU, which XDP_DROP-all never reads — where a NIC's RX core under a flood keeps polling a ring of its own.\n"
    );
    for placement in Placement::ALL {
        if !fl.cases.iter().any(|c| c.placement == placement) {
            continue;
        }
        let _ = writeln!(
            w,
            "### {}\n\n| case | Mpps min | Mpps median | Mpps max | offered Mpps median | × XDP_DROP-all | × nftables | lost at the ring | own counter / received |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            placement.label()
        );
        for c in fl.cases.iter().filter(|c| c.placement == placement) {
            let own = match c.own_counter {
                Some(n) => format!("{n} / {}", c.received),
                None => format!("– / {}", c.received),
            };
            let lost: u64 = c.overflow_rounds.iter().sum();
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.label,
                f(c.mpps.min, 2),
                f(c.mpps.median, 2),
                f(c.mpps.max, 2),
                f(c.offered_mpps.median, 2),
                x(c.ratio_to_drop_all),
                x(c.ratio_to_nftables),
                lost,
                own
            );
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(
        w,
        "Own counter: the filter's drop counters, the nftables rules' counters, UDP NoPorts for the stack. Lost at the ring: frames the veth could not queue for the receiver (its ring full), over all rounds.\n\n![flood](flood.svg)\n"
    );
    let _ = writeln!(
        w,
        "<details><summary>nftables ruleset</summary>\n\n```\n{}```\n</details>\n",
        fl.nft_ruleset
    );
}

fn phase_row(w: &mut String, p: &Phase) {
    let _ = writeln!(
        w,
        "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        p.name,
        p.secs,
        yes(p.synchronized_all),
        p.reach_min_octal,
        p.updates,
        f(p.offset_rms_ms, 3),
        f(p.offset_max_abs_ms, 3),
        f(p.jitter.median, 3),
        f(p.jitter.max, 3),
        f(p.delay.median, 3),
        p.filter_dropped,
    );
}

fn attack_md(w: &mut String, a: &AttackResult) {
    let _ = writeln!(
        w,
        "The agent (`--no-clock-adjust {}`) synced to `chronyd -x` through its XDP filter (native, on a veth) in namespaces; reach 377 after {} s. Then a quiet phase and a flood phase of the same length, the agent's status sampled every second. Flood: {} from an AF_PACKET socket (sendmmsg, qdisc bypass), {} frames in {:.1} s = **{:.0} kpps** ({} send errors).\n",
        a.poll,
        a.time_to_reach_377_s.map_or("–".into(), |t| f(t, 0)),
        a.flood_mix,
        a.flood.sent,
        a.flood.secs,
        a.flood_pps / 1e3,
        a.flood.errors,
    );
    let _ = writeln!(
        w,
        "| phase | s | synchronized throughout | reach min | updates | offset RMS ms | max abs offset ms | jitter median ms | jitter max ms | delay median ms | filter drops |\n| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    phase_row(w, &a.quiet);
    phase_row(w, &a.attack);
    let _ = writeln!(
        w,
        "\nFlood over quiet: offset RMS {} ({}), jitter median {} ({}). Stays synchronized: {}; reach stays 377: {}. Spoofed replies that hit the registered port and reached the agent, rejected by it (reasons during the flood): `{}`.\n\n![sync under attack](attack.svg)\n",
        x(a.offset_ratio),
        if a.offset_within_2x { "within 2×" } else { "**not within 2×**" },
        x(a.jitter_ratio),
        if a.jitter_within_2x { "within 2×" } else { "**not within 2×**" },
        yes(a.stays_synchronized),
        yes(a.reach_stays_377),
        a.attack.rejects
    );
}

fn sim_md(w: &mut String, s: &SimResult) {
    let _ = writeln!(
        w,
        "`ntp_sim` (the real NTP core, simulated clock and network), {} seeds per scenario: median time to synchronise, worst max error, mean ± sd over seeds of the RMS error, worst RMS frequency error (all after sync, clknetsim's definitions), next to chrony's published figures for the same conditions.\n",
        s.seeds
    );
    let _ = writeln!(
        w,
        "| scenario | client | sync s | max µs | RMS µs | freq RMS ppm | synced at end | chrony | RMS / chrony |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
    );
    for r in &s.rows {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} ± {} | {} | {}/{} | {} | {} |",
            r.scenario,
            r.client,
            r.sync_median_s.map_or("never".into(), |t| f(t, 0)),
            f(r.max_us, 0),
            f(r.rms_mean_us, 0),
            f(r.rms_sd_us, 0),
            f(r.freq_rms_ppm, 3),
            r.synced_at_end,
            r.seeds,
            r.chrony,
            x(r.rms_ratio_to_chrony),
        );
    }
    let _ = writeln!(
        w,
        "\n![offset against time per scenario](sim-offsets.svg)\n"
    );
}

fn realtime_md(w: &mut String, rt: &RealtimeResult) {
    let _ = writeln!(
        w,
        "A test responder serving the host clock **+{:.3} ms**, with a random delay uniform in 0–max on each path (it sleeps before its receive timestamp and after its transmit timestamp), queried side by side by the agent and by `chronyd -x`, each in its own namespace, all polling every {} s. Two conditions, each in a fresh lab: quiet (max 0.05 ms) and jittery (max 2 ms). Both clients read the same host clock, so error = offset estimate − {:.3} ms. chronyd's estimate is `chronyc tracking`'s System time: with `-x` its corrections go to a virtual clock and that figure holds all of them. Samples every 2 s. Settled: from then on every sample counted and its |error| within max(1 ms, 5 × the standard deviation of one exchange's offset error, max/√24).\n",
        rt.truth_offset_ms, rt.poll_s, rt.truth_offset_ms
    );
    for c in &rt.conditions {
        let _ = writeln!(
            w,
            "#### {} (0–{} ms each way, {:.0} s, settle bound {} ms)\n",
            c.condition.name,
            f(c.max_delay_ms, 2),
            c.duration_s,
            f(c.settle_bound_ms, 2)
        );
        let _ = writeln!(
            w,
            "| client | configuration | first estimate after s | settled after s | samples | mean error ms | RMS error ms | max abs error ms | before / after settling max ms |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for cl in [&c.agent, &c.chronyd, &c.agent_observe]
            .into_iter()
            .chain(c.before.as_ref())
        {
            let _ = writeln!(
                w,
                "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} / {} |",
                cl.name,
                cl.config,
                cl.first_estimate_s.map_or("–".into(), |t| f(t, 0)),
                cl.settle_s.map_or("–".into(), |t| f(t, 0)),
                cl.n,
                f(cl.error_mean_ms, 3),
                f(cl.error_rms_ms, 3),
                f(cl.error_max_abs_ms, 3),
                f(cl.startup_max_abs_ms, 3),
                f(cl.steady_max_abs_ms, 3),
            );
        }
        let _ = writeln!(
            w,
            "\nAgent RMS error / chronyd's: **{}**; settled {} chronyd. Responder: {} requests, {} replies, {} without a kernel receive timestamp.\n",
            x(c.rms_ratio_agent_to_chronyd),
            match c.settle_difference_s {
                Some(d) if d <= 0.0 => format!("{:.0} s before", -d),
                Some(d) => format!("{d:.0} s after"),
                None => "– (one of them never settled) vs".into(),
            },
            c.responder.requests,
            c.responder.replies,
            c.responder.no_kernel_timestamp
        );
        if let (Some(b), Some(r)) = (&c.before, c.rms_ratio_agent_to_before) {
            let _ = writeln!(
                w,
                "Agent RMS error / the before agent's: **{}** ({} ms vs {} ms; mean {} vs {} ms).\n",
                x(r),
                f(c.agent.error_rms_ms, 3),
                f(b.error_rms_ms, 3),
                f(c.agent.error_mean_ms, 3),
                f(b.error_mean_ms, 3),
            );
        }
    }
    if let Some(c) = rt.conditions.first() {
        for cl in [&c.agent, &c.chronyd, &c.agent_observe]
            .into_iter()
            .chain(c.before.as_ref())
        {
            let _ = writeln!(w, "- {}: {}.", cl.name, cl.note);
        }
    }
    let _ = writeln!(
        w,
        "\nLike chronyd `-x`, the agent with `--no-clock-adjust` applies its corrections to a virtual clock and reports the whole correction (`clock_correction_ms`); the last row of each table shows the clock filter's estimate alone, with the discipline held idle.\n\n![real-time error](realtime.svg)\n"
    );
}

fn window_row(w: &mut String, name: &str, win: &Option<Window>) {
    match win {
        Some(v) => {
            let _ = writeln!(
                w,
                "| {name} | {:.0} | {} | {} | {} | {} |",
                v.wall_s,
                f(v.cpu_s, 3),
                f(v.cpu_percent, 3),
                v.rss_kib_max,
                v.hwm_kib
            );
        }
        None => {
            let _ = writeln!(w, "| {name} | – | – | – | – | – |");
        }
    }
}

fn footprint_md(w: &mut String, fp: &FootprintResult) {
    let _ = writeln!(
        w,
        "From /proc/PID/status (VmRSS, VmHWM), /proc/PID/stat (utime + stime, 10 ms ticks) and /proc/PID/task/*/schedstat (ns) of the agent process; CPU is the larger of the two figures. Idle: {} servers, default polling (iburst, then every 64 s), measured while section 4 ran. Quiet and flood: section 3's agent (1 server, polling every 8–16 s); the flood's XDP work is done in softirq context and is not charged to the agent.\n",
        fp.idle_sources
    );
    let _ = writeln!(
        w,
        "| window | s | CPU s | CPU % of a core | RSS max KiB | peak RSS KiB |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    );
    window_row(w, &format!("idle, {} sources", fp.idle_sources), &fp.idle);
    window_row(w, "quiet (section 3)", &fp.quiet);
    window_row(w, "flood (section 3)", &fp.flood);
    let _ = writeln!(
        w,
        "\nFlood over quiet: CPU {}, RSS {}.\n",
        x(fp.flood_cpu_ratio),
        x(fp.flood_rss_ratio)
    );
}

// --------------------------------------------------------------------- plots

fn cost_svg(c: &CostResult) -> String {
    let bars: Vec<Bar> = c
        .rows
        .iter()
        .map(|r| Bar {
            label: format!("{} ({})", r.name, r.verdict),
            value: r.kernel.median,
            lo: r.kernel.min,
            hi: r.kernel.max,
            color: if r.program == Program::Filter {
                svg::BLUE
            } else {
                svg::GRAY
            },
            note: format!("{} ns, {}", f(r.kernel.median, 0), x(r.ratio_to_empty)),
        })
        .collect();
    svg::bars(
        "Cost per packet, BPF_PROG_TEST_RUN (median, whiskers min-max)",
        "ns per packet (kernel figure)",
        &bars,
        Some((c.rows[0].kernel.median, "empty program")),
    )
}

fn flood_svg(fl: &FloodResult) -> String {
    let bars: Vec<Bar> = fl
        .cases
        .iter()
        .map(|c| Bar {
            label: format!(
                "{} ({})",
                c.label,
                match c.placement {
                    Placement::Split => "own core",
                    Placement::Shared => "shared core",
                }
            ),
            value: c.mpps.median,
            lo: c.mpps.min,
            hi: c.mpps.max,
            color: match c.case {
                Case::Filter => svg::BLUE,
                Case::DropAll => svg::GRAY,
                Case::Nftables => svg::ORANGE,
                Case::NoFilter => svg::RED,
            },
            note: format!(
                "{} Mpps, {} drop-all",
                f(c.mpps.median, 2),
                x(c.ratio_to_drop_all)
            ),
        })
        .collect();
    svg::bars(
        "Spoofed mode-3 flood sunk per second by one receive core, and by one core shared with the generator (median, whiskers min-max)",
        "Mpps",
        &bars,
        None,
    )
}

fn attack_svg(a: &AttackResult) -> String {
    let q = a.quiet.secs;
    let pts = |sel: fn(&crate::attack::Sample) -> f64| -> Vec<(f64, f64)> {
        a.quiet
            .samples
            .iter()
            .map(|s| (s.t, sel(s)))
            .chain(a.attack.samples.iter().map(|s| (q + s.t, sel(s))))
            .collect()
    };
    let shade = vec![(q, q + a.attack.secs, "flood".to_string())];
    let panels = [
        Panel {
            title: "offset (ms)".into(),
            series: vec![Series {
                name: "agent offset / jitter".into(),
                color: svg::BLUE,
                points: pts(|s| s.offset_ms),
                dots: false,
            }],
            shade: shade.clone(),
            marks: vec![],
            hline: Some(0.0),
        },
        Panel {
            title: "jitter (ms)".into(),
            series: vec![Series {
                name: "agent offset / jitter".into(),
                color: svg::BLUE,
                points: pts(|s| s.jitter_ms),
                dots: false,
            }],
            shade,
            marks: vec![],
            hline: None,
        },
    ];
    svg::panels(
        "Agent synced to chronyd -x: quiet, then a spoofed-NTP flood",
        &panels,
        2,
        &Axes {
            x_label: "seconds".into(),
            y_label: "ms".into(),
            log_y: false,
            y_range: None,
        },
        420.0,
        240.0,
    )
}

fn sim_svg(s: &SimResult) -> String {
    let panels: Vec<Panel> = s
        .series
        .iter()
        .map(|se| Panel {
            title: se.scenario.clone(),
            series: vec![Series {
                name: "|offset| of the simulated clock (max per bucket), seed 1".into(),
                color: svg::BLUE,
                points: se
                    .t_s
                    .iter()
                    .zip(&se.max_abs_error_s)
                    .map(|(t, e)| (t / 3600.0, *e))
                    .collect(),
                dots: false,
            }],
            shade: vec![],
            marks: se
                .sync_s
                .map(|t| vec![(t / 3600.0, format!("sync {t:.0} s"))])
                .unwrap_or_default(),
            hline: None,
        })
        .collect();
    svg::panels(
        "Simulation: |offset| against time per scenario (log scale)",
        &panels,
        4,
        &Axes {
            x_label: "hours".into(),
            y_label: "|offset| (s)".into(),
            log_y: true,
            y_range: Some((1e-6, 1e4)),
        },
        250.0,
        150.0,
    )
}

fn realtime_svg(rt: &RealtimeResult) -> String {
    let truth = rt.truth_offset_ms;
    let pts = |c: &crate::quality::ClientRun| -> Vec<(f64, f64)> {
        c.samples
            .iter()
            .filter(|s| s.2)
            .map(|s| (s.0, s.1 - truth))
            .collect()
    };
    let panels: Vec<Panel> = rt
        .conditions
        .iter()
        .map(|c| Panel {
            title: format!(
                "{}: 0–{} ms each way; offset estimate − {truth:.1} ms",
                c.condition.name,
                f(c.max_delay_ms, 2)
            ),
            series: vec![
                Series {
                    name: "ntp-agent".into(),
                    color: svg::BLUE,
                    points: pts(&c.agent),
                    dots: true,
                },
                Series {
                    name: "chronyd -x".into(),
                    color: svg::ORANGE,
                    points: pts(&c.chronyd),
                    dots: true,
                },
                Series {
                    name: "ntp-agent, discipline idle".into(),
                    color: svg::GRAY,
                    points: pts(&c.agent_observe),
                    dots: true,
                },
            ]
            .into_iter()
            .chain(c.before.as_ref().map(|b| Series {
                name: "ntp-agent, before".into(),
                color: svg::GREEN,
                points: pts(b),
                dots: true,
            }))
            .collect(),
            shade: vec![],
            marks: c
                .agent
                .settle_s
                .map(|t| (t, "agent settled".to_string()))
                .into_iter()
                .chain(
                    c.chronyd
                        .settle_s
                        .map(|t| (t, "chronyd settled".to_string())),
                )
                .collect(),
            hline: Some(0.0),
        })
        .collect();
    svg::panels(
        "Real time: each client's error against the injected offset",
        &panels,
        2,
        &Axes {
            x_label: "seconds".into(),
            y_label: "error (ms)".into(),
            log_y: false,
            y_range: None,
        },
        440.0,
        280.0,
    )
}

fn nts_md(w: &mut String, n: &crate::nts::NtsResult) {
    let _ = writeln!(
        w,
        "A `chronyd -x` NTS server in a namespace, the KE client and NTS session of the agent driving it directly (no filter in between).\n"
    );
    let _ = writeln!(
        w,
        "| what | min | median | max |\n| --- | --- | --- | --- |"
    );
    for (what, s) in [
        ("key establishment, wall ms", &n.ke_wall_ms),
        ("key establishment, client CPU ms", &n.ke_cpu_ms),
        ("plain exchange round trip, µs", &n.plain_rtt_us),
        ("NTS exchange round trip, µs", &n.nts_rtt_us),
    ] {
        let _ = writeln!(
            w,
            "| {what} (n={}) | {} | {} | {} |",
            s.n,
            f(s.min, 3),
            f(s.median, 3),
            f(s.max, 3)
        );
    }
    let _ = writeln!(
        w,
        "\nKE bytes on the wire (TLS included): {} sent, {} received. Datagrams: plain 48 B each way; NTS request {} B, reply {} B (full cookie jar: no placeholders). chronyd counted {} authenticated packets. Client CPU per exchange in-process: plain encode + decode {} ns, NTS seal + verify {} ns ({}).\n",
        n.ke_bytes_sent,
        n.ke_bytes_received,
        n.nts_request_bytes,
        n.nts_reply_bytes,
        n.authenticated_at_server,
        f(n.plain_cpu_ns, 0),
        f(n.nts_cpu_ns, 0),
        x(n.cpu_ratio)
    );
}
