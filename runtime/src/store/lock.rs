//! Advisory file locks (`flock`) shared between wharf processes.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

/// A held lock; released on drop (or when the process dies).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    fn take(path: &Path, op: FlockOperation) -> io::Result<StoreLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        loop {
            match flock(&file, op) {
                Ok(()) => return Ok(StoreLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io::Error::other(format!("lock {}: {e}", path.display()))),
            }
        }
    }

    /// Waits for and takes a shared lock.
    pub fn shared(path: &Path) -> io::Result<StoreLock> {
        Self::take(path, FlockOperation::LockShared)
    }

    /// Waits for and takes an exclusive lock.
    pub fn exclusive(path: &Path) -> io::Result<StoreLock> {
        Self::take(path, FlockOperation::LockExclusive)
    }

    /// Takes an exclusive lock if no one holds the file locked; `None`
    /// when someone does. Does not wait.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<StoreLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Some(StoreLock { _file: file })),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                Err(e) => return Err(io::Error::other(format!("lock {}: {e}", path.display()))),
            }
        }
    }

    /// Takes a shared lock on an existing directory (a snapshot in use).
    pub fn shared_dir(dir: &Path) -> io::Result<StoreLock> {
        Self::take_dir(dir, FlockOperation::LockShared)
    }

    /// Waits for and takes an exclusive lock on the directory `dir`
    /// itself (no lock file to create).
    pub fn exclusive_dir(dir: &Path) -> io::Result<StoreLock> {
        Self::take_dir(dir, FlockOperation::LockExclusive)
    }

    fn take_dir(dir: &Path, op: FlockOperation) -> io::Result<StoreLock> {
        let file = File::open(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        loop {
            match flock(&file, op) {
                Ok(()) => return Ok(StoreLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io::Error::other(format!("lock {}: {e}", dir.display()))),
            }
        }
    }

    /// True when some process holds a lock on the directory `dir` (a
    /// snapshot that a running guest still uses). Does not wait.
    pub fn dir_in_use(dir: &Path) -> bool {
        let Ok(file) = File::open(dir) else {
            return false;
        };
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                let _ = flock(&file, FlockOperation::Unlock);
                false
            }
            Err(_) => true,
        }
    }
}
