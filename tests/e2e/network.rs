//! Networking for wasm guests: `-p`, `--allow-net`, `--network`, enforced
//! at the WASI layer (spec/network.md), with the tcp-echo example guest.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::harness::Env;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends a line to 127.0.0.1:port and returns the answer line.
fn echo_through(port: u16, text: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    writeln!(s, "{text}").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}

/// A guest echo server; killed on drop.
struct Server(Child);

impl Server {
    fn start(env: &Env, args: &[&str]) -> Server {
        Server::start_saying(env, args, "listening\n")
    }

    /// Starts a guest server and waits for its first line, `first`.
    fn start_saying(env: &Env, args: &[&str], first_line: &str) -> Server {
        let mut child = env
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(first, first_line, "the guest did not listen");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn published_ports_reach_a_guest_server() {
    let env = Env::new();
    env.build_example("tcp-echo", "tcp-echo");
    let port = free_port();
    let p = port.to_string();
    let spec = format!("{p}:{p}");
    let _srv = Server::start(&env, &["run", "-p", &spec, "tcp-echo", "serve", &p]);
    assert_eq!(echo_through(port, "hello"), "echo: hello\n");
    assert_eq!(echo_through(port, "again"), "echo: again\n");

    // Host port and guest port differ: wharf relays to the guest port on
    // loopback, and the guest may bind only loopback there.
    let (host, guest) = (free_port(), free_port());
    let spec = format!("127.0.0.1:{host}:{guest}");
    let g = guest.to_string();
    let _fwd = Server::start(
        &env,
        &["run", "-p", &spec, "tcp-echo", "serve", &g, "127.0.0.1"],
    );
    assert_eq!(echo_through(host, "relayed"), "echo: relayed\n");
    let r = env.wharf(&[
        "run",
        "-p",
        &format!("{}:{g}", free_port()),
        "tcp-echo",
        "serve",
        &g,
    ]);
    assert_eq!(r.code, 1, "binding 0.0.0.0 on a relayed port: {}", r.stderr);
    assert!(r.stderr.contains("bind 127.0.0.1"), "{}", r.stderr);
}

#[test]
fn a_guest_answers_datagrams_on_a_published_udp_port() {
    let env = Env::new();
    env.build_example("tcp-echo", "tcp-echo");
    let port = free_port();
    let p = port.to_string();
    let spec = format!("{p}:{p}/udp");
    let _srv = Server::start(&env, &["run", "-p", &spec, "tcp-echo", "udp", &p]);
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The guest may reply to whoever sent it a datagram, without
    // --allow-net (as a published port allows in Docker).
    client.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"echo: ping");
    assert_eq!(from.port(), port);
}

#[test]
fn a_guest_cannot_listen_on_an_unpublished_port() {
    let env = Env::new();
    env.build_example("tcp-echo", "tcp-echo");
    let p = free_port().to_string();
    let r = env.wharf(&["run", "tcp-echo", "serve", &p]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("error:"), "{}", r.stdout);
    assert!(r.stderr.contains("not published"), "{}", r.stderr);
}

/// A loopback echo server run by the test (not a guest).
fn host_echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut line = String::new();
            let mut r = BufReader::new(&conn);
            if r.read_line(&mut line).is_ok() {
                let _ = write!(&conn, "host says: {line}");
            }
        }
    });
    port
}

