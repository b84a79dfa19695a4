//! Attaching through bpf_links pinned per interface: a fresh attach pins a
//! new link; a restart finds the pin and swaps the program inside the
//! existing link atomically (bpf_link_update), so the interface is never
//! without a filter.

use std::path::Path;

use anyhow::{anyhow, Context as _, Result};
use aya::programs::{
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
    ProgramError, Xdp, XdpMode,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeArg {
    /// Native (driver) mode, falling back to skb mode with a warning.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode: works on any interface, slower.
    Skb,
}

/// How an interface ended up filtered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Attachment {
    Native,
    Skb,
    /// The link pinned by an earlier run, now running this program.
    Reused,
}

/// `legacy`: where an agent of an older map layout pinned this interface's
/// link; it is taken over (program swapped, link re-pinned at `pin`) so an
/// upgrade never leaves the interface unfiltered.
pub fn attach(
    prog: &mut Xdp,
    iface: &str,
    mode: XdpModeArg,
    pin: &Path,
    legacy: Option<&Path>,
) -> Result<Attachment> {
    if pin.exists() {
        swap(prog, iface, pin)?;
        return Ok(Attachment::Reused);
    }
    if let Some(old) = legacy.filter(|p| p.exists()) {
        let link = swap(prog, iface, old)?;
        link.pin(pin)
            .with_context(|| format!("re-pinning the {iface} link at {}", pin.display()))?;
        std::fs::remove_file(old).with_context(|| format!("removing {}", old.display()))?;
        tracing::info!(iface, from = %old.display(), to = %pin.display(), "took over the link of an older agent");
        return Ok(Attachment::Reused);
    }
    let (link_id, attachment) = match mode {
        XdpModeArg::Native => (
            attach_mode(prog, iface, XdpMode::Driver)?,
            Attachment::Native,
        ),
        XdpModeArg::Skb => (attach_mode(prog, iface, XdpMode::Skb)?, Attachment::Skb),
        XdpModeArg::Auto => match attach_mode(prog, iface, XdpMode::Driver) {
            Ok(id) => (id, Attachment::Native),
            Err(native) => {
                tracing::warn!(
                    iface,
                    "native XDP unavailable ({native:#}); falling back to skb (generic) mode"
                );
                (attach_mode(prog, iface, XdpMode::Skb)?, Attachment::Skb)
            }
        },
    };
    let link = prog.take_link(link_id)?;
    let fd_link = FdLink::try_from(link).map_err(|e| {
        anyhow!("{iface}: the kernel attached XDP without a bpf_link ({e}), which cannot be pinned; a kernel ≥ 5.9 is needed")
    })?;
    // Dropping the returned PinnedLink only closes our fd: the pin keeps
    // the link, so the filter stays when this process exits.
    fd_link
        .pin(pin)
        .with_context(|| format!("pinning the {iface} link at {}", pin.display()))?;
    Ok(attachment)
}

fn attach_mode(
    prog: &mut Xdp,
    iface: &str,
    mode: XdpMode,
) -> Result<aya::programs::xdp::XdpLinkId> {
    prog.attach(iface, mode)
        .map_err(|e| describe_attach_error(iface, mode, e))
}

fn describe_attach_error(iface: &str, mode: XdpMode, e: ProgramError) -> anyhow::Error {
    let busy = matches!(&e, ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::EBUSY));
    if busy {
        return anyhow!(
            "interface {iface} already has an XDP program that is not ours (not pinned under this --pin-dir): remove it first (`ip link set dev {iface} xdp off` if it was attached by iproute2, or the detach command of the tool that attached it)"
        );
    }
    anyhow!("attaching XDP to {iface} in {mode:?} mode failed: {e}")
}

/// Replaces the program inside the link pinned at `pin`; returns the link
/// (dropping it only closes our fd: the pin keeps it).
fn swap(prog: &mut Xdp, iface: &str, pin: &Path) -> Result<FdLink> {
    let pinned = PinnedLink::from_pin(pin)
        .with_context(|| format!("opening the pinned link {}", pin.display()))?;
    let link = XdpLink::try_from(FdLink::from(pinned))
        .with_context(|| format!("{} is not an XDP link", pin.display()))?;
    let id = prog
        .attach_to_link(link)
        .with_context(|| format!("replacing the program on {iface} in place"))?;
    // Ownership went back into the program; take it out so dropping the
    // program later closes the fd without detaching anything.
    Ok(FdLink::try_from(prog.take_link(id)?)?)
}
