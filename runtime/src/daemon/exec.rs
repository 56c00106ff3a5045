//! `docker exec` through the API: `POST /containers/{id}/exec` records
//! what to run, `POST /exec/{id}/start` runs it and streams its output,
//! `GET /exec/{id}/json` reports its exit code.
//!
//! The process is started by the host's program (`wharf exec`, see
//! [`Containers::exec_command`]) rather than by the daemon itself: joining
//! a container forks, and the daemon has many threads.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{
    bad_request, blocking, channel_body, detach_keys, forward_input, full, json_reply, ok_empty,
    read_body, reply, stream_type, strings, switching_protocols, write_then_close, Failure, Reply,
};
use crate::container::{logs, ContainerError, Containers};
use crate::exec::linux::ExecOptions;

/// Exec instances, by id, for as long as the daemon runs (as Docker keeps
/// them in memory).
#[derive(Default)]
pub(super) struct Execs(Mutex<HashMap<String, Exec>>);

#[derive(Clone)]
struct Exec {
    container: String,
    argv: Vec<String>,
    env: Vec<String>,
    workdir: Option<String>,
    user: Option<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    started: bool,
    running: bool,
    exit_code: Option<i32>,
    pid: u32,
    /// `Tty`: the process runs on a terminal.
    tty: bool,
    /// `ConsoleSize`: the terminal's first size.
    console_size: Option<(u16, u16)>,
    /// With `tty`, once started: the master side of the pty that is the
    /// `wharf exec` process's stdio (resizes go there).
    master: Option<Arc<std::fs::File>>,
    /// `DetachKeys` as the client gave them (checked at create).
    detach_keys: String,
}

impl Execs {
    fn get(&self, id: &str) -> Result<Exec, Failure> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| {
                Failure(
                    StatusCode::NOT_FOUND,
                    format!("No such exec instance: {id}"),
                )
            })
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Exec)) {
        if let Some(e) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
            f(e);
        }
    }
}

/// `POST /containers/{id}/exec`: 201 `{"Id": ...}` for a running Linux
/// container.
pub(super) async fn create(
    containers: &Containers,
    execs: &Execs,
    container: &str,
    req: Request<Incoming>,
) -> Reply {
    let body = read_body(req).await?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("invalid exec configuration: {e}")))?;
    let argv = strings(&v["Cmd"]).unwrap_or_default();
    if argv.is_empty() {
        return Err(bad_request("No exec command specified"));
    }
    let cs = containers.clone();
    let what = container.to_owned();
    let c = blocking(move || Ok(cs.get(&what)?)).await?;
    if c.config.wasm {
        return Err(bad_request(format!(
            "container {} runs a wasm guest: exec needs a Linux container",
            crate::container::short_id(&c.id)
        )));
    }
    if !c.state.is_running() {
        return Err(ContainerError::NotRunning(c.id).into());
    }
    let id = crate::container::random_id()?;
    let exec = Exec {
        container: c.id,
        argv,
        env: strings(&v["Env"]).unwrap_or_default(),
        workdir: v["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .map(str::to_owned),
        user: v["User"]
            .as_str()
            .filter(|u| !u.is_empty())
            .map(str::to_owned),
        stdin: v["AttachStdin"].as_bool().unwrap_or(false),
        stdout: v["AttachStdout"].as_bool().unwrap_or(true),
        stderr: v["AttachStderr"].as_bool().unwrap_or(true),
        started: false,
        running: false,
        exit_code: None,
        pid: 0,
        tty: v["Tty"].as_bool().unwrap_or(false),
        console_size: super::console_size(&v["ConsoleSize"]),
        master: None,
        // (docker-py writes `detachKeys`: Go's JSON decoding ignores case.)
        detach_keys: v["DetachKeys"]
            .as_str()
            .or(v["detachKeys"].as_str())
            .unwrap_or("")
            .to_owned(),
    };
    detach_keys(&exec.detach_keys)?;
    execs
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), exec);
    json_reply(StatusCode::CREATED, &json!({ "Id": id }))
}

