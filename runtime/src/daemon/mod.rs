//! `wharf daemon`: the Docker Engine API on a Unix socket, so the `docker`
//! CLI and the Docker SDKs drive wharf unchanged (spec/api.md).
//!
//! The daemon holds no state of its own: images are the store's and
//! containers are [`crate::container`]'s, each owned by its monitor
//! process. A daemon killed and started again finds everything as it was,
//! and containers keep running meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::container::{
    self, docker, logs, ContainerConfig, ContainerError, Containers, WaitCondition,
};
use crate::exec::tty::DetachKeys;
use crate::registry::{self, Event};

/// The API version the daemon reports (clients negotiate down to it).
pub const API_VERSION: &str = "1.43";
/// The oldest API version accepted.
pub const MIN_API_VERSION: &str = "1.24";
/// Largest request body read (container create is a few KiB).
pub const MAX_BODY: usize = 1 << 20;

type Body = BoxBody<Bytes, Infallible>;

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The socket could not be made.
    #[error("socket {}: {reason}", .path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Container management failed.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// An I/O failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Serves the API on `socket` until the process ends. The socket is made
/// with mode 0660: whoever can connect to it controls wharf (and, as
/// root, the host), as with Docker's socket.
pub fn serve(containers: Containers, socket: &Path) -> Result<(), DaemonError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve_async(containers, socket))
}

async fn serve_async(containers: Containers, socket: &Path) -> Result<(), DaemonError> {
    let bad = |reason: String| DaemonError::Socket {
        path: socket.to_owned(),
        reason,
    };
    if socket.exists() {
        // A socket nobody answers on is left over from a daemon that died.
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(bad("another daemon is listening on it".into()));
        }
        std::fs::remove_file(socket).map_err(|e| bad(e.to_string()))?;
    }
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
    }
    // Made under a restrictive umask so it is never briefly open to all.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o117));
    let listener = tokio::net::UnixListener::bind(socket);
    rustix::process::umask(old);
    let listener = listener.map_err(|e| bad(e.to_string()))?;
    tracing::info!(socket = %socket.display(), "serving the Docker Engine API");
    // Monitors are forked from a server rather than executed anew for
    // each start (decision 0012); without one, they are executed.
    let containers = match containers.clone().with_monitor_server() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no monitor server: executing monitors");
            containers
        }
    };
    // Plain wasm containers run on threads of a guest host (decision
    // 0013); without one, each gets a monitor.
    let containers = match containers.clone().with_guest_host() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no guest host: wasm containers get monitors");
            containers
        }
    };
    let api = Arc::new(Api {
        containers,
        execs: Arc::default(),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let api = api.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(error = %e, "API connection ended");
            }
        });
    }
}

mod build;
mod exec;

struct Api {
    containers: Containers,
    execs: Arc<exec::Execs>,
}

/// A failed request: a status and Docker's `{"message": ...}`.
#[derive(Debug)]
struct Failure(StatusCode, String);

impl From<ContainerError> for Failure {
    fn from(e: ContainerError) -> Failure {
        let status = match &e {
            ContainerError::NotFound(_) => StatusCode::NOT_FOUND,
            ContainerError::NameInUse { .. }
            | ContainerError::Running(_)
            | ContainerError::NotRunning(_)
            | ContainerError::AlreadyPaused(_)
            | ContainerError::NotPaused(_) => StatusCode::CONFLICT,
            ContainerError::Ambiguous(_)
            | ContainerError::InvalidName(_)
            | ContainerError::Invalid(_)
            | ContainerError::Run(_) => StatusCode::BAD_REQUEST,
            ContainerError::Store(crate::store::StoreError::UnknownImage(_))
            | ContainerError::Image(crate::image::ImageError::Store(
                crate::store::StoreError::UnknownImage(_),
            )) => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, e.to_string())
    }
}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Failure {
        use crate::image::ImageError;
        use crate::store::StoreError;
        let status = match &e {
            crate::Error::Store(StoreError::UnknownImage(_))
            | crate::Error::Image(ImageError::Store(StoreError::UnknownImage(_))) => {
                StatusCode::NOT_FOUND
            }
            crate::Error::Store(StoreError::Ambiguous(_) | StoreError::InUse { .. })
            | crate::Error::Image(ImageError::Store(
                StoreError::Ambiguous(_) | StoreError::InUse { .. },
            )) => StatusCode::CONFLICT,
            crate::Error::Reference(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, e.to_string())
    }
}

fn bad_request(m: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, m.into())
}

type Reply = Result<Response<Body>, Failure>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn reply(status: StatusCode, body: Body, content_type: &str) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        content_type.parse().expect("a valid header value"),
    );
    r
}

fn json_reply(status: StatusCode, v: &Value) -> Reply {
    Ok(reply(
        status,
        full(serde_json::to_vec(v).expect("serialisable")),
        "application/json",
    ))
}

/// 200 with no body (what Docker answers a resize).
fn ok_empty() -> Reply {
    Ok(reply(
        StatusCode::OK,
        full(Bytes::new()),
        "text/plain; charset=utf-8",
    ))
}

fn no_content() -> Reply {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

fn not_modified() -> Reply {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    Ok(r)
}

/// A body fed from a channel: headers go out at once, the rest as it comes.
fn channel_body(rx: mpsc::Receiver<Bytes>) -> Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    StreamBody::new(stream).boxed()
}

/// Runs blocking container work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())))
}

/// Query parameters. A key may repeat (`t` of a build); [`Query::get`]
/// reads its first value, as Go's `FormValue` in Docker's daemon.
struct Query(HashMap<String, Vec<String>>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.entry(percent_decode(k))
                .or_default()
                .push(percent_decode(v));
        }
        Query(m)
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.all(k).first().map(String::as_str)
    }

    /// Every value of `k`, in order.
    fn all(&self, k: &str) -> &[String] {
        self.0.get(k).map(Vec::as_slice).unwrap_or_default()
    }

    /// Docker's booleans: `1`, `true`, `True`; absent is false.
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "true" | "True" | "TRUE"))
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `/v1.43/rest` into the version (if given) and `/rest`.
fn strip_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(slash) = rest.find('/') {
            let v = &rest[..slash];
            if v.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            {
                return (Some(v), &rest[slash..]);
            }
        }
    }
    (None, path)
}

