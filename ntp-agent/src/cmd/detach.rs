//! `ntp-agent detach`: unpin links (which detaches them) and, without
//! --iface, the maps too.

use anyhow::{bail, Context as _, Result};

use crate::{
    cli::DetachArgs,
    filter::{self, lock, slots, FilterMaps, PinDir},
};

pub fn detach(args: DetachArgs) -> Result<()> {
    let pins = PinDir::new(&args.pins.pin_dir);
    // Held while pins go, so no agent starts half-way through. An agent
    // running on these pins holds it: `detach` is for a stopped agent, but
    // an operator may need the filter off at once, so it goes on, says what
    // that leaves, and keeps the directory (and with it the agent's lock).
    let (_held, running) = match pins.base().exists() {
        true => match lock::PinLock::try_lock(&pins)? {
            Ok(ours) => (Some(ours), None),
            Err(theirs) => (None, Some(theirs)),
        },
        false => (None, None),
    };
    if let Some(held) = &running {
        let who = match held {
            lock::Held::By(pid) => format!("an agent (pid {pid})"),
            lock::Held::Unknown => "an agent".to_string(),
        };
        eprintln!(
            "warning: {who} is running on {}: it keeps running, unfiltered where detached, and says so in `ntp-agent status`; it does not re-attach on its own: stop it first (systemctl stop ntp-agent) to remove the filter for good, or restart it to filter again",
            pins.base().display()
        );
    }
    if args.ifaces.is_empty() {
        let removed = pins.remove_pins(running.is_none())?;
        if removed.is_empty() {
            println!("nothing to detach under {}", pins.root().display());
        }
        for path in removed {
            println!("removed {}", path.display());
        }
        return Ok(());
    }
    for iface in &args.ifaces {
        let link = pins.link(iface);
        if !link.exists() {
            bail!(
                "no filter attached to {iface} under {} (attached: {})",
                pins.root().display(),
                pins.linked_interfaces()?.join(", ")
            );
        }
        std::fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
        println!("detached {iface} (removed {})", link.display());
        free_slot(&pins, iface);
    }
    Ok(())
}

/// Frees the detached interface's counter slot. Best effort: the filter is
/// already off the interface, and an agent start frees any slot left over.
fn free_slot(pins: &PinDir, iface: &str) {
    let freed = filter::ifindex(iface).and_then(|index| {
        let mut maps = FilterMaps::open(pins)?;
        slots::release(&mut maps, index)
    });
    match freed {
        Ok(Some(slot)) => println!("freed counter slot {slot} of {iface}"),
        Ok(None) => {}
        Err(e) => eprintln!("warning: {iface}'s counter slot was not freed: {e:#}"),
    }
}
