//! Registries for the pull/push tests (spec/registry.md).
//!
//! - [`Registry`]: the real CNCF distribution registry (`docker-registry`,
//!   Debian's 2.8) on an ephemeral port, plain, with TLS and basic auth, or
//!   with token auth served by an in-process token server (over HTTP, or
//!   over HTTPS with the realm still on HTTP).
//! - [`Hostile`]: an in-process HTTP server scripted by the test, for the
//!   cases a well-behaved registry never produces.
//! - [`TinyImage`] and [`busybox_oci_image`]: image content for both.
//!
//! Everything here uses std networking and the `openssl`, `htpasswd`,
//! `skopeo` and `umoci` command-line tools; no TLS or JWT crates.
//!
//! The `harness_*` tests at the end check the harness itself against
//! skopeo (they need no wharf binary), so a failure in `registry.rs` points
//! at wharf, not at the setup.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::{require, Env};

/// The token service name the registry and the token server agree on.
pub const TOKEN_SERVICE: &str = "wharf-test";
/// The `iss` claim of the tokens.
pub const TOKEN_ISSUER: &str = "wharf-test-issuer";

// ---------------------------------------------------------------------------
// Small helpers: digests, base64, processes, addresses.

/// `sha256:<hex>` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))
    )
}

/// The hex part of a `sha256:` digest.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

/// The 12-hex-character short form of a digest, as progress lines print it.
pub fn short(digest: &str) -> &str {
    &hex_of(digest)[..12]
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64_with(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding (Docker's `auth` field, Basic credentials).
pub fn base64(data: &[u8]) -> String {
    b64_with(data, B64, true)
}

/// base64url without padding (JWT segments).
pub fn base64url(data: &[u8]) -> String {
    b64_with(data, B64URL, false)
}

/// Decodes standard base64 (padding optional); `None` when malformed.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = B64.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    Some(out)
}

/// The value of an `Authorization: Basic` header for `user:pass`.
pub fn basic_auth(user: &str, pass: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))
}

/// Runs a command and panics with its output unless it succeeds.
#[track_caller]
fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A port that was free a moment ago (bind port 0, read it, close).
fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The machine's first non-loopback IPv4 address, if it has one: the
/// source address of the default route, else the first from `hostname -I`.
pub fn nonloopback_ipv4() -> Option<Ipv4Addr> {
    let usable = |ip: &Ipv4Addr| !ip.is_loopback() && !ip.is_unspecified() && !ip.is_link_local();
    // connect() on UDP sends nothing; it only picks the route.
    if let Ok(sock) = UdpSocket::bind("0.0.0.0:0") {
        if sock.connect("192.0.2.1:9").is_ok() || sock.connect("8.8.8.8:53").is_ok() {
            if let Ok(SocketAddr::V4(a)) = sock.local_addr() {
                if usable(a.ip()) {
                    return Some(*a.ip());
                }
            }
        }
    }
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse::<Ipv4Addr>().ok())
        .find(usable)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Waits up to 2 s for a file to stop growing (a server that has answered
/// may not have written its log line yet), then returns its content.
fn settled(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = std::fs::read_to_string(path).unwrap_or_default();
    loop {
        std::thread::sleep(Duration::from_millis(150));
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if now.len() == last.len() || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 server: one request per connection, `Connection:
// close` on every answer. Enough for reqwest, skopeo and the registry.

/// One request a [`Hostile`] server or the token server received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// Header names are lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }

    /// The query string, without `?`.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Decoded values of a query parameter (`+` and `%XX`).
    pub fn query_values(&self, key: &str) -> Vec<String> {
        self.query()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| percent_decode(v))
            .collect()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send only this many body bytes, then close the connection (the
    /// `Content-Length` still announces the whole body).
    pub truncate_after: Option<usize>,
    /// Send no `Content-Length`: the body ends when the connection closes.
    pub no_length: bool,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            truncate_after: None,
            no_length: false,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn json(self, v: &serde_json::Value) -> Reply {
        self.header("Content-Type", "application/json")
            .body(v.to_string())
    }

    pub fn truncate_after(mut self, n: usize) -> Reply {
        self.truncate_after = Some(n);
        self
    }

    pub fn without_length(mut self) -> Reply {
        self.no_length = true;
        self
    }

    /// A distribution-style error: `{"errors":[{"code","message"}]}`.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::new(status).json(&serde_json::json!({
            "errors": [{ "code": code, "message": message, "detail": null }]
        }))
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply::new(status).header("Location", location)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        _ => "Whatever",
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Connections that opened with a TLS ClientHello.
    tls_hellos: Arc<AtomicU64>,
}

impl Server {
    fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let tls_hellos = Arc::new(AtomicU64::new(0));
        let (stop2, hellos2) = (stop.clone(), tls_hellos.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (handler, hellos) = (handler.clone(), hellos2.clone());
                std::thread::spawn(move || serve_conn(conn, &handler, &hellos));
            }
        });
        Server {
            addr,
            stop,
            thread: Some(thread),
            tls_hellos,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_conn(conn: TcpStream, handler: &Handler, hellos: &AtomicU64) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(20)));
    let mut first = [0u8; 1];
    match conn.peek(&mut first) {
        Ok(1) => {}
        _ => return,
    }
    if first[0] == 0x16 {
        // A TLS ClientHello on a plain-HTTP port: answer as Go's net/http
        // does (and so as docker-registry without TLS does), so clients
        // see a failed handshake and may fall back to HTTP.
        hellos.fetch_add(1, Ordering::SeqCst);
        let mut c = conn;
        let mut buf = [0u8; 16384];
        let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = c.read(&mut buf);
        let _ = c.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request",
        );
        let _ = c.shutdown(Shutdown::Write);
        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        return;
    }
    let mut reader = BufReader::new(conn);
    let req = match read_request(&mut reader) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(_) => {
            let mut c = reader.into_inner();
            let _ = c.write_all(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            );
            return;
        }
    };
    let reply = handler(&req);
    let mut conn = reader.into_inner();
    write_reply(&mut conn, &req.method, &reply);
}