fn version_key(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

impl Api {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = percent_decode(req.uri().path());
        let (version, route) = strip_version(&path);
        let result = match version {
            Some(v) if version_key(v) < version_key(MIN_API_VERSION) => Err(bad_request(format!(
                "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
            ))),
            _ => {
                let route = route.to_owned();
                self.route(method.clone(), &route, req).await
            }
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(Failure(status, message)) => {
                tracing::debug!(%method, %path, %status, %message, "API error");
                reply(
                    status,
                    full(serde_json::to_vec(&json!({ "message": message })).expect("json")),
                    "application/json",
                )
            }
        };
        let h = resp.headers_mut();
        h.insert("Api-Version", API_VERSION.parse().expect("valid"));
        h.insert("Ostype", "linux".parse().expect("valid"));
        h.insert(
            "Server",
            concat!("wharf/", env!("CARGO_PKG_VERSION"))
                .parse()
                .expect("valid"),
        );
        resp
    }

    async fn route(self: Arc<Self>, method: Method, path: &str, req: Request<Incoming>) -> Reply {
        let q = Query::parse(req.uri().query());
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (&method, segs.as_slice()) {
            (&Method::GET | &Method::HEAD, ["_ping"]) => {
                let mut r = reply(StatusCode::OK, full("OK"), "text/plain; charset=utf-8");
                r.headers_mut().insert(
                    "Cache-Control",
                    "no-cache, no-store, must-revalidate"
                        .parse()
                        .expect("valid"),
                );
                Ok(r)
            }
            (&Method::GET, ["version"]) => json_reply(StatusCode::OK, &version_json()),
            (&Method::GET, ["info"]) => self.info().await,
            (&Method::GET, ["images", "json"]) => self.images(&q).await,
            (&Method::POST, ["images", "create"]) => self.pull(&q, req.headers()).await,
            (&Method::POST, ["images", "prune"]) => self.prune_images(&q).await,
            (_, ["images", ..]) => self.image_route(&method, path, &q, req.headers()).await,
            (&Method::POST, ["containers", "create"]) => self.create(&q, req).await,
            (&Method::GET, ["containers", "json"]) => self.list(&q).await,
            (&Method::GET, ["containers", id, "json"]) => self.inspect(id).await,
            (&Method::POST, ["containers", id, "start"]) => self.start(id).await,
            (&Method::POST, ["containers", id, "stop"]) => self.stop(id, &q, false).await,
            (&Method::POST, ["containers", id, "restart"]) => self.stop(id, &q, true).await,
            (&Method::POST, ["containers", id, "kill"]) => self.kill(id, &q).await,
            (&Method::POST, ["containers", id, "resize"]) => self.resize(id, &q).await,
            (&Method::POST, ["containers", id, "wait"]) => self.wait(id, &q).await,
            (&Method::GET, ["containers", id, "logs"]) => self.logs(id, &q).await,
            (&Method::POST, ["containers", id, "attach"]) => self.attach(id, &q, req).await,
            (&Method::DELETE, ["containers", id]) => self.remove(id, &q).await,
            (&Method::POST, ["containers", id, "rename"]) => self.rename(id, &q).await,
            (&Method::GET, ["containers", id, "top"]) => self.top(id, &q).await,
            (&Method::GET, ["containers", id, "stats"]) => self.stats(id, &q).await,
            (&Method::POST, ["containers", id, "pause"]) => self.pause(id, true).await,
            (&Method::POST, ["containers", id, "unpause"]) => self.pause(id, false).await,
            (&Method::POST, ["containers", id, "exec"]) => {
                exec::create(&self.containers, &self.execs, id, req).await
            }
            (&Method::POST, ["exec", id, "start"]) => {
                exec::start(&self.containers, &self.execs, id, req).await
            }
            (&Method::GET, ["exec", id, "json"]) => exec::inspect(&self.execs, id),
            (&Method::POST, ["exec", id, "resize"]) => {
                let (rows, cols) = terminal_size(&q)?;
                exec::resize(&self.execs, id, rows, cols)
            }
            (&Method::POST, ["containers", "prune"]) => self.prune_containers().await,
            (&Method::POST, ["build", "prune"]) => self.prune_build_cache().await,
            (&Method::POST, ["build"]) => build::build(&self.containers, &q, req).await,
            // Nothing to prune: wharf keeps no network or volume objects.
            (&Method::POST, ["networks", "prune"]) => {
                json_reply(StatusCode::OK, &json!({ "NetworksDeleted": [] }))
            }
            (&Method::POST, ["volumes", "prune"]) => json_reply(
                StatusCode::OK,
                &json!({ "VolumesDeleted": [], "SpaceReclaimed": 0 }),
            ),
            (&Method::GET, ["system", "df"]) => self.disk_usage().await,
            (&Method::GET, ["events"]) => self.events(&q),
            // wharf has no network, volume or plugin objects: a lookup by
            // name finds none (how `docker inspect NAME` searches).
            (&Method::GET, ["networks", name]) => Err(Failure(
                StatusCode::NOT_FOUND,
                format!("network {name} not found"),
            )),
            (&Method::GET, ["volumes", name]) => Err(Failure(
                StatusCode::NOT_FOUND,
                format!("get {name}: no such volume"),
            )),
            (&Method::GET, ["plugins", name, "json"]) => Err(Failure(
                StatusCode::NOT_FOUND,
                format!("plugin {name} not found"),
            )),
            _ => Err(Failure(
                StatusCode::NOT_IMPLEMENTED,
                format!("wharf does not implement {method} {path}"),
            )),
        }
    }

    /// `POST /containers/prune`: every container that is not running.
    async fn prune_containers(&self) -> Reply {
        let cs = self.containers.clone();
        let v = blocking(move || {
            let removed = cs.prune()?;
            let reclaimed: u64 = removed.iter().map(|(_, size)| size).sum();
            let ids: Vec<&String> = removed.iter().map(|(id, _)| id).collect();
            Ok(json!({ "ContainersDeleted": ids, "SpaceReclaimed": reclaimed }))
        })
        .await?;
        json_reply(StatusCode::OK, &v)
    }

    /// `POST /images/prune`: unnamed images, or with the filter
    /// `dangling=false` (`docker image prune -a`) every image no
    /// container uses.
    async fn prune_images(&self, q: &Query) -> Reply {
        let filters: Value = q
            .get("filters")
            .and_then(|f| serde_json::from_str(f).ok())
            .unwrap_or(Value::Null);
        let all = filter_values(&filters, "dangling")
            .iter()
            .any(|v| matches!(v.as_str(), "false" | "0" | "False"));
        let store = self.containers.store().clone();
        let v = blocking(move || {
            let pruned = store.prune_images(all).map_err(crate::Error::from)?;
            let deleted: Vec<Value> = pruned
                .images
                .iter()
                .map(|n| match n.starts_with("sha256:") {
                    true => json!({ "Deleted": n }),
                    false => json!({ "Untagged": n }),
                })
                .collect();
            Ok(json!({ "ImagesDeleted": deleted, "SpaceReclaimed": pruned.reclaimed }))
        })
        .await?;
        json_reply(StatusCode::OK, &v)
    }

    /// `POST /build/prune`: the whole build cache.
    async fn prune_build_cache(&self) -> Reply {
        let store = self.containers.store().clone();
        let v = blocking(move || {
            let pruned = store.prune_build_cache().map_err(crate::Error::from)?;
            let keys: Vec<&str> = pruned.build_cache.iter().map(|k| k.hex()).collect();
            Ok(json!({ "CachesDeleted": keys, "SpaceReclaimed": pruned.reclaimed }))
        })
        .await?;
        json_reply(StatusCode::OK, &v)
    }

    /// `GET /system/df`: images (with how many containers use each),
    /// containers with their sizes, and build-cache entries.
    async fn disk_usage(&self) -> Reply {
        let cs = self.containers.clone();
        let v = blocking(move || {
            let store = cs.store();
            let usage = store.disk_usage().map_err(crate::Error::from)?;
            let list = cs.list()?;
            let mut images = image_list(store, &crate::image::ImageFilter::default())?;
            for img in images.as_array_mut().into_iter().flatten() {
                let id = img["Id"].as_str().unwrap_or_default().to_owned();
                let n = list.iter().filter(|c| c.config.image_id == id).count();
                img["Containers"] = json!(n);
                img["SharedSize"] = json!(0);
            }
            let containers: Vec<Value> = list
                .iter()
                .map(|c| {
                    let mut v = docker::summary(c);
                    v["SizeRw"] = json!(cs.size(&c.id));
                    v["SizeRootFs"] = json!(0);
                    v
                })
                .collect();
            let cache: Vec<Value> = store
                .build_cache_entries()
                .map_err(crate::Error::from)?
                .iter()
                .map(|e| {
                    let at = e
                        .modified
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    json!({
                        "ID": e.key.hex(),
                        "Parent": "",
                        "Type": "regular",
                        "Description": "wharf build step",
                        "InUse": false,
                        "Shared": false,
                        "Size": e.size,
                        "CreatedAt": crate::build::rfc3339(at),
                        "LastUsedAt": crate::build::rfc3339(at),
                        "UsageCount": 1,
                    })
                })
                .collect();
            Ok(json!({
                "LayersSize": usage.images.size + usage.snapshots.size + usage.modules.size,
                "Images": images,
                "Containers": containers,
                "Volumes": [],
                "BuildCache": cache,
            }))
        })
        .await?;
        json_reply(StatusCode::OK, &v)
    }

    async fn info(&self) -> Reply {
        let cs = self.containers.clone();
        let v = blocking(move || {
            let list = cs.list()?;
            let running = list.iter().filter(|c| c.state.is_running()).count();
            let images = cs.store().list().map(|l| l.len()).unwrap_or(0);
            Ok(json!({
                "ID": "wharf",
                "Containers": list.len(),
                "ContainersRunning": running,
                "ContainersPaused": 0,
                "ContainersStopped": list.len() - running,
                "Images": images,
                "Driver": "overlay",
                "DockerRootDir": cs.store().root().display().to_string(),
                "OperatingSystem": "wharf",
                "OSType": "linux",
                "Architecture": std::env::consts::ARCH,
                "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
                "MemTotal": 0,
                "Name": "wharf",
                "ServerVersion": env!("CARGO_PKG_VERSION"),
                "LoggingDriver": "json-file",
                "CgroupDriver": "cgroupfs",
                "Runtimes": { "wasmtime": { "path": "wharf" }, "wharf-linux": { "path": "wharf" } },
                "DefaultRuntime": "wasmtime",
                "SecurityOptions": ["name=seccomp,profile=builtin", "name=no-new-privileges"],
                "Warnings": [],
            }))
        })
        .await?;
        json_reply(StatusCode::OK, &v)
    }

    /// `GET /images/json?filters=`: one entry per image id, with Docker's
    /// image filters (`crate::image::ImageFilter`).
    async fn images(&self, q: &Query) -> Reply {
        let mut filter = crate::image::ImageFilter::default();
        query_filters(q, |k, v| filter.insert(k, v))?;
        let store = self.containers.store().clone();
        let v = blocking(move || image_list(&store, &filter)).await?;
        json_reply(StatusCode::OK, &v)
    }

    async fn image_route(
        &self,
        method: &Method,
        path: &str,
        q: &Query,
        headers: &hyper::HeaderMap,
    ) -> Reply {
        let rest = path.trim_start_matches('/').trim_start_matches("images/");
        let store = self.containers.store().clone();
        if let (&Method::GET, Some(name)) = (method, rest.strip_suffix("/json")) {
            let name = name.to_owned();
            let v = blocking(move || {
                let mut v = crate::image::inspect(&store, &name).map_err(crate::Error::from)?;
                Ok(v[0].take())
            })
            .await?;
            return json_reply(StatusCode::OK, &v);
        }
        if let (&Method::POST, Some(name)) = (method, rest.strip_suffix("/tag")) {
            let (name, repo, tag) = (
                name.to_owned(),
                q.get("repo").unwrap_or("").to_owned(),
                q.get("tag").unwrap_or("latest").to_owned(),
            );
            blocking(move || {
                let tagged = store.lookup(&name).map_err(crate::Error::from)?;
                let target = format!("{repo}:{}", if tag.is_empty() { "latest" } else { &tag });
                let r: crate::reference::Reference = target
                    .parse()
                    .map_err(|e: crate::reference::ReferenceError| bad_request(e.to_string()))?;
                store
                    .set_name(&r, &tagged.descriptor)
                    .map_err(crate::Error::from)?;
                Ok(())
            })
            .await?;
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::CREATED;
            return Ok(r);
        }
        if let (&Method::POST, Some(name)) = (method, rest.strip_suffix("/push")) {
            let name = match q.get("tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{name}:{t}"),
                None => name.to_owned(),
            };
            return self.push(name, headers).await;
        }
        if method == Method::DELETE {
            let (name, force) = (rest.to_owned(), q.flag("force"));
            let v = blocking(move || {
                let removed =
                    crate::image::remove(&store, &name, force).map_err(crate::Error::from)?;
                let _ = store.collect_garbage();
                Ok(Value::Array(
                    removed
                        .into_iter()
                        .map(|n| json!({ "Untagged": n }))
                        .collect(),
                ))
            })
            .await?;
            return json_reply(StatusCode::OK, &v);
        }
        Err(Failure(
            StatusCode::NOT_IMPLEMENTED,
            format!("wharf does not implement {method} {path}"),
        ))
    }

    /// `GET /events?since=&until=&filters=`: the store's event journal
    /// (crate::events), replayed from `since` and followed until `until`
    /// (or until the client leaves), as JSON lines.
    fn events(&self, q: &Query) -> Reply {
        let window = query_window(q, "")?;
        let mut filter = crate::events::Filter::default();
        query_filters(q, |k, v| filter.insert(k, v))?;
        let journal = crate::events::Journal::of(self.containers.store());
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        tokio::task::spawn_blocking(move || {
            let _ = journal.watch(
                &window,
                &filter,
                |e| tx.blocking_send(line(e.docker_json())).is_ok(),
                || tx.is_closed(),
            );
        });
        Ok(reply(StatusCode::OK, channel_body(rx), "application/json"))
    }

    /// `POST /images/create?fromImage=&tag=`: a pull, reported as Docker's
    /// JSON progress stream; a failure mid-stream is an `error` object.
    async fn pull(&self, q: &Query, headers: &hyper::HeaderMap) -> Reply {
        let Some(from) = q.get("fromImage").filter(|f| !f.is_empty()) else {
            return Err(Failure(
                StatusCode::NOT_IMPLEMENTED,
                "wharf does not implement image import (POST /images/create without fromImage)"
                    .into(),
            ));
        };
        let reference = match q.get("tag").filter(|t| !t.is_empty()) {
            Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
            Some(t) => format!("{from}:{t}"),
            None => from.to_owned(),
        };
        let transport = transport(headers)?;
        let options = registry::PullOptions {
            platform: q
                .get("platform")
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            transport,
        };
        let store = self.containers.store().clone();
        let from = from.to_owned();
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        // The registry client's futures are not `Send`: each transfer runs
        // on its own thread and runtime, as in the CLI.
        tokio::task::spawn_blocking(move || {
            let _ = tx.blocking_send(line(json!({ "status": format!("Pulling from {from}") })));
            let progress = tx.clone();
            let events = move |e: Event| {
                let v = match e {
                    Event::Exists { digest, .. } => {
                        json!({ "status": "Already exists", "id": short_digest(&digest) })
                    }
                    Event::Finished { digest, .. } => {
                        json!({ "status": "Pull complete", "id": short_digest(&digest) })
                    }
                    _ => return,
                };
                let _ = progress.try_send(line(v));
            };
            match block_on(registry::pull(&store, &reference, &options, &events)) {
                Ok((r, digest)) => {
                    let _ =
                        tx.blocking_send(line(json!({ "status": format!("Digest: {digest}") })));
                    let _ = tx.blocking_send(line(json!({
                        "status": format!("Status: Downloaded newer image for {}", r.familiar())
                    })));
                }
                Err(e) => {
                    let _ = tx.blocking_send(error_line(&e.to_string()));
                }
            }
        });
        Ok(reply(StatusCode::OK, channel_body(rx), "application/json"))
    }

    async fn push(&self, name: String, headers: &hyper::HeaderMap) -> Reply {
        let transport = transport(headers)?;
        let store = self.containers.store().clone();
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        tokio::task::spawn_blocking(move || {
            let options = registry::PushOptions { transport };
            let progress = tx.clone();
            let events = move |e: Event| {
                let v = match e {
                    Event::Exists { digest, .. } => {
                        json!({ "status": "Layer already exists", "id": short_digest(&digest) })
                    }
                    Event::Mounted { digest, from } => {
                        json!({ "status": format!("Mounted from {from}"), "id": short_digest(&digest) })
                    }
                    Event::Finished { digest, .. } => {
                        json!({ "status": "Pushed", "id": short_digest(&digest) })
                    }
                    _ => return,
                };
                let _ = progress.try_send(line(v));
            };
            match block_on(registry::push(&store, &name, None, &options, &events)) {
                Ok((r, digest)) => {
                    let _ = tx.blocking_send(line(json!({
                        "status": format!("{}: digest: {digest}", r.tag().unwrap_or("latest")),
                        "aux": { "Tag": r.tag().unwrap_or("latest"), "Digest": digest.to_string() },
                    })));
                }
                Err(e) => {
                    let _ = tx.blocking_send(error_line(&e.to_string()));
                }
            }
        });
        Ok(reply(StatusCode::OK, channel_body(rx), "application/json"))
    }

    async fn create(&self, q: &Query, req: Request<Incoming>) -> Reply {
        let body = read_body(req).await?;
        let v: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| bad_request(format!("invalid container configuration: {e}")))?
        };
        let config = container_config(&v)?;
        let name = q.get("name").filter(|n| !n.is_empty()).map(str::to_owned);
        let platform = q
            .get("platform")
            .filter(|p| !p.is_empty())
            .map(str::to_owned);
        let cs = self.containers.clone();
        let c = blocking(move || {
            let image = config.image.clone();
            cs.create(name.as_deref(), platform.as_deref(), config)
                .map_err(|e| match e {
                    ContainerError::Store(crate::store::StoreError::UnknownImage(_)) => {
                        Failure(StatusCode::NOT_FOUND, format!("No such image: {image}"))
                    }
                    e => e.into(),
                })
        })
        .await?;
        json_reply(StatusCode::CREATED, &json!({ "Id": c.id, "Warnings": [] }))
    }

    async fn list(&self, q: &Query) -> Reply {
        let all = q.flag("all");
        let limit: Option<usize> = q
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > 0);
        // Lenient, as the list has always been: malformed filters and
        // unknown keys filter nothing out.
        let json: Value = q
            .get("filters")
            .and_then(|f| serde_json::from_str(f).ok())
            .unwrap_or(Value::Null);
        let mut filters = docker::Filters::default();
        each_filter(&json, |k, v| {
            filters.insert_any(k, v);
            Ok(())
        })?;
        let all = all || filters.implies_all();
        let cs = self.containers.clone();
        let v = blocking(move || {
            let mut out = Vec::new();
            for c in cs.list()? {
                if !all && !c.state.is_running() {
                    continue;
                }
                if !filters.matches(&c) {
                    continue;
                }
                out.push(docker::summary(&c));
                if limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
            Ok(Value::Array(out))
        })
        .await?;
        json_reply(StatusCode::OK, &v)
    }

    async fn inspect(&self, id: &str) -> Reply {
        let (cs, id) = (self.containers.clone(), id.to_owned());
        let v = blocking(move || Ok(docker::inspect(&cs, &cs.get(&id)?))).await?;
        json_reply(StatusCode::OK, &v)
    }

    async fn start(&self, id: &str) -> Reply {
        let (cs, id) = (self.containers.clone(), id.to_owned());
        match blocking(move || Ok(cs.start(&id))).await? {
            Ok(()) => no_content(),
            Err(ContainerError::AlreadyRunning(_)) => not_modified(),
            Err(e) => Err(e.into()),
        }
    }

    async fn stop(&self, id: &str, q: &Query, restart: bool) -> Reply {
        let t = q
            .get("t")
            .and_then(|t| t.parse::<i64>().ok())
            .map(|t| std::time::Duration::from_secs(t.max(0) as u64));
        let (cs, id) = (self.containers.clone(), id.to_owned());
        let stopped = blocking(move || {
            if restart {
                cs.restart(&id, t)?;
                Ok(true)
            } else {
                Ok(cs.stop(&id, t)?)
            }
        })
        .await?;
        if stopped {
            no_content()
        } else {
            not_modified()
        }
    }

    async fn kill(&self, id: &str, q: &Query) -> Reply {
        let sig =
            container::parse_signal(q.get("signal").filter(|s| !s.is_empty()).unwrap_or("KILL"))?;
        let (cs, id) = (self.containers.clone(), id.to_owned());
        blocking(move || Ok(cs.kill(&id, sig)?)).await?;
        no_content()
    }

    /// `POST /containers/{id}/resize?h=ROWS&w=COLS`: the terminal's size.
    async fn resize(&self, id: &str, q: &Query) -> Reply {
        let (rows, cols) = terminal_size(q)?;
        let (cs, id) = (self.containers.clone(), id.to_owned());
        blocking(move || Ok(cs.resize(&id, rows, cols)?)).await?;
        ok_empty()
    }

    async fn remove(&self, id: &str, q: &Query) -> Reply {
        let force = q.flag("force");
        let (cs, id) = (self.containers.clone(), id.to_owned());
        blocking(move || Ok(cs.remove(&id, force)?)).await?;
        no_content()
    }

    /// `GET /containers/{id}/top`: the columns of `ps -ef` (wharf reads
    /// `/proc` itself, so `ps_args` other than `-ef` are refused).
    async fn top(&self, id: &str, q: &Query) -> Reply {
        if let Some(args) = q.get("ps_args").filter(|a| !a.is_empty() && *a != "-ef") {
            return Err(bad_request(format!(
                "top: ps_args {args:?} are not supported: wharf shows the columns of ps -ef"
            )));
        }
        let (cs, id) = (self.containers.clone(), id.to_owned());
        let t = blocking(move || Ok(cs.top(&id)?)).await?;
        json_reply(
            StatusCode::OK,
            &json!({ "Titles": t.titles, "Processes": t.processes }),
        )
    }

    /// `GET /containers/{id}/stats?stream=&one-shot=`: one reading (with
    /// one half a second before it, unless `one-shot`) or, by default, one
    /// a second while the container runs.
    async fn stats(&self, id: &str, q: &Query) -> Reply {
        let cs = self.containers.clone();
        let c = cs.get(id)?;
        let stream = q.get("stream").is_none_or(|v| v == "1" || v == "true");
        let one_shot = q.flag("one-shot");
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        tokio::task::spawn_blocking(move || {
            let line = |now: &container::stats::Sample, before: &container::stats::Sample| {
                let mut v = serde_json::to_vec(&docker::stats(&c, now, before)).expect("json");
                v.push(b'\n');
                Bytes::from(v)
            };
            let mut before = cs.stats_of(&c);
            if !stream {
                let now = if one_shot {
                    std::mem::take(&mut before)
                } else {
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    cs.stats_of(&c)
                };
                let _ = tx.blocking_send(line(&now, &before));
                return;
            }
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let Ok(current) = cs.get(&c.id) else {
                    return;
                };
                let now = cs.stats_of(&current);
                if tx.blocking_send(line(&now, &before)).is_err() || !current.state.is_running() {
                    return;
                }
                before = now;
            }
        });
        Ok(reply(StatusCode::OK, channel_body(rx), "application/json"))
    }

    /// `POST /containers/{id}/pause` and `/unpause`.
    async fn pause(&self, id: &str, pause: bool) -> Reply {
        let (cs, id) = (self.containers.clone(), id.to_owned());
        blocking(move || match pause {
            true => Ok(cs.pause(&id)?),
            false => Ok(cs.unpause(&id)?),
        })
        .await?;
        no_content()
    }

    /// `POST /containers/{id}/rename?name=NEW`.
    async fn rename(&self, id: &str, q: &Query) -> Reply {
        let name = q
            .get("name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad_request("rename: the new name (name=) is missing"))?
            .to_owned();
        let (cs, id) = (self.containers.clone(), id.to_owned());
        blocking(move || Ok(cs.rename(&id, &name)?)).await?;
        no_content()
    }

    /// `POST /containers/{id}/wait`: the headers go out at once (clients
    /// call it before `start`), the status code when the wait ends.
    async fn wait(&self, id: &str, q: &Query) -> Reply {
        let condition: WaitCondition = q.get("condition").unwrap_or("").parse()?;
        let cs = self.containers.clone();
        let id = cs.resolve(id)?;
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        tokio::task::spawn_blocking(move || {
            let v = match cs.wait(&id, condition) {
                Ok(code) => json!({ "StatusCode": code, "Error": null }),
                Err(e) => json!({ "StatusCode": -1, "Error": { "Message": e.to_string() } }),
            };
            let _ = tx.blocking_send(Bytes::from(serde_json::to_vec(&v).expect("json")));
        });
        Ok(reply(StatusCode::OK, channel_body(rx), "application/json"))
    }

    async fn logs(&self, id: &str, q: &Query) -> Reply {
        let cs = self.containers.clone();
        let c = cs.get(id)?;
        let (stdout, stderr) = (q.flag("stdout"), q.flag("stderr"));
        if !stdout && !stderr {
            return Err(bad_request(
                "you must choose at least one stream (stdout or stderr)",
            ));
        }
        let timestamps = q.flag("timestamps");
        let tail: Option<usize> = match q.get("tail") {
            None | Some("all") | Some("") => None,
            Some(n) => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(|n| n as usize),
        };
        let mut window = query_window(q, "logs ")?;
        // The docker CLI sends 0 for no bound.
        window.since = window.since.filter(|t| *t != 0);
        window.until = window.until.filter(|t| *t != 0);
        let query = logs::Query {
            tail,
            window,
            follow: q.flag("follow"),
        };
        let tty = c.config.tty;
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        tokio::task::spawn_blocking(move || {
            let _ = cs.read_log(&c.id, &query, &mut |e| {
                if (e.stream == "stderr" && !stderr) || (e.stream != "stderr" && !stdout) {
                    return Ok(());
                }
                let text = e.text(timestamps);
                let bytes = if tty {
                    text.into_bytes()
                } else {
                    logs::frame(&e.stream, text.as_bytes())
                };
                tx.blocking_send(Bytes::from(bytes))
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            });
        });
        Ok(reply(StatusCode::OK, channel_body(rx), stream_type(tty)))
    }

    /// `POST /containers/{id}/attach`: the connection is taken over
    /// (HTTP 101) and carries the container's output from now until it
    /// exits, and with `stdin` the client's input to a container made
    /// with `OpenStdin`. At a terminal (`Tty`), the detach keys
    /// (`detachKeys`, default Ctrl-P Ctrl-Q) end the attach and leave the
    /// container running.
    async fn attach(&self, id: &str, q: &Query, mut req: Request<Incoming>) -> Reply {
        let cs = self.containers.clone();
        let c = cs.get(id)?;
        let keys = detach_keys(q.get("detachKeys").unwrap_or(""))?;
        let (stdout, stderr) = (q.flag("stdout"), q.flag("stderr"));
        let logs_too = q.flag("logs");
        let tty = c.config.tty;
        let mut reader = cs.log_reader(&c.id, !logs_too)?;
        let input = q.flag("stdin") && c.config.open_stdin;
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else {
                return;
            };
            let (read, io) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
            let detached = if input {
                let (cs, id) = (cs.clone(), c.id.clone());
                let keys = tty.then_some(keys);
                Some(forward_input(read, keys, move || cs.attach_stdin(&id).ok()))
            } else {
                None
            };
            let (tx, rx) = mpsc::channel::<Bytes>(64);
            tokio::task::spawn_blocking(move || {
                let mut send = |e: &logs::Entry| -> std::io::Result<()> {
                    if (e.stream == "stderr" && !stderr) || (e.stream != "stderr" && !stdout) {
                        return Ok(());
                    }
                    let bytes = if tty {
                        e.log.clone().into_bytes()
                    } else {
                        logs::frame(&e.stream, e.log.as_bytes())
                    };
                    tx.blocking_send(Bytes::from(bytes))
                        .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
                };
                let _ = cs.follow(&c.id, &mut reader, true, &mut send);
            });
            write_then_close(io, rx, detached).await;
        });
        Ok(switching_protocols(tty))
    }
}

