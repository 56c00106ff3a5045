//! `tcp-listen`: a TCP line server for WASI preview 1, on the listening
//! sockets its host pre-opens (as `wharf run -p` does for wasip1 modules).
//!
//! WASI preview 1 cannot create sockets, only use the ones it is given: the
//! host hands them over as file descriptors 3, 4, ... and says how many in
//! `LISTEN_FDS` (the systemd convention, which wasmtime's `--tcplisten` used).
//! The directories the host maps come after them.
//!
//! The server answers every line it receives with `GREETING: LINE`, where
//! GREETING is the content of `/etc/greeting` in the image (so the test sees
//! that directory preopens still work beside the sockets). It serves every
//! listener and connection from one `poll_oneoff` loop with non-blocking
//! accepts, as event loops such as mio do. The line `quit` ends the
//! connection; `stop` ends the server with exit code 0.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::wasi::io::{AsRawFd, FromRawFd};

/// `subscription` of `wasi_snapshot_preview1` (48 bytes).
#[repr(C)]
struct Subscription {
    userdata: u64,
    tag: u8,
    _pad: [u8; 7],
    /// `fd_read`: the descriptor in the first 4 bytes.
    u: [u64; 4],
}

/// `event` of `wasi_snapshot_preview1` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct Event {
    userdata: u64,
    error: u16,
    kind: u8,
    _pad: [u8; 5],
    nbytes: u64,
    flags: u16,
    _pad2: [u8; 6],
}

const EVENTTYPE_FD_READ: u8 = 1;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn poll_oneoff(
        subscriptions: *const Subscription,
        events: *mut Event,
        count: usize,
        events_written: *mut usize,
    ) -> u16;
}

/// Waits until one of `fds` can be read; returns the indices that can.
fn wait_readable(fds: &[u32]) -> Vec<usize> {
    let subs: Vec<Subscription> = fds
        .iter()
        .enumerate()
        .map(|(i, &fd)| Subscription {
            userdata: i as u64,
            tag: EVENTTYPE_FD_READ,
            _pad: [0; 7],
            u: [u64::from(fd), 0, 0, 0],
        })
        .collect();
    let empty = Event {
        userdata: 0,
        error: 0,
        kind: 0,
        _pad: [0; 5],
        nbytes: 0,
        flags: 0,
        _pad2: [0; 6],
    };
    let mut events = vec![empty; subs.len()];
    let mut written = 0usize;
    // SAFETY: both buffers hold `subs.len()` entries of the ABI's layout.
    let errno = unsafe {
        poll_oneoff(
            subs.as_ptr(),
            events.as_mut_ptr(),
            subs.len(),
            &mut written,
        )
    };
    if errno != 0 {
        eprintln!("poll_oneoff failed: errno {errno}");
        std::process::exit(1);
    }
    events[..written]
        .iter()
        .map(|e| e.userdata as usize)
        .collect()
}

struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
}

fn main() {
    let count: u32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if count == 0 {
        eprintln!("tcp-listen: no pre-opened sockets (LISTEN_FDS is unset); run it with -p");
        std::process::exit(2);
    }
    let greeting = std::fs::read_to_string("/etc/greeting")
        .map(|g| g.trim().to_owned())
        .unwrap_or_else(|_| "echo".to_owned());
    let listeners: Vec<TcpListener> = (0..count)
        .map(|i| {
            // SAFETY: the host pre-opened descriptors 3..3+LISTEN_FDS as
            // listening sockets and nothing else owns them.
            let l = unsafe { TcpListener::from_raw_fd(3 + i as i32) };
            l.set_nonblocking(true).expect("set_nonblocking");
            l
        })
        .collect();
    println!("listening on {count} socket(s)");
    let _ = std::io::stdout().flush();

    let mut conns: Vec<Conn> = Vec::new();
    loop {
        let fds: Vec<u32> = listeners
            .iter()
            .map(|l| l.as_raw_fd() as u32)
            .chain(conns.iter().map(|c| c.stream.as_raw_fd() as u32))
            .collect();
        let mut closed = Vec::new();
        for i in wait_readable(&fds) {
            if let Some(l) = listeners.get(i) {
                loop {
                    match l.accept() {
                        Ok((stream, _)) => conns.push(Conn {
                            stream,
                            pending: Vec::new(),
                        }),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => {
                            eprintln!("accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let c = &mut conns[i - listeners.len()];
            let mut buf = [0u8; 4096];
            let n = match c.stream.read(&mut buf) {
                Ok(0) | Err(_) => {
                    closed.push(i - listeners.len());
                    continue;
                }
                Ok(n) => n,
            };
            c.pending.extend_from_slice(&buf[..n]);
            while let Some(end) = c.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = c.pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                match line.trim_end_matches('\r') {
                    "stop" => std::process::exit(0),
                    "quit" => {
                        closed.push(i - listeners.len());
                        break;
                    }
                    text => {
                        if writeln!(c.stream, "{greeting}: {text}").is_err() {
                            closed.push(i - listeners.len());
                            break;
                        }
                    }
                }
            }
        }
        closed.sort_unstable();
        closed.dedup();
        for k in closed.into_iter().rev() {
            conns.remove(k);
        }
    }
}
