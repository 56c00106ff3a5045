//! `docker build` through the API: `POST /build`, the classic builder's
//! endpoint, which the Docker SDKs (`images.build`) and `docker build` with
//! the classic builder use. The body is the build context as a tar; the
//! reply is Docker's JSON progress stream.
//!
//! The context is unpacked with the confinement of image layers into the
//! store's temporary area, and the build runs in the host's program
//! ([`Containers::build_command`]), as exec does: a build's Linux RUN
//! steps fork containers, which the daemon does not do from its threads.

use std::io::{BufRead as _, Read as _};
use std::path::{Component, Path};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

use super::{bad_request, channel_body, error_line, line, reply, Failure, Query, Reply};
use crate::build::BuildOptions;
use crate::container::Containers;
use crate::reference::Reference;

/// Largest build context accepted: the uploaded tar, before unpacking.
pub const MAX_CONTEXT: u64 = 4 << 30;

/// Parameters that would change what the build makes or how, which wharf
/// cannot honour: a request that sets one is refused, never half-served.
const REFUSED: &[(&str, &str)] = &[
    (
        "remote",
        "remote build contexts are not supported: send the context as the body",
    ),
    (
        "pull",
        "pull is not supported: base images come from the store",
    ),
    (
        "labels",
        "labels are not supported: use LABEL in the Dockerfile",
    ),
    ("squash", "squash is not supported"),
    ("extrahosts", "extra hosts are not supported"),
    ("outputs", "outputs are not supported"),
    (
        "networkmode",
        "network modes are not supported: RUN steps get no network",
    ),
    ("isolation", "isolation modes are not supported"),
    ("memory", "memory limits for RUN steps are not supported"),
    ("memswap", "memory limits for RUN steps are not supported"),
    ("cpushares", "CPU limits for RUN steps are not supported"),
    ("cpusetcpus", "CPU limits for RUN steps are not supported"),
    ("cpusetmems", "CPU limits for RUN steps are not supported"),
    ("cpuperiod", "CPU limits for RUN steps are not supported"),
    ("cpuquota", "CPU limits for RUN steps are not supported"),
    ("shmsize", "shm sizes are not supported"),
    ("ulimits", "ulimits for RUN steps are not supported"),
];

/// Whether a query value asks for something: clients send their defaults
/// (`0`, `false`, `{}`, `[]`, `default`) for options nobody set.
fn is_set(v: &str) -> bool {
    !matches!(
        v,
        "" | "0" | "false" | "False" | "FALSE" | "{}" | "[]" | "null" | "default"
    )
}

/// What a request asks for.
struct BuildRequest {
    /// The build, with its context at `DIR/context` and its Dockerfile at
    /// `DIR/dockerfile/NAME`: a copy [`run`] makes of the context's file,
    /// read inside the context only.
    options: BuildOptions,
    /// The Dockerfile's path inside the context.
    dockerfile: std::path::PathBuf,
    /// Only the image id in the stream.
    quiet: bool,
}

/// The build a request asks for, in the temporary directory `dir`.
fn options(q: &Query, dir: &Path) -> Result<BuildRequest, Failure> {
    for (key, why) in REFUSED {
        if q.all(key).iter().any(|v| is_set(v)) {
            return Err(bad_request(format!("build: {why} ({key})")));
        }
    }
    if q.get("version").is_some_and(|v| v == "2") {
        return Err(bad_request(
            "build: BuildKit builds (version=2) are not supported: use the classic builder \
             (DOCKER_BUILDKIT=0)",
        ));
    }
    let dockerfile = q
        .get("dockerfile")
        .filter(|d| !d.is_empty())
        .unwrap_or("Dockerfile");
    if !Path::new(dockerfile)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad_request(format!(
            "build: the Dockerfile {dockerfile:?} must be a path inside the build context"
        )));
    }
    let mut tags = Vec::new();
    for t in q.all("t").iter().filter(|t| !t.is_empty()) {
        tags.push(
            t.parse::<Reference>()
                .map_err(|e| bad_request(format!("build: invalid tag {t:?}: {e}")))?,
        );
    }
    let mut build_args = Vec::new();
    if let Some(raw) = q.get("buildargs").filter(|b| !b.is_empty()) {
        let v: Value =
            serde_json::from_str(raw).map_err(|e| bad_request(format!("build: buildargs: {e}")))?;
        let Value::Object(map) = v else {
            return Err(bad_request("build: buildargs must be a JSON object"));
        };
        for (k, v) in map {
            match v {
                Value::String(s) => build_args.push((k, s)),
                // As Docker: a null value takes the daemon's environment,
                // which wharf does not lend to builds.
                Value::Null => {}
                other => {
                    return Err(bad_request(format!(
                        "build: buildargs: {k} must be a string, not {other}"
                    )))
                }
            }
        }
    }
    let name = Path::new(dockerfile)
        .file_name()
        .unwrap_or("Dockerfile".as_ref());
    let options = BuildOptions {
        context: dir.join("context"),
        dockerfile: Some(dir.join("dockerfile").join(name)),
        tags,
        build_args,
        platform: q.get("platform").filter(|p| !p.is_empty()).map(Into::into),
        no_cache: q.flag("nocache"),
        target: q.get("target").filter(|t| !t.is_empty()).map(Into::into),
        ..BuildOptions::default()
    };
    Ok(BuildRequest {
        options,
        dockerfile: dockerfile.into(),
        quiet: q.flag("q"),
    })
}

