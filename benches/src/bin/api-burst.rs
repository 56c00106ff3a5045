//! A burst of short containers through the Docker Engine API, as
//! `benches/daemon.sh` measures it: N containers, C at a time, each
//! created, started, waited for and removed over a daemon's Unix socket,
//! one keep-alive connection per worker.
//!
//! A client of its own (plain HTTP/1.1 over `std`), since the rate being
//! measured is above what a Python client can issue (decision 0012).
//!
//! Usage: api-burst SOCKET N C IMAGE [ARG...]
//! Prints `N SECONDS` on success; any failed request or non-zero exit
//! code is an error naming the container.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Conn {
    fn open(socket: &str) -> std::io::Result<Conn> {
        let writer = UnixStream::connect(socket)?;
        Ok(Conn {
            reader: BufReader::new(writer.try_clone()?),
            writer,
        })
    }

    /// One request; the status and body of its response.
    fn call(&mut self, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
        let request = format!(
            "{method} /v1.43{path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.writer
            .write_all(request.as_bytes())
            .map_err(|e| format!("{method} {path}: {e}"))?;
        self.response().map_err(|e| format!("{method} {path}: {e}"))
    }

    fn response(&mut self) -> std::io::Result<(u16, String)> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.trim().eq_ignore_ascii_case("chunked");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = length {
            body.resize(length, 0);
            self.reader.read_exact(&mut body)?;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

fn task(conn: &mut Conn, create: &str) -> Result<(), String> {
    let expect = |(status, body): (u16, String), what: &str| {
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(format!("{what}: {status} {body}"))
        }
    };
    let created = expect(conn.call("POST", "/containers/create", create)?, "create")?;
    let created: serde_json::Value =
        serde_json::from_str(&created).map_err(|e| format!("create: {e}: {created}"))?;
    let id = created["Id"]
        .as_str()
        .ok_or_else(|| format!("create: no Id in {created}"))?
        .to_owned();
    expect(
        conn.call("POST", &format!("/containers/{id}/start"), "")?,
        "start",
    )?;
    let waited = expect(
        conn.call("POST", &format!("/containers/{id}/wait"), "")?,
        "wait",
    )?;
    let code = serde_json::from_str::<serde_json::Value>(&waited).ok();
    if code.as_ref().and_then(|w| w["StatusCode"].as_i64()) != Some(0) {
        return Err(format!("container {id}: {waited}"));
    }
    expect(
        conn.call("DELETE", &format!("/containers/{id}"), "")?,
        "remove",
    )?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: api-burst SOCKET N C IMAGE [ARG...]");
        std::process::exit(2);
    }
    let (socket, image) = (&args[0], &args[3]);
    let n: usize = args[1].parse().expect("N is a number");
    let c: usize = args[2].parse().expect("C is a number");
    let create = serde_json::json!({ "Image": image, "Cmd": args[4..] }).to_string();
    let left = AtomicUsize::new(n);
    let start = Instant::now();
    let failed = std::thread::scope(|s| {
        let workers: Vec<_> = (0..c)
            .map(|_| {
                s.spawn(|| -> Result<(), String> {
                    let mut conn = Conn::open(socket).map_err(|e| format!("{socket}: {e}"))?;
                    while left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                        .is_ok()
                    {
                        task(&mut conn, &create)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.join().expect("worker panicked").err())
            .next()
    });
    if let Some(e) = failed {
        eprintln!("api-burst: {e}");
        std::process::exit(1);
    }
    println!("{n} {:.3}", start.elapsed().as_secs_f64());
}
