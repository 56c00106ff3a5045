//! Pre-opened TCP sockets for WASI preview 1 modules (`-p` with a wasip1
//! guest).
//!
//! Preview 1 cannot create sockets; it can only accept on listening sockets
//! its host hands over, and read, write, poll and shut down the connections.
//! wasmtime-wasi 48's preview 1 layer answers `ENOTSOCK` to all of that, so
//! wharf layers sockets over it: every preview 1 import of the module that
//! takes a descriptor (and `poll_oneoff`) is wrapped; a call on one of
//! wharf's socket descriptors is answered here and every other call goes to
//! wasmtime-wasi unchanged.
//!
//! Descriptor numbers follow the convention of wasmtime's former
//! `--tcplisten` and systemd socket activation: the listeners are 3, 4, ...
//! and `LISTEN_FDS` says how many. wasmtime-wasi holds an empty read-only
//! placeholder directory at each of those numbers (pre-opened before the
//! guest's real directories), so it never gives the numbers to anything
//! else; `fd_prestat_get` on them reports a preopen type that is not a
//! directory, which wasi-libc skips when it collects preopens. Accepted
//! connections are numbered from [`CONN_FD_BASE`] up.

use std::collections::HashMap;
use std::io::{IoSlice, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant, SystemTime};

use rustix::event::{PollFd, PollFlags, Timespec};
use wasmtime::{Caller, Extern, Func, Linker, Module, Store, Val};

const MODULE: &str = "wasi_snapshot_preview1";

/// The first listener's descriptor number.
pub(crate) const FIRST_LISTENER_FD: u32 = 3;

/// Accepted connections get descriptor numbers from here up, far above the
/// ones wasmtime-wasi hands out (it reuses freed numbers first).
pub(crate) const CONN_FD_BASE: u32 = 1 << 20;

/// Connections a guest may hold open at once.
const MAX_CONNECTIONS: usize = 4096;

/// The preview 1 imports wrapped: everything that takes a descriptor, and
/// `poll_oneoff`, which names descriptors in its subscriptions.
const WRAPPED: &[&str] = &[
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

/// WASI preview 1 error numbers used here.
mod errno {
    /// Not an error number: the run's deadline passed while the guest
    /// waited on a socket; the call traps as an epoch interruption would.
    pub const DEADLINE: i32 = -1;
    pub const AGAIN: i32 = 6;
    pub const BADF: i32 = 8;
    pub const CONNABORTED: i32 = 13;
    pub const CONNREFUSED: i32 = 14;
    pub const CONNRESET: i32 = 15;
    pub const FAULT: i32 = 21;
    pub const INTR: i32 = 27;
    pub const INVAL: i32 = 28;
    pub const IO: i32 = 29;
    pub const MFILE: i32 = 33;
    pub const NOTCONN: i32 = 53;
    pub const NOTDIR: i32 = 54;
    pub const NOTSUP: i32 = 58;
    pub const PIPE: i32 = 64;
    pub const SPIPE: i32 = 70;
    pub const TIMEDOUT: i32 = 73;
}

const FILETYPE_SOCKET_STREAM: u8 = 6;
const FDFLAGS_NONBLOCK: u16 = 4;
/// A preopen type that is not `dir` (0): wasi-libc skips it.
const PREOPENTYPE_SOCKET: u8 = 1;
const RIFLAGS_RECV_PEEK: u32 = 1;
const RIFLAGS_RECV_WAITALL: u32 = 2;
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const EVENTRWFLAGS_HANGUP: u16 = 1;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;
const CLOCK_REALTIME: u32 = 0;

/// Rights reported for a socket: read, write, set flags, filestat, poll,
/// shutdown, accept.
const SOCKET_RIGHTS: u64 =
    (1 << 1) | (1 << 3) | (1 << 6) | (1 << 21) | (1 << 27) | (1 << 28) | (1 << 29);

enum Sock {
    Listener(TcpListener),
    Stream(TcpStream),
}

struct Entry {
    sock: Sock,
    nonblocking: bool,
}

impl Entry {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.sock {
            Sock::Listener(l) => l.as_fd(),
            Sock::Stream(s) => s.as_fd(),
        }
    }

    fn stream(&self) -> Result<&TcpStream, i32> {
        match &self.sock {
            Sock::Stream(s) => Ok(s),
            Sock::Listener(_) => Err(errno::NOTCONN),
        }
    }
}

