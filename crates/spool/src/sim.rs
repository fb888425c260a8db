//! A model of a file system for the spool's fault-injection tests, after the way Vector
//! tests its disk buffer: it tracks, per file, what was written and what was synced, and
//! per directory which entries were made durable; it can fail any operation with ENOSPC,
//! EIO or a torn write, run out of space, and crash (lose whatever was not synced, tearing
//! what was being written).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::fs::{Fs, FsFile, SharedFile};

/// An injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The operation fails with ENOSPC and changes nothing.
    NoSpace,
    /// The operation fails with EIO and changes nothing.
    Io,
    /// A write stores only a prefix of its bytes, then fails with EIO (other operations:
    /// as `Io`).
    Torn,
}

#[derive(Default)]
struct Inode {
    /// What the process reads.
    data: Vec<u8>,
    /// What survives a crash.
    synced: Vec<u8>,
}

type Ino = Arc<Mutex<Inode>>;

struct State {
    /// The names the process sees.
    live: BTreeMap<PathBuf, Ino>,
    /// The names that survive a crash (made durable by a directory fsync).
    durable: BTreeMap<PathBuf, Ino>,
    dirs: Vec<PathBuf>,
    /// Operations counted so far, and the one to fail (with what).
    ops: u64,
    fail_at: Option<(u64, Fault)>,
    /// Bytes the file system holds at most (`None`: unlimited).
    capacity: Option<u64>,
    rng: StdRng,
    faults_hit: u64,
}

/// The model file system; clones share it.
#[derive(Clone)]
pub(crate) struct SimFs {
    state: Arc<Mutex<State>>,
}

impl SimFs {
    pub(crate) fn new(seed: u64, capacity: Option<u64>) -> SimFs {
        SimFs {
            state: Arc::new(Mutex::new(State {
                live: BTreeMap::new(),
                durable: BTreeMap::new(),
                dirs: Vec::new(),
                ops: 0,
                fail_at: None,
                capacity,
                rng: StdRng::seed_from_u64(seed),
                faults_hit: 0,
            })),
        }
    }

    /// Fails the `n`-th fallible operation from now (0: the next one) with `fault`.
    pub(crate) fn fail_in(&self, n: u64, fault: Fault) {
        let mut st = self.state.lock();
        st.fail_at = Some((st.ops + n, fault));
    }

    pub(crate) fn faults_hit(&self) -> u64 {
        self.state.lock().faults_hit
    }

    pub(crate) fn used_bytes(&self) -> u64 {
        SimFs::used(&self.state.lock())
    }

    pub(crate) fn set_capacity(&self, capacity: Option<u64>) {
        self.state.lock().capacity = capacity;
    }

    /// A power loss: only durable names remain, each file holds what was synced, and what
    /// was being written when it happened may be torn (a prefix of it survives).
    pub(crate) fn crash(&self) {
        let mut st = self.state.lock();
        st.fail_at = None;
        let durable = st.durable.clone();
        for ino in durable.values() {
            let mut i = ino.lock();
            let keep = if i.data.len() > i.synced.len() && i.data.starts_with(&i.synced) {
                // Appended, not synced: some prefix of the append may have reached the disk.
                let extra = i.data.len() - i.synced.len();
                let n = st.rng.gen_range(0..=extra);
                i.data[..i.synced.len() + n].to_vec()
            } else if i.data != i.synced && st.rng.gen_bool(0.5) {
                // Overwritten in place: the first bytes of the new content may be there.
                let n = st.rng.gen_range(0..=i.data.len().min(i.synced.len()));
                let mut v = i.synced.clone();
                v[..n].copy_from_slice(&i.data[..n]);
                v
            } else {
                i.synced.clone()
            };
            i.data = keep.clone();
            i.synced = keep;
        }
        st.live = durable;
    }

    fn used(st: &State) -> u64 {
        let mut seen = std::collections::HashSet::new();
        st.live
            .values()
            .chain(st.durable.values())
            .filter(|i| seen.insert(Arc::as_ptr(i)))
            .map(|i| i.lock().data.len() as u64)
            .sum()
    }

