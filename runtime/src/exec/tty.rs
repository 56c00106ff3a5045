//! Pseudo-terminals for `-t`: a container whose process gets a terminal
//! (its standard streams are the slave side of a pty) while wharf holds
//! the master side, where the process's output comes out and its input
//! and window size go in.
//!
//! A Linux container's pty is made inside the container, in its own
//! devpts, by the container's init (`exec::oci`), which sends the
//! master to wharf over a socket pair (`receive_fd`); a wasm guest's is made here by [`open_pty`]. [`Relay`] joins a
//! master to this process's own terminal for a foreground run.

use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::termios::{self, Termios, Winsize};

/// Both sides of a fresh pseudo-terminal.
pub struct Pty {
    /// Where the output comes out and the input goes in.
    pub master: OwnedFd,
    /// The process's standard streams.
    pub slave: OwnedFd,
}

/// Makes a pseudo-terminal (the host's `/dev/ptmx`).
pub fn open_pty() -> io::Result<Pty> {
    let pty = nix::pty::openpty(None, None).map_err(io::Error::from)?;
    Ok(Pty {
        master: pty.master,
        slave: pty.slave,
    })
}

/// Sets the window size of the terminal `fd` (either side of a pty):
/// the process on it gets SIGWINCH.
pub fn set_size(fd: impl AsFd, rows: u16, cols: u16) -> io::Result<()> {
    termios::tcsetwinsize(
        fd,
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .map_err(io::Error::from)
}

/// The window size (rows, columns) of terminal `fd`; None when `fd` is
/// not a terminal.
pub fn size(fd: impl AsFd) -> Option<(u16, u16)> {
    let w = termios::tcgetwinsize(fd).ok()?;
    (w.ws_row > 0 && w.ws_col > 0).then_some((w.ws_row, w.ws_col))
}

/// Puts terminal `fd` in raw mode for good: bytes pass unchanged.
pub fn make_raw(fd: impl AsFd) -> io::Result<()> {
    let mut t = termios::tcgetattr(&fd)?;
    t.make_raw();
    termios::tcsetattr(&fd, termios::OptionalActions::Now, &t)?;
    Ok(())
}

/// This process's terminal in raw mode (keys go through unprocessed, as
/// `docker run -it` does) until dropped.
pub struct RawMode {
    fd: BorrowedFd<'static>,
    saved: Termios,
}

impl RawMode {
    /// Puts standard input in raw mode; None when it is not a terminal.
    pub fn stdin() -> Option<RawMode> {
        let fd = rustix::stdio::stdin();
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(fd, termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, termios::OptionalActions::Now, &self.saved);
    }
}

/// Calls `apply` with this process's window size now (unless it is
/// unset) and each time it changes (SIGWINCH), until the returned handle
/// is closed. Does nothing when standard output is not a terminal.
pub fn follow_size(
    apply: impl Fn(u16, u16) + Send + 'static,
) -> io::Result<Option<signal_hook::iterator::Handle>> {
    if termios::tcgetwinsize(rustix::stdio::stdout()).is_err() {
        return Ok(None);
    }
    // Listening before the first look: no change is missed.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH])?;
    let handle = signals.handle();
    if let Some((rows, cols)) = size(rustix::stdio::stdout()) {
        apply(rows, cols);
    }
    std::thread::Builder::new()
        .name("winch".into())
        .stack_size(64 << 10)
        .spawn(move || {
            for _ in signals.forever() {
                if let Some((rows, cols)) = size(rustix::stdio::stdout()) {
                    apply(rows, cols);
                }
            }
        })?;
    Ok(Some(handle))
}

/// The key sequence that detaches a client from a container's terminal
/// and leaves the container running, found in what a user types: Docker's
/// Ctrl-P Ctrl-Q by default, or any sequence given as `--detach-keys`
/// ([`DetachKeys::parse`]).
#[derive(Debug, Clone)]
pub struct DetachKeys {
    /// The sequence, one byte per key.
    keys: Vec<u8>,
    /// How many of `keys` were typed last and held back: they may start
    /// the sequence.
    held: usize,
}

impl Default for DetachKeys {
    fn default() -> Self {
        DetachKeys {
            keys: vec![0x10, 0x11],
            held: 0,
        }
    }
}

impl DetachKeys {
    /// Parses Docker's notation: keys separated by commas, each a single
    /// character or `ctrl-X` where X is a letter or one of `@ [ \ ] ^ _`
    /// (`ctrl-p,ctrl-q`, `ctrl-a,d`). The empty string is the default.
    pub fn parse(spec: &str) -> Result<DetachKeys, String> {
        if spec.is_empty() {
            return Ok(DetachKeys::default());
        }
        let bad = || {
            format!(
                "invalid detach keys {spec:?}: expected keys separated by commas, \
                 each a character or ctrl-<a-z, @, [, \\, ], ^ or _> (as ctrl-p,ctrl-q)"
            )
        };
        let mut keys = Vec::new();
        for key in spec.split(',') {
            let lower = key.to_ascii_lowercase();
            let byte = match lower.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => match c.as_bytes()[0] {
                    b @ b'a'..=b'z' => b - b'a' + 1,
                    b'@' => 0,
                    b @ (b'[' | b'\\' | b']' | b'^' | b'_') => b - b'@',
                    _ => return Err(bad()),
                },
                _ if key.len() == 1 => key.as_bytes()[0],
                _ => return Err(bad()),
            };
            keys.push(byte);
        }
        Ok(DetachKeys { keys, held: 0 })
    }

    /// What of `typed` to pass on, and whether the sequence was typed
    /// (what follows it is dropped). Keys that may start the sequence are
    /// held back until the next read shows whether they do.
    pub fn scan(&mut self, typed: &[u8]) -> (Vec<u8>, bool) {
        let mut pass = Vec::with_capacity(typed.len() + self.held);
        for &k in typed {
            if k != self.keys[self.held] {
                // Not the sequence after all: what was held goes on, and
                // this key may start it afresh.
                pass.extend_from_slice(&self.keys[..self.held]);
                self.held = 0;
                if k != self.keys[0] {
                    pass.push(k);
                    continue;
                }
            }
            self.held += 1;
            if self.held == self.keys.len() {
                self.held = 0;
                return (pass, true);
            }
        }
        (pass, false)
    }
}