/// `POST /exec/{id}/start`: runs the process. Detached, answers at once;
/// otherwise streams its output (multiplexed, or raw with `Tty`) over the
/// upgraded connection, or a plain response body when the client asked
/// for no upgrade, and ends the stream only after the exit code is
/// recorded (the docker CLI reads it right after).
///
/// With `Tty`, `wharf exec -t` runs on a pty of the daemon's, in raw
/// mode: it relays the container's own terminal, so keys and output pass
/// through unchanged, and a resize of the daemon's pty reaches it.
pub(super) async fn start(
    containers: &Containers,
    execs: &Arc<Execs>,
    id: &str,
    mut req: Request<Incoming>,
) -> Reply {
    let wants_upgrade = req.headers().contains_key(hyper::header::UPGRADE);
    let upgrade = hyper::upgrade::on(&mut req);
    let body = read_body(req).await?;
    let v: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| bad_request(format!("invalid exec start: {e}")))?
    };
    let detach = v["Detach"].as_bool().unwrap_or(false);
    let exec = execs.get(id)?;
    if exec.started {
        return Err(Failure(
            StatusCode::CONFLICT,
            format!("exec instance {id} has already been started"),
        ));
    }
    let options = ExecOptions {
        argv: exec.argv.clone(),
        env: exec.env.clone(),
        workdir: exec.workdir.clone(),
        user: exec.user.clone(),
        stdin: exec.stdin && !detach,
        // The `wharf exec` process makes the terminal and relays it.
        terminal: exec
            .tty
            .then(|| crate::exec::linux::OnTerminal(Arc::new(drop))),
        ..ExecOptions::default()
    };
    let mut command = containers.exec_command(&exec.container, &options)?;
    let failed =
        |e: std::io::Error| Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("exec: {e}"));
    let null = std::process::Stdio::null;
    let piped = std::process::Stdio::piped;
    let master = if exec.tty {
        let pty = crate::exec::tty::open_pty().map_err(failed)?;
        crate::exec::tty::make_raw(&pty.slave).map_err(failed)?;
        if let Some((rows, cols)) = exec.console_size {
            crate::exec::tty::set_size(&pty.master, rows, cols).map_err(failed)?;
        }
        let slave = || pty.slave.try_clone().map(std::process::Stdio::from);
        command
            .stdin(slave().map_err(failed)?)
            .stdout(slave().map_err(failed)?)
            .stderr(slave().map_err(failed)?);
        Some(Arc::new(std::fs::File::from(pty.master)))
    } else {
        command
            .stdin(if options.stdin { piped() } else { null() })
            .stdout(if exec.stdout && !detach {
                piped()
            } else {
                null()
            })
            .stderr(if exec.stderr && !detach {
                piped()
            } else {
                null()
            });
        None
    };
    // (The command holds the slave's descriptors: they close with it.)
    let mut child = command.spawn().map_err(failed)?;
    drop(command);
    execs.update(id, |e| {
        e.started = true;
        e.running = true;
        e.pid = child.id();
        e.master = master.clone();
    });

    // Output as frames into a channel; the exit code recorded, then the
    // channel closed.
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let terminal = match &master {
        Some(m) => Some(Box::new(m.try_clone().map_err(failed)?) as Box<dyn std::io::Read + Send>),
        None => None,
    };
    // Each source with its stream; a terminal's output is one raw stream.
    let pumps: Vec<_> = [
        (terminal, None),
        (
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            Some("stdout"),
        ),
        (
            child
                .stderr
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            Some("stderr"),
        ),
    ]
    .into_iter()
    .filter_map(|(r, stream)| r.map(|r| (r, stream)))
    .map(|(mut r, stream)| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 << 10];
            let mut client = true;
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) if client => {
                        let frame = match stream {
                            None => Bytes::copy_from_slice(&buf[..n]),
                            Some(s) => Bytes::from(logs::frame(s, &buf[..n])),
                        };
                        if tx.blocking_send(frame).is_err() {
                            // A pipe closes with its client; a terminal
                            // (the client detached) is drained, so the
                            // process does not block on a full one.
                            client = false;
                            if stream.is_some() {
                                break;
                            }
                        }
                    }
                    Ok(_) => {}
                }
            }
        })
    })
    .collect();
    let stdin = child.stdin.take();
    let (execs_done, id_done) = (execs.clone(), id.to_owned());
    tokio::task::spawn_blocking(move || {
        // The stream stays open until the exit code is recorded.
        let _open = tx;
        for p in pumps {
            let _ = p.join();
        }
        let code = child
            .wait()
            .ok()
            .map(|s| {
                use std::os::unix::process::ExitStatusExt as _;
                s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
            })
            .unwrap_or(-1);
        execs_done.update(&id_done, |e| {
            e.running = false;
            e.exit_code = Some(code);
        });
    });

    if detach {
        return Ok(reply(
            StatusCode::OK,
            full(Bytes::new()),
            "application/json",
        ));
    }
    if !wants_upgrade {
        return Ok(reply(
            StatusCode::OK,
            channel_body(rx),
            stream_type(exec.tty),
        ));
    }
    let terminal = match (&master, options.stdin) {
        (Some(m), true) => Some(m.try_clone().map_err(failed)?),
        _ => None,
    };
    let detach_keys = detach_keys(&exec.detach_keys)?;
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let (read, write) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
        let detached = if let Some(terminal) = terminal {
            Some(forward_input(read, Some(detach_keys), move || {
                Some(terminal)
            }))
        } else {
            stdin.map(|stdin| forward_input(read, None, move || Some(stdin)))
        };
        write_then_close(write, rx, detached).await;
    });
    Ok(switching_protocols(exec.tty))
}

/// `POST /exec/{id}/resize?h=ROWS&w=COLS`: the size of a `Tty` exec's
/// terminal (the `wharf exec` process passes it on at SIGWINCH).
pub(super) fn resize(execs: &Execs, id: &str, rows: u16, cols: u16) -> Reply {
    let e = execs.get(id)?;
    if let (Some(master), true) = (&e.master, e.running) {
        crate::exec::tty::set_size(&**master, rows, cols)
            .map_err(|err| Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("resize: {err}")))?;
        if let Some(pid) = rustix::process::Pid::from_raw(e.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::WINCH);
        }
    } else if !e.running {
        return Err(Failure(
            StatusCode::CONFLICT,
            format!("exec instance {id} is not running"),
        ));
    }
    ok_empty()
}

/// `GET /exec/{id}/json`.
pub(super) fn inspect(execs: &Execs, id: &str) -> Reply {
    let e = execs.get(id)?;
    json_reply(
        StatusCode::OK,
        &json!({
            "ID": id,
            "Running": e.running,
            "ExitCode": e.exit_code,
            "ProcessConfig": {
                "tty": e.tty,
                "entrypoint": e.argv[0],
                "arguments": &e.argv[1..],
                "privileged": false,
                "user": e.user.clone().unwrap_or_default(),
            },
            "OpenStdin": e.stdin,
            "OpenStdout": e.stdout,
            "OpenStderr": e.stderr,
            "CanRemove": false,
            "ContainerID": e.container,
            "DetachKeys": e.detach_keys,
            "Pid": e.pid,
        }),
    )
}