/// The sockets of one preview 1 guest.
pub(crate) struct P1Sockets {
    entries: HashMap<u32, Entry>,
    next_conn: u32,
    deadline: Option<Instant>,
    /// wasmtime-wasi's function for each wrapped import.
    originals: Vec<(&'static str, Func)>,
    /// The same, callable from a host function (see [`attach`]).
    forward: Vec<Func>,
}

/// Host state that carries a guest's [`P1Sockets`].
pub(crate) trait HasSockets {
    fn sockets(&mut self) -> &mut P1Sockets;
}

impl P1Sockets {
    /// Sockets for a guest that receives `listeners` as descriptors
    /// [`FIRST_LISTENER_FD`], ...
    /// With a `deadline` (the run's `--timeout`), a guest blocked on a
    /// socket is interrupted at that time, as running code is by the epoch.
    pub(crate) fn new(listeners: Vec<TcpListener>, deadline: Option<Instant>) -> P1Sockets {
        let entries = (FIRST_LISTENER_FD..)
            .zip(listeners)
            .map(|(fd, l)| {
                (
                    fd,
                    Entry {
                        sock: Sock::Listener(l),
                        nonblocking: false,
                    },
                )
            })
            .collect();
        P1Sockets {
            entries,
            next_conn: CONN_FD_BASE,
            deadline,
            originals: Vec::new(),
            forward: Vec::new(),
        }
    }

