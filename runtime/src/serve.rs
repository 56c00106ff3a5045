//! `wharf serve`: a `wasi:http/proxy` component behind an HTTP/1.1 server,
//! a fresh instance per request (spec/serve.md).
//!
//! The component is compiled once (through the module cache) and
//! pre-instantiated with its imports resolved; each request gets its own
//! store, taken from the pooling allocator with copy-on-write memory
//! images, with its own memory limit and deadline. A trap or a timeout
//! ends that request only. Guests get `wasi:http` plus the `wasi:cli`
//! interfaces Rust's `wasm32-wasip2` std uses, the image filesystem
//! read-only at `/` and the mapped directories, and only the network that
//! `--allow-net` grants (none by default).
//!
//! A request holds its concurrency slot, and counts as in flight, until
//! its response body has been sent, not just its head.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store as WasmStore,
    StoreLimits, StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::exec::wasm::{configure, Compiled, WasmExecutor};
use crate::exec::{NetworkPolicy, Prepared, RunError};
use crate::store::Store;

/// How often the deadline clock ticks.
const TICK: Duration = Duration::from_millis(10);
/// Largest request body a CGI handler is given on stdin.
const MAX_CGI_BODY: usize = 16 << 20;
/// How long a CGI request body may take to arrive without `--timeout`.
const CGI_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response a CGI handler may write on stdout.
const MAX_CGI_OUTPUT: usize = 64 << 20;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Requests handled at once; more wait for a free slot.
    pub max_concurrency: usize,
    /// Per-request wall-clock limit; past it the request gets 504.
    pub timeout: Option<Duration>,
    /// Per-request cap on each linear memory, in bytes.
    pub memory: Option<u64>,
    /// Outgoing network (none by default).
    pub network: NetworkPolicy,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_concurrency: 32,
            timeout: None,
            memory: None,
            network: NetworkPolicy::default(),
        }
    }
}

/// One request's outcome, for the access log.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    /// Request method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Status sent.
    pub status: u16,
    /// Time from request to response head.
    pub duration: Duration,
    /// Why wharf answered instead of the guest (trap, timeout, ...).
    pub error: Option<String>,
}

impl std::fmt::Display for AccessEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {:.1}ms",
            self.method,
            self.path,
            self.status,
            self.duration.as_secs_f64() * 1000.0
        )?;
        if let Some(e) = &self.error {
            write!(f, " ({e})")?;
        }
        Ok(())
    }
}

struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: Outgoing,
    table: ResourceTable,
    limits: StoreLimits,
}

/// `wasi:http` hooks: outgoing requests go out only to destinations the
/// network policy allows (none by default); the rest fail with
/// `HTTP-request-denied`. Allowed ones are sent with reqwest (the client
/// the registry code uses: rustls, the system's CA roots).
struct Outgoing {
    policy: NetworkPolicy,
    client: reqwest::Client,
}

/// Sends an allowed outgoing request.
async fn send_outgoing(
    client: reqwest::Client,
    request: hyper::Request<wasmtime_wasi_http::WasiBody>,
    options: Option<wasmtime_wasi_http::RequestOptions>,
) -> Result<hyper::Response<wasmtime_wasi_http::WasiBody>, wasmtime_wasi_http::Error> {
    use wasmtime_wasi_http::Error;
    let internal = |e: &dyn std::fmt::Display| Error::InternalError(Some(e.to_string()));
    let (parts, body) = request.into_parts();
    let body = reqwest::Body::wrap_stream(http_body_util::BodyDataStream::new(body));
    let mut req = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body);
    if let Some(t) = options.as_ref().and_then(|o| o.first_byte_timeout) {
        req = req.timeout(t);
    }
    let resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            Error::ConnectionTimeout
        } else if e.is_connect() {
            Error::ConnectionRefused
        } else {
            internal(&crate::registry::client::describe(&e))
        }
    })?;
    let resp: hyper::Response<reqwest::Body> = resp.into();
    Ok(resp.map(|b| {
        b.map_err(move |e| Error::InternalError(Some(e.to_string())))
            .boxed_unsync()
    }))
}

type HookFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl wasmtime_wasi_http::WasiHttpHooks for Outgoing {
    fn send_request(
        &mut self,
        request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: HookFuture,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (hyper::Response<wasmtime_wasi_http::WasiBody>, HookFuture),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let uri = request.uri();
        let host = uri.host().unwrap_or("").to_owned();
        let port =
            uri.port_u16()
                .unwrap_or(if uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS) {
                    443
                } else {
                    80
                });
        if !self.policy.allows_http(&host, port) {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        drop(fut);
        let client = self.client.clone();
        Box::new(async move {
            let resp = send_outgoing(client, request, options).await?;
            let done: HookFuture = Box::new(async { Ok(()) });
            Ok((resp, done))
        })
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// What answers requests.
enum Handler {
    /// A `wasi:http/proxy` component.
    Proxy(ProxyPre<Host>),
    /// A WASI preview 1 command in the CGI convention.
    Cgi(wasmtime::InstancePre<CgiHost>),
}

/// Store data of a CGI request.
struct CgiHost {
    wasi: wasmtime_wasi::p1::WasiP1Ctx,
    limits: StoreLimits,
}

struct Server {
    handler: Handler,
    engine: Engine,
    addr: std::sync::OnceLock<SocketAddr>,
    prepared: Prepared,
    options: ServeOptions,
    slots: Arc<tokio::sync::Semaphore>,
    /// Client for allowed outgoing requests (no redirects followed for
    /// the guest: it sees the 3xx, as with wasi:http's own client).
    http_client: reqwest::Client,
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
    log: Box<dyn Fn(&AccessEntry) + Send + Sync>,
}

/// The engine for serving: async, pooled instances, epochs for deadlines.
fn engine(options: &ServeOptions) -> Result<Engine, RunError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Epochs (and their checks in compiled code) only when there are
    // deadlines to enforce.
    config.epoch_interruption(options.timeout.is_some());
    let slots = options.max_concurrency.max(1) as u32;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots * 2)
        .total_tables(slots * 8)
        .max_memories_per_component(2)
        .max_memory_size(options.memory.map_or(1 << 32, |m| m as usize));
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool.clone()));
    match Engine::new(&config) {
        Ok(e) => Ok(e),
        Err(e) => {
            // A machine that cannot reserve the pool still serves, with
            // instances allocated on demand.
            tracing::warn!("pooling allocator unavailable ({e:#}); allocating on demand");
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Engine::new(&config).map_err(|e| RunError::Engine(format!("{e:#}")))
        }
    }
}

/// Serves the prepared image until `shutdown` completes, then waits for the
/// requests in flight. `ready` is called with the bound address once the
/// server accepts connections; `log` receives one entry per request.
pub async fn serve(
    store: &Store,
    prepared: Prepared,
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
    log: impl Fn(&AccessEntry) + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let engine = engine(&options)?;
    let what = prepared
        .argv
        .first()
        .cloned()
        .unwrap_or_else(|| "the module".into());
    let handler =
        match WasmExecutor::new(store.clone()).compile(&engine, &prepared.module, &what)? {
            Compiled::Component(component) => {
                let mut linker: Linker<Host> = Linker::new(&engine);
                wasmtime_wasi::p2::add_to_linker_async(&mut linker)
                    .map_err(|e| RunError::Engine(format!("{e:#}")))?;
                wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
                    .map_err(|e| RunError::Engine(format!("{e:#}")))?;
                let instance_pre =
                    linker
                        .instantiate_pre(&component)
                        .map_err(|e| RunError::MissingImport {
                            what: what.clone(),
                            imports: crate::exec::wasm::error_line(&e),
                        })?;
                Handler::Proxy(ProxyPre::new(instance_pre).map_err(|e| {
                    RunError::InvalidModule {
                        what: what.clone(),
                        reason: format!(
                            "it does not export wasi:http/incoming-handler ({})",
                            crate::exec::wasm::error_line(&e)
                        ),
                    }
                })?)
            }
            Compiled::Module(module) => {
                if !matches!(
                    module.get_export("_start"),
                    Some(wasmtime::ExternType::Func(_))
                ) {
                    return Err(RunError::InvalidModule {
                        what,
                        reason: "it exports no _start function (CGI needs a WASI command)".into(),
                    });
                }
                let mut linker: wasmtime::Linker<CgiHost> = wasmtime::Linker::new(&engine);
                wasmtime_wasi::p1::add_to_linker_async(&mut linker, |h| &mut h.wasi)
                    .map_err(|e| RunError::Engine(format!("{e:#}")))?;
                Handler::Cgi(linker.instantiate_pre(&module).map_err(|e| {
                    RunError::MissingImport {
                        what: what.clone(),
                        imports: crate::exec::wasm::error_line(&e),
                    }
                })?)
            }
        };

    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    // The deadline clock.
    let stop_ticking = Arc::new(AtomicBool::new(false));
    let ticker = options.timeout.is_some().then(|| {
        let engine = engine.clone();
        let stop = stop_ticking.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            }
        })
    });

    let server = Arc::new(Server {
        handler,
        engine: engine.clone(),
        addr: std::sync::OnceLock::new(),
        prepared,
        slots: Arc::new(tokio::sync::Semaphore::new(options.max_concurrency.max(1))),
        http_client: reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RunError::Engine(format!("HTTP client: {e}")))?,
        options,
        in_flight: AtomicUsize::new(0),
        idle: tokio::sync::Notify::new(),
        log: Box::new(log),
    });
    let _ = server.addr.set(addr);
    ready(addr);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        continue;
                    }
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(req, peer).await) }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!("connection: {e}");
                    }
                });
            }
        }
    }
    // Graceful: no new connections; let the requests in flight finish.
    drop(listener);
    loop {
        let idle = server.idle.notified();
        if server.in_flight.load(Ordering::SeqCst) == 0 {
            break;
        }
        idle.await;
    }
    stop_ticking.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.join();
    }
    Ok(())
}