/// `POST /build?t=&dockerfile=&buildargs=&target=&platform=&nocache=&q=`.
pub(super) async fn build(containers: &Containers, q: &Query, req: Request<Incoming>) -> Reply {
    let store = containers.store().clone();
    let dir = store
        .temp_dir("build-")
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let tar = dir.path().join("context.tar");
    let request = match options(q, dir.path()) {
        Ok(o) => o,
        Err(refused) => {
            // Read the context all the same: a client still sending it
            // would see a broken pipe instead of the reason.
            let _ = receive(req.into_body(), &tar).await;
            return Err(refused);
        }
    };
    let command = containers
        .build_command(&request.options)
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // A prune meanwhile (it empties the temporary area) fails the build
    // cleanly: the tar is gone when it is opened.
    receive(req.into_body(), &tar).await?;

    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::task::spawn_blocking(move || {
        // From here to the image, no prune: it would take the context.
        let result = match store.lock_shared() {
            Ok(_lock) => run(command, &tar, &request, &tx),
            Err(e) => Err(e.to_string()),
        };
        // The context is gone before the stream ends: a client that reads
        // the last line finds the store as the build left it.
        drop(dir);
        let last = result.unwrap_or_else(|message| vec![error_line(&message)]);
        for l in last {
            let _ = tx.blocking_send(l);
        }
    });
    Ok(reply(StatusCode::OK, channel_body(rx), "application/json"))
}

/// Writes the request body (the context tar) to `path`, at most
/// [`MAX_CONTEXT`] bytes.
async fn receive(mut body: Incoming, path: &Path) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| bad_request(format!("build context: {e}")))?;
        if let Ok(data) = frame.into_data() {
            size += data.len() as u64;
            if size > MAX_CONTEXT {
                return Err(Failure(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("build context: larger than {MAX_CONTEXT} bytes"),
                ));
            }
            file.write_all(&data).await.map_err(io)?;
        }
    }
    file.flush().await.map_err(io)
}

