//! The address tables seen from userspace: where each address goes in the
//! hashed arrays the XDP program reads (`ntp_filter_common::table`), and
//! writing them so that the program never misses an address that stays.
//!
//! An insert that needs a new displacement for its bucket writes the
//! bucket's addresses to their new slots first, then the directory entry
//! (one 4-byte write the program reads in one load), and never rewrites the
//! slots it left: they are garbage that nothing points at, reused by later
//! inserts. So a packet sees the old or the new layout, both complete. An
//! update of an address's value (a server's reply port) rewrites its slot in
//! place; a removal zeroes it.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context as _, Result};
use aya::maps::{Array, MapData};
use ntp_filter_common::{
    table::{self, Geometry, Slot, Words},
    AddrKey,
};

/// How many displacements are tried for one bucket before giving up. With
/// the slots at most half full a bucket of k addresses finds one after
/// about 2^k tries; buckets hold 2 addresses on average at capacity.
const MAX_TRIES: u32 = 1 << 22;

/// The value part of a slot: everything but the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value {
    pub class: u8,
    pub kind: u8,
    pub reply_port: u16,
    pub server_port: u16,
}

impl Value {
    fn of(s: &Slot) -> Self {
        Self {
            class: s.class,
            kind: s.kind,
            reply_port: s.reply_port,
            server_port: s.server_port,
        }
    }

    fn slot(self, addr: Words) -> Slot {
        Slot {
            addr,
            class: self.class,
            kind: self.kind,
            reply_port: self.reply_port,
            server_port: self.server_port,
            _pad: 0,
        }
    }
}

/// A table as the kernel holds it, read in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    g: Geometry,
    /// The hash key ([`table::hash`]), as the config record holds it.
    seed: u64,
    dir: Vec<u32>,
    slots: Vec<Slot>,
    /// Live addresses.
    n: usize,
}

/// A write the kernel must see, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Slot(u32, Slot),
    Dir(u32, u32),
}

impl Image {
    pub fn empty(g: Geometry, seed: u64) -> Self {
        Self {
            g,
            seed,
            dir: vec![0; g.dir_len() as usize],
            slots: vec![Slot::default(); g.slots() as usize],
            n: 0,
        }
    }

    fn new(g: Geometry, seed: u64, dir: Vec<u32>, slots: Vec<Slot>) -> Self {
        let mut img = Self {
            g,
            seed,
            dir,
            slots,
            n: 0,
        };
        img.n = (0..g.slots()).filter(|&i| img.live(i)).count();
        img
    }

    /// `w`'s bucket, and the slot the program looks at for it (none when
    /// the bucket is empty: displacement 0).
    fn home(&self, w: Words) -> (u32, Option<u32>) {
        let h = table::hash(w, self.seed);
        let b = table::bucket(h, self.g);
        let d = self.dir[b as usize];
        (b, (d != table::EMPTY).then(|| table::slot(h, d, self.g)))
    }

    /// Whether slot `i` holds an address the program finds there.
    fn live(&self, i: u32) -> bool {
        let s = &self.slots[i as usize];
        s.addr != [0, 0] && self.home(s.addr).1 == Some(i)
    }

    /// The slot holding `w`, if the program finds it.
    fn find(&self, w: Words) -> Option<u32> {
        let (_, i) = self.home(w);
        i.filter(|&i| self.slots[i as usize].addr == w)
    }

    /// Every address the program finds, with its value.
    pub fn entries(&self) -> BTreeMap<AddrKey, Value> {
        (0..self.g.slots())
            .filter(|&i| self.live(i))
            .map(|i| {
                let s = &self.slots[i as usize];
                (
                    AddrKey {
                        addr: table::addr(s.addr),
                    },
                    Value::of(s),
                )
            })
            .collect()
    }

    pub fn count(&self) -> usize {
        self.n
    }