fn text_response(status: u16, text: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = http_body_util::Full::new(Bytes::from(format!("{text}\n")))
        .map_err(|e: Infallible| match e {})
        .boxed_unsync();
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("a valid status");
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// Every tick a busy guest yields to other requests; past its deadline it
/// traps. Returns the deadline.
fn arm_deadline<T: Send>(store: &mut WasmStore<T>, timeout: Option<Duration>) -> Option<Instant> {
    // Without a timeout the engine has no epochs: nothing to arm.
    let deadline = Instant::now() + timeout?;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Trap::Interrupt.into())
        } else {
            Ok(wasmtime::UpdateDeadline::Yield(1))
        }
    });
    Some(deadline)
}

/// A one-line reason for a failed guest call.
fn failure(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => "guest interrupted".to_owned(),
        Some(trap) => format!("guest trapped: {trap}"),
        None => crate::exec::wasm::first_line(&e.root_cause().to_string()),
    }
}

/// The CGI/1.1 variables for a request (RFC 3875), after the image's and
/// the user's environment.
fn cgi_env(
    base: &[(String, String)],
    parts: &hyper::http::request::Parts,
    body_len: usize,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Vec<(String, String)> {
    let mut env = base.to_vec();
    let mut set = |k: &str, v: String| {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_owned(), v));
    };
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set(
        "SERVER_SOFTWARE",
        concat!("wharf/", env!("CARGO_PKG_VERSION")).into(),
    );
    set("SERVER_PROTOCOL", format!("{:?}", parts.version));
    set("REQUEST_METHOD", parts.method.to_string());
    set("SCRIPT_NAME", String::new());
    set("PATH_INFO", parts.uri.path().to_owned());
    set("QUERY_STRING", parts.uri.query().unwrap_or("").to_owned());
    set("REQUEST_URI", parts.uri.to_string());
    set("REMOTE_ADDR", peer.ip().to_string());
    set("REMOTE_PORT", peer.port().to_string());
    if let Some(l) = local {
        set("SERVER_PORT", l.port().to_string());
    }
    let host = parts
        .headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(n, _)| n).to_owned())
        .unwrap_or_else(|| local.map(|l| l.ip().to_string()).unwrap_or_default());
    set("SERVER_NAME", host);
    if body_len > 0 {
        set("CONTENT_LENGTH", body_len.to_string());
    }
    if let Some(ct) = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
    {
        set("CONTENT_TYPE", ct.to_owned());
    }
    for (name, value) in &parts.headers {
        if name == hyper::header::CONTENT_TYPE || name == hyper::header::CONTENT_LENGTH {
            continue;
        }
        let key = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        set(&key, String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    env
}

/// Turns a CGI response (headers, blank line, body) into an HTTP one.
fn cgi_response(out: &[u8]) -> Result<hyper::Response<HyperOutgoingBody>, String> {
    let split = |sep: &[u8]| {
        out.windows(sep.len())
            .position(|w| w == sep)
            .map(|i| (i, sep.len()))
    };
    let (at, len) = match (split(b"\r\n\r\n"), split(b"\n\n")) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => {
            return Err("malformed CGI response: no blank line after the headers".into())
        }
    };
    let head = String::from_utf8_lossy(&out[..at]);
    let body = Bytes::copy_from_slice(&out[at + len..]);
    let mut resp = hyper::Response::new(
        http_body_util::Full::new(body)
            .map_err(|e: Infallible| match e {})
            .boxed_unsync(),
    );
    let mut status = None;
    let mut location = false;
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed CGI response header {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok());
            status = Some(
                code.and_then(|c| hyper::StatusCode::from_u16(c).ok())
                    .ok_or_else(|| format!("malformed CGI Status header {value:?}"))?,
            );
            continue;
        }
        location |= name.eq_ignore_ascii_case("location");
        if CGI_DROPPED_HEADERS
            .iter()
            .any(|h| name.trim().eq_ignore_ascii_case(h))
        {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    *resp.status_mut() = status.unwrap_or(if location {
        hyper::StatusCode::FOUND
    } else {
        hyper::StatusCode::OK
    });
    Ok(resp)
}

