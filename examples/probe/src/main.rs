//! `probe`: a small multi-tool guest used by wharf's end-to-end tests to look
//! at the sandbox from the inside.
//!
//! Usage: `probe SUBCOMMAND [ARGS...]`. Every operation prints its result on
//! stdout (one line per operation). See README.md for the full list.
//!
//! Conventions:
//! * mutating file operations (`write`, `append`, `truncate`, `rm`, `mkdir`,
//!   `rename`, `hardlink`, `symlink`) print `ok` on success, or
//!   `error: <ErrorKind>: <message>` on stdout and exit with code 1;
//! * read operations whose stdout is data (`cat`, `ls`, `pwd`) print
//!   `error: <ErrorKind>: <message>` on stderr and exit with code 1;
//! * bad usage prints a message on stderr and exits with code 2.

use std::fs::{self, OpenOptions};
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process;

const MIB: usize = 1 << 20;

fn usage() -> ! {
    eprintln!(
        "usage: probe <command> [args...]\n\
         commands:\n  \
           cat PATH | write PATH TEXT | append PATH TEXT | truncate PATH\n  \
           rm PATH | mkdir PATH | rename FROM TO | hardlink FROM TO\n  \
           symlink TARGET LINK | ls PATH | exists PATH | env | args ...\n  \
           pwd | exit N | stdin | wait-cat PATH | tick N MS | stderr TEXT | alloc MB | spin | trap"
    );
    process::exit(2);
}

/// Formats an I/O error as `<ErrorKind>: <message>`.
fn describe(err: &io::Error) -> String {
    format!("{:?}: {}", err.kind(), err)
}

/// Reports the outcome of a mutating operation on stdout.
fn report(result: io::Result<()>) -> ! {
    match result {
        Ok(()) => {
            println!("ok");
            finish(0)
        }
        Err(err) => {
            println!("error: {}", describe(&err));
            finish(1)
        }
    }
}

/// Reports a failed read-style operation on stderr.
fn fail(err: io::Error) -> ! {
    eprintln!("error: {}", describe(&err));
    finish(1)
}

/// Flushes stdout before exiting so nothing buffered is lost.
fn finish(code: i32) -> ! {
    let _ = io::stdout().flush();
    process::exit(code)
}

/// Returns exactly `N` arguments or exits with a usage error.
fn take<const N: usize>(rest: &[String]) -> [&str; N] {
    if rest.len() != N {
        usage();
    }
    std::array::from_fn(|i| rest[i].as_str())
}

fn remove(path: &str) -> io::Result<()> {
    // Remove the entry itself; never follow a symlink to its target.
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir(path)
    } else {
        fs::remove_file(path)
    }
}

// `std::os::wasi::fs::symlink_path` is still unstable, so call wasi-libc's
// POSIX `symlink` directly; it resolves both paths against the preopened
// directories exactly like the rest of std's file APIs do.
extern "C" {
    fn symlink(target: *const std::ffi::c_char, link: *const std::ffi::c_char) -> std::ffi::c_int;
}

