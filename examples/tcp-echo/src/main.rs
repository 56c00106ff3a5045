//! `tcp-echo`: a TCP echo server and client over `wasi:sockets` (Rust std
//! on `wasm32-wasip2`), for wharf's network tests.
//!
//! - `tcp-echo serve PORT [ADDR]`: listens on ADDR:PORT (default
//!   0.0.0.0), prints `listening`, and echoes each line back with an
//!   `echo: ` prefix, forever;
//! - `tcp-echo connect HOST:PORT TEXT`: sends TEXT, prints the answer, or
//!   `error: ...` and exits 1 when the connection is refused;
//! - `tcp-echo udp PORT`: binds UDP 0.0.0.0:PORT, prints `listening`, and
//!   answers each datagram with `echo: ` and its content, forever.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};

fn serve(port: &str, addr: &str) {
    let listener = match TcpListener::bind(format!("{addr}:{port}")) {
        Ok(l) => l,
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("listening");
    let _ = std::io::stdout().flush();
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        for line in BufReader::new(&conn).lines() {
            let Ok(line) = line else { break };
            if writeln!(&conn, "echo: {line}").is_err() {
                break;
            }
        }
    }
}

fn udp(port: &str) {
    let socket = match UdpSocket::bind(format!("0.0.0.0:{port}")) {
        Ok(s) => s,
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    };
    println!("listening");
    let _ = std::io::stdout().flush();
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let mut answer = b"echo: ".to_vec();
        answer.extend_from_slice(&buf[..n]);
        if let Err(e) = socket.send_to(&answer, peer) {
            eprintln!("reply to {peer}: {e}");
        }
    }
}

fn connect(addr: &str, text: &str) {
    let result = TcpStream::connect(addr).and_then(|mut s| {
        writeln!(s, "{text}")?;
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer)?;
        Ok(answer)
    });
    match result {
        Ok(a) => print!("{a}"),
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", port] => serve(port, "0.0.0.0"),
        ["serve", port, addr] => serve(port, addr),
        ["connect", addr, text] => connect(addr, text),
        ["udp", port] => udp(port),
        _ => {
            eprintln!("usage: tcp-echo serve PORT [ADDR] | connect HOST:PORT TEXT | udp PORT");
            std::process::exit(2);
        }
    }
}