    fn add_connection(&mut self, stream: TcpStream, nonblocking: bool) -> Result<u32, i32> {
        let connections = self
            .entries
            .keys()
            .filter(|&&fd| fd >= CONN_FD_BASE)
            .count();
        if connections >= MAX_CONNECTIONS {
            return Err(errno::MFILE);
        }
        let mut fd = self.next_conn;
        while self.entries.contains_key(&fd) {
            fd = fd.checked_add(1).unwrap_or(CONN_FD_BASE);
        }
        self.next_conn = fd.checked_add(1).unwrap_or(CONN_FD_BASE);
        self.entries.insert(
            fd,
            Entry {
                sock: Sock::Stream(stream),
                nonblocking,
            },
        );
        Ok(fd)
    }
}

/// Wraps the preview 1 imports of `module` in `linker` (which already has
/// wasmtime-wasi's preview 1) so that calls on the sockets of `store`'s
/// [`P1Sockets`] are answered here. [`attach`] must follow instantiation.
pub(crate) fn install<T: HasSockets + 'static>(
    linker: &mut Linker<T>,
    store: &mut Store<T>,
    module: &Module,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    for import in module.imports() {
        if import.module() != MODULE {
            continue;
        }
        let Some(&name) = WRAPPED.iter().find(|&&n| n == import.name()) else {
            continue;
        };
        let Ok(Extern::Func(original)) = linker.get(&mut *store, MODULE, name) else {
            continue;
        };
        let ty = original.ty(&*store);
        let sockets = store.data_mut().sockets();
        let index = sockets.originals.len();
        sockets.originals.push((name, original));
        linker.func_new(
            MODULE,
            name,
            ty,
            move |mut caller, params, results| match dispatch(&mut caller, name, params) {
                Some(errno::DEADLINE) => Err(wasmtime::Trap::Interrupt.into()),
                Some(errno) => {
                    results[0] = Val::I32(errno);
                    Ok(())
                }
                None => {
                    let Some(forward) = caller.data_mut().sockets().forward.get(index).copied()
                    else {
                        wasmtime::bail!("{name} called before the guest was instantiated");
                    };
                    forward.call(&mut caller, params, results)
                }
            },
        )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// Completes [`install`] once the guest `instance` exists, with the
/// compiled [`shim_wat`].
pub(crate) fn attach<T: HasSockets + 'static>(
    store: &mut Store<T>,
    instance: &wasmtime::Instance,
    shim: &Module,
) -> wasmtime::Result<()> {
    let Some(memory) = instance.get_memory(&mut *store, "memory") else {
        wasmtime::bail!("the module exports no memory");
    };
    let mem_ty = memory.ty(&*store);
    if mem_ty.is_64() || mem_ty.is_shared() {
        wasmtime::bail!("pre-opened sockets need a 32-bit, unshared memory");
    }
    let originals = store.data_mut().sockets().originals.clone();
    let imports: Vec<Extern> = std::iter::once(Extern::Memory(memory))
        .chain(originals.iter().map(|(_, f)| Extern::Func(*f)))
        .collect();
    let shim = wasmtime::Instance::new(&mut *store, shim, &imports)?;
    let forward = (0..originals.len())
        .map(|i| {
            shim.get_func(&mut *store, &i.to_string())
                .ok_or_else(|| wasmtime::format_err!("shim export {i} missing"))
        })
        .collect::<wasmtime::Result<Vec<_>>>()?;
    store.data_mut().sockets().forward = forward;
    Ok(())
}

/// The text of the shim module through which wrapped calls reach
/// wasmtime-wasi.
///
/// wasmtime-wasi's functions find the guest's memory through the calling
/// instance's `memory` export, so a host function cannot simply call them:
/// the calls left to wasmtime-wasi go through this small module, which
/// re-exports the guest's memory and calls each original import. Its text
/// depends only on which imports the guest has, so its compiled form is
/// cached like any module.
pub(crate) fn shim_wat<T: HasSockets + 'static>(store: &mut Store<T>) -> String {
    let originals = store.data_mut().sockets().originals.clone();
    let mut wat = String::from("(module (import \"guest\" \"memory\" (memory 0))\n");
    let mut bodies = String::new();
    for (i, (name, f)) in originals.iter().enumerate() {
        let ty = f.ty(&*store);
        let list = |tys: &mut dyn Iterator<Item = wasmtime::ValType>| {
            tys.map(|t| {
                if matches!(t, wasmtime::ValType::I64) {
                    "i64"
                } else {
                    "i32"
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
        };
        let sig = format!(
            "(param {}) (result {})",
            list(&mut ty.params()),
            list(&mut ty.results())
        );
        wat.push_str(&format!(
            "(import \"wasi\" \"{name}\" (func $f{i} {sig}))\n"
        ));
        let args: String = (0..ty.params().len())
            .map(|k| format!("local.get {k} "))
            .collect();
        bodies.push_str(&format!("(func (export \"{i}\") {sig} {args}call $f{i})\n"));
    }
    wat.push_str(&bodies);
    wat.push_str("(export \"memory\" (memory 0)))");
    wat
}

/// Answers a wrapped call when it concerns one of the guest's sockets
/// (`Some(errno)`), or leaves it to wasmtime-wasi (`None`).
fn dispatch<T: HasSockets>(caller: &mut Caller<'_, T>, name: &str, p: &[Val]) -> Option<i32> {
    let arg = |k: usize| p.get(k).and_then(Val::i32).unwrap_or(-1) as u32;
    let fd_args: &[usize] = match name {
        "poll_oneoff" => &[],
        "path_link" => &[0, 4],
        "path_rename" => &[0, 3],
        "path_symlink" => &[2],
        "fd_renumber" => &[0, 1],
        _ => &[0],
    };
    if name != "poll_oneoff" {
        let socks = caller.data_mut().sockets();
        if !fd_args.iter().any(|&k| socks.entries.contains_key(&arg(k))) {
            return None;
        }
    }
    let memory = caller.get_export("memory").and_then(Extern::into_memory)?;
    let (bytes, data) = memory.data_and_store_mut(&mut *caller);
    let socks = data.sockets();
    let mut mem = Mem(bytes);
    if name == "poll_oneoff" {
        return poll_oneoff(socks, &mut mem, arg(0), arg(1), arg(2), arg(3));
    }
    let fd = fd_args
        .iter()
        .map(|&k| arg(k))
        .find(|fd| socks.entries.contains_key(fd))?;
    if name == "fd_close" {
        socks.entries.remove(&fd);
        // A listener's number belongs to a placeholder directory in
        // wasmtime-wasi: close that too, so the number can be reused.
        return if fd < CONN_FD_BASE { None } else { Some(0) };
    }
    let result = call(socks, &mut mem, name, fd, &|k| arg(k));
    Some(result.err().unwrap_or(0))
}

/// Before a blocking call on `entry` when the run has a deadline: waits
/// until the socket is ready (`flags`) or the deadline passes.
fn ready_by_deadline(
    entry: &Entry,
    deadline: Option<Instant>,
    flags: PollFlags,
) -> Result<(), i32> {
    let Some(deadline) = deadline else {
        return Ok(());
    };
    if entry.nonblocking {
        return Ok(());
    }
    let fd = entry.fd();
    let mut pfd = [PollFd::new(&fd, flags)];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(errno::DEADLINE);
        }
        match rustix::event::poll(&mut pfd, Some(&timespec(left))) {
            Ok(0) => continue,
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return Err(errno::IO),
        }
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

fn call(
    socks: &mut P1Sockets,
    mem: &mut Mem<'_>,
    name: &str,
    fd: u32,
    arg: &dyn Fn(usize) -> u32,
) -> Result<(), i32> {
    let entry = socks.entries.get(&fd).ok_or(errno::BADF)?;
    let deadline = socks.deadline;
    match name {
        "fd_read" | "sock_recv" => {
            let (flags, out) = if name == "sock_recv" {
                (arg(3), arg(4))
            } else {
                (0, arg(3))
            };
            let stream = entry.stream()?;
            ready_by_deadline(entry, deadline, PollFlags::IN)?;
            let n = recv(stream, mem, arg(1), arg(2), flags)?;
            mem.put_u32(out, n)?;
            if name == "sock_recv" {
                mem.put(arg(5), &0u16.to_le_bytes())?;
            }
        }
        "fd_write" | "sock_send" => {
            let out = if name == "sock_send" { arg(4) } else { arg(3) };
            let stream = entry.stream()?;
            ready_by_deadline(entry, deadline, PollFlags::OUT)?;
            let n = send(stream, mem, arg(1), arg(2))?;
            mem.put_u32(out, n)?;
        }
        "sock_accept" => {
            let Sock::Listener(listener) = &entry.sock else {
                return Err(errno::INVAL);
            };
            let nonblocking = arg(1) as u16 & FDFLAGS_NONBLOCK != 0;
            // Check where the number goes before taking a connection.
            mem.range(arg(2), 4)?;
            ready_by_deadline(entry, deadline, PollFlags::IN)?;
            let (stream, _) = listener.accept().map_err(io_errno)?;
            // Accepted sockets do not inherit the listener's O_NONBLOCK.
            stream.set_nonblocking(nonblocking).map_err(io_errno)?;
            let new = socks.add_connection(stream, nonblocking)?;
            mem.put_u32(arg(2), new)?;
        }
        "sock_shutdown" => {
            let how = match arg(1) {
                1 => Shutdown::Read,
                2 => Shutdown::Write,
                3 => Shutdown::Both,
                _ => return Err(errno::INVAL),
            };
            entry.stream()?.shutdown(how).map_err(io_errno)?;
        }
        "fd_fdstat_get" => {
            let mut stat = [0u8; 24];
            stat[0] = FILETYPE_SOCKET_STREAM;
            let flags = if entry.nonblocking {
                FDFLAGS_NONBLOCK
            } else {
                0
            };
            stat[2..4].copy_from_slice(&flags.to_le_bytes());
            stat[8..16].copy_from_slice(&SOCKET_RIGHTS.to_le_bytes());
            stat[16..24].copy_from_slice(&SOCKET_RIGHTS.to_le_bytes());
            mem.put(arg(1), &stat)?;
        }
        "fd_fdstat_set_flags" => {
            let flags = arg(1) as u16;
            if flags & !FDFLAGS_NONBLOCK != 0 {
                return Err(errno::NOTSUP);
            }
            let nonblocking = flags & FDFLAGS_NONBLOCK != 0;
            match &entry.sock {
                Sock::Listener(l) => l.set_nonblocking(nonblocking),
                Sock::Stream(s) => s.set_nonblocking(nonblocking),
            }
            .map_err(io_errno)?;
            socks.entries.get_mut(&fd).ok_or(errno::BADF)?.nonblocking = nonblocking;
        }
        "fd_filestat_get" => {
            let mut stat = [0u8; 64];
            stat[16] = FILETYPE_SOCKET_STREAM;
            mem.put(arg(1), &stat)?;
        }
        "fd_prestat_get" => {
            if !matches!(entry.sock, Sock::Listener(_)) {
                return Err(errno::BADF);
            }
            let mut prestat = [0u8; 8];
            prestat[0] = PREOPENTYPE_SOCKET;
            mem.put(arg(1), &prestat)?;
        }
        "fd_prestat_dir_name" => return Err(errno::BADF),
        "fd_seek" | "fd_tell" | "fd_pread" | "fd_pwrite" | "fd_advise" | "fd_allocate" => {
            return Err(errno::SPIPE)
        }
        "fd_sync" | "fd_datasync" | "fd_filestat_set_size" | "fd_filestat_set_times" => {
            return Err(errno::INVAL)
        }
        n if n.starts_with("path_") || n == "fd_readdir" => return Err(errno::NOTDIR),
        _ => return Err(errno::NOTSUP),
    }
    Ok(())
}

/// Reads into the first non-empty buffer of the iovec array.
fn recv(
    stream: &TcpStream,
    mem: &mut Mem<'_>,
    iovs: u32,
    count: u32,
    flags: u32,
) -> Result<u32, i32> {
    let Some((buf, len)) = mem
        .iovecs(iovs, count)?
        .into_iter()
        .find(|&(_, len)| len > 0)
    else {
        return Ok(0);
    };
    let dst = mem.slice_mut(buf, len)?;
    let mut reader = stream;
    if flags & RIFLAGS_RECV_PEEK != 0 {
        return stream.peek(dst).map(|n| n as u32).map_err(io_errno);
    }
    let mut filled = 0;
    loop {
        let n = reader.read(&mut dst[filled..]).map_err(io_errno)?;
        filled += n;
        if n == 0 || filled == dst.len() || flags & RIFLAGS_RECV_WAITALL == 0 {
            return Ok(filled as u32);
        }
    }
}

fn send(stream: &TcpStream, mem: &Mem<'_>, iovs: u32, count: u32) -> Result<u32, i32> {
    let iovecs = mem.iovecs(iovs, count)?;
    let slices = iovecs
        .iter()
        .map(|&(buf, len)| mem.slice(buf, len).map(IoSlice::new))
        .collect::<Result<Vec<_>, i32>>()?;
    let mut writer = stream;
    writer
        .write_vectored(&slices)
        .map(|n| n as u32)
        .map_err(io_errno)
}

/// One subscription of `poll_oneoff`.
enum Sub {
    Clock { userdata: u64, after: Duration },
    Fd { userdata: u64, kind: u8, fd: u32 },
}

/// `poll_oneoff` when a subscription names one of the guest's sockets:
/// waits with poll(2) on the sockets and the earliest clock. Subscriptions
/// on other descriptors cannot be mixed in (`ENOTSUP`).
fn poll_oneoff(
    socks: &mut P1Sockets,
    mem: &mut Mem<'_>,
    subs_ptr: u32,
    events_ptr: u32,
    count: u32,
    written_ptr: u32,
) -> Option<i32> {
    let subs = match read_subscriptions(mem, subs_ptr, count) {
        Ok(s) => s,
        // Malformed input: let wasmtime-wasi give its usual answer.
        Err(_) => return None,
    };
    let ours = |fd: &u32| socks.entries.contains_key(fd);
    if !subs
        .iter()
        .any(|s| matches!(s, Sub::Fd { fd, .. } if ours(fd)))
    {
        return None;
    }
    if subs
        .iter()
        .any(|s| matches!(s, Sub::Fd { fd, .. } if !ours(fd)))
    {
        return Some(errno::NOTSUP);
    }
    Some(
        wait(socks, mem, &subs, events_ptr, written_ptr)
            .err()
            .unwrap_or(0),
    )
}

fn read_subscriptions(mem: &Mem<'_>, ptr: u32, count: u32) -> Result<Vec<Sub>, i32> {
    if count == 0 {
        return Err(errno::INVAL);
    }
    let mut subs = Vec::new();
    for i in 0..count {
        let base = ptr
            .checked_add(i.checked_mul(48).ok_or(errno::FAULT)?)
            .ok_or(errno::FAULT)?;
        let s = mem.slice(base, 48)?;
        let userdata = u64::from_le_bytes(s[0..8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_le_bytes(s[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(s[o..o + 8].try_into().expect("8 bytes"));
        subs.push(match s[8] {
            EVENTTYPE_CLOCK => {
                let (id, timeout) = (u32_at(16), u64_at(24));
                let flags = u16::from_le_bytes([s[40], s[41]]);
                let after = if flags & SUBCLOCKFLAGS_ABSTIME != 0 {
                    // Only the realtime clock has an epoch known here.
                    if id != CLOCK_REALTIME {
                        return Err(errno::NOTSUP);
                    }
                    let now = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default();
                    Duration::from_nanos(timeout).saturating_sub(now)
                } else {
                    Duration::from_nanos(timeout)
                };
                Sub::Clock { userdata, after }
            }
            kind @ (EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE) => Sub::Fd {
                userdata,
                kind,
                fd: u32_at(16),
            },
            _ => return Err(errno::INVAL),
        });
    }
    Ok(subs)
}

fn wait(
    socks: &P1Sockets,
    mem: &mut Mem<'_>,
    subs: &[Sub],
    events_ptr: u32,
    written_ptr: u32,
) -> Result<(), i32> {
    let start = Instant::now();
    let timeout = subs
        .iter()
        .filter_map(|s| match s {
            Sub::Clock { after, .. } => Some(*after),
            Sub::Fd { .. } => None,
        })
        .min();
    // The run's deadline bounds the wait too.
    let until_deadline = socks.deadline.map(|d| d.saturating_duration_since(start));
    let bound = match (timeout, until_deadline) {
        (Some(t), Some(d)) => Some(t.min(d)),
        (t, d) => t.or(d),
    };
    let fd_subs: Vec<(u64, u8, &Entry)> = subs
        .iter()
        .filter_map(|s| match s {
            Sub::Fd { userdata, kind, fd } => Some((*userdata, *kind, socks.entries.get(fd)?)),
            Sub::Clock { .. } => None,
        })
        .collect();
    let fds: Vec<BorrowedFd<'_>> = fd_subs.iter().map(|(_, _, e)| e.fd()).collect();
    let mut pollfds: Vec<PollFd<'_>> = fd_subs
        .iter()
        .zip(&fds)
        .map(|((_, kind, _), fd)| {
            let flags = if *kind == EVENTTYPE_FD_READ {
                PollFlags::IN
            } else {
                PollFlags::OUT
            };
            PollFd::new(fd, flags)
        })
        .collect();
    loop {
        let spec = bound.map(|t| timespec(t.saturating_sub(start.elapsed())));
        match rustix::event::poll(&mut pollfds, spec.as_ref()) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return Err(errno::IO),
        }
    }
    let mut events = Vec::new();
    for ((userdata, kind, _), pfd) in fd_subs.iter().zip(&pollfds) {
        let r = pfd.revents();
        if r.is_empty() {
            continue;
        }
        let ready = r.intersects(PollFlags::IN | PollFlags::OUT | PollFlags::HUP);
        let error = if ready { 0 } else { errno::IO as u16 };
        let flags = if r.contains(PollFlags::HUP) {
            EVENTRWFLAGS_HANGUP
        } else {
            0
        };
        events.push(event(*userdata, error, *kind, 1, flags));
    }
    if events.is_empty() && until_deadline.is_some_and(|d| start.elapsed() >= d) {
        return Err(errno::DEADLINE);
    }
    if events.is_empty() {
        let elapsed = start.elapsed();
        for s in subs {
            if let Sub::Clock { userdata, after } = s {
                if *after <= elapsed || Some(*after) == timeout {
                    events.push(event(*userdata, 0, EVENTTYPE_CLOCK, 0, 0));
                }
            }
        }
    }
    for (i, e) in events.iter().enumerate() {
        mem.put(
            events_ptr.checked_add(32 * i as u32).ok_or(errno::FAULT)?,
            e,
        )?;
    }
    mem.put_u32(written_ptr, events.len() as u32)
}

fn event(userdata: u64, error: u16, kind: u8, nbytes: u64, flags: u16) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0..8].copy_from_slice(&userdata.to_le_bytes());
    e[8..10].copy_from_slice(&error.to_le_bytes());
    e[10] = kind;
    e[16..24].copy_from_slice(&nbytes.to_le_bytes());
    e[24..26].copy_from_slice(&flags.to_le_bytes());
    e
}

fn io_errno(e: std::io::Error) -> i32 {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::WouldBlock => errno::AGAIN,
        K::Interrupted => errno::INTR,
        K::ConnectionReset => errno::CONNRESET,
        K::ConnectionAborted => errno::CONNABORTED,
        K::ConnectionRefused => errno::CONNREFUSED,
        K::NotConnected => errno::NOTCONN,
        K::BrokenPipe => errno::PIPE,
        K::TimedOut => errno::TIMEDOUT,
        K::InvalidInput => errno::INVAL,
        _ => errno::IO,
    }
}

/// The guest's linear memory, with bounds-checked access (`EFAULT`).
struct Mem<'a>(&'a mut [u8]);

impl Mem<'_> {
    fn range(&self, ptr: u32, len: u32) -> Result<std::ops::Range<usize>, i32> {
        let start = ptr as usize;
        let end = start.checked_add(len as usize).ok_or(errno::FAULT)?;
        if end > self.0.len() {
            return Err(errno::FAULT);
        }
        Ok(start..end)
    }

    fn slice(&self, ptr: u32, len: u32) -> Result<&[u8], i32> {
        let r = self.range(ptr, len)?;
        Ok(&self.0[r])
    }

    fn slice_mut(&mut self, ptr: u32, len: u32) -> Result<&mut [u8], i32> {
        let r = self.range(ptr, len)?;
        Ok(&mut self.0[r])
    }

    fn put(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), i32> {
        self.slice_mut(ptr, bytes.len() as u32)?
            .copy_from_slice(bytes);
        Ok(())
    }

    fn put_u32(&mut self, ptr: u32, v: u32) -> Result<(), i32> {
        self.put(ptr, &v.to_le_bytes())
    }

    /// An array of `count` (buffer, length) pairs at `ptr`.
    fn iovecs(&self, ptr: u32, count: u32) -> Result<Vec<(u32, u32)>, i32> {
        let raw = self.slice(ptr, count.checked_mul(8).ok_or(errno::FAULT)?)?;
        Ok(raw
            .chunks_exact(8)
            .map(|c| {
                (
                    u32::from_le_bytes(c[0..4].try_into().expect("4 bytes")),
                    u32::from_le_bytes(c[4..8].try_into().expect("4 bytes")),
                )
            })
            .collect())
    }
}

/// Binds the host side of each published TCP port, for a wasip1 guest.
pub(crate) fn listen(publish: &[super::network::PortMap]) -> std::io::Result<Vec<TcpListener>> {
    publish
        .iter()
        .map(|p| {
            let ip = p.host_ip.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
            TcpListener::bind((ip, p.host_port)).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("-p: cannot listen on {ip}:{}: {e}", p.host_port),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::time::Duration;

    use crate::digest::Digest;
    use crate::exec::network::NetworkPolicy;
    use crate::exec::wasm::{ModuleInput, Sandbox, WasmExecutor};
    use crate::exec::{Exit, RunOptions, Stdio};

    /// A hostile or careless guest gets errors, never the host's memory or
    /// a crash: each step exits with its number when it gets a wrong answer.
    const GUEST: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func $expect (param $got i32) (param $want i32) (param $step i32)
    (if (i32.ne (local.get $got) (local.get $want)) (then (call $exit (local.get $step)))))
  (func (export "_start") (local $fd i32)
    ;; the listener is a preopen, but not a directory
    (call $expect (call $prestat (i32.const 3) (i32.const 64)) (i32.const 0) (i32.const 1))
    (call $expect (i32.load8_u (i32.const 64)) (i32.const 1) (i32.const 2))
    ;; reading a listener: ENOTCONN
    (i32.store (i32.const 128) (i32.const 256))
    (i32.store (i32.const 132) (i32.const 16))
    (call $expect (call $read (i32.const 3) (i32.const 128) (i32.const 1) (i32.const 200))
      (i32.const 53) (i32.const 3))
    ;; seeking: ESPIPE; opening a path under it: ENOTDIR
    (call $expect (call $seek (i32.const 3) (i64.const 0) (i32.const 0) (i32.const 200))
      (i32.const 70) (i32.const 4))
    (call $expect (call $open (i32.const 3) (i32.const 0) (i32.const 256) (i32.const 1)
      (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 200))
      (i32.const 54) (i32.const 5))
    ;; accept with the result out of bounds: EFAULT, and no connection taken
    (call $expect (call $accept (i32.const 3) (i32.const 0) (i32.const 65534))
      (i32.const 21) (i32.const 6))
    (call $expect (call $accept (i32.const 3) (i32.const 0) (i32.const 300))
      (i32.const 0) (i32.const 7))
    (local.set $fd (i32.load (i32.const 300)))
    (call $expect (call $fdstat (local.get $fd) (i32.const 400)) (i32.const 0) (i32.const 8))
    (call $expect (i32.load8_u (i32.const 400)) (i32.const 6) (i32.const 9))
    ;; a buffer reaching past memory: EFAULT
    (i32.store (i32.const 128) (i32.const 65530))
    (i32.store (i32.const 132) (i32.const 100))
    (call $expect (call $write (local.get $fd) (i32.const 128) (i32.const 1) (i32.const 200))
      (i32.const 21) (i32.const 10))
    (i32.store16 (i32.const 256) (i32.const 0x6b6f))
    (i32.store (i32.const 128) (i32.const 256))
    (i32.store (i32.const 132) (i32.const 2))
    (call $expect (call $write (local.get $fd) (i32.const 128) (i32.const 1) (i32.const 200))
      (i32.const 0) (i32.const 11))
    ;; other descriptors still reach wasmtime-wasi
    (call $expect (call $fdstat (i32.const 1) (i32.const 400)) (i32.const 0) (i32.const 12))
    (call $expect (i32.ne (i32.load8_u (i32.const 400)) (i32.const 6)) (i32.const 1) (i32.const 13))
  )
)
"#;

    #[test]
    fn guest_mistakes_get_errors() {
        let root = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(root.path()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = format!("127.0.0.1:{port}:80");
        let client = std::thread::spawn(move || {
            for _ in 0..1000 {
                if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut got = String::new();
                    let _ = s.read_to_string(&mut got);
                    return got;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("never connected");
        });
        let options = RunOptions {
            network: NetworkPolicy::new(None, &[spec], &[]).unwrap(),
            stdout: Stdio::Capture,
            stderr: Stdio::Capture,
            ..RunOptions::default()
        };
        let bytes = GUEST.as_bytes().to_vec();
        let module = ModuleInput::Bytes {
            digest: Digest::of(&bytes),
            bytes,
        };
        let out = WasmExecutor::new(store)
            .run(
                &module,
                &["guest".into()],
                &[],
                &Sandbox::default(),
                &options,
            )
            .unwrap();
        assert_eq!(out.exit, Exit::Code(0), "the step that failed");
        assert_eq!(client.join().unwrap(), "ok");
    }
}