/// A foreground run's terminal: the container's output copied to this
/// process's standard output, its standard input (with `-i`) to the
/// container, this terminal in raw mode and its size passed on.
pub struct Relay {
    output: Option<std::thread::JoinHandle<()>>,
    winch: Option<signal_hook::iterator::Handle>,
    _raw: Option<RawMode>,
}

impl Relay {
    /// Starts relaying between `master` and this process's stdio.
    pub fn start(master: OwnedFd, input: bool) -> io::Result<Relay> {
        let master = std::fs::File::from(master);
        let sized = master.try_clone()?;
        let winch = follow_size(move |rows, cols| {
            let _ = set_size(&sized, rows, cols);
        })?;
        let raw = if input { RawMode::stdin() } else { None };
        if input {
            let mut to = master.try_clone()?;
            std::thread::Builder::new()
                .name("tty-input".into())
                .spawn(move || {
                    let _ = type_input(&mut to);
                })?;
        }
        let mut from = master;
        let output = std::thread::Builder::new()
            .name("tty-output".into())
            .spawn(move || {
                let mut out = io::stdout();
                let mut buf = [0u8; 16 << 10];
                loop {
                    match from.read(&mut buf) {
                        // EIO: every slave descriptor is closed.
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                                break;
                            }
                        }
                    }
                }
            })?;
        Ok(Relay {
            output: Some(output),
            winch,
            _raw: raw,
        })
    }

    /// Waits for the last of the output (the container has exited) and
    /// gives the terminal back as it was.
    pub fn finish(mut self) {
        if let Some(h) = self.winch.take() {
            h.close();
        }
        if let Some(t) = self.output.take() {
            let _ = t.join();
        }
    }
}

/// Copies this process's standard input to a terminal as if typed; when
/// the input ends (a pipe), types Ctrl-D, which is how a terminal says
/// end-of-file to a reader in canonical mode (a terminal itself has no
/// end of input).
pub fn type_input(to: &mut impl io::Write) -> io::Result<()> {
    io::copy(&mut io::stdin().lock(), to)?;
    to.write_all(&[0x04])
}

