//! One agent per pin directory: an exclusive `flock` held for the agent's
//! lifetime, taken before anything of the filter is touched, so a second
//! agent started on the same pins (another control socket, another mode)
//! stops with one line instead of rewriting the first one's policy.
//!
//! The lock is on the pin directory itself (`--pin-dir`, the base above
//! the versioned directory), opened read-only:
//! - bpffs refuses regular files (only directories, pins and symlinks can
//!   be created there), so a lock file cannot live inside the pins, while
//!   `flock` works on any inode, directories included;
//! - a lock file elsewhere (e.g. under `/run`) would have to be named after
//!   the pin path and could disagree with it (two spellings of one path, a
//!   bind mount), and would be left behind; the directory *is* the pins;
//! - the base, not `v<N>/`, because agents of different map layouts share
//!   the base and take over each other's links, so they must exclude each
//!   other too. `detach` keeps the base while an agent holds it.
//!
//! `flock` locks belong to the open file, so the lock goes with the
//! process however it ends (`kill -9` included): no stale lock to clean up.

use std::{
    fs::File,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

use super::PinDir;

/// The held lock; dropping it (or the process ending) releases it.
pub struct PinLock {
    _lock: Flock<File>,
    base: PathBuf,
    root: PathBuf,
    /// Which of the base and `v<N>/` this start created (so a start that
    /// fails before pinning anything removes them again).
    created: (bool, bool),
}

/// Who holds the lock, when it is held.
#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    /// By the process with this pid (from `/proc/locks`).
    By(u32),
    /// By a process this one cannot name (another pid namespace).
    Unknown,
}

impl PinLock {
    /// Makes sure the pin directory exists on bpffs ([`PinDir::prepare`]:
    /// creating an empty directory changes nothing a running agent uses)
    /// and locks it, or says who holds it.
    pub fn acquire(pins: &PinDir) -> Result<Self> {
        let created = (!pins.base().exists(), !pins.root().exists());
        pins.prepare()?;
        match Self::try_lock(pins)? {
            Ok(lock) => Ok(Self {
                _lock: lock,
                base: pins.base().to_path_buf(),
                root: pins.root().to_path_buf(),
                created,
            }),
            Err(held) => bail!("{}", refusal(pins.base(), &held)),
        }
    }

    /// The lock, or who holds it. Never blocks.
    pub fn try_lock(pins: &PinDir) -> Result<std::result::Result<Flock<File>, Held>> {
        let base = pins.base();
        let dir = File::open(base)
            .with_context(|| format!("opening the pin directory {}", base.display()))?;
        match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Ok(lock)),
            Err((dir, Errno::EWOULDBLOCK)) => {
                let meta = dir.metadata()?;
                Ok(Err(holder(meta.dev(), meta.ino())))
            }
            Err((_, e)) => Err(e).with_context(|| format!("locking {}", base.display())),
        }
    }

    /// A start that failed before it pinned anything: removes the
    /// directories it created (only if still empty).
    pub fn abandon(self) {
        // remove_dir: only while still empty.
        if self.created.1 {
            let _ = std::fs::remove_dir(&self.root);
        }
        if self.created.0 {
            let _ = std::fs::remove_dir(&self.base);
        }
    }
}

/// The one line a second agent gets.
pub fn refusal(base: &Path, held: &Held) -> String {
    let who = match held {
        Held::By(pid) => format!("another agent (pid {pid})"),
        Held::Unknown => "another agent".to_string(),
    };
    format!(
        "{who} is running on the pin directory {}: refusing to start, nothing was changed; stop that agent first or give another --pin-dir",
        base.display()
    )
}

/// Who holds the `flock` on inode `ino` of device `dev`, from
/// `/proc/locks` (`1: FLOCK  ADVISORY  WRITE 1234 00:28:27211 0 EOF`).
fn holder(dev: u64, ino: u64) -> Held {
    std::fs::read_to_string("/proc/locks")
        .ok()
        .and_then(|locks| holder_in(&locks, dev, ino))
        .map_or(Held::Unknown, Held::By)
}

fn holder_in(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    locks.lines().find_map(|line| {
        // A waiter's line starts with `N: ->`; only the holder counts.
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, file, ..] if *file == want => pid.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_from_proc_locks() {
        let locks = "1: POSIX  ADVISORY  WRITE 900 00:28:27211 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 17315 00:28:27211 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 42 fe:00:5359830 0 EOF\n\
                     3: -> FLOCK  ADVISORY  WRITE 43 fe:00:5359830 0 EOF\n";
        let dev = nix::sys::stat::makedev(0, 0x28);
        assert_eq!(holder_in(locks, dev, 27211), Some(17315));
        assert_eq!(
            holder_in(locks, nix::sys::stat::makedev(0xfe, 0), 5359830),
            Some(42)
        );
        assert_eq!(holder_in(locks, dev, 1), None);
    }

    #[test]
    fn the_refusal_is_one_line_naming_the_directory_and_pid() {
        let line = refusal(Path::new("/sys/fs/bpf/ntp-filter"), &Held::By(4242));
        assert_eq!(
            line,
            "another agent (pid 4242) is running on the pin directory /sys/fs/bpf/ntp-filter: refusing to start, nothing was changed; stop that agent first or give another --pin-dir"
        );
        assert!(!refusal(Path::new("/x"), &Held::Unknown).contains("pid"));
    }

    /// Two opens of one directory exclude each other, and the holder is
    /// this very process (any directory will do: flock is not bpffs's).
    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_with_our_pid() {
        let dir = std::env::temp_dir().join(format!("ntp-agent-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pins = PinDir::new(&dir);
        let first = PinLock::try_lock(&pins).unwrap().unwrap();
        let second = PinLock::try_lock(&pins).unwrap();
        assert_eq!(second.err(), Some(Held::By(std::process::id())));
        drop(first);
        assert!(PinLock::try_lock(&pins).unwrap().is_ok());
        std::fs::remove_dir(&dir).unwrap();
    }
}