/// A request read as far as its handler needs before taking a slot.
enum Pending {
    Proxy(hyper::Request<hyper::body::Incoming>),
    Cgi(hyper::http::request::Parts, Bytes),
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<Server>);

impl InFlight {
    fn new(server: &Arc<Server>) -> InFlight {
        server.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(server.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A response body that keeps its request's slot and in-flight count
/// until the body has been sent (or dropped).
struct Guarded {
    body: HyperOutgoingBody,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    _in_flight: InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Hop-by-hop and framing headers a CGI program must not set: wharf frames
/// the response itself (RFC 3875 section 6.3, RFC 9110 section 7.6.1).
const CGI_DROPPED_HEADERS: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "proxy-connection",
    "proxy-authenticate",
];

impl Server {
    /// The per-request store limits.
    fn limits(&self) -> StoreLimits {
        let mut limits = StoreLimitsBuilder::new();
        if let Some(m) = self.options.memory {
            limits = limits.memory_size(m as usize);
        }
        limits.build()
    }

    async fn handle(
        self: &Arc<Self>,
        req: hyper::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> hyper::Response<HyperOutgoingBody> {
        let start = Instant::now();
        let method = req.method().to_string();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into());
        let in_flight = InFlight::new(self);
        // A CGI request body is read whole, under the deadline, before the
        // request takes a slot: slow uploads cannot hold slots.
        let pending = match &self.handler {
            Handler::Cgi(_) => {
                let (parts, body) = req.into_parts();
                let limit = self.options.timeout.unwrap_or(CGI_BODY_TIMEOUT);
                let read = http_body_util::Limited::new(body, MAX_CGI_BODY).collect();
                match tokio::time::timeout(limit, read).await {
                    Ok(Ok(b)) => Ok(Pending::Cgi(parts, b.to_bytes())),
                    Ok(Err(e)) => Err((413, format!("request body: {e}"))),
                    Err(_) => Err((408, "request body: timeout".to_owned())),
                }
            }
            Handler::Proxy(_) => Ok(Pending::Proxy(req)),
        };
        let (resp, error, slot) = match pending {
            Err((status, why)) => (text_response(status, &why), Some(why), None),
            Ok(pending) => match self.slots.clone().acquire_owned().await {
                Ok(slot) => match match (&self.handler, pending) {
                    (Handler::Cgi(pre), Pending::Cgi(parts, body)) => {
                        self.cgi(pre, parts, body, peer).await
                    }
                    (Handler::Proxy(pre), Pending::Proxy(req)) => self.call(pre, req).await,
                    _ => unreachable!("a request is read for its handler's kind"),
                } {
                    Ok(r) => (r, None, Some(slot)),
                    Err((status, why)) => (text_response(status, &why), Some(why), Some(slot)),
                },
                Err(_) => (text_response(503, "shutting down"), None, None),
            },
        };
        (self.log)(&AccessEntry {
            method,
            path,
            status: resp.status().as_u16(),
            duration: start.elapsed(),
            error,
        });
        resp.map(|body| {
            Guarded {
                body,
                _slot: slot,
                _in_flight: in_flight,
            }
            .boxed_unsync()
        })
    }

    /// Runs one CGI request: a fresh instance of the command with the
    /// request in its environment and on stdin, its stdout the response.
    async fn cgi(
        &self,
        pre: &wasmtime::InstancePre<CgiHost>,
        parts: hyper::http::request::Parts,
        body: Bytes,
        peer: SocketAddr,
    ) -> Result<hyper::Response<HyperOutgoingBody>, (u16, String)> {
        let env = cgi_env(
            &self.prepared.env,
            &parts,
            body.len(),
            peer,
            self.addr.get().copied(),
        );
        let mut b = WasiCtxBuilder::new();
        configure(&mut b, &self.prepared.argv, &env, &self.prepared.sandbox)
            .map_err(|e| (500, e.to_string()))?;
        self.options.network.apply(&mut b);
        b.stdin(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(body));
        let out = wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(MAX_CGI_OUTPUT);
        b.stdout(out.clone());
        b.stderr(wasmtime_wasi::cli::stderr());
        let mut store = WasmStore::new(
            &self.engine,
            CgiHost {
                wasi: b.build_p1(),
                limits: self.limits(),
            },
        );
        store.limiter(|h| &mut h.limits);
        let deadline = arm_deadline(&mut store, self.options.timeout);
        let result = async {
            let instance = pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        }
        .await;
        let code = match result {
            Ok(()) => 0,
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => exit.0,
                None if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err((504, format!("timeout: {}", failure(&e))))
                }
                None => return Err((500, failure(&e))),
            },
        };
        drop(store);
        let output = out.contents();
        if output.is_empty() {
            return Err((
                500,
                format!("guest exited with code {code} and wrote no response"),
            ));
        }
        cgi_response(&output).map_err(|e| (500, e))
    }

    /// Runs one request in a fresh instance. An `Err` is the status and
    /// reason wharf answers with itself.
    async fn call(
        &self,
        pre: &ProxyPre<Host>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, (u16, String)> {
        let internal = |e: String| (500, e);
        let mut b = WasiCtxBuilder::new();
        configure(
            &mut b,
            &self.prepared.argv,
            &self.prepared.env,
            &self.prepared.sandbox,
        )
        .map_err(|e| internal(e.to_string()))?;
        self.options.network.apply(&mut b);
        // Guest output is diagnostics: both streams go to wharf's stderr.
        b.stdout(wasmtime_wasi::cli::stderr());
        b.stderr(wasmtime_wasi::cli::stderr());
        let mut store = WasmStore::new(
            &self.engine,
            Host {
                wasi: b.build(),
                http: WasiHttpCtx::new(),
                hooks: Outgoing {
                    policy: self.options.network.clone(),
                    client: self.http_client.clone(),
                },
                table: ResourceTable::new(),
                limits: self.limits(),
            },
        );
        store.limiter(|h| &mut h.limits);
        let deadline = arm_deadline(&mut store, self.options.timeout);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .map_err(|e| internal(format!("{e:#}")))?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|e| internal(format!("{e:#}")))?;
        let pre = pre.clone();
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, out)
                .await
        });
        // Epoch checks only run inside wasm: a guest waiting in the host
        // (on a slow request body, an outgoing request) is bounded here.
        let head = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), receiver).await {
                Ok(r) => r,
                Err(_) => {
                    task.abort();
                    return Err((504, "timeout: guest interrupted".into()));
                }
            },
            None => receiver.await,
        };
        match head {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => Err((500, format!("guest answered with error {code:?}"))),
            Err(_) => {
                let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
                let why = match task.await {
                    Ok(Ok(())) => "guest did not set a response".to_owned(),
                    Ok(Err(e)) => failure(&e),
                    Err(e) => format!("guest task failed: {e}"),
                };
                if timed_out {
                    Err((504, format!("timeout: {why}")))
                } else {
                    Err((500, why))
                }
            }
        }
    }
}
