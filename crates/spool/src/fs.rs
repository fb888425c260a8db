//! The file operations the spool makes, behind a trait, so that tests can run the spool
//! on a model of a file system that tracks what was written and what was synced and can
//! fail any operation or lose what was not synced (see the crate's fault-injection tests).
//! [`RealFs`] is the operating system's.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// An open file, read and written at positions.
pub(crate) trait FsFile: Send + Sync {
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize>;
    fn write_all_at(&self, buf: &[u8], at: u64) -> io::Result<()>;
    /// `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;

    fn read_exact_at(&self, mut buf: &mut [u8], mut at: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, at) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    at += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

pub(crate) type SharedFile = Arc<dyn FsFile>;

/// The file system operations of the spool.
pub(crate) trait Fs: Send + Sync + 'static {
    /// Opens a file for reading and writing; `create` creates (and truncates) it.
    fn open(&self, path: &Path, create: bool) -> io::Result<SharedFile>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// The names of the directory's entries.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// fsync of a directory: its entries created, renamed or removed survive a crash.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn is_dir(&self, dir: &Path) -> bool;
    /// Bytes available and the file system's size.
    fn space(&self, dir: &Path) -> Option<(u64, u64)>;
    /// Takes the directory's exclusive lock; held while the returned value lives.
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn std::any::Any + Send>>>;
}

/// The operating system's file system.
pub(crate) struct RealFs;

struct RealFile(std::fs::File);

impl FsFile for RealFile {
    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        self.0.read_at(buf, at)
    }
    fn write_all_at(&self, buf: &[u8], at: u64) -> io::Result<()> {
        self.0.write_all_at(buf, at)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.0.metadata().map(|m| m.len())
    }
}

impl Fs for RealFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<SharedFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(create)
            .open(path)?;
        Ok(Arc::new(RealFile(file)))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir).and_then(|d| d.sync_all())
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn is_dir(&self, dir: &Path) -> bool {
        dir.is_dir()
    }
    fn space(&self, dir: &Path) -> Option<(u64, u64)> {
        let v = rustix::fs::statvfs(dir).ok()?;
        let frsize = v.f_frsize.max(1);
        Some((
            v.f_bavail.saturating_mul(frsize),
            v.f_blocks.saturating_mul(frsize),
        ))
    }
    /// `flock` on the file, waiting up to 2 s for a previous holder to let go (a spool of
    /// this process whose writer thread is still exiting); `None` if it is still held.
    fn lock(&self, path: &Path) -> io::Result<Option<Box<dyn std::any::Any + Send>>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        for _ in 0..40 {
            match file.try_lock() {
                Ok(()) => return Ok(Some(Box::new(file))),
                Err(std::fs::TryLockError::WouldBlock) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
        Ok(None)
    }
}