fn read_request(r: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("bad request line"));
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(bad("eof in headers"));
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').ok_or_else(|| bad("bad header"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let size = size.trim().split(';').next().unwrap_or("");
            let n = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                // chunk holds the first two bytes of the (empty) trailer.
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = get("content-length") {
        let n: usize = n.parse().map_err(|_| bad("bad content-length"))?;
        if n > 512 << 20 {
            return Err(bad("body too large"));
        }
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some(Request {
        method,
        target,
        headers,
        body,
    }))
}

fn write_reply(conn: &mut TcpStream, method: &str, reply: &Reply) {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    let mut has_length = false;
    for (k, v) in &reply.headers {
        has_length |= k.eq_ignore_ascii_case("content-length");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length && !reply.no_length {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    if method != "HEAD" {
        let n = reply
            .truncate_after
            .unwrap_or(reply.body.len())
            .min(reply.body.len());
        let _ = conn.write_all(&reply.body[..n]);
    }
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------------------
// Hostile: a scripted registry.

#[derive(Default)]
struct Script {
    routes: HashMap<(String, String), Reply>,
    /// When set, every request without exactly the expected
    /// `Authorization` value gets a `401` with this guard's challenge.
    guard: Option<Guard>,
    requests: Vec<Request>,
}

enum Guard {
    /// The whole `Authorization` value expected.
    Basic(String),
    /// `Bearer TOKEN` expected; the challenge names the realm, the service
    /// and `repository:NAME:pull` for the path asked.
    Bearer {
        token: String,
        realm: String,
        service: String,
    },
}

/// The repository of `/v2/NAME/manifests/..` or `/v2/NAME/blobs/..`.
fn repository_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    let end = rest
        .rfind("/manifests/")
        .or_else(|| rest.rfind("/blobs/"))?;
    Some(&rest[..end])
}

/// An in-process registry that answers what the test scripted: a map from
/// (method, path) to a [`Reply`]. `GET /v2/` answers `200 {}` unless
/// scripted; anything else unscripted is a distribution-style `404`. `HEAD`
/// falls back to the `GET` route without the body. Every request is
/// recorded.
pub struct Hostile {
    server: Server,
    script: Arc<Mutex<Script>>,
}

impl Hostile {
    pub fn start() -> Hostile {
        let script = Arc::new(Mutex::new(Script::default()));
        let s = script.clone();
        let handler: Handler = Arc::new(move |req: &Request| {
            let mut s = s.lock().unwrap();
            s.requests.push(req.clone());
            let auth = req.header("authorization");
            match &s.guard {
                Some(Guard::Basic(expected)) if auth != Some(expected.as_str()) => {
                    return Reply::error(401, "UNAUTHORIZED", "authentication required")
                        .header("WWW-Authenticate", "Basic realm=\"hostile\"");
                }
                Some(Guard::Bearer {
                    token,
                    realm,
                    service,
                }) if auth != Some(format!("Bearer {token}").as_str()) => {
                    let mut challenge = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
                    if let Some(repo) = repository_of(req.path()) {
                        challenge.push_str(&format!(",scope=\"repository:{repo}:pull\""));
                    }
                    return Reply::error(401, "UNAUTHORIZED", "authentication required")
                        .header("WWW-Authenticate", &challenge);
                }
                _ => {}
            }
            let key = (req.method.clone(), req.path().to_owned());
            if let Some(r) = s.routes.get(&key) {
                return r.clone();
            }
            if req.method == "HEAD" {
                if let Some(r) = s.routes.get(&("GET".to_owned(), req.path().to_owned())) {
                    return r.clone();
                }
            }
            if req.path() == "/v2/" && (req.method == "GET" || req.method == "HEAD") {
                return Reply::new(200)
                    .header("Docker-Distribution-API-Version", "registry/2.0")
                    .json(&serde_json::json!({}));
            }
            let (code, message) = if req.path().contains("/manifests/") {
                ("MANIFEST_UNKNOWN", "manifest unknown")
            } else if req.path().contains("/blobs/") {
                ("BLOB_UNKNOWN", "blob unknown to registry")
            } else {
                ("NOT_FOUND", "not found")
            };
            Reply::error(404, code, message)
        });
        Hostile {
            server: Server::start(handler),
            script,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Scripts (or re-scripts) the answer to `method path`.
    pub fn route(&self, method: &str, path: &str, reply: Reply) {
        self.script
            .lock()
            .unwrap()
            .routes
            .insert((method.to_owned(), path.to_owned()), reply);
    }

    /// Requires `Authorization: Basic base64(user:pass)` on every request.
    pub fn require_basic(&self, user: &str, pass: &str) {
        self.script.lock().unwrap().guard = Some(Guard::Basic(basic_auth(user, pass)));
    }

    /// Requires `Authorization: Bearer TOKEN` on every request; others get
    /// a Bearer challenge naming `realm` (a URL) and `service`.
    pub fn require_bearer(&self, token: &str, realm: &str, service: &str) {
        self.script.lock().unwrap().guard = Some(Guard::Bearer {
            token: token.to_owned(),
            realm: realm.to_owned(),
            service: service.to_owned(),
        });
    }

    /// The port it listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }

    /// Serves `body` as the manifest `/v2/REPO/manifests/REFERENCE`, with
    /// `media_type` as `Content-Type` and a `Docker-Content-Digest` of the
    /// body's real sha256.
    pub fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
        self.route(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            Reply::new(200)
                .header("Content-Type", media_type)
                .header("Docker-Content-Digest", &digest_of(body))
                .body(body),
        );
    }

    /// Serves `body` as the blob `/v2/REPO/blobs/DIGEST`, whatever it is.
    pub fn blob(&self, repo: &str, digest: &str, body: &[u8]) {
        self.route(
            "GET",
            &format!("/v2/{repo}/blobs/{digest}"),
            Reply::new(200)
                .header("Content-Type", "application/octet-stream")
                .header("Docker-Content-Digest", digest)
                .body(body),
        );
    }

    /// Serves a whole image: the manifest under `tag` and under its digest,
    /// the config and the layer.
    pub fn serve_image(&self, repo: &str, tag: &str, img: &TinyImage) {
        self.manifest(repo, tag, OCI_MANIFEST, &img.manifest);
        self.manifest(repo, &img.manifest_digest, OCI_MANIFEST, &img.manifest);
        self.blob(repo, &img.config_digest, &img.config);
        self.blob(repo, &img.layer_digest, &img.layer);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.script.lock().unwrap().requests.clone()
    }

    /// Connections that opened with a TLS handshake (wharf trying HTTPS
    /// before falling back to HTTP).
    pub fn tls_attempts(&self) -> u64 {
        self.server.tls_hellos.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- requests to {} ----", self.host());
            for r in self.requests() {
                eprintln!(
                    "{} {} (authorization: {})",
                    r.method,
                    r.target,
                    r.header("authorization").is_some()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Image content.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A one-layer OCI image made in memory: a gzip tar with one file
/// `/data.bin`, a config (wasip1/wasm unless told) with its diff id, and a
/// manifest.
pub struct TinyImage {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl TinyImage {
    pub fn new(content: &[u8]) -> TinyImage {
        TinyImage::with_layer_media_type(content, OCI_LAYER_GZIP)
    }

    pub fn with_layer_media_type(content: &[u8], layer_media_type: &str) -> TinyImage {
        TinyImage::build(content, layer_media_type, "wasip1", "wasm")
    }

    /// An image whose config names the platform `os/architecture`.
    pub fn for_platform(content: &[u8], os: &str, architecture: &str) -> TinyImage {
        TinyImage::build(content, OCI_LAYER_GZIP, os, architecture)
    }

    fn build(content: &[u8], layer_media_type: &str, os: &str, architecture: &str) -> TinyImage {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, "data.bin", content).unwrap();
        let tar = tar.into_inner().unwrap();
        let diff_id = digest_of(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let layer = gz.finish().unwrap();
        let config = serde_json::json!({
            "architecture": architecture,
            "os": os,
            "config": { "Entrypoint": ["/hello.wasm"] },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        })
        .to_string()
        .into_bytes();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": digest_of(&config), "size": config.len() },
            "layers": [
                { "mediaType": layer_media_type, "digest": digest_of(&layer), "size": layer.len() }
            ],
        })
        .to_string()
        .into_bytes();
        TinyImage {
            config_digest: digest_of(&config),
            layer_digest: digest_of(&layer),
            manifest_digest: digest_of(&manifest),
            config,
            layer,
            manifest,
        }
    }
}

/// An OCI image index over `(image, os, architecture)` entries.
pub fn oci_index(entries: &[(&TinyImage, &str, &str)]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(img, os, arch)| {
            serde_json::json!({
                "mediaType": OCI_MANIFEST,
                "digest": img.manifest_digest,
                "size": img.manifest.len(),
                "platform": { "os": os, "architecture": arch },
            })
        })
        .collect();
    serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests })
        .to_string()
        .into_bytes()
}

/// `n` bytes that gzip cannot shrink (xorshift), so a layer is about `n`
/// bytes on the wire.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Builds an OCI image layout at `dir` with umoci, holding Debian's
/// static `/bin/busybox` as `/bin/busybox` (a linux image, platform of the
/// machine), entrypoint `/bin/busybox`, cmd `echo hello from busybox`,
/// tagged `latest`. Returns `dir`; skopeo names it `oci:DIR:latest`.
pub fn busybox_oci_image(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox missing: apt-get install -y busybox-static"
    );
    let parent = dir.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    let image = format!("{}:latest", dir.display());
    let bundle = parent.join(format!(
        "{}-bundle",
        dir.file_name().unwrap().to_string_lossy()
    ));
    let rootless: &[&str] = if is_root() { &[] } else { &["--rootless"] };
    run_ok(Command::new("umoci").args(["init", "--layout"]).arg(dir));
    run_ok(Command::new("umoci").args(["new", "--image", &image]));
    run_ok(
        Command::new("umoci")
            .arg("unpack")
            .args(rootless)
            .args(["--image", &image])
            .arg(&bundle),
    );
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    run_ok(
        Command::new("umoci")
            .arg("repack")
            .args(["--image", &image])
            .arg(&bundle),
    );
    run_ok(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.entrypoint",
        "/bin/busybox",
        "--config.cmd",
        "echo",
        "--config.cmd",
        "hello from busybox",
    ]));
    let _ = std::fs::remove_dir_all(&bundle);
    dir.to_path_buf()
}

