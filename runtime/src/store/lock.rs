//! Advisory locks shared between wharf processes: whole files (`flock`)
//! and single bytes of a file (open file description locks).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd as _;
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

    /// Waits for and takes a shared lock on the existing file `path`
    /// (none is made: `NotFound` if it is not there).
    pub fn shared_existing(path: &Path) -> io::Result<StoreLock> {
        Self::take_dir(path, FlockOperation::LockShared)
    }

    /// True when some process holds a lock on the existing directory or
    /// file `dir` (a snapshot that a running guest still uses). Does not
    /// wait.
    pub fn in_use(dir: &Path) -> bool {
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

/// A lock on one byte of a file: an open file description lock
/// (`F_OFD_SETLK`), so one file carries several independent locks, and
/// the threads of one process exclude each other as separate processes
/// do. Like a `flock`, it belongs to the open file, which it keeps, and
/// is released when that closes (on drop, or when the process dies).
/// (`fcntl` with a `flock` record has no safe wrapper for byte ranges.)
#[derive(Debug)]
pub struct ByteLock {
    file: File,
}

#[allow(unsafe_code)]
impl ByteLock {
    /// Waits for and takes a shared lock of byte `byte` of `file`.
    pub fn shared(file: File, byte: u64) -> io::Result<ByteLock> {
        Self::set(&file, byte, libc::F_RDLCK, true)?;
        Ok(ByteLock { file })
    }

    /// Waits for and takes an exclusive lock of byte `byte` of `file`
    /// (which must be open for writing).
    pub fn exclusive(file: File, byte: u64) -> io::Result<ByteLock> {
        Self::set(&file, byte, libc::F_WRLCK, true)?;
        Ok(ByteLock { file })
    }

    /// Takes an exclusive lock of byte `byte` of `file` if nobody holds
    /// one; `None` when someone does. Does not wait.
    pub fn try_exclusive(file: File, byte: u64) -> io::Result<Option<ByteLock>> {
        match Self::set(&file, byte, libc::F_WRLCK, false) {
            Ok(()) => Ok(Some(ByteLock { file })),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// True when someone holds a lock of byte `byte` of `file` (shared or
    /// exclusive). Takes none.
    pub fn is_held(file: &File, byte: u64) -> io::Result<bool> {
        let mut lock = Self::request(byte, libc::F_WRLCK);
        // SAFETY: F_OFD_GETLK reads and writes the `flock` it is given,
        // which lives for the call.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
        if r == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(i32::from(lock.l_type) != libc::F_UNLCK)
    }

    /// The locked file.
    pub fn file(&self) -> &File {
        &self.file
    }

    fn request(byte: u64, kind: i32) -> libc::flock {
        // SAFETY: `flock` is plain data, for which zero is valid
        // (l_pid must be 0 for open file description locks).
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = kind as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        lock.l_start = byte as libc::off_t;
        lock.l_len = 1;
        lock
    }

    fn set(file: &File, byte: u64, kind: i32, wait: bool) -> io::Result<()> {
        let lock = Self::request(byte, kind);
        let command = if wait {
            libc::F_OFD_SETLKW
        } else {
            libc::F_OFD_SETLK
        };
        loop {
            // SAFETY: F_OFD_SETLK(W) reads the `flock` it is given, which
            // lives for the call.
            if unsafe { libc::fcntl(file.as_raw_fd(), command, &lock) } != -1 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // What F_OFD_SETLK says when the byte is taken.
                Some(libc::EAGAIN | libc::EACCES) => {
                    return Err(io::Error::new(io::ErrorKind::WouldBlock, e))
                }
                _ => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn byte_locks_are_independent_and_exclude_other_opens_of_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap()
        };
        let first = ByteLock::exclusive(open(), 0).unwrap();
        assert!(ByteLock::is_held(&open(), 0).unwrap());
        assert!(!ByteLock::is_held(&open(), 1).unwrap());
        // Another open of the same process is another holder.
        assert!(ByteLock::try_exclusive(open(), 0).unwrap().is_none());
        let second = ByteLock::try_exclusive(open(), 1)
            .unwrap()
            .expect("byte 1 is free");
        // A shared lock waits for the exclusive one to go.
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let file = open();
            std::thread::spawn(move || {
                let lock = ByteLock::shared(file, 0).unwrap();
                tx.send(()).unwrap();
                lock
            })
        };
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        drop(first);
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let shared = waiter.join().unwrap();
        assert!(ByteLock::try_exclusive(open(), 0).unwrap().is_none());
        drop((shared, second));
        assert!(!ByteLock::is_held(&open(), 0).unwrap());
        assert!(!ByteLock::is_held(&open(), 1).unwrap());
    }
}