/// Unpacks the context and runs the build, sending its progress; `Ok`
/// holds the stream's closing lines, `Err` the message of its error.
fn run(
    mut command: std::process::Command,
    tar: &Path,
    request: &BuildRequest,
    tx: &mpsc::Sender<Bytes>,
) -> Result<Vec<Bytes>, String> {
    let (options, quiet) = (&request.options, request.quiet);
    let context = &options.context;
    std::fs::create_dir(context).map_err(|e| format!("build context: {e}"))?;
    let file = std::fs::File::open(tar).map_err(|e| format!("build context: {e}"))?;
    crate::layer::extract_tar(file, context, "build context").map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(tar);
    copy_dockerfile(context, &request.dockerfile, options.dockerfile.as_deref())?;

    use std::os::unix::process::CommandExt as _;
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // Its own group, so that a client leaving ends the builder and
        // whatever it started.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("build: cannot start the builder: {e}"))?;
    let group = child.id() as i32;
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (tx, finished) = (tx.clone(), finished.clone());
        std::thread::spawn(move || {
            while !finished.load(std::sync::atomic::Ordering::Relaxed) {
                if tx.is_closed() {
                    // The client left: so do the builder and what it started.
                    let _ = rustix::process::kill_process_group(
                        rustix::process::Pid::from_raw(group).expect("a child's pid"),
                        rustix::process::Signal::KILL,
                    );
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    };
    let stderr = child.stderr.take().expect("piped");
    let mut last = String::new();
    for l in std::io::BufReader::new(stderr).split(b'\n') {
        let Ok(l) = l else { break };
        let l = String::from_utf8_lossy(&l).into_owned();
        if !quiet && !l.starts_with("wharf: ") {
            let _ = tx.blocking_send(line(json!({ "stream": format!("{l}\n") })));
        }
        last = l;
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    let status = child.wait().map_err(|e| format!("build: {e}"));
    finished.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    let status = status?;
    if !status.success() {
        return Err(match last.strip_prefix("wharf: ") {
            Some(m) => m.to_owned(),
            None => format!("build failed ({status})"),
        });
    }
    let id = out.trim();
    if quiet {
        return Ok(vec![line(json!({ "stream": format!("{id}\n") }))]);
    }
    let short = crate::container::short_id(id.trim_start_matches("sha256:"));
    let mut closing = vec![
        line(json!({ "aux": { "ID": id } })),
        line(json!({ "stream": format!("Successfully built {short}\n") })),
    ];
    for t in &options.tags {
        closing.push(line(
            json!({ "stream": format!("Successfully tagged {}\n", t.familiar()) }),
        ));
    }
    Ok(closing)
}

/// Copies the Dockerfile at `rel` inside `context` to `to`, resolving it
/// inside the context only: a link out of it (the context is the
/// client's) is no Dockerfile.
fn copy_dockerfile(context: &Path, rel: &Path, to: Option<&Path>) -> Result<(), String> {
    let missing = || format!("Cannot locate specified Dockerfile: {}", rel.display());
    let root = cap_std::fs::Dir::open_ambient_dir(context, cap_std::ambient_authority())
        .map_err(|e| format!("build context: {e}"))?;
    if !root.metadata(rel).is_ok_and(|m| m.is_file()) {
        return Err(missing());
    }
    let text = root.read(rel).map_err(|_| missing())?;
    let to = to.ok_or_else(missing)?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("build: {e}"))?;
    }
    std::fs::write(to, text).map_err(|e| format!("build: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(s: &str) -> Query {
        Query::parse(Some(s))
    }

    #[test]
    fn options_read_docker_parameters() {
        let dir = Path::new("/tmp/b");
        let BuildRequest {
            options: o,
            dockerfile,
            quiet,
        } = options(
            &query(
                "t=a&t=b%3A2&dockerfile=sub%2FDf&buildargs=%7B%22K%22%3A%22v%22%2C%22N%22%3Anull%7D\
                 &target=t1&nocache=1&q=1&rm=1&forcerm=0&pull=0&labels=%7B%7D&networkmode=default",
            ),
            dir,
        )
        .unwrap();
        assert!(quiet);
        assert_eq!(dockerfile, Path::new("sub/Df"));
        assert_eq!(o.context, Path::new("/tmp/b/context"));
        assert_eq!(
            o.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
            ["a:latest", "b:2"]
        );
        assert_eq!(
            o.dockerfile.as_deref(),
            Some(Path::new("/tmp/b/dockerfile/Df"))
        );
        assert_eq!(o.build_args, [("K".to_owned(), "v".to_owned())]);
        assert_eq!(o.target.as_deref(), Some("t1"));
        assert!(o.no_cache);
    }

    #[test]
    fn options_refuse_what_they_cannot_honour() {
        let ctx = Path::new("/tmp/b");
        for (q, needle) in [
            ("pull=1", "pull"),
            ("remote=https%3A%2F%2Fexample.com%2Fx.git", "remote"),
            ("labels=%7B%22a%22%3A%22b%22%7D", "labels"),
            ("version=2", "BuildKit"),
            ("dockerfile=..%2FDockerfile", "inside the build context"),
            ("dockerfile=%2Fetc%2Fpasswd", "inside the build context"),
            ("t=UPPER", "invalid tag"),
            ("buildargs=%5B%5D", "JSON object"),
        ] {
            let Err(Failure(status, message)) = options(&query(q), ctx) else {
                panic!("{q} accepted");
            };
            assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
            assert!(message.contains(needle), "{q}: {message}");
        }
    }
}