// ---------------------------------------------------------------------------
// Registry: the real CNCF distribution registry.

/// One line of the registry's access log.
#[derive(Clone, Debug)]
pub struct Access {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    pub status: u16,
}

enum Auth {
    None,
    Basic { user: String, pass: String },
    Token { user: String, pass: String },
}

/// A running `docker-registry serve` (distribution 2.8), killed on drop.
/// Its log (application log and access log) is printed when a test fails.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
    external: Option<Ipv4Addr>,
    auth: Auth,
    token: Option<TokenServer>,
}

impl Registry {
    /// Plain HTTP on `127.0.0.1`, no auth.
    pub fn plain() -> Registry {
        Registry::start(false, Auth::None)
    }

    /// HTTPS with a certificate from a fresh test CA (SANs: `127.0.0.1`, the
    /// machine's non-loopback IPv4, `localhost`) and htpasswd basic auth,
    /// listening on `0.0.0.0`.
    pub fn tls_basic(user: &str, pass: &str) -> Registry {
        Registry::start(
            true,
            Auth::Basic {
                user: user.to_owned(),
                pass: pass.to_owned(),
            },
        )
    }

    /// Plain HTTP on `127.0.0.1` with distribution's token auth, the realm
    /// being a [`TokenServer`] on another port of `127.0.0.1`. `user:pass`
    /// gets pull and push everywhere; anonymous gets pull on `public/*`.
    pub fn token(user: &str, pass: &str) -> Registry {
        Registry::start(
            false,
            Auth::Token {
                user: user.to_owned(),
                pass: pass.to_owned(),
            },
        )
    }

