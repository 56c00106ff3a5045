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
}