#[test]
fn outgoing_connections_are_denied_unless_allowed() {
    let env = Env::new();
    env.build_example("tcp-echo", "tcp-echo");
    let port = host_echo_server();
    let addr = format!("127.0.0.1:{port}");
    // Deny by default: an error for the guest, one log line, no crash.
    let r = env.wharf(&["run", "tcp-echo", "connect", &addr, "hi"]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("error:"), "{}", r.stdout);
    assert_eq!(
        r.stderr.matches("refused an outgoing connection").count(),
        1,
        "{}",
        r.stderr
    );
    // Exactly the allowed destination.
    let ok = env
        .wharf(&[
            "run",
            "--allow-net",
            &addr,
            "tcp-echo",
            "connect",
            &addr,
            "hi",
        ])
        .ok();
    assert_eq!(ok.stdout, "host says: hi\n");
    let other = format!("127.0.0.1:{}", free_port());
    let r = env.wharf(&[
        "run",
        "--allow-net",
        &other,
        "tcp-echo",
        "connect",
        &addr,
        "hi",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains(&format!("refused a connection to {addr}")),
        "{}",
        r.stderr
    );
    // CIDR blocks, and --network host.
    env.wharf(&[
        "run",
        "--allow-net",
        "127.0.0.0/8",
        "tcp-echo",
        "connect",
        &addr,
        "x",
    ])
    .ok();
    env.wharf(&[
        "run",
        "--network",
        "host",
        "tcp-echo",
        "connect",
        &addr,
        "x",
    ])
    .ok();
}

#[test]
fn bad_network_flags_and_preview1_listeners_fail_clearly() {
    let env = Env::new();
    env.build_example("tcp-echo", "tcp-echo");
    env.build_example("hello", "hello");
    env.wharf(&["run", "-p", "0:80", "tcp-echo"])
        .fails(125, "ports must be 1-65535");
    env.wharf(&["run", "--allow-net", "10.0.0.0/99", "tcp-echo"])
        .fails(125, "bad prefix length");
    env.wharf(&["run", "--network", "bridge0", "tcp-echo"])
        .fails(125, "none (the default) or host");
    env.wharf(&["run", "-p", "8080:80/udp", "hello"])
        .fails(125, "needs a WASI preview 2 component");
}

#[test]
fn preview1_guests_serve_on_preopened_listeners() {
    let env = Env::new();
    env.build_example("tcp-listen", "tcp-listen");
    let (a, b) = (free_port(), free_port());
    let mut srv = Server::start_saying(
        &env,
        &[
            "run",
            "-p",
            &format!("127.0.0.1:{a}:80"),
            "-p",
            &format!("{b}:81"),
            "tcp-listen",
        ],
        "listening on 2 socket(s)\n",
    );
    // The greeting is read from /etc/greeting in the image: the directory
    // preopens still work beside the sockets at descriptors 3 and 4.
    assert_eq!(echo_through(a, "hello"), "ahoy: hello\n");
    assert_eq!(echo_through(b, "there"), "ahoy: there\n");

    // Two open connections at once, served from the guest's poll loop.
    let open = |port: u16| {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    };
    let (mut one, mut two) = (open(a), open(b));
    writeln!(one, "one").unwrap();
    writeln!(two, "two").unwrap();
    writeln!(one, "one again").unwrap();
    let mut r1 = BufReader::new(one.try_clone().unwrap());
    let mut r2 = BufReader::new(two.try_clone().unwrap());
    let mut line = String::new();
    r2.read_line(&mut line).unwrap();
    assert_eq!(line, "ahoy: two\n");
    for want in ["ahoy: one\n", "ahoy: one again\n"] {
        line.clear();
        r1.read_line(&mut line).unwrap();
        assert_eq!(line, want);
    }
    // `stop` ends the guest, and its exit code is wharf's.
    writeln!(two, "stop").unwrap();
    let status = srv.0.wait().unwrap();
    assert!(status.success(), "guest exit: {status}");
    // The host side closed with it.
    assert!(TcpStream::connect(("127.0.0.1", a)).is_err());
}

#[test]
fn a_preview1_guest_blocked_on_its_sockets_still_times_out() {
    let env = Env::new();
    env.build_example("tcp-listen", "tcp-listen");
    let port = free_port();
    env.wharf(&[
        "run",
        "--timeout",
        "1s",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "tcp-listen",
    ])
    .fails(124, "timeout of 1s exceeded");
    // Without -p the guest has no socket and says so.
    let r = env.wharf(&["run", "tcp-listen"]);
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(r.stderr.contains("no pre-opened sockets"), "{}", r.stderr);
}
