//! The pin directory: where the link and maps outlive the agent.
//!
//! Layout: `<base>/v<LAYOUT_VERSION>/` holds the maps by name and one
//! `link-<ifname>` per interface. The version in the path keeps an agent
//! with a new map layout from reusing maps an old one pinned (aya reuses a
//! pinned map without comparing its layout).

use std::{
    io,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use aya::maps::{lpm_trie, MapInfo, MapType};
use ntp_filter_common::{
    names, table, AclKey, ConfigRecord, CELLS, LAYOUT_VERSION, MAX_ACL_RULES, MAX_IFINDEX,
};

pub const DEFAULT_BASE: &str = "/sys/fs/bpf/ntp-filter";
const BPFFS_MOUNT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe4a11;
/// `BPF_F_NO_PREALLOC`: LPM tries cannot be created without it.
const BPF_F_NO_PREALLOC: u32 = 1;

#[derive(Clone, Debug)]
pub struct PinDir {
    base: PathBuf,
    root: PathBuf,
}

impl PinDir {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self::with_version(base, LAYOUT_VERSION)
    }

    fn with_version(base: impl Into<PathBuf>, version: u32) -> Self {
        let base = base.into();
        let root = base.join(format!("v{version}"));
        Self { base, root }
    }

    /// Pin directories an agent of an older layout left under the same
    /// base, oldest first.
    pub fn older_versions(&self) -> Vec<PinDir> {
        (1..LAYOUT_VERSION)
            .map(|v| Self::with_version(&self.base, v))
            .filter(|p| p.root.exists())
            .collect()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `--pin-dir` as given: what [`super::lock`] locks.
    pub fn base(&self) -> &Path {
        &self.base
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn link(&self, iface: &str) -> PathBuf {
        self.root.join(format!("link-{iface}"))
    }

    /// Interfaces with a pinned link, from the directory listing.
    pub fn linked_interfaces(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", self.root.display())),
        };
        let mut ifaces = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            if let Some(iface) = name.to_str().and_then(|n| n.strip_prefix("link-")) {
                ifaces.push(iface.to_owned());
            }
        }
        ifaces.sort();
        Ok(ifaces)
    }

    /// Whether any map is pinned here already (a previous agent ran).
    pub fn has_maps(&self) -> bool {
        names::ALL_MAPS.iter().any(|n| self.map(n).exists())
    }

    /// Makes sure the directory is on a mounted bpffs and creates the
    /// versioned directory. The one mount it makes itself is the standard
    /// `/sys/fs/bpf`, absent on some fresh machines; any other place must
    /// already be bpffs, so the agent never mounts over a path by surprise.
    pub fn prepare(&self) -> Result<()> {
        let standard = Path::new(BPFFS_MOUNT);
        let existing = first_existing_ancestor(&self.base);
        if !is_bpffs(&existing) {
            if self.base.starts_with(standard) && !is_bpffs(standard) {
                mount_bpffs(standard)?;
            } else {
                bail!(
                    "pin directory {} is not on a bpffs mount: use a directory under {BPFFS_MOUNT}, or mount bpffs there first (`mount -t bpf bpf DIR`)",
                    self.base.display()
                );
            }
        }
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create pin directory {}", self.root.display()))
    }

    /// Refuses maps pinned here with another shape than this build's, which
    /// would otherwise be reused blindly and misread.
    pub fn check_layout(&self) -> Result<()> {
        for spec in expected_maps() {
            let path = self.map(spec.name);
            if !path.exists() {
                continue;
            }
            let info = MapInfo::from_pin(&path)
                .with_context(|| format!("reading pinned map {}", path.display()))?;
            let found = (
                info.map_type().ok(),
                info.key_size(),
                info.value_size(),
                info.max_entries(),
                info.map_flags(),
            );
            let want = (
                Some(spec.map_type),
                spec.key_size,
                spec.value_size,
                spec.max_entries,
                spec.map_flags,
            );
            if found != want {
                bail!(
                    "pin directory {} holds an incompatible map {}: found {:?} key {} B value {} B max {} entries flags {:#x}, this agent needs {:?} key {} B value {} B max {} flags {:#x}; remove it with `ntp-agent detach --pin-dir {}` or choose another --pin-dir",
                    self.root.display(),
                    spec.name,
                    found.0,
                    found.1,
                    found.2,
                    found.3,
                    found.4,
                    want.0,
                    want.1,
                    want.2,
                    want.3,
                    want.4,
                    self.base.display()
                );
            }
        }
        Ok(())
    }

    /// Removes every pin here and the directory itself. Unlinking the link
    /// pin detaches the program once no process holds the link open.
    pub fn remove_all(&self) -> Result<Vec<PathBuf>> {
        self.remove_pins(true)
    }

    /// [`remove_all`](Self::remove_all), keeping the base directory when
    /// `!base`: a running agent holds its lock there (`detach` under a
    /// running agent), and a new directory would be a new, unlocked one.
    pub fn remove_pins(&self, base: bool) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(e).with_context(|| format!("listing {}", self.root.display())),
        };
        for entry in entries {
            let path = entry?.path();
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            removed.push(path);
        }
        std::fs::remove_dir(&self.root)
            .with_context(|| format!("removing {}", self.root.display()))?;
        // The base is ours too unless something else lives in it.
        if base {
            let _ = std::fs::remove_dir(&self.base);
        }
        removed.sort();
        Ok(removed)
    }
}

