//! `ntp-agent detach`: unpin links (which detaches them) and, without
//! --iface, the maps too.

use anyhow::{bail, Context as _, Result};

use crate::{cli::DetachArgs, filter::PinDir};

pub fn detach(args: DetachArgs) -> Result<()> {
    let pins = PinDir::new(&args.pins.pin_dir);
    if args.ifaces.is_empty() {
        let removed = pins.remove_all()?;
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
    }
    Ok(())
}