    pub fn get(&self, key: &AddrKey) -> Option<Value> {
        self.find(table::words(&key.addr))
            .map(|i| Value::of(&self.slots[i as usize]))
    }

    /// The writes that put `key` with `value` in the table, applied to this
    /// image too. Refuses `::` (it would read as an empty slot) and a new
    /// address once the table holds its capacity.
    pub fn put(&mut self, key: &AddrKey, value: Value) -> Result<Vec<Write>> {
        let w = table::words(&key.addr);
        if w == [0, 0] {
            bail!("the unspecified address :: cannot be put in the filter");
        }
        if let Some(i) = self.find(w) {
            let slot = value.slot(w);
            if self.slots[i as usize] == slot {
                return Ok(Vec::new());
            }
            self.slots[i as usize] = slot;
            return Ok(vec![Write::Slot(i, slot)]);
        }
        if self.count() >= self.g.capacity as usize {
            bail!(
                "the table is full ({} addresses): remove one first",
                self.g.capacity
            );
        }
        let b = self.home(w).0;
        let members = self.members(b);
        // Garbage a move left behind: copies of the bucket's addresses that
        // left it (or moved on). A displacement under which one of them is
        // where the program looks would bring it back.
        let ghosts: Vec<(u64, u32)> = (0..self.g.slots())
            .filter(|&j| {
                let a = self.slots[j as usize].addr;
                a != [0, 0] && a != w && !self.live(j) && self.home(a).0 == b
            })
            .map(|j| (table::hash(self.slots[j as usize].addr, self.seed), j))
            .collect();
        let old = self.dir[b as usize];
        let mut placed: Vec<u32> = Vec::with_capacity(members.len() + 1);
        let disp = (1..MAX_TRIES)
            .map(|t| old.wrapping_add(t))
            .filter(|&d| d != table::EMPTY)
            .filter(|&d| {
                ghosts
                    .iter()
                    .all(|&(h, at)| table::slot(h, d, self.g) != at)
            })
            .find(|&d| {
                placed.clear();
                members
                    .iter()
                    .map(|&(m, at)| (m, Some(at)))
                    .chain([(w, None)])
                    .all(|(m, at)| {
                        let j = table::slot(table::hash(m, self.seed), d, self.g);
                        let fits = !placed.contains(&j) && (at == Some(j) || !self.live(j));
                        placed.push(j);
                        fits
                    })
            })
            .ok_or_else(|| {
                anyhow!(
                    "no free slots for the {} addresses of bucket {b}",
                    members.len() + 1
                )
            })?;
        let mut writes = Vec::new();
        for (&(_, at), &j) in members.iter().zip(&placed) {
            if at != j {
                let slot = self.slots[at as usize];
                writes.push(Write::Slot(j, slot));
            }
        }
        writes.push(Write::Slot(placed[members.len()], value.slot(w)));
        writes.push(Write::Dir(b, disp));
        for wr in &writes {
            self.apply(*wr);
        }
        self.n += 1;
        Ok(writes)
    }

    /// The live addresses of bucket `b`, with their slots.
    fn members(&self, b: u32) -> Vec<(Words, u32)> {
        (0..self.g.slots())
            .filter(|&j| self.live(j) && self.home(self.slots[j as usize].addr).0 == b)
            .map(|j| (self.slots[j as usize].addr, j))
            .collect()
    }

    /// The writes that remove `key`, applied to this image too: its slot
    /// zeroed, then its bucket marked empty if it was the last one there,
    /// so lookups of the bucket stop after the directory.
    pub fn remove(&mut self, key: &AddrKey) -> Result<Vec<Write>> {
        let w = table::words(&key.addr);
        let Some(i) = self.find(w).filter(|_| w != [0, 0]) else {
            bail!("not in the table");
        };
        let mut writes = vec![Write::Slot(i, Slot::default())];
        self.apply(writes[0]);
        self.n -= 1;
        let b = self.home(w).0;
        if self.members(b).is_empty() {
            writes.push(Write::Dir(b, table::EMPTY));
            self.apply(writes[1]);
        }
        Ok(writes)
    }