    /// [`Registry::token`] served over HTTPS (test CA, as
    /// [`Registry::tls_basic`]) while its realm stays plain HTTP.
    pub fn token_tls(user: &str, pass: &str) -> Registry {
        Registry::start(
            true,
            Auth::Token {
                user: user.to_owned(),
                pass: pass.to_owned(),
            },
        )
    }

    fn start(tls: bool, auth: Auth) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let external = if tls { nonloopback_ipv4() } else { None };
        let mut extra = String::new();
        if tls {
            make_tls(d, external);
            extra.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("server.pem").display(),
                d.join("server.key").display()
            ));
        }
        let mut token = None;
        let auth_yaml = match &auth {
            Auth::None => String::new(),
            Auth::Basic { user, pass } => {
                let out = run_ok(Command::new("htpasswd").args(["-Bbn", user, pass]));
                std::fs::write(d.join("htpasswd"), out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: wharf-test\n    path: {}\n",
                    d.join("htpasswd").display()
                )
            }
            Auth::Token { user, pass } => {
                let t = TokenServer::start(d, user, pass);
                let yaml = format!(
                    "auth:\n  token:\n    realm: {}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    t.url(),
                    d.join("token.pem").display()
                );
                token = Some(t);
                yaml
            }
        };
        let bind_ip = if tls { "0.0.0.0" } else { "127.0.0.1" };
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port(bind_ip);
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n\
                 storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {bind_ip}:{port}\n  secret: wharf-test-secret\n{extra}\
                 {auth_yaml}",
                data = d.join("data").display(),
            );
            std::fs::write(d.join("config.yml"), config).unwrap();
            let log = std::fs::File::create(d.join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(d.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("run docker-registry");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    last_log = std::fs::read_to_string(d.join("registry.log")).unwrap_or_default();
                    assert!(
                        last_log.contains("address already in use"),
                        "docker-registry exited ({status}):\n{last_log}"
                    );
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "docker-registry did not come up on port {port}:\n{}",
                        std::fs::read_to_string(d.join("registry.log")).unwrap_or_default()
                    );
                }
                if ready(port, tls, &d.join("registry.log")) {
                    return Registry {
                        child,
                        dir,
                        port,
                        tls,
                        external,
                        auth,
                        token,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("no free port for docker-registry:\n{last_log}");
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `IP:PORT` with the machine's non-loopback IPv4 (TLS registries
    /// only); `None` when the machine has no such address.
    pub fn external_host(&self) -> Option<String> {
        self.external.map(|ip| format!("{ip}:{}", self.port))
    }

    /// The PEM of the CA that signed the server certificate (TLS only).
    pub fn ca_pem_path(&self) -> PathBuf {
        assert!(self.tls, "not a TLS registry");
        self.dir.path().join("ca.pem")
    }

    /// A directory holding `ca.crt`, for skopeo's `--cert-dir`.
    pub fn cert_dir(&self) -> PathBuf {
        assert!(self.tls, "not a TLS registry");
        self.dir.path().join("certs.d")
    }

    /// The credentials the registry accepts, if it has any.
    pub fn creds(&self) -> Option<(&str, &str)> {
        match &self.auth {
            Auth::None => None,
            Auth::Basic { user, pass } | Auth::Token { user, pass } => Some((user, pass)),
        }
    }

    /// The token server (token registries only).
    pub fn token_server(&self) -> &TokenServer {
        self.token.as_ref().expect("not a token registry")
    }

    /// The registry's log so far (application log and access log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Every request in the access log so far, in order.
    pub fn requests(&self) -> Vec<Access> {
        parse_access_log(&settled(&self.dir.path().join("registry.log")))
    }

    /// Runs skopeo with a private, empty auth file and Docker config (so it
    /// never reads the machine's credentials).
    pub fn skopeo(&self, args: &[&str]) -> Output {
        skopeo(self.dir.path(), args)
    }

    fn tls_flag(&self, prefix: &str) -> Vec<String> {
        if self.tls {
            vec![
                format!("--{prefix}cert-dir"),
                self.cert_dir().display().to_string(),
            ]
        } else {
            vec![format!("--{prefix}tls-verify=false")]
        }
    }

    /// `skopeo copy SRC docker://HOST/REPO_TAG`, with the registry's
    /// credentials when it has any; panics on failure.
    pub fn skopeo_copy(&self, src: &str, repo_tag: &str) {
        let mut args = vec!["copy".to_owned(), "--retry-times=0".to_owned()];
        args.extend(self.tls_flag("dest-"));
        if let Some((u, p)) = self.creds() {
            args.push(format!("--dest-creds={u}:{p}"));
        }
        args.push(src.to_owned());
        args.push(format!("docker://{}/{repo_tag}", self.host()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.skopeo(&args);
        assert!(
            out.status.success(),
            "skopeo copy {src} -> {repo_tag} failed:\n{}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// `skopeo inspect [--raw] docker://HOST/REPO_TAG`: stdout, or stderr
    /// as the error. `creds: None` is anonymous (`--no-creds`).
    pub fn skopeo_inspect(
        &self,
        repo_tag: &str,
        creds: Option<(&str, &str)>,
        raw: bool,
    ) -> Result<Vec<u8>, String> {
        let mut args = vec!["inspect".to_owned(), "--retry-times=0".to_owned()];
        args.extend(self.tls_flag(""));
        match creds {
            Some((u, p)) => args.push(format!("--creds={u}:{p}")),
            None => args.push("--no-creds".to_owned()),
        }
        if raw {
            args.push("--raw".to_owned());
        }
        args.push(format!("docker://{}/{repo_tag}", self.host()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.skopeo(&args);
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The manifest digest of `REPO_TAG` as the registry serves it (the
    /// sha256 of `skopeo inspect --raw`), with the registry's credentials.
    pub fn digest(&self, repo_tag: &str) -> String {
        let raw = self
            .skopeo_inspect(repo_tag, self.creds(), true)
            .unwrap_or_else(|e| panic!("skopeo inspect {repo_tag}: {e}"));
        digest_of(&raw)
    }

    /// Puts the `hello` example image at `REPO_TAG` with skopeo (built in
    /// a throwaway Env, copied from its store as an OCI layout), so pull
    /// tests do not depend on `wharf push`. Returns the manifest digest.
    pub fn seed_hello(&self, repo_tag: &str) -> String {
        let env = Env::new();
        env.build_example("hello", "hello");
        let src = format!(
            "oci:{}:docker.io/library/hello:latest",
            env.root.path().display()
        );
        self.skopeo_copy(&src, repo_tag);
        self.digest(repo_tag)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- docker-registry log ({}) ----\n{}",
                self.host(),
                self.log()
            );
            if let Some(t) = &self.token {
                eprintln!("---- token requests ----");
                for r in t.requests() {
                    eprintln!("{r:?}");
                }
            }
        }
    }
}

/// Runs skopeo with a private, empty auth file and Docker config under
/// `dir` (so it never reads the machine's credentials).
pub fn skopeo(dir: &Path, args: &[&str]) -> Output {
    let _ = std::fs::create_dir_all(dir.join("skopeo-docker"));
    Command::new("skopeo")
        .args(args)
        .env("REGISTRY_AUTH_FILE", dir.join("skopeo-auth.json"))
        .env("DOCKER_CONFIG", dir.join("skopeo-docker"))
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo")
}

fn ready(port: u16, tls: bool, log: &Path) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    if tls {
        return std::fs::read_to_string(log).is_ok_and(|l| l.contains("listening on"));
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && (buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.1 401")))
}

/// Parses combined-log-format lines: `IP - - [date] "METHOD URI HTTP/1.1"
/// STATUS SIZE "referer" "agent"`.
fn parse_access_log(log: &str) -> Vec<Access> {
    log.lines()
        .filter(|l| !l.starts_with("time="))
        .filter_map(|l| {
            let start = l.find("] \"")? + 3;
            let rest = &l[start..];
            let end = rest.find('"')?;
            let mut req = rest[..end].split(' ');
            let (method, uri) = (req.next()?, req.next()?);
            let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
            Some(Access {
                method: method.to_owned(),
                uri: uri.to_owned(),
                status,
            })
        })
        .collect()
}

/// Writes ca.pem/ca.key, server.pem/server.key and certs.d/ca.crt into
/// `d`.
fn make_tls(d: &Path, external: Option<Ipv4Addr>) {
    let openssl = |args: &[&str]| {
        run_ok(Command::new("openssl").current_dir(d).args(args));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "7",
        "-subj",
        "/CN=wharf test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    let mut san = "DNS:localhost,IP:127.0.0.1".to_owned();
    if let Some(ip) = external {
        san.push_str(&format!(",IP:{ip}"));
    }
    std::fs::write(
        d.join("server.ext"),
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName={san}\n"
        ),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "7",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    std::fs::create_dir_all(d.join("certs.d")).unwrap();
    std::fs::copy(d.join("ca.pem"), d.join("certs.d/ca.crt")).unwrap();
}

// ---------------------------------------------------------------------------
// Token server.

/// One request the token server answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// Path and query.
    pub target: String,
    /// Whether an `Authorization` header came with it.
    pub authorization: bool,
    /// The `scope` parameters, decoded (space-separated scopes split).
    pub scopes: Vec<String>,
    /// The `service` parameter.
    pub service: Option<String>,
    /// The status answered (200, or 401 for wrong credentials).
    pub status: u16,
}

impl TokenRequest {
    /// The actions asked on `repository:REPO`, sorted and deduplicated
    /// (registries and clients list them in any order, e.g. `push,pull`).
    pub fn actions(&self, repo: &str) -> Vec<String> {
        let prefix = format!("repository:{repo}:");
        let mut out: Vec<String> = self
            .scopes
            .iter()
            .filter_map(|s| s.strip_prefix(&prefix))
            .flat_map(|a| a.split(','))
            .map(str::to_owned)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether it asked for at least `actions` on `repository:REPO`.
    pub fn asks(&self, repo: &str, actions: &[&str]) -> bool {
        let asked = self.actions(repo);
        !asked.is_empty() && actions.iter().all(|a| asked.iter().any(|x| x == a))
    }
}

struct TokenState {
    user: String,
    pass: String,
    key: PathBuf,
    x5c: String,
    requests: Mutex<Vec<TokenRequest>>,
    serial: AtomicU64,
}

/// distribution's token auth realm: `GET /token?service=..&scope=..`.
/// Basic `user:pass` gets what it asks for (pull, push); anonymous gets
/// `pull` on repositories under `public/`; wrong credentials get `401`.
/// Tokens are RS256 JWTs signed with `openssl dgst`, carrying the signing
/// certificate in `x5c`; the registry trusts that certificate.
pub struct TokenServer {
    server: Server,
    state: Arc<TokenState>,
}

impl TokenServer {
    /// Writes token.key/token.pem into `d` and starts serving.
    fn start(d: &Path, user: &str, pass: &str) -> TokenServer {
        run_ok(Command::new("openssl").current_dir(d).args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.pem",
            "-days",
            "7",
            "-subj",
            "/CN=wharf test token signer",
        ]));
        // x5c is the base64 DER, which is the PEM body.
        let pem = std::fs::read_to_string(d.join("token.pem")).unwrap();
        let x5c: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let state = Arc::new(TokenState {
            user: user.to_owned(),
            pass: pass.to_owned(),
            key: d.join("token.key"),
            x5c,
            requests: Mutex::new(Vec::new()),
            serial: AtomicU64::new(0),
        });
        let s = state.clone();
        let handler: Handler = Arc::new(move |req: &Request| token_reply(&s, req));
        TokenServer {
            server: Server::start(handler),
            state,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Every token request so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }
}

fn token_reply(s: &TokenState, req: &Request) -> Reply {
    let scopes: Vec<String> = req
        .query_values("scope")
        .iter()
        .flat_map(|v| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .collect();
    let auth = req.header("authorization");
    let mut record = TokenRequest {
        target: req.target.clone(),
        authorization: auth.is_some(),
        scopes: scopes.clone(),
        service: req.query_values("service").into_iter().next(),
        status: 200,
    };
    let reply = (|| {
        if req.method != "GET" || req.path() != "/token" {
            record.status = 404;
            return Reply::error(404, "NOT_FOUND", "the token server answers GET /token");
        }
        // Basic credentials must be right; anything else is anonymous.
        let mut user = None;
        if let Some(b) = auth.and_then(|a| a.strip_prefix("Basic ")) {
            let decoded = base64_decode(b.trim())
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default();
            if decoded != format!("{}:{}", s.user, s.pass) {
                record.status = 401;
                return Reply::error(401, "UNAUTHORIZED", "invalid username or password")
                    .header("WWW-Authenticate", "Basic realm=\"wharf-test-token\"");
            }
            user = Some(s.user.clone());
        }
        let mut access = Vec::new();
        for scope in &scopes {
            let mut parts = scope.splitn(2, ':');
            let (Some(kind), Some(rest)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            if kind != "repository" {
                continue;
            }
            let granted: Vec<&str> = actions
                .split(',')
                .filter(|a| match *a {
                    "pull" => user.is_some() || name.starts_with("public/"),
                    "push" => user.is_some(),
                    _ => false,
                })
                .collect();
            access.push(serde_json::json!({
                "type": "repository", "name": name, "actions": granted,
            }));
        }
        let now = unix_now();
        let jti = s.serial.fetch_add(1, Ordering::SeqCst);
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER,
            "sub": user.clone().unwrap_or_default(),
            "aud": req.query_values("service").into_iter().next().unwrap_or_else(|| TOKEN_SERVICE.to_owned()),
            "exp": now + 300,
            "nbf": now - 30,
            "iat": now,
            "jti": format!("wharf-test-{now}-{jti}"),
            "access": access,
        });
        let token = jwt_rs256(&s.key, &s.x5c, &claims);
        Reply::new(200).json(&serde_json::json!({
            "token": token, "access_token": token, "expires_in": 300,
        }))
    })();
    s.requests.lock().unwrap().push(record);
    reply
}

/// An RS256 JWT (PKCS#1 v1.5 over SHA-256) signed by `openssl dgst`.
fn jwt_rs256(key: &Path, x5c: &str, claims: &serde_json::Value) -> String {
    let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [x5c] });
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl dgst");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl dgst -sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{signing_input}.{}", base64url(&out.stdout))
}

// ---------------------------------------------------------------------------
// Self-tests of the harness (no wharf involved). They prove each registry flavour works with skopeo, so the
// wharf tests in registry.rs fail only because of wharf.

/// Whether every tool a real-registry test needs is present.
pub fn registry_tools() -> bool {
    require("docker-registry") && require("skopeo") && require("openssl") && require("htpasswd")
}

#[test]
fn harness_base64_and_query_decoding() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    for s in ["", "a", "ab", "abc", "user:p@ss:word"] {
        assert_eq!(base64_decode(&base64(s.as_bytes())).unwrap(), s.as_bytes());
    }
    let r = Request {
        method: "GET".into(),
        target: "/token?scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=x+y&service=s".into(),
        headers: vec![],
        body: vec![],
    };
    assert_eq!(r.path(), "/token");
    assert_eq!(r.query_values("scope"), ["repository:a/b:pull,push", "x y"]);
    assert_eq!(r.query_values("service"), ["s"]);
}

/// Sends one raw HTTP request; returns the whole answer (until close).
fn raw_http(host: &str, request: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn harness_hostile_server_follows_its_script() {
    let h = Hostile::start();
    let img = TinyImage::new(b"hi");
    h.serve_image("app", "1", &img);
    h.route(
        "GET",
        "/v2/app/blobs/sha256:cut",
        Reply::new(200).body(vec![7u8; 100]).truncate_after(10),
    );
    let get = |path: &str| {
        raw_http(
            &h.host(),
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Probe: 1\r\n\r\n"),
        )
    };
    let ok = get("/v2/app/manifests/1");
    let text = String::from_utf8_lossy(&ok);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains(&format!("Docker-Content-Digest: {}", img.manifest_digest)));
    assert!(ok.ends_with(&img.manifest));
    let head = raw_http(
        &h.host(),
        "HEAD /v2/app/manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(String::from_utf8_lossy(&head).ends_with("\r\n\r\n"));
    let cut = get("/v2/app/blobs/sha256:cut");
    assert!(String::from_utf8_lossy(&cut).contains("Content-Length: 100\r\n"));
    assert!(cut.ends_with(&[7u8; 10]) && !cut.ends_with(&[7u8; 11]));
    let missing = String::from_utf8_lossy(&get("/v2/app/manifests/2")).into_owned();
    assert!(missing.starts_with("HTTP/1.1 404") && missing.contains("MANIFEST_UNKNOWN"));
    assert!(String::from_utf8_lossy(&get("/v2/")).starts_with("HTTP/1.1 200"));
    // A TLS ClientHello gets Go's plain-HTTP answer.
    let mut s = TcpStream::connect(h.host()).unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(out.starts_with(b"HTTP/1.1 400"));
    assert_eq!(h.tls_attempts(), 1);
    // Requests are recorded with their headers; bodies are read.
    raw_http(
        &h.host(),
        "PUT /v2/app/blobs/uploads/x?digest=sha256:1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    let reqs = h.requests();
    assert_eq!(reqs[0].header("x-probe"), Some("1"));
    let put = reqs.last().unwrap();
    assert_eq!(
        (put.method.as_str(), put.path(), put.query()),
        ("PUT", "/v2/app/blobs/uploads/x", "digest=sha256:1")
    );
    assert_eq!(put.body, b"abc");
    // A Bearer guard names the realm and the repository's pull scope.
    h.require_bearer("tok", "http://localhost:1/token", "svc");
    let challenge = String::from_utf8_lossy(&get("/v2/app/blobs/sha256:cut")).into_owned();
    assert!(
        challenge.contains(
            "WWW-Authenticate: Bearer realm=\"http://localhost:1/token\",service=\"svc\",scope=\"repository:app:pull\""
        ),
        "{challenge}"
    );
    let with_token = raw_http(
        &h.host(),
        "GET /v2/app/manifests/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n\r\n",
    );
    assert!(with_token.starts_with(b"HTTP/1.1 200"));
    // Basic auth, once required, guards everything.
    h.require_basic("u", "p");
    let denied = String::from_utf8_lossy(&get("/v2/")).into_owned();
    assert!(denied.starts_with("HTTP/1.1 401") && denied.contains("WWW-Authenticate: Basic"));
    let allowed = raw_http(
        &h.host(),
        &format!(
            "GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
            basic_auth("u", "p")
        ),
    );
    assert!(allowed.starts_with(b"HTTP/1.1 200"));
}

#[test]
fn harness_plain_registry_round_trip_with_skopeo() {
    if !registry_tools() || !require("umoci") || !require("busybox") {
        return;
    }
    let reg = Registry::plain();
    let scratch = tempfile::tempdir().unwrap();
    let layout = busybox_oci_image(&scratch.path().join("bb"));
    reg.skopeo_copy(
        &format!("oci:{}:latest", layout.display()),
        "tools/busybox:1",
    );
    let raw = reg.skopeo_inspect("tools/busybox:1", None, true).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    let info: serde_json::Value =
        serde_json::from_slice(&reg.skopeo_inspect("tools/busybox:1", None, false).unwrap())
            .unwrap();
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["Digest"], digest_of(&raw));
    let reqs = reg.requests();
    assert!(reqs
        .iter()
        .any(|r| r.method == "PUT" && r.uri == "/v2/tools/busybox/manifests/1" && r.status == 201));
    assert!(reqs
        .iter()
        .any(|r| r.method == "POST" && r.uri.starts_with("/v2/tools/busybox/blobs/uploads/")));
    // A second repository gets the layer by cross-repository mount.
    reg.skopeo_copy(
        &format!("oci:{}:latest", layout.display()),
        "other/busybox:1",
    );
    assert!(reg.requests().iter().any(|r| r.method == "POST"
        && r.uri.starts_with("/v2/other/busybox/blobs/uploads/?")
        && r.uri.contains("mount=")
        && r.status == 201));
}

#[test]
fn harness_tls_basic_registry_with_skopeo() {
    if !registry_tools() || !require("umoci") || !require("busybox") {
        return;
    }
    let reg = Registry::tls_basic("alice", "s3cret-Pa55");
    let scratch = tempfile::tempdir().unwrap();
    let layout = busybox_oci_image(&scratch.path().join("bb"));
    reg.skopeo_copy(&format!("oci:{}:latest", layout.display()), "hello:1");
    let digest = reg.digest("hello:1");
    let creds = Some(("alice", "s3cret-Pa55"));
    assert!(reg.skopeo_inspect("hello:1", creds, true).is_ok());
    let anon = reg.skopeo_inspect("hello:1", None, true).unwrap_err();
    assert!(
        anon.contains("401") || anon.to_lowercase().contains("unauthorized"),
        "{anon}"
    );
    let wrong = reg
        .skopeo_inspect("hello:1", Some(("alice", "nope")), true)
        .unwrap_err();
    assert!(
        wrong.contains("401") || wrong.to_lowercase().contains("unauthorized"),
        "{wrong}"
    );
    // The certificate is valid for the non-loopback address too, with the
    // CA; and not valid without it.
    if let Some(ext) = reg.external_host() {
        let cert_dir = reg.cert_dir().display().to_string();
        let target = format!("docker://{ext}/hello:1");
        let ok = reg.skopeo(&[
            "inspect",
            "--raw",
            "--cert-dir",
            &cert_dir,
            "--creds=alice:s3cret-Pa55",
            &target,
        ]);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(digest_of(&ok.stdout), digest);
        let empty = tempfile::tempdir().unwrap();
        let bad = reg.skopeo(&[
            "inspect",
            "--raw",
            "--cert-dir",
            empty.path().to_str().unwrap(),
            "--creds=alice:s3cret-Pa55",
            &target,
        ]);
        assert!(!bad.status.success());
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("certificate"),
            "{}",
            String::from_utf8_lossy(&bad.stderr)
        );
    } else {
        eprintln!("no non-loopback IPv4: external host not checked");
    }
}

#[test]
fn harness_token_registry_with_skopeo() {
    if !registry_tools() || !require("umoci") || !require("busybox") {
        return;
    }
    let reg = Registry::token("bob", "t0ken-Pa55");
    let scratch = tempfile::tempdir().unwrap();
    let src = format!(
        "oci:{}:latest",
        busybox_oci_image(&scratch.path().join("bb")).display()
    );
    reg.skopeo_copy(&src, "team/hello:1");
    let digest = reg.digest("team/hello:1");
    let pushes: Vec<TokenRequest> = reg
        .token_server()
        .requests()
        .into_iter()
        .filter(|r| r.asks("team/hello", &["pull", "push"]))
        .collect();
    assert!(!pushes.is_empty(), "{:?}", reg.token_server().requests());
    assert!(pushes.iter().all(|r| r.target.starts_with("/token?")
        && r.authorization
        && r.status == 200
        && r.service.as_deref() == Some(TOKEN_SERVICE)));
    let creds = Some(("bob", "t0ken-Pa55"));
    let raw = reg.skopeo_inspect("team/hello:1", creds, true).unwrap();
    assert_eq!(digest_of(&raw), digest);
    // Anonymous gets a token without access: the registry says 401.
    let anon = reg.skopeo_inspect("team/hello:1", None, true).unwrap_err();
    assert!(
        anon.contains("401") || anon.to_lowercase().contains("unauthorized"),
        "{anon}"
    );
    // Wrong credentials are refused by the token server.
    let before = reg.token_server().requests().len();
    assert!(reg
        .skopeo_inspect("team/hello:1", Some(("bob", "wrong")), true)
        .is_err());
    assert!(reg.token_server().requests()[before..]
        .iter()
        .any(|r| r.status == 401));
    // A cross-repository mount works with a token that has pull on the
    // source, and the registry's challenge asks for exactly that.
    let layer = serde_json::from_slice::<serde_json::Value>(&raw).unwrap()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let mount = format!("/v2/team/copy/blobs/uploads/?mount={layer}&from=team/hello");
    let challenge = String::from_utf8_lossy(&raw_http(
        &reg.host(),
        &format!(
            "POST {mount} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    ))
    .into_owned();
    assert!(challenge.starts_with("HTTP/1.1 401"), "{challenge}");
    // The registry lists the scopes in map order: compare them as a set.
    let asked = TokenRequest {
        target: String::new(),
        authorization: false,
        scopes: challenge
            .split("scope=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .split(' ')
            .map(str::to_owned)
            .collect(),
        service: None,
        status: 0,
    };
    assert_eq!(asked.actions("team/copy"), ["pull", "push"], "{challenge}");
    assert_eq!(asked.actions("team/hello"), ["pull"], "{challenge}");
    let answer = raw_http(
        &reg.token_server().server.addr.to_string(),
        &format!(
            "GET /token?service={TOKEN_SERVICE}&scope=repository%3Ateam%2Fcopy%3Apull%2Cpush&scope=repository%3Ateam%2Fhello%3Apull HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            basic_auth("bob", "t0ken-Pa55")
        ),
    );
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let body: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let token = body["token"].as_str().unwrap();
    let mounted = String::from_utf8_lossy(&raw_http(
        &reg.host(),
        &format!("POST {mount} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    ))
    .into_owned();
    assert!(mounted.starts_with("HTTP/1.1 201"), "{mounted}");

    // public/* is readable anonymously, and only readable.
    reg.skopeo_copy(&src, "public/hello:1");
    let public = reg.skopeo_inspect("public/hello:1", None, true).unwrap();
    assert_eq!(digest_of(&public), digest);
    assert!(reg
        .token_server()
        .requests()
        .iter()
        .any(|r| !r.authorization && r.actions("public/hello") == ["pull"]));
}

#[test]
fn harness_hostile_images_are_real_images_for_skopeo() {
    if !require("skopeo") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let d = scratch.path();
    let copy = |from: &str, extra: &[&str], to: &str| {
        let mut args = vec!["copy", "--retry-times=0", "--src-tls-verify=false"];
        args.extend_from_slice(extra);
        args.push(from);
        args.push(to);
        skopeo(d, &args)
    };
    let h = Hostile::start();
    let img = TinyImage::new(&noise(4096, 9));
    h.serve_image("app", "1", &img);
    // A fresh layout per copy, so nothing is reused from an earlier one.
    let layout = |name: &str| format!("oci:{}:x", d.join(name).display());

    // A plain pull; skopeo tries HTTPS first and falls back to HTTP.
    let out = copy(&format!("docker://{}/app:1", h.host()), &[], &layout("a"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(h.tls_attempts() >= 1);
    let got = std::fs::read(d.join("a/blobs/sha256").join(hex_of(&img.layer_digest))).unwrap();
    assert_eq!(got, img.layer);

    // A tampered layer is caught by a real client.
    let mut bad = img.layer.clone();
    bad[100] ^= 1;
    h.blob("app", &img.layer_digest, &bad);
    let out = copy(&format!("docker://{}/app:1", h.host()), &[], &layout("b"));
    assert!(!out.status.success(), "a tampered layer was accepted");

    // An index resolves per platform.
    let arm = TinyImage::for_platform(b"arm", "linux", "arm64");
    let wasm = TinyImage::new(b"wasm");
    h.serve_image("multi", "arm", &arm);
    h.serve_image("multi", "wasm", &wasm);
    h.manifest(
        "multi",
        "1",
        OCI_INDEX,
        &oci_index(&[(&arm, "linux", "arm64"), (&wasm, "wasip1", "wasm")]),
    );
    let out = copy(
        &format!("docker://{}/multi:1", h.host()),
        &["--override-os=linux", "--override-arch=arm64"],
        &layout("c"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d
        .join("c/blobs/sha256")
        .join(hex_of(&arm.layer_digest))
        .exists());

    // Basic auth plus a redirect of the blob to another server.
    let storage = Hostile::start();
    let other = TinyImage::new(&noise(2048, 10));
    h.serve_image("auth", "1", &other);
    h.route(
        "GET",
        &format!("/v2/auth/blobs/{}", other.layer_digest),
        Reply::redirect(
            307,
            &format!("{}/storage/{}", storage.url(), other.layer_digest),
        ),
    );
    storage.route(
        "GET",
        &format!("/storage/{}", other.layer_digest),
        Reply::new(200).body(other.layer.clone()),
    );
    h.require_basic("u", "p");
    let from = format!("docker://{}/auth:1", h.host());
    let out = copy(&from, &[], &layout("d"));
    assert!(!out.status.success(), "anonymous must be refused");
    let out = copy(&from, &["--src-creds=u:p"], &layout("e"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(storage
        .requests()
        .iter()
        .any(|r| r.path().ends_with(&other.layer_digest)));
}

#[test]
fn harness_token_tls_registry_with_skopeo() {
    if !registry_tools() || !require("umoci") || !require("busybox") {
        return;
    }
    let reg = Registry::token_tls("bob", "t0ken-Pa55");
    assert!(reg.token_server().url().starts_with("http://127.0.0.1:"));
    let scratch = tempfile::tempdir().unwrap();
    let src = format!(
        "oci:{}:latest",
        busybox_oci_image(&scratch.path().join("bb")).display()
    );
    reg.skopeo_copy(&src, "team/hello:1");
    let digest = reg.digest("team/hello:1");
    // skopeo reaches it over HTTPS with the test CA.
    let out = reg.skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=true",
        "--cert-dir",
        reg.cert_dir().to_str().unwrap(),
        "--creds=bob:t0ken-Pa55",
        &format!(
            "docker://localhost:{}/team/hello:1",
            reg.host().rsplit(':').next().unwrap()
        ),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(digest_of(&out.stdout), digest);
    assert!(reg.skopeo_inspect("team/hello:1", None, true).is_err());
}