/// Writes what `rx` brings to the client, then closes the connection's
/// sending side (the end of the stream, for the client). A client that
/// typed its detach keys (`detached`) is let go at once.
async fn write_then_close(
    mut write: impl tokio::io::AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Bytes>,
    detached: Option<Detached>,
) {
    use tokio::io::AsyncWriteExt as _;
    let detached = async move {
        let typed = match detached {
            Some(d) => d.await.is_ok(),
            None => false,
        };
        if !typed {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(detached);
    loop {
        tokio::select! {
            b = rx.recv() => match b {
                Some(b) if write.write_all(&b).await.is_ok() => {}
                Some(_) => return,
                None => break,
            },
            () = &mut detached => break,
        }
    }
    let _ = write.flush().await;
    let _ = write.shutdown().await;
}

/// Fires when a client at a terminal types its detach keys.
type Detached = tokio::sync::oneshot::Receiver<()>;

/// `detachKeys` of attach and `DetachKeys` of exec create: Docker's
/// notation, the default when empty.
fn detach_keys(spec: &str) -> std::result::Result<DetachKeys, Failure> {
    DetachKeys::parse(spec).map_err(bad_request)
}

/// Copies what the client sends over an upgraded connection into the
/// writer `open` gives (called on a thread of its own, since it may wait
/// for a reader), until the client closes its side or types the detach
/// `keys` (then the returned [`Detached`] fires); then drops the writer.
/// A pipe's reader sees end-of-file; a terminal's has no end of input.
fn forward_input<R, W>(
    mut read: R,
    mut keys: Option<DetachKeys>,
    open: impl FnOnce() -> Option<W> + Send + 'static,
) -> Detached
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: std::io::Write,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let (detach, detached) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let Some(mut w) = open() else {
            return;
        };
        while let Some(b) = rx.blocking_recv() {
            if w.write_all(&b).is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 32 << 10];
        while let Ok(n @ 1..) = read.read(&mut buf).await {
            let (pass, done) = match keys.as_mut() {
                Some(k) => k.scan(&buf[..n]),
                None => (buf[..n].to_vec(), false),
            };
            if !pass.is_empty() && tx.send(Bytes::from(pass)).await.is_err() {
                break;
            }
            if done {
                let _ = detach.send(());
                break;
            }
        }
    });
    detached
}