    fn apply(&mut self, w: Write) {
        match w {
            Write::Slot(i, s) => self.slots[i as usize] = s,
            Write::Dir(b, d) => self.dir[b as usize] = d,
        }
    }
}

/// One table's two pinned maps.
pub struct AddrTable {
    g: Geometry,
    seed: u64,
    dir: Array<MapData, u32>,
    slots: Array<MapData, Slot>,
    /// What this process last read or wrote; the writer's view. Checked
    /// against the kernel's directory entry before each insert, and read
    /// again in full when another process changed it.
    cache: Option<Image>,
}

impl AddrTable {
    pub fn new(
        g: Geometry,
        seed: u64,
        dir: Array<MapData, u32>,
        slots: Array<MapData, Slot>,
    ) -> Self {
        Self {
            g,
            seed,
            dir,
            slots,
            cache: None,
        }
    }

    /// The table as the kernel holds it now.
    pub fn read(&self) -> Result<Image> {
        let dir = (0..self.g.dir_len())
            .map(|b| self.dir.get(&b, 0))
            .collect::<Result<_, _>>()
            .context("reading an address table's directory")?;
        let slots = (0..self.g.slots())
            .map(|i| self.slots.get(&i, 0))
            .collect::<Result<_, _>>()
            .context("reading an address table's slots")?;
        Ok(Image::new(self.g, self.seed, dir, slots))
    }

    /// How many addresses the kernel's table holds.
    pub fn count(&self) -> Result<usize> {
        match &self.cache {
            Some(img) => Ok(img.count()),
            None => Ok(self.read()?.count()),
        }
    }