struct MapSpec {
    name: &'static str,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    /// Creation flags as the kernel reports them.
    map_flags: u32,
}

fn expected_maps() -> [MapSpec; names::ALL_MAPS.len()] {
    use std::mem::size_of;
    let u32_size = size_of::<u32>() as u32;
    let array = |name, value_size: usize, max_entries| MapSpec {
        name,
        map_type: MapType::Array,
        key_size: u32_size,
        value_size: value_size as u32,
        max_entries,
        map_flags: 0,
    };
    let slot = size_of::<table::Slot>();
    [
        array(names::CONFIG, size_of::<ConfigRecord>(), 1),
        array(names::SOURCES, slot, table::SOURCES.slots()),
        array(names::SOURCES_DIR, 4, table::SOURCES.dir_len()),
        array(names::LOCAL_ADDRS, slot, table::LOCAL.slots()),
        array(names::LOCAL_DIR, 4, table::LOCAL.dir_len()),
        MapSpec {
            name: names::COUNTERS,
            map_type: MapType::PerCpuArray,
            key_size: u32_size,
            value_size: size_of::<u64>() as u32,
            max_entries: CELLS,
            map_flags: 0,
        },
        MapSpec {
            name: names::ACL,
            map_type: MapType::LpmTrie,
            key_size: size_of::<lpm_trie::Key<AclKey>>() as u32,
            value_size: size_of::<u8>() as u32,
            max_entries: MAX_ACL_RULES,
            map_flags: BPF_F_NO_PREALLOC,
        },
        array(names::IFACES, 4, MAX_IFINDEX),
    ]
}

fn first_existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

pub fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
        .unwrap_or(false)
}

fn mount_bpffs(at: &Path) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    mount(Some("bpf"), at, Some("bpf"), MsFlags::empty(), None::<&str>).map_err(|e| {
        anyhow::anyhow!(
            "bpffs is not mounted at {} and mounting it failed ({e}): mount it with `mount -t bpf bpf {}` (needs CAP_SYS_ADMIN)",
            at.display(),
            at.display()
        )
    })?;
    tracing::info!(path = %at.display(), "mounted bpffs");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_map_has_a_layout_spec() {
        let specs: Vec<&str> = expected_maps().iter().map(|s| s.name).collect();
        assert_eq!(specs, names::ALL_MAPS);
        let acl = expected_maps()
            .into_iter()
            .find(|s| s.name == names::ACL)
            .unwrap();
        // 4-byte prefix length + 16-byte address, packed.
        assert_eq!((acl.key_size, acl.value_size), (20, 1));
    }

    #[test]
    fn the_layout_version_is_in_the_path() {
        let p = PinDir::new("/sys/fs/bpf/x");
        assert_eq!(
            p.map(names::ACL),
            Path::new(&format!("/sys/fs/bpf/x/v{LAYOUT_VERSION}/NF_ACL"))
        );
    }
}