/// The `h` (rows) and `w` (columns) of a resize request.
fn terminal_size(q: &Query) -> std::result::Result<(u16, u16), Failure> {
    let dimension = |k: &str| {
        q.get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad_request(format!("resize: {k} must be a number of 0 to 65535")))
    };
    Ok((dimension("h")?, dimension("w")?))
}

/// HTTP 101: the connection now carries a raw (`tty`) or multiplexed
/// stream, as Docker answers attach and exec start.
fn switching_protocols(tty: bool) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(hyper::header::CONNECTION, "Upgrade".parse().expect("valid"));
    h.insert(hyper::header::UPGRADE, "tcp".parse().expect("valid"));
    h.insert(
        hyper::header::CONTENT_TYPE,
        stream_type(tty).parse().expect("valid"),
    );
    r
}

/// `GET /images/json`: one entry per image id, with all its names.
fn image_list(
    store: &crate::store::Store,
    filter: &crate::image::ImageFilter,
) -> Result<Value, Failure> {
    let rows = crate::image::summaries(store).map_err(crate::Error::from)?;
    let rows = filter.apply(store, rows).map_err(crate::Error::from)?;
    let mut by_id: Vec<(String, Value)> = Vec::new();
    for r in rows {
        let tag = if r.tag == "<none>" {
            None
        } else {
            Some(format!("{}:{}", r.repository, r.tag))
        };
        if let Some((_, v)) = by_id.iter_mut().find(|(id, _)| *id == r.id) {
            if let (Some(t), Some(tags)) = (tag, v["RepoTags"].as_array_mut()) {
                tags.push(t.into());
            }
            continue;
        }
        let created = parse_rfc3339_secs(&r.created_at).unwrap_or(0);
        by_id.push((
            r.id.clone(),
            json!({
                "Id": r.id,
                "ParentId": "",
                "RepoTags": tag.into_iter().collect::<Vec<_>>(),
                "RepoDigests": [format!("{}@{}", r.repository, r.digest)],
                "Created": created,
                "Size": r.size,
                "SharedSize": -1,
                "VirtualSize": r.size,
                "Labels": r.labels,
                "Containers": -1,
            }),
        ));
    }
    Ok(Value::Array(by_id.into_iter().map(|(_, v)| v).collect()))
}

