//! `wharf serve`: a wasi:http component answering real HTTP requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::Env;

/// A running `wharf serve`, killed on drop; its stderr lines are collected.
struct Serving {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Serving {
    fn start(env: &Env, args: &[&str]) -> Serving {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = env
            .cmd(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Serving {
            child,
            addr: String::new(),
            lines,
            seen: Vec::new(),
        };
        let line = s.wait_for("listening on http://");
        s.addr = line.rsplit("http://").next().unwrap().to_owned();
        s
    }

    /// Waits (up to 60 s) for a stderr line containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no {needle:?} on stderr: {:?}", self.seen),
            }
        }
    }

    /// One HTTP/1.1 GET: (status, body).
    fn get(&self, path: &str) -> (u16, String) {
        get(&self.addr, path)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

#[test]
fn serves_a_component_per_request_and_survives_traps_and_timeouts() {
    let env = Env::new();
    env.build_example("http-hello", "http-hello");
    let mut srv = Serving::start(
        &env,
        &["--timeout", "1s", "-e", "GREETING=ahoy", "http-hello"],
    );
    assert_eq!(
        srv.get("/hi?x=1"),
        (
            200,
            "Hello from a wharf HTTP component!\npath: /hi?x=1\n".into()
        )
    );
    // wasi:cli environment, as Rust's std uses it.
    assert_eq!(srv.get("/env/GREETING"), (200, "ahoy\n".into()));
    assert_eq!(srv.get("/env/HOME").0, 404, "host env must not leak");
    // A trap ends that request only.
    let (status, body) = srv.get("/trap");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("trap"), "{body}");
    assert_eq!(srv.get("/after-trap").0, 200);
    // A guest that never returns is stopped at the deadline.
    let (status, body) = srv.get("/slow");
    assert_eq!(status, 504, "{body}");
    assert_eq!(srv.get("/after-timeout").0, 200);
    // One access log line per request.
    srv.wait_for("GET /after-timeout 200");
    assert!(
        srv.seen.iter().any(|l| l.starts_with("GET /trap 500")),
        "{:?}",
        srv.seen
    );
    assert!(
        srv.seen.iter().any(|l| l.starts_with("GET /slow 504")),
        "{:?}",
        srv.seen
    );
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits() {
    let env = Env::new();
    env.build_example("http-hello", "http-hello");
    let mut srv = Serving::start(&env, &["--timeout", "2s", "http-hello"]);
    let addr = srv.addr.clone();
    let slow = std::thread::spawn(move || get(&addr, "/slow"));
    // Let the request reach the guest, then ask the server to stop.
    std::thread::sleep(Duration::from_millis(500));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &srv.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    srv.wait_for("shutting down");
    let (status, _) = slow.join().unwrap();
    assert_eq!(status, 504, "the request in flight got its answer");
    let code = srv.child.wait().unwrap();
    assert!(code.success(), "{code:?}");
}

#[test]
fn serve_refuses_components_that_are_not_proxies() {
    let env = Env::new();
    env.build_example("hello-p2", "hello-p2");
    env.wharf(&["serve", "--listen", "127.0.0.1:0", "hello-p2"])
        .fails(126, "wasi:http/incoming-handler");
}

/// One HTTP/1.1 POST with a body and a user agent: (status, head, body).
fn post(addr: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: wharf-test\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn wasip1_programs_answer_in_the_cgi_convention() {
    let env = Env::new();
    env.build_example("cgi-hello", "cgi-hello");
    let mut srv = Serving::start(&env, &["--timeout", "2s", "cgi-hello"]);
    let (status, head, body) = post(&srv.addr, "/echo?x=1&y=2", "payload");
    assert_eq!(status, 200);
    assert!(head.contains("x-handler: cgi-hello"), "{head}");
    assert_eq!(
        body,
        "Hello from a wharf CGI handler!\nmethod: POST\npath: /echo\nquery: x=1&y=2\n\
         user-agent: wharf-test\nbody: payload\n"
    );
    assert_eq!(srv.get("/teapot"), (418, "short and stout\n".into()));
    assert_eq!(srv.get("/trap").0, 500);
    assert_eq!(srv.get("/after").0, 200, "the server keeps serving");
    srv.wait_for("GET /after 200");

    // A program that does not write CGI headers is a 500, not a crash.
    env.build_example("hello", "hello");
    let srv = Serving::start(&env, &["hello"]);
    let (status, body) = srv.get("/");
    assert_eq!(status, 500);
    assert!(body.contains("malformed CGI response"), "{body}");
}

/// A loopback HTTP server run by the test: answers every request with
/// `upstream-body`. Returns its port.
fn upstream() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nupstream-body",
            );
        }
    });
    port
}

#[test]
fn outgoing_http_is_denied_unless_allowed() {
    let env = Env::new();
    env.build_example("http-hello", "http-hello");
    let port = upstream();
    let path = format!("/fetch/127.0.0.1:{port}/x");
    {
        let mut srv = Serving::start(&env, &["http-hello"]);
        let (status, body) = srv.get(&path);
        assert_eq!(status, 502, "{body}");
        assert!(body.contains("Denied"), "{body}");
        srv.wait_for("not allowed by --allow-net");
    }
    let allow = format!("127.0.0.1:{port}");
    let srv = Serving::start(&env, &["--allow-net", &allow, "http-hello"]);
    assert_eq!(srv.get(&path), (200, "upstream 200: upstream-body".into()));
    // Another port on the same host is still refused.
    let other = format!("/fetch/127.0.0.1:{}/x", port.wrapping_add(1).max(1));
    assert_eq!(srv.get(&other).0, 502);
}