fn make_symlink(target: &str, link: &str) -> io::Result<()> {
    use std::ffi::CString;
    let invalid = |_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte");
    let target = CString::new(target).map_err(invalid)?;
    let link = CString::new(link).map_err(invalid)?;
    // SAFETY: both pointers are valid NUL-terminated strings for the call.
    if unsafe { symlink(target.as_ptr(), link.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn cat(path: &str) -> io::Result<()> {
    let data = fs::read(path)?;
    io::stdout().write_all(&data)
}

fn ls(path: &str) -> io::Result<()> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let mut out = io::stdout().lock();
    for name in names {
        writeln!(out, "{name}")?;
    }
    Ok(())
}

fn alloc(mib: usize) {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for done in 0..mib {
        let mut chunk: Vec<u8> = Vec::new();
        if chunk.try_reserve_exact(MIB).is_err() || chunks.try_reserve(1).is_err() {
            eprintln!("error: allocation failed after {done} MiB");
            finish(1);
        }
        // Touch every byte so the memory is really in use.
        chunk.resize(MIB, (done as u8) | 1);
        chunks.push(black_box(chunk));
    }
    black_box(&chunks);
    println!("allocated");
    // `chunks` stays alive until here.
    drop(chunks);
}

fn spin() -> ! {
    // No syscalls, just pure computation that the optimiser cannot remove.
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        usage();
    };

    match cmd.as_str() {
        "cat" => {
            let [path] = take(rest);
            if let Err(err) = cat(path) {
                fail(err);
            }
        }
        "write" => {
            let [path, text] = take(rest);
            report(fs::write(path, text));
        }
        "append" => {
            let [path, text] = take(rest);
            report(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(text.as_bytes())),
            );
        }
        "truncate" => {
            // Open an existing file with O_TRUNC and write nothing.
            let [path] = take(rest);
            report(
                OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(path)
                    .map(drop),
            );
        }
        "rm" => {
            let [path] = take(rest);
            report(remove(path));
        }
        "mkdir" => {
            let [path] = take(rest);
            report(fs::create_dir(path));
        }
        "rename" => {
            let [from, to] = take(rest);
            report(fs::rename(from, to));
        }
        "hardlink" => {
            let [from, to] = take(rest);
            report(fs::hard_link(from, to));
        }
        "symlink" => {
            let [target, link] = take(rest);
            report(make_symlink(target, link));
        }
        "ls" => {
            let [path] = take(rest);
            if let Err(err) = ls(path) {
                fail(err);
            }
        }
        "exists" => {
            let [path] = take(rest);
            let found = fs::symlink_metadata(Path::new(path)).is_ok();
            println!("{}", if found { "yes" } else { "no" });
        }
        "env" => {
            take::<0>(rest);
            let mut vars: Vec<(String, String)> = std::env::vars().collect();
            vars.sort();
            for (key, value) in vars {
                println!("{key}={value}");
            }
        }
        "args" => {
            for arg in rest {
                println!("{arg}");
            }
        }
        "pwd" => {
            take::<0>(rest);
            match std::env::current_dir() {
                Ok(dir) => println!("{}", dir.display()),
                Err(err) => fail(err),
            }
        }
        "exit" => {
            let [code] = take(rest);
            let Ok(code) = code.parse::<i32>() else {
                eprintln!("error: exit code must be an integer, got {code:?}");
                process::exit(2);
            };
            finish(code);
        }
        "stdin" => {
            take::<0>(rest);
            let mut stdin = io::stdin().lock();
            let mut stdout = io::stdout().lock();
            let mut buf = [0u8; 8192];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Err(err) = stdout.write_all(&buf[..n]) {
                            drop(stdout);
                            fail(err);
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => {
                        drop(stdout);
                        fail(err);
                    }
                }
            }
        }
        "wait-cat" => {
            // Blocks until stdin closes, then prints PATH: lets a test act
            // on the store while the guest is running.
            let [path] = take(rest);
            let mut sink = Vec::new();
            let _ = io::stdin().lock().read_to_end(&mut sink);
            if let Err(err) = cat(path) {
                fail(err);
            }
        }
        "tick" => {
            // Prints `tick I` N times (0: for ever), sleeping MS between:
            // a long-running container for lifecycle tests.
            let [n, ms] = take(rest);
            let n: u64 = n.parse().unwrap_or_else(|_| usage());
            let ms: u64 = ms.parse().unwrap_or_else(|_| usage());
            let mut i = 0;
            while n == 0 || i < n {
                i += 1;
                println!("tick {i}");
                let _ = io::stdout().flush();
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            finish(0)
        }
        "stderr" => {
            let [text] = take(rest);
            eprintln!("{text}");
        }
        "alloc" => {
            let [mib] = take(rest);
            let Ok(mib) = mib.parse::<usize>() else {
                eprintln!("error: MB must be a non-negative integer, got {mib:?}");
                process::exit(2);
            };
            alloc(mib);
        }
        "spin" => {
            take::<0>(rest);
            spin();
        }
        "trap" => {
            take::<0>(rest);
            let _ = io::stdout().flush();
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_arch = "wasm32"))]
            process::abort();
        }
        _ => usage(),
    }
    finish(0);
}