/// One line of a JSON progress stream.
fn line(v: Value) -> Bytes {
    let mut b = serde_json::to_vec(&v).expect("json");
    b.extend_from_slice(b"\r\n");
    Bytes::from(b)
}

/// The last line of a failed progress stream, as Docker clients read it.
fn error_line(message: &str) -> Bytes {
    line(json!({ "errorDetail": { "message": message }, "error": message }))
}

/// Runs a registry future on a runtime of this (blocking) thread.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}

fn stream_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

fn short_digest(d: &crate::digest::Digest) -> String {
    d.hex()[..12].to_owned()
}

/// The `version` answer.
fn version_json() -> Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "Platform": { "Name": "wharf" },
        "Components": [{
            "Name": "Engine",
            "Version": env!("CARGO_PKG_VERSION"),
            "Details": { "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": "amd64" },
        }],
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH },
        "KernelVersion": kernel.trim(),
        "BuildTime": "",
    })
}

/// Credentials from `X-Registry-Auth` (base64url JSON), if given.
fn transport(headers: &hyper::HeaderMap) -> Result<registry::Transport, Failure> {
    let mut t = registry::Transport::default();
    let Some(h) = headers.get("X-Registry-Auth").and_then(|h| h.to_str().ok()) else {
        return Ok(t);
    };
    use base64::Engine as _;
    let trimmed = h.trim().trim_end_matches('=');
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|_| bad_request("X-Registry-Auth is not base64"))?;
    let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let user = v["username"].as_str().unwrap_or("");
    let pass = v["password"].as_str().unwrap_or("");
    let token = v["identitytoken"].as_str().unwrap_or("");
    if !token.is_empty() {
        t.credentials = Some(registry::Credentials {
            username: "<token>".into(),
            password: token.into(),
        });
    } else if !user.is_empty() {
        t.credentials = Some(registry::Credentials {
            username: user.into(),
            password: pass.into(),
        });
    }
    Ok(t)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Failure> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    limited.collect().await.map(|c| c.to_bytes()).map_err(|e| {
        Failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body: {e} (at most {MAX_BODY} bytes)"),
        )
    })
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(a) => Some(
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect(),
        ),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