    /// Takes a new hash key: only for a table that is still empty.
    pub fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
        self.cache = None;
    }

    /// This process's view, read once.
    fn image(&mut self) -> Result<&mut Image> {
        if self.cache.is_none() {
            self.cache = Some(self.read()?);
        }
        Ok(self.cache.as_mut().expect("just set"))
    }

    /// Every address with its value, as the kernel has them: the writer's
    /// view if this process writes the table, else read now.
    pub fn entries(&self) -> Result<BTreeMap<AddrKey, Value>> {
        match &self.cache {
            Some(img) => Ok(img.entries()),
            None => Ok(self.read()?.entries()),
        }
    }

    pub fn put(&mut self, key: &AddrKey, value: Value) -> Result<()> {
        let w = table::words(&key.addr);
        let b = table::bucket(table::hash(w, self.seed), self.g);
        let kernel = self.dir.get(&b, 0)?;
        if self.image()?.dir[b as usize] != kernel {
            // Another process wrote the table since: start from the kernel's.
            self.cache = Some(self.read()?);
        }
        let writes = self.image()?.put(key, value)?;
        self.write(&writes)
    }

    pub fn remove(&mut self, key: &AddrKey) -> Result<()> {
        let writes = self.image()?.remove(key)?;
        self.write(&writes)
    }

    fn write(&mut self, writes: &[Write]) -> Result<()> {
        for w in writes {
            let r = match *w {
                Write::Slot(i, s) => self.slots.set(i, s, 0),
                Write::Dir(b, d) => self.dir.set(b, d, 0),
            };
            if let Err(e) = r {
                // The kernel now holds part of the change: forget our view.
                self.cache = None;
                return Err(e).context("writing an address table");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng as _, SeedableRng as _};

    impl Image {
        /// This image's directory with `other`'s slots (garbage included).
        fn with_slots_of(mut self, other: &Image) -> Image {
            self.slots = other.slots.clone();
            self
        }
    }

    const SEED: u64 = 0x5eed_0f7a_b1e5;

    const SMALL: Geometry = Geometry {
        dir_bits: 3,
        slot_bits: 5,
        capacity: 16,
    };

    fn v4(i: u32) -> AddrKey {
        let [a, b, c, d] = (0xc000_0200u32 + i).to_be_bytes();
        AddrKey::from_v4([a, b, c, d])
    }

    const V: Value = Value {
        class: 1,
        kind: 0,
        reply_port: 123,
        server_port: 123,
    };

    /// What the XDP program would find for `key` in `img`.
    fn program_finds(img: &Image, key: &AddrKey) -> Option<Value> {
        let w = table::words(&key.addr);
        let h = table::hash(w, img.seed);
        let d = img.dir[table::bucket(h, img.g) as usize];
        if d == table::EMPTY {
            return None;
        }
        let s = img.slots[table::slot(h, d, img.g) as usize];
        (s.addr == w).then(|| Value::of(&s))
    }

    #[test]
    fn fills_to_capacity_and_finds_everything() {
        for g in [SMALL, table::SOURCES, table::LOCAL] {
            let mut img = Image::empty(g, SEED);
            for i in 0..g.capacity {
                img.put(&v4(i), V)
                    .unwrap_or_else(|e| panic!("{g:?} #{i}: {e}"));
            }
            assert_eq!(img.count(), g.capacity as usize);
            for i in 0..g.capacity {
                assert_eq!(program_finds(&img, &v4(i)), Some(V), "{i}");
            }
            assert_eq!(program_finds(&img, &v4(g.capacity)), None);
            let e = img.put(&v4(g.capacity), V).unwrap_err();
            assert!(e.to_string().contains("full"), "{e}");
        }
    }

    /// Every intermediate state a packet can see during a write sequence
    /// finds every address that is in the table before and after it.
    #[test]
    fn a_packet_never_misses_an_address_that_stays() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut img = Image::empty(SMALL, SEED);
        let mut present: Vec<AddrKey> = Vec::new();
        for _ in 0..2000 {
            let key = v4(rng.gen_range(0..40));
            let before = img.clone();
            let writes = if present.contains(&key) && rng.gen_bool(0.5) {
                present.retain(|k| *k != key);
                img.remove(&key).unwrap()
            } else if !present.contains(&key) {
                if present.len() == SMALL.capacity as usize {
                    assert!(img.put(&key, V).is_err(), "put past capacity");
                    continue;
                }
                present.push(key);
                img.put(&key, V).unwrap()
            } else {
                let v = Value {
                    reply_port: rng.gen(),
                    ..V
                };
                img.put(&key, v).unwrap()
            };
            let mut seen = before;
            for w in writes {
                seen.apply(w);
                for k in present.iter().filter(|k| **k != key) {
                    assert!(program_finds(&seen, k).is_some(), "{k:?} missing mid-write");
                }
            }
            assert_eq!((&seen.dir, &seen.slots), (&img.dir, &img.slots));
            let mut want: Vec<AddrKey> = present.clone();
            want.sort();
            assert_eq!(img.entries().into_keys().collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn updates_in_place_and_refuses_what_is_not_there() {
        let mut img = Image::empty(SMALL, SEED);
        img.put(&v4(1), V).unwrap();
        let w = img
            .put(
                &v4(1),
                Value {
                    reply_port: 40000,
                    ..V
                },
            )
            .unwrap();
        assert!(matches!(w[..], [Write::Slot(_, s)] if s.reply_port == 40000));
        assert!(img
            .put(
                &v4(1),
                Value {
                    reply_port: 40000,
                    ..V
                }
            )
            .unwrap()
            .is_empty());
        assert!(img.remove(&v4(2)).is_err());
        assert!(img.put(&AddrKey { addr: [0; 16] }, V).is_err());
        img.remove(&v4(1)).unwrap();
        assert_eq!(img.count(), 0);
        // The last address of a bucket leaves it marked empty again.
        assert_eq!(img, Image::empty(SMALL, SEED).with_slots_of(&img));
    }
}
