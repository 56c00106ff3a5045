//! The monitor server: one long-lived, single-threaded process that a
//! host starting many containers (the daemon) runs beside it, and that
//! forks a monitor for each start instead of the host executing the
//! monitor program anew each time (decision 0012). A fork of a small
//! process that has already loaded and relocated wharf costs a fraction
//! of an exec of it.
//!
//! The host talks to the server over a socket pair, so no path exists
//! that anyone else could connect to: each start is one datagram holding
//! the container id, with two descriptors as SCM_RIGHTS, the handshake
//! pipe the monitor answers on ([`Containers::start`](super::Containers::start))
//! and the file its early errors go to. When the host closes its end (or
//! dies) the server ends; the monitors it forked live on in their own
//! process groups, as exec'd ones do.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::Mutex;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use super::{MonitorCommand, Result};
use crate::store::Store;

/// The host's side of a running monitor server.
#[derive(Debug)]
pub(crate) struct MonitorServer {
    socket: OwnedFd,
    process: Mutex<std::process::Child>,
}

impl MonitorServer {
    /// Starts `subcommand` (`monitor-server`, or `guest-host` for a
    /// [`super::host`]) of `monitor`'s program, its standard input the
    /// other end of a fresh socket pair.
    pub(crate) fn start(monitor: &MonitorCommand, subcommand: &str) -> io::Result<MonitorServer> {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        use std::os::unix::process::CommandExt as _;
        let process = monitor
            .command()
            .arg(subcommand)
            .stdin(std::process::Stdio::from(theirs))
            .stdout(std::process::Stdio::null())
            // Its own process group, as the monitors it forks: a Ctrl-C
            // meant for the host does not reach them.
            .process_group(0)
            .spawn()?;
        Ok(MonitorServer {
            socket: ours,
            process: Mutex::new(process),
        })
    }

    /// Asks for a monitor of container `id` that answers on `handshake`
    /// and writes its early errors to `stderr`. An error means the
    /// server is gone: the caller executes the monitor itself.
    pub(crate) fn spawn(&self, id: &str, handshake: OwnedFd, stderr: OwnedFd) -> io::Result<()> {
        let fds = [handshake.as_fd(), stderr.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("no room for the descriptors"));
        }
        rustix::net::sendmsg(
            &self.socket,
            &[IoSlice::new(id.as_bytes())],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        Ok(())
    }
}

impl Drop for MonitorServer {
    fn drop(&mut self) {
        // The end of our side ends the server (a guest host once its
        // guests have ended, which may be much later: it is reaped by a
        // thread, so that dropping does not wait for them).
        let _ = rustix::net::shutdown(&self.socket, rustix::net::Shutdown::Both);
        let mut process = self.process.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(None) = process.try_wait() {
            let pid = process.id();
            let _ = std::thread::Builder::new()
                .name("wharf-reaper".into())
                .stack_size(64 << 10)
                .spawn(move || {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                        let _ = rustix::process::waitpid(
                            Some(pid),
                            rustix::process::WaitOptions::empty(),
                        );
                    }
                });
        }
    }
}

/// The body of `monitor-server`: its standard input is the host's
/// socket. Forks a monitor ([`super::run_monitor`]) for each request and
/// returns when the host goes away. Refuses to run with a second thread,
/// since only a single-threaded process may fork and go on running Rust
/// in the child.
pub fn run_monitor_server(store: &Store) -> Result<()> {
    if super::procfs::status("self", "Threads").as_deref() != Some("1") {
        return Err(io::Error::other("the monitor server must be single-threaded to fork").into());
    }
    let socket = take_stdin()?;
    loop {
        // Forked monitors that ended since (they are our children).
        // (Any child: each monitor is in a process group of its own.)
        while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
        let mut ready = [rustix::event::PollFd::new(
            &socket,
            rustix::event::PollFlags::IN,
        )];
        let second = rustix::time::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        match rustix::event::poll(&mut ready, Some(&second)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(io::Error::from(e).into()),
        }
        let Some(request) = receive(&socket)? else {
            // The host closed its end.
            return Ok(());
        };
        let Some(Request {
            id,
            handshake,
            stderr,
        }) = request
        else {
            continue;
        };
        if fork()?.is_none() {
            drop(socket);
            let code = monitor_child(store, &id, handshake, stderr);
            std::process::exit(code);
        }
    }
}

/// The host's socket, which is our standard input; stdin becomes
/// /dev/null.
pub(super) fn take_stdin() -> io::Result<OwnedFd> {
    let socket = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?;
    let null = std::fs::File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok(socket)
}

/// A start request as [`MonitorServer::spawn`] sends it.
pub(super) struct Request {
    /// The container.
    pub(super) id: String,
    /// Where the monitor says whether the container started.
    pub(super) handshake: OwnedFd,
    /// Where its early errors go.
    pub(super) stderr: OwnedFd,
}

/// The next start request. None when the host closed its end; Some(None)
/// for a datagram that is not a request of ours (its descriptors, if any,
/// close, and whoever sent it hears end-of-file on its handshake).
pub(super) fn receive(socket: &OwnedFd) -> io::Result<Option<Option<Request>>> {
    let mut id = [0u8; 256];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut id)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(got) => break got,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if got.bytes == 0 {
        return Ok(None);
    }
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    Ok(Some(
        match (
            std::str::from_utf8(&id[..got.bytes]),
            <[OwnedFd; 2]>::try_from(fds),
        ) {
            (Ok(id), Ok([handshake, stderr])) => Some(Request {
                id: id.to_owned(),
                handshake,
                stderr,
            }),
            _ => None,
        },
    ))
}

/// In a forked child: the monitor of container `id`, with the standard
/// streams an exec'd monitor would have; its exit code.
fn monitor_child(store: &Store, id: &str, handshake: OwnedFd, stderr: OwnedFd) -> i32 {
    let streams = (|| -> io::Result<()> {
        rustix::process::setpgid(None, None)?;
        rustix::stdio::dup2_stdout(&handshake)?;
        rustix::stdio::dup2_stderr(&stderr)?;
        Ok(())
    })();
    drop((handshake, stderr));
    if let Err(e) = streams {
        eprintln!("wharf: monitor of {id}: {e}");
        return 1;
    }
    match super::run_monitor(store, id) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wharf: {e}");
            1
        }
    }
}

/// `fork(2)`: None in the child, the child's pid in the parent.
#[allow(unsafe_code)]
fn fork() -> io::Result<Option<u32>> {
    // SAFETY: called only by the monitor server, which checked at its
    // start that it has a single thread and starts none: the child is a
    // copy of a whole, consistent process (no lock held by another
    // thread), and may go on running ordinary Rust.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid as u32)),
    }
}