/// A container configuration from `POST /containers/create`'s body.
/// Options wharf cannot honour are refused, not ignored.
fn container_config(v: &Value) -> Result<ContainerConfig, Failure> {
    let image = v["Image"]
        .as_str()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| bad_request("the container configuration names no Image"))?;
    let hc = &v["HostConfig"];
    let entrypoint = strings(&v["Entrypoint"]).unwrap_or_default();
    let mut cmd = strings(&v["Cmd"]);
    let entry = match entrypoint.split_first() {
        Some((first, rest)) => {
            if !rest.is_empty() {
                let mut c = rest.to_vec();
                c.extend(cmd.take().unwrap_or_default());
                cmd = Some(c);
            }
            Some(first.clone())
        }
        None => None,
    };
    let mut publish = Vec::new();
    if let Some(ports) = hc["PortBindings"].as_object() {
        for (guest, bindings) in ports {
            let (port, proto) = guest.split_once('/').unwrap_or((guest, "tcp"));
            for b in bindings.as_array().into_iter().flatten() {
                let host_port = b["HostPort"].as_str().unwrap_or("");
                if host_port.is_empty() {
                    return Err(bad_request(format!(
                        "port {guest}: wharf needs an explicit host port"
                    )));
                }
                let ip = b["HostIp"].as_str().filter(|i| !i.is_empty());
                publish.push(format!(
                    "{}{host_port}:{port}/{proto}",
                    ip.map(|i| format!("{i}:")).unwrap_or_default()
                ));
            }
        }
    }
    let restart = match hc["RestartPolicy"]["Name"].as_str().unwrap_or("") {
        "" | "no" => container::RestartPolicy::No,
        "on-failure" => container::RestartPolicy::OnFailure {
            max: hc["RestartPolicy"]["MaximumRetryCount"]
                .as_u64()
                .unwrap_or(0) as u32,
        },
        other => other.parse()?,
    };
    let network = match hc["NetworkMode"].as_str().unwrap_or("") {
        "" | "default" | "none" | "bridge" => None,
        "host" => Some("host".to_owned()),
        other => {
            return Err(bad_request(format!(
                "network mode {other:?} is not supported (none, bridge or host)"
            )))
        }
    };
    let string_map = |m: &Value| -> BTreeMap<String, String> {
        m.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let labels = string_map(&v["Labels"]);
    let log_options = match hc["LogConfig"]["Type"].as_str().unwrap_or("") {
        "" | "json-file" => string_map(&hc["LogConfig"]["Config"]),
        other => {
            return Err(bad_request(format!(
                "log driver {other:?} is not supported: wharf keeps json-file logs"
            )))
        }
    };
    Ok(ContainerConfig {
        image: image.to_owned(),
        cmd,
        entrypoint: entry,
        env: strings(&v["Env"]).unwrap_or_default(),
        mounts: strings(&hc["Binds"]).unwrap_or_default(),
        workdir: v["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .map(str::to_owned),
        memory: hc["Memory"].as_u64().filter(|m| *m > 0),
        publish,
        network,
        hostname: v["Hostname"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_owned),
        user: v["User"]
            .as_str()
            .filter(|u| !u.is_empty())
            .map(str::to_owned),
        cpus: hc["NanoCpus"]
            .as_i64()
            .filter(|n| *n > 0)
            .map(|n| n as f64 / 1e9),
        pids_limit: hc["PidsLimit"].as_i64().filter(|n| *n > 0),
        init: hc["Init"].as_bool().unwrap_or(false),
        restart,
        auto_remove: hc["AutoRemove"].as_bool().unwrap_or(false),
        labels,
        tty: v["Tty"].as_bool().unwrap_or(false),
        console_size: console_size(&hc["ConsoleSize"]),
        open_stdin: v["OpenStdin"].as_bool().unwrap_or(false),
        stdin_once: v["StdinOnce"].as_bool().unwrap_or(false),
        stop_signal: v["StopSignal"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        stop_timeout: v["StopTimeout"].as_u64(),
        log_options,
        ..ContainerConfig::default()
    })
}

/// A `ConsoleSize` (`[rows, columns]`; zeros mean none given).
fn console_size(v: &Value) -> Option<(u16, u16)> {
    let dimension = |i: usize| v[i].as_u64().and_then(|n| u16::try_from(n).ok());
    match (dimension(0), dimension(1)) {
        (Some(rows), Some(cols)) if rows > 0 && cols > 0 => Some((rows, cols)),
        _ => None,
    }
}

/// Reads the `filters` parameter (Docker's JSON: `{"key": ["value"]}` or
/// `{"key": {"value": true}}`) into `insert`; malformed JSON, or a filter
/// `insert` refuses, is a 400.
fn query_filters(
    q: &Query,
    insert: impl FnMut(&str, &str) -> Result<(), String>,
) -> Result<(), Failure> {
    let Some(raw) = q.get("filters").filter(|f| !f.is_empty()) else {
        return Ok(());
    };
    let json: Value =
        serde_json::from_str(raw).map_err(|e| bad_request(format!("filters: {e}")))?;
    each_filter(&json, insert)
}

/// Passes every key and value of Docker's `filters` JSON to `insert`;
/// what it refuses is a 400.
fn each_filter(
    json: &Value,
    mut insert: impl FnMut(&str, &str) -> Result<(), String>,
) -> Result<(), Failure> {
    for key in json.as_object().map(|m| m.keys()).into_iter().flatten() {
        for v in filter_values(json, key) {
            insert(key, &v).map_err(bad_request)?;
        }
    }
    Ok(())
}

/// A request's `since` and `until` as a window (an empty value is no
/// bound); a bad time is a 400 whose message begins with `what`.
fn query_window(q: &Query, what: &str) -> Result<logs::Window, Failure> {
    let bound = |k| q.get(k).filter(|v| !v.is_empty());
    logs::Window::parse(bound("since"), bound("until"), container::now_ns())
        .map_err(|e| bad_request(format!("{what}{e}")))
}

/// The values of filter `key`: both `{"name":["x"]}` and the older
/// `{"name":{"x":true}}`.
fn filter_values(filters: &Value, key: &str) -> Vec<String> {
    match &filters[key] {
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Value::Object(o) => o.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Seconds since the epoch of an RFC 3339 UTC time (`...Z`), as images
/// record their creation.
fn parse_rfc3339_secs(s: &str) -> Option<i64> {
    logs::parse_rfc3339(s).map(|(secs, _)| secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_queries() {
        assert_eq!(
            strip_version("/v1.43/containers/json"),
            (Some("1.43"), "/containers/json")
        );
        assert_eq!(strip_version("/_ping"), (None, "/_ping"));
        assert!(version_key("1.9") < version_key("1.24"));
        let q = Query::parse(Some("all=1&filters=%7B%22name%22%3A%5B%22x%22%5D%7D&t=+"));
        assert!(q.flag("all"));
        assert_eq!(q.get("filters"), Some(r#"{"name":["x"]}"#));
        assert_eq!(
            parse_rfc3339_secs("2023-11-14T22:13:20Z"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339_secs("1970-01-01T00:00:00.5Z"), Some(0));
    }

    #[test]
    fn create_bodies_become_configs() {
        let v = json!({
            "Image": "hello",
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo hi"],
            "Env": ["A=1"],
            "HostConfig": {
                "Binds": ["/tmp:/data:ro"],
                "AutoRemove": true,
                "RestartPolicy": { "Name": "on-failure", "MaximumRetryCount": 3 },
                "PortBindings": { "80/tcp": [{ "HostIp": "127.0.0.1", "HostPort": "8080" }] },
                "NetworkMode": "bridge",
            },
        });
        let c = container_config(&v).ok().unwrap();
        assert_eq!(c.entrypoint.as_deref(), Some("/bin/sh"));
        assert_eq!(c.cmd, Some(vec!["-c".to_owned(), "echo hi".to_owned()]));
        assert_eq!(c.publish, ["127.0.0.1:8080:80/tcp"]);
        assert_eq!(c.restart, container::RestartPolicy::OnFailure { max: 3 });
        assert!(c.auto_remove && c.network.is_none());
        assert!(container_config(&json!({})).is_err());
        assert!(
            container_config(&json!({"Image": "x", "HostConfig": {"NetworkMode": "overlay"}}))
                .is_err()
        );
    }
}