/// Where a foreground Linux run's [`Relay`] lives: its
/// [`super::linux::OnTerminal`] starts the relay when the container's
/// terminal arrives, and [`RelaySlot::finish`] ends it after the run.
#[derive(Clone, Default)]
pub struct RelaySlot(std::sync::Arc<std::sync::Mutex<Option<Relay>>>);

impl RelaySlot {
    /// The callback that relays the container's terminal to this
    /// process's stdio (and its input too, with `input`).
    pub fn on_terminal(&self, input: bool) -> super::linux::OnTerminal {
        let slot = self.0.clone();
        super::linux::OnTerminal(std::sync::Arc::new(move |master| {
            match Relay::start(master, input) {
                Ok(r) => *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(r),
                Err(e) => tracing::warn!(error = %e, "cannot relay the container's terminal"),
            }
        }))
    }

    /// Waits for the relay's last output and restores this terminal.
    pub fn finish(&self) {
        let relay = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(r) = relay {
            r.finish();
        }
    }
}

/// Receives the descriptor a container's init sends over `socket` (one
/// message carrying it as SCM_RIGHTS): the master side of the pty it
/// made. The init sends it before it execs, so it is already queued.
pub(crate) fn receive_fd(socket: &impl AsFd) -> io::Result<OwnedFd> {
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        socket,
        &mut [io::IoSliceMut::new(&mut byte)],
        &mut control,
        rustix::net::RecvFlags::CMSG_CLOEXEC | rustix::net::RecvFlags::DONTWAIT,
    )?;
    for message in control.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = message {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    Err(io::Error::other("the container sent no terminal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_are_ctrl_p_ctrl_q_across_reads() {
        let mut k = DetachKeys::default();
        assert_eq!(k.scan(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(k.scan(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(k.scan(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(k.scan(b"\x11rest"), (Vec::new(), true));
        let mut k = DetachKeys::default();
        assert_eq!(k.scan(b"x\x10\x11"), (b"x".to_vec(), true));
    }

    #[test]
    fn detach_keys_parse_dockers_notation() {
        let bytes = |s: &str| DetachKeys::parse(s).map(|k| k.keys);
        assert_eq!(bytes(""), Ok(vec![0x10, 0x11]));
        assert_eq!(bytes("ctrl-a,d"), Ok(vec![0x01, b'd']));
        assert_eq!(
            bytes("Ctrl-X,ctrl-@,ctrl-[,ctrl-_"),
            Ok(vec![0x18, 0, 0x1b, 0x1f])
        );
        assert_eq!(bytes("ctrl-\\"), Ok(vec![0x1c]));
        for bad in ["ctrl-", "ctrl-1", "ab", "a,,b", "ctrl-ab", ","] {
            let e = DetachKeys::parse(bad).unwrap_err();
            assert!(e.contains("invalid detach keys"), "{bad}: {e}");
        }
    }

    #[test]
    fn custom_detach_keys_hold_back_only_a_prefix() {
        let mut k = DetachKeys::parse("ctrl-a,d,e").unwrap();
        assert_eq!(k.scan(b"x\x01d"), (b"x".to_vec(), false));
        // A wrong third key: the held prefix goes on with it.
        assert_eq!(k.scan(b"q"), (b"\x01dq".to_vec(), false));
        // A mismatch that starts the sequence again.
        assert_eq!(k.scan(b"\x01\x01d"), (b"\x01".to_vec(), false));
        assert_eq!(k.scan(b"eafter"), (Vec::new(), true));
        let mut one = DetachKeys::parse("ctrl-z").unwrap();
        assert_eq!(one.scan(b"ab\x1acd"), (b"ab".to_vec(), true));
    }

    #[test]
    fn a_pty_carries_output_and_size() {
        let pty = open_pty().unwrap();
        set_size(&pty.master, 30, 100).unwrap();
        assert_eq!(size(&pty.slave), Some((30, 100)));
        let mut slave = std::fs::File::from(pty.slave);
        slave.write_all(b"hi\n").unwrap();
        drop(slave);
        let mut master = std::fs::File::from(pty.master);
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        // Read until EIO: the slave is closed.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        // The line discipline turns \n into \r\n.
        assert_eq!(out, b"hi\r\n");
    }
}
