//! Attaching through bpf_links pinned per interface: a fresh attach pins a
//! new link; a restart finds the pin and swaps the program inside the
//! existing link atomically (bpf_link_update), so the interface is never
//! without a filter. A pinned link whose interface was deleted (severed)
//! filters nothing any more: it is replaced by a fresh attach.

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
        match swap_live(prog, iface, pin)? {
            Some(_) => return Ok(Attachment::Reused),
            None => replace_stale(iface, pin)?,
        }
    }
    if let Some(old) = legacy.filter(|p| p.exists()) {
        match swap_live(prog, iface, old)? {
            Some(link) => {
                link.pin(pin)
                    .with_context(|| format!("re-pinning the {iface} link at {}", pin.display()))?;
                std::fs::remove_file(old).with_context(|| format!("removing {}", old.display()))?;
                tracing::info!(iface, from = %old.display(), to = %pin.display(), "took over the link of an older agent");
                return Ok(Attachment::Reused);
            }
            None => replace_stale(iface, old)?,
        }
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

/// Whether the link pinned at `pin` is the one on the interface named
/// `iface` now: its program is the one the kernel reports attached there.
/// When an interface is deleted, its XDP link survives in the pin but is
/// severed (bound to no interface), and stays so when an interface of the
/// same name comes back: that one is unfiltered.
pub fn pinned_link_is_on(pin: &Path, iface: &str) -> Result<bool> {
    let link = FdLink::from(
        PinnedLink::from_pin(pin)
            .with_context(|| format!("opening the pinned link {}", pin.display()))?,
    );
    let prog = link
        .info()
        .with_context(|| format!("reading the pinned link {}", pin.display()))?
        .program_id();
    Ok(super::inspect::xdp_prog_ids(iface)?.contains(&prog))
}

/// Removes the pin of a link that filters nothing (see
/// [`pinned_link_is_on`]), so a fresh attach can take its place: keeping it
/// would make every start fail with "Link has been severed" (a restart
/// loop under systemd, with the interface unfiltered).
pub fn replace_stale(iface: &str, pin: &Path) -> Result<()> {
    std::fs::remove_file(pin)
        .with_context(|| format!("removing the stale link pin {}", pin.display()))?;
    tracing::warn!(
        iface,
        pin = %pin.display(),
        "the pinned link of {iface} no longer filters it (the interface was deleted, and perhaps re-created): replacing it with a fresh attach"
    );
    Ok(())
}

/// [`swap`] for a link still on `iface`; `None` (nothing changed) for a
/// stale one, also when the kernel only says so at the update (ENOLINK).
fn swap_live(prog: &mut Xdp, iface: &str, pin: &Path) -> Result<Option<FdLink>> {
    match pinned_link_is_on(pin, iface) {
        Ok(false) => return Ok(None),
        Ok(true) => {}
        // Unreadable: the update below decides.
        Err(e) => tracing::debug!(
            iface,
            "cannot tell whether {} is live: {e:#}",
            pin.display()
        ),
    }
    match swap(prog, iface, pin) {
        Ok(link) => Ok(Some(link)),
        Err(e) if severed(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn severed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<ProgramError>().is_some_and(|p| {
            matches!(p, ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENOLINK))
        }) || c
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::ENOLINK))
    })
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