    /// Counts an operation; `Some(fault)` when this one is to fail.
    fn tick(&self) -> Option<Fault> {
        let mut st = self.state.lock();
        let n = st.ops;
        st.ops += 1;
        match st.fail_at {
            Some((at, f)) if at == n => {
                st.fail_at = None;
                st.faults_hit += 1;
                Some(f)
            }
            _ => None,
        }
    }
}

fn err(f: Fault) -> io::Error {
    match f {
        Fault::NoSpace => io::Error::from_raw_os_error(28),
        Fault::Io | Fault::Torn => io::Error::from_raw_os_error(5),
    }
}

struct SimFile {
    ino: Ino,
    fs: SimFs,
}

impl FsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        let i = self.ino.lock();
        let at = usize::try_from(at).unwrap_or(usize::MAX);
        if at >= i.data.len() {
            return Ok(0);
        }
        let n = buf.len().min(i.data.len() - at);
        buf[..n].copy_from_slice(&i.data[at..at + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], at: u64) -> io::Result<()> {
        let fault = self.fs.tick();
        let at = usize::try_from(at).unwrap_or(usize::MAX);
        let grows = {
            let i = self.ino.lock();
            (at + buf.len()).saturating_sub(i.data.len()) as u64
        };
        {
            let st = self.fs.state.lock();
            if let Some(cap) = st.capacity {
                if SimFs::used(&st) + grows > cap {
                    return Err(err(Fault::NoSpace));
                }
            }
        }
        let n = match fault {
            None => buf.len(),
            Some(Fault::Torn) => buf.len() / 2,
            Some(f) => return Err(err(f)),
        };
        let mut i = self.ino.lock();
        if i.data.len() < at + n {
            i.data.resize(at + n, 0);
        }
        i.data[at..at + n].copy_from_slice(&buf[..n]);
        match fault {
            Some(f) => Err(err(f)),
            None => Ok(()),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        if let Some(f) = self.fs.tick() {
            return Err(err(f));
        }
        let mut i = self.ino.lock();
        i.synced = i.data.clone();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if let Some(f) = self.fs.tick() {
            return Err(err(f));
        }
        let mut i = self.ino.lock();
        i.data.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.ino.lock().data.len() as u64)
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<SharedFile> {
        if create {
            if let Some(f) = self.tick() {
                return Err(err(f));
            }
        }
        let mut st = self.state.lock();
        let ino = match (st.live.get(path).cloned(), create) {
            (Some(ino), true) => {
                ino.lock().data.clear();
                ino
            }
            (Some(ino), false) => ino,
            (None, true) => {
                let ino: Ino = Arc::default();
                st.live.insert(path.to_path_buf(), ino.clone());
                ino
            }
            (None, false) => return Err(io::ErrorKind::NotFound.into()),
        };
        Ok(Arc::new(SimFile {
            ino,
            fs: self.clone(),
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.state.lock();
        let ino = st.live.get(path).ok_or(io::ErrorKind::NotFound)?;
        let data = ino.lock().data.clone();
        Ok(data)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if let Some(f) = self.tick() {
            return Err(err(f));
        }
        let mut st = self.state.lock();
        let ino = st.live.remove(from).ok_or(io::ErrorKind::NotFound)?;
        st.live.insert(to.to_path_buf(), ino);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        if let Some(f) = self.tick() {
            return Err(err(f));
        }
        let mut st = self.state.lock();
        st.live
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.state.lock();
        Ok(st
            .live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if let Some(f) = self.tick() {
            return Err(err(f));
        }
        let mut st = self.state.lock();
        st.durable.retain(|p, _| p.parent() != Some(dir));
        let entries: Vec<(PathBuf, Ino)> = st
            .live
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, i)| (p.clone(), i.clone()))
            .collect();
        st.durable.extend(entries);
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if !st.dirs.iter().any(|d| d == dir) {
            st.dirs.push(dir.to_path_buf());
        }
        Ok(())
    }

    fn is_dir(&self, dir: &Path) -> bool {
        self.state.lock().dirs.iter().any(|d| d == dir)
    }

    fn space(&self, _dir: &Path) -> Option<(u64, u64)> {
        let st = self.state.lock();
        let cap = st.capacity?;
        Some((cap.saturating_sub(SimFs::used(&st)), cap))
    }

    fn lock(&self, _path: &Path) -> io::Result<Option<Box<dyn std::any::Any + Send>>> {
        Ok(Some(Box::new(())))
    }
}
