//! The wasm executor: wasmtime + wasmtime-wasi, deny by default.
//!
//! A guest gets exactly what the [`Sandbox`] and [`RunOptions`] grant: the
//! image filesystem read-only at `/` (read-write for build steps), the mapped
//! directories as capability preopens, its args and env, and stdio. No
//! network, no other host paths. Limits are wasm limits: a resource limiter
//! for memory and tables, epoch interruption for the timeout, fuel for
//! instructions.
//!
//! Compiled code is cached per module digest and engine configuration in
//! the store (`wharf/modules/<digest>/<engine hash>.cwasm`).

use std::hash::{Hash, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Config, Engine, Linker, Module, ResourceLimiter, Store as WasmStore, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::p1_sockets::{HasSockets, P1Sockets};
use super::{Exit, Mount, RunError, RunOptions, RunOutcome, Stdio};
use crate::digest::Digest;
use crate::store::Store;

/// Largest output captured with [`Stdio::Capture`].
const CAPTURE_LIMIT: usize = 64 << 20;

/// The filesystem view of a guest.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// Host directory shown at `/`, and whether it is read-only.
    pub root: Option<(PathBuf, bool)>,
    /// Further mapped directories.
    pub mounts: Vec<Mount>,
    /// The guest's working directory.
    pub workdir: String,
}

/// Where the module's bytes come from.
#[derive(Debug, Clone)]
pub enum ModuleInput {
    /// A file whose content has this digest (read only on a cache miss).
    Blob {
        /// The file.
        path: PathBuf,
        /// Its digest.
        digest: Digest,
    },
    /// Bytes in memory.
    Bytes {
        /// The module.
        bytes: Vec<u8>,
        /// Their digest.
        digest: Digest,
    },
}

impl ModuleInput {
    fn digest(&self) -> &Digest {
        match self {
            ModuleInput::Blob { digest, .. } | ModuleInput::Bytes { digest, .. } => digest,
        }
    }

    fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>, RunError> {
        match self {
            ModuleInput::Blob { path, digest } => {
                let b = fs_err::read(path)?;
                if &Digest::of(&b) != digest {
                    return Err(RunError::InvalidModule {
                        what: path.display().to_string(),
                        reason: format!("content does not match its digest {digest}"),
                    });
                }
                Ok(b.into())
            }
            ModuleInput::Bytes { bytes, .. } => Ok(bytes.as_slice().into()),
        }
    }
}

/// A compiled guest.
#[derive(Clone)]
pub(crate) enum Compiled {
    Module(Module),
    Component(Component),
}

/// Runs wasm guests, caching compiled code in the store.
#[derive(Debug, Clone)]
pub struct WasmExecutor {
    store: Store,
    /// Engines and compiled code kept between runs, for a process that
    /// runs many guests (a guest host); else each run makes its own.
    engines: Option<std::sync::Arc<Engines>>,
}

/// Engines (one with fuel metering, one without) and the code compiled
/// for them, shared by every guest a long-lived process runs, so a run
/// neither builds an engine nor loads compiled code again, nor links a
/// module to WASI again (its imports resolved once). Guests on a
/// shared engine are stopped, paused and timed out each through its own
/// epoch callback, since an epoch bump reaches every guest of the engine.
#[derive(Default)]
pub struct Engines(std::sync::Mutex<[Option<SharedEngine>; 2]>);

/// An engine and the code compiled for it, by module digest.
struct SharedEngine {
    engine: Engine,
    compiled: std::collections::HashMap<Digest, Compiled>,
    linked: std::collections::HashMap<Digest, Linked>,
}

/// Compiled code with its imports resolved against WASI, ready to be
/// instantiated in any store of its engine.
#[derive(Clone)]
enum Linked {
    Module(wasmtime::InstancePre<P1Host>),
    Component(wasmtime_wasi::p2::bindings::sync::CommandPre<P2Host>),
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engines")
    }
}

impl Engines {
    fn slots(&self) -> std::sync::MutexGuard<'_, [Option<SharedEngine>; 2]> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn engine(&self, fuel: bool) -> Result<Engine, RunError> {
        let mut slots = self.slots();
        let slot = &mut slots[usize::from(fuel)];
        if let Some(s) = slot {
            return Ok(s.engine.clone());
        }
        let engine = engine(fuel)?;
        *slot = Some(SharedEngine {
            engine: engine.clone(),
            compiled: Default::default(),
            linked: Default::default(),
        });
        Ok(engine)
    }

    /// The slot of `engine`.
    fn of<'a>(
        slots: &'a mut [Option<SharedEngine>; 2],
        engine: &Engine,
    ) -> Option<&'a mut SharedEngine> {
        slots
            .iter_mut()
            .flatten()
            .find(|s| Engine::same(&s.engine, engine))
    }
}

/// A guest's stream going to a [`super::Sink`]: each write is passed on
/// at once, in the guest's thread.
#[derive(Clone)]
struct SinkStream(super::Sink);

impl wasmtime_wasi::cli::IsTerminal for SinkStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for SinkStream {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::Pollable for SinkStream {
    fn ready<'a, 'b>(
        &'a mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(std::future::ready(()))
    }
}

impl wasmtime_wasi::p2::OutputStream for SinkStream {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        (self.0)(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(1 << 20)
    }
}

impl tokio::io::AsyncWrite for SinkStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        (self.0)(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

struct Limiter {
    memory: Option<usize>,
    tables: Option<usize>,
    hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if self.memory.is_some_and(|m| desired > m) {
            self.hit = true;
            wasmtime::bail!("memory limit exceeded");
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if self.tables.is_some_and(|m| desired > m) {
            self.hit = true;
            wasmtime::bail!("table limit exceeded");
        }
        Ok(true)
    }
}

struct P1Host {
    wasi: wasmtime_wasi::p1::WasiP1Ctx,
    sockets: P1Sockets,
    limiter: Limiter,
}

impl HasSockets for P1Host {
    fn sockets(&mut self) -> &mut P1Sockets {
        &mut self.sockets
    }
}

struct P2Host {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for P2Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// A linker of WASI preview 1 for `engine`.
fn p1_linker(engine: &Engine) -> Result<Linker<P1Host>, RunError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |h: &mut P1Host| &mut h.wasi)
        .map_err(|e| RunError::Engine(e.to_string()))?;
    Ok(linker)
}

/// Fails naming every import of `m` that `linker` does not define.
fn missing_imports(
    linker: &Linker<P1Host>,
    store: &mut WasmStore<P1Host>,
    m: &Module,
    what: &str,
) -> Result<(), RunError> {
    let missing: Vec<String> = m
        .imports()
        .filter(|i| linker.get_by_import(&mut *store, i).is_none())
        .map(|i| format!("{}::{}", i.module(), i.name()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(RunError::MissingImport {
        what: what.to_owned(),
        imports: missing.join(", "),
    })
}

/// The engine configuration wharf runs guests with. Epoch interruption is
/// always on (so cached code is shared between runs with and without a
/// timeout); fuel metering only when asked for, as it slows guests down.
pub fn engine(fuel: bool) -> Result<Engine, RunError> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(fuel);
    config.wasm_component_model(true);
    Engine::new(&config).map_err(|e| RunError::Engine(e.to_string()))
}

impl WasmExecutor {
    /// An executor caching compiled code in `store`.
    pub fn new(store: Store) -> WasmExecutor {
        WasmExecutor {
            store,
            engines: None,
        }
    }

    /// An executor whose runs share `engines` and the code compiled for
    /// them (see [`Engines`]).
    pub fn sharing(store: Store, engines: std::sync::Arc<Engines>) -> WasmExecutor {
        WasmExecutor {
            store,
            engines: Some(engines),
        }
    }

    fn cache_path(&self, engine: &Engine, module: &Digest) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        self.store
            .module_cache_dir(module)
            .join(format!("{:016x}.cwasm", h.finish()))
    }

    pub(crate) fn compile(
        &self,
        engine: &Engine,
        input: &ModuleInput,
        what: &str,
    ) -> Result<Compiled, RunError> {
        let Some(engines) = &self.engines else {
            return self.load_or_compile(engine, input, what);
        };
        let cached = Engines::of(&mut engines.slots(), engine)
            .and_then(|s| s.compiled.get(input.digest()).cloned());
        if let Some(c) = cached {
            return Ok(c);
        }
        let c = self.load_or_compile(engine, input, what)?;
        if let Some(s) = Engines::of(&mut engines.slots(), engine) {
            s.compiled.insert(input.digest().clone(), c.clone());
        }
        Ok(c)
    }

    /// `digest`'s code linked to WASI by `link`, which runs once per
    /// shared engine (every run, without shared engines).
    fn linked(
        &self,
        engine: &Engine,
        digest: &Digest,
        link: impl FnOnce() -> Result<Linked, RunError>,
    ) -> Result<Linked, RunError> {
        let Some(engines) = &self.engines else {
            return link();
        };
        let cached =
            Engines::of(&mut engines.slots(), engine).and_then(|s| s.linked.get(digest).cloned());
        if let Some(l) = cached {
            return Ok(l);
        }
        let l = link()?;
        if let Some(s) = Engines::of(&mut engines.slots(), engine) {
            s.linked.insert(digest.clone(), l.clone());
        }
        Ok(l)
    }

    fn load_or_compile(
        &self,
        engine: &Engine,
        input: &ModuleInput,
        what: &str,
    ) -> Result<Compiled, RunError> {
        let cache = self.cache_path(engine, input.digest());
        if cache.exists() {
            let kind = Engine::detect_precompiled_file(&cache).ok().flatten();
            let loaded = if kind == Some(wasmtime::Precompiled::Component) {
                // SAFETY: the file was written by `compile` below from a
                // verified module, atomically, into the store, and
                // `deserialize_file` checks that it was produced by this
                // engine version and configuration.
                #[allow(unsafe_code)]
                unsafe { Component::deserialize_file(engine, &cache) }.map(Compiled::Component)
            } else {
                // SAFETY: as above.
                #[allow(unsafe_code)]
                unsafe { Module::deserialize_file(engine, &cache) }.map(Compiled::Module)
            };
            match loaded {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(path = %cache.display(), error = %e, "discarding stale compiled module")
                }
            }
        }
        let bytes = input.bytes()?;
        let invalid = |e: wasmtime::Error| RunError::InvalidModule {
            what: what.to_owned(),
            reason: error_line(&e),
        };
        let (compiled, serialized) = if crate::image::is_component(&bytes) {
            let c = Component::new(engine, &bytes).map_err(invalid)?;
            let s = c.serialize().map_err(|e| RunError::Engine(e.to_string()))?;
            (Compiled::Component(c), s)
        } else {
            let m = Module::new(engine, &bytes).map_err(invalid)?;
            let s = m.serialize().map_err(|e| RunError::Engine(e.to_string()))?;
            (Compiled::Module(m), s)
        };
        let dir = cache.parent().expect("cache path has a parent");
        if fs_err::create_dir_all(dir).is_ok() {
            if let Err(e) = self.store.write_file_atomic(&cache, &serialized) {
                tracing::warn!(error = %e, "could not cache compiled module");
            }
        }
        Ok(compiled)
    }

    /// Runs `module` with `argv` and `env` inside `sandbox`.
    pub fn run(
        &self,
        module: &ModuleInput,
        argv: &[String],
        env: &[(String, String)],
        sandbox: &Sandbox,
        options: &RunOptions,
    ) -> Result<RunOutcome, RunError> {
        let engine = match &self.engines {
            Some(shared) => shared.engine(options.fuel.is_some())?,
            None => engine(options.fuel.is_some())?,
        };
        let what = argv
            .first()
            .cloned()
            .unwrap_or_else(|| module.digest().to_string());
        let compiled = self.compile(&engine, module, &what)?;

        let is_module = matches!(compiled, Compiled::Module(_));
        let publish = &options.network.publish;
        if is_module && publish.iter().any(|p| p.udp) {
            return Err(RunError::Unsupported(
                "-p .../udp needs a WASI preview 2 component: a wasip1 module can only be given TCP listeners"
                    .into(),
            ));
        }
        let mut b = WasiCtxBuilder::new();
        // A wasip1 module receives the published ports as pre-opened
        // listeners at descriptors 3, 4, ...: placeholder preopens keep
        // those numbers for them, ahead of the real directories.
        let mut listeners = Vec::new();
        let mut _placeholder = None;
        let mut env = std::borrow::Cow::Borrowed(env);
        if is_module && !publish.is_empty() {
            listeners = super::p1_sockets::listen(publish)?;
            let dir = self.store.temp_dir("listen")?;
            for i in 0..listeners.len() {
                preopen(
                    &mut b,
                    dir.path(),
                    &format!("/.wharf/listen/{i}"),
                    true,
                    "-p",
                )?;
            }
            _placeholder = Some(dir);
            let mut with = env.into_owned();
            with.retain(|(k, _)| k != "LISTEN_FDS");
            with.push(("LISTEN_FDS".into(), listeners.len().to_string()));
            env = with.into();
        }
        configure(&mut b, argv, &env, sandbox)?;
        options.network.apply(&mut b);
        // Published ports whose host side differs from the guest side get a
        // forwarder for the run (components bind the guest port themselves).
        let _forwarders = if is_module {
            Vec::new()
        } else {
            super::network::forward_ports(publish)?
        };
        if options.stdin {
            b.stdin(wasmtime_wasi::cli::stdin());
        }
        let out_pipe = MemoryOutputPipe::new(CAPTURE_LIMIT);
        let err_pipe = MemoryOutputPipe::new(CAPTURE_LIMIT);
        if let Some(output) = &options.output {
            b.stdout(SinkStream(output.stdout.clone()));
            b.stderr(SinkStream(output.stderr.clone()));
        } else {
            connect(&mut b, options, &out_pipe, &err_pipe);
        }
        let limiter = Limiter {
            memory: options.memory.map(|m| m as usize),
            tables: options.memory.map(|m| (m / 16) as usize),
            hit: false,
        };

        // The timeout: a thread bumps the epoch unless the run ends first
        // (a guest on a shared engine compares the time with `deadline`).
        let deadline = options.timeout.map(|t| std::time::Instant::now() + t);
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let timer = options.timeout.map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(t) {
                    engine.increment_epoch();
                }
            })
        });

        let result = match compiled {
            Compiled::Module(m) => {
                let mut store = WasmStore::new(
                    &engine,
                    P1Host {
                        wasi: b.build_p1(),
                        sockets: P1Sockets::new(std::mem::take(&mut listeners), deadline),
                        limiter,
                    },
                );
                self.prepare_store(&mut store, options, deadline, |h| &mut h.limiter)?;
                // Not a WASI command (nor a reactor): nothing to start.
                let has =
                    |name: &str| matches!(m.get_export(name), Some(wasmtime::ExternType::Func(_)));
                if !has("_start") && !has("_initialize") {
                    return Err(RunError::InvalidModule {
                        what,
                        reason: "it exports no _start function (not a WASI command)".into(),
                    });
                }
                let instance = if publish.is_empty() {
                    let linked = self.linked(&engine, module.digest(), || {
                        let linker = p1_linker(&engine)?;
                        missing_imports(&linker, &mut store, &m, &what)?;
                        let pre =
                            linker
                                .instantiate_pre(&m)
                                .map_err(|e| RunError::MissingImport {
                                    what: what.clone(),
                                    imports: error_line(&e),
                                })?;
                        Ok(Linked::Module(pre))
                    })?;
                    let Linked::Module(pre) = linked else {
                        return Err(RunError::Engine("linked as a component".into()));
                    };
                    pre.instantiate(&mut store)
                } else {
                    // Listeners are items of this store: linked for this
                    // run alone.
                    let mut linker = p1_linker(&engine)?;
                    super::p1_sockets::install(&mut linker, &mut store, &m)
                        .map_err(|e| RunError::Engine(e.to_string()))?;
                    let wat = super::p1_sockets::shim_wat(&mut store).into_bytes();
                    let input = ModuleInput::Bytes {
                        digest: Digest::of(&wat),
                        bytes: wat,
                    };
                    let shim = match self.compile(&engine, &input, "the preview 1 socket shim")? {
                        Compiled::Module(shim) => shim,
                        Compiled::Component(_) => {
                            return Err(RunError::Engine("the socket shim is not a module".into()))
                        }
                    };
                    missing_imports(&linker, &mut store, &m, &what)?;
                    linker.instantiate(&mut store, &m).and_then(|inst| {
                        super::p1_sockets::attach(&mut store, &inst, &shim)?;
                        Ok(inst)
                    })
                };
                let r = instance.and_then(|inst| {
                    match inst.get_typed_func::<(), ()>(&mut store, "_start") {
                        Ok(f) => f.call(&mut store, ()),
                        // A reactor module has nothing to run.
                        Err(_) if inst.get_export(&mut store, "_initialize").is_some() => Ok(()),
                        Err(e) => Err(e),
                    }
                });
                classify(r.map(|()| 0), store.data().limiter.hit, options)
            }
            Compiled::Component(c) => {
                let mut store = WasmStore::new(
                    &engine,
                    P2Host {
                        ctx: b.build(),
                        table: ResourceTable::new(),
                        limiter,
                    },
                );
                self.prepare_store(&mut store, options, deadline, |h| &mut h.limiter)?;
                let linked = self.linked(&engine, module.digest(), || {
                    let mut linker: wasmtime::component::Linker<P2Host> =
                        wasmtime::component::Linker::new(&engine);
                    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
                        .map_err(|e| RunError::Engine(e.to_string()))?;
                    let pre = linker
                        .instantiate_pre(&c)
                        .map_err(|e| RunError::MissingImport {
                            what: what.clone(),
                            imports: error_line(&e),
                        })?;
                    let pre =
                        wasmtime_wasi::p2::bindings::sync::CommandPre::new(pre).map_err(|e| {
                            RunError::InvalidModule {
                                what: what.clone(),
                                reason: format!(
                                    "not a wasi:cli command component: {}",
                                    error_line(&e)
                                ),
                            }
                        })?;
                    Ok(Linked::Component(pre))
                })?;
                let Linked::Component(pre) = linked else {
                    return Err(RunError::Engine("linked as a module".into()));
                };
                let r = pre
                    .instantiate(&mut store)
                    .and_then(|cmd| cmd.wasi_cli_run().call_run(&mut store))
                    .map(|res| if res.is_ok() { 0 } else { 1 });
                classify(r, store.data().limiter.hit, options)
            }
        };
        drop(done_tx);
        if let Some(t) = timer {
            let _ = t.join();
        }
        Ok(RunOutcome {
            exit: result,
            stdout: out_pipe.contents().to_vec(),
            stderr: err_pipe.contents().to_vec(),
        })
    }

    fn prepare_store<T: 'static>(
        &self,
        store: &mut WasmStore<T>,
        options: &RunOptions,
        deadline: Option<std::time::Instant>,
        limiter: fn(&mut T) -> &mut Limiter,
    ) -> Result<(), RunError> {
        store.limiter(move |h| limiter(h) as &mut dyn ResourceLimiter);
        store.set_epoch_deadline(1);
        if self.engines.is_some() {
            // A bump of the shared epoch reaches every guest: each checks
            // whether it is its own stop, pause or timeout.
            let interrupt = options.interrupt.clone().unwrap_or_default();
            store.epoch_deadline_callback(move |_| {
                let signalled = interrupt.checkpoint().is_some();
                if signalled || deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return Err(Trap::Interrupt.into());
                }
                Ok(wasmtime::UpdateDeadline::Continue(1))
            });
        } else {
            store.epoch_deadline_trap();
        }
        // Only now that the deadline counts from the current epoch: a
        // stop or pause asked for before bumps it (else it would be lost
        // in an epoch the deadline already counts from).
        if let Some(i) = &options.interrupt {
            i.attach(store.engine());
        }
        if let Some(f) = options.fuel {
            store
                .set_fuel(f)
                .map_err(|e| RunError::Engine(e.to_string()))?;
        }
        Ok(())
    }
}

/// Gives `b` the guest's stdout and stderr as `options` say.
fn connect(
    b: &mut WasiCtxBuilder,
    options: &RunOptions,
    out_pipe: &MemoryOutputPipe,
    err_pipe: &MemoryOutputPipe,
) {
    match options.stdout {
        Stdio::Inherit => {
            b.stdout(wasmtime_wasi::cli::stdout());
        }
        Stdio::Capture => {
            b.stdout(out_pipe.clone());
        }
        Stdio::Null => {}
    }
    match options.stderr {
        Stdio::Inherit => {
            b.stderr(wasmtime_wasi::cli::stderr());
        }
        Stdio::Capture => {
            b.stderr(err_pipe.clone());
        }
        Stdio::Null => {}
    }
}

/// Gives `b` the guest's args, env, working directory and filesystem view
/// (the root and every mapped directory, checked to be directories).
pub(crate) fn configure(
    b: &mut WasiCtxBuilder,
    argv: &[String],
    env: &[(String, String)],
    sandbox: &Sandbox,
) -> Result<(), RunError> {
    b.args(argv);
    b.envs(env);
    if sandbox.workdir != "/" {
        b.initial_cwd(&sandbox.workdir);
    }
    if let Some((root, read_only)) = &sandbox.root {
        preopen(b, root, "/", *read_only, "/")?;
    }
    for m in &sandbox.mounts {
        let spec = format!(
            "{}:{}{}",
            m.host.display(),
            m.guest,
            if m.read_only { ":ro" } else { "" }
        );
        let meta = std::fs::metadata(&m.host).map_err(|e| RunError::Mount {
            mount: spec.clone(),
            reason: format!("host path {}: {e}", m.host.display()),
        })?;
        if !meta.is_dir() {
            return Err(RunError::Mount {
                mount: spec,
                reason:
                    "the host path is not a directory (wasm guests can only be given directories)"
                        .into(),
            });
        }
        preopen(b, &m.host, &m.guest, m.read_only, &spec)?;
    }
    Ok(())
}

fn preopen(
    b: &mut WasiCtxBuilder,
    host: &Path,
    guest: &str,
    read_only: bool,
    spec: &str,
) -> Result<(), RunError> {
    let perms = if read_only {
        FsPerms::ReadOnly
    } else {
        FsPerms::ReadWrite
    };
    b.preopened_dir(host, guest, perms)
        .map_err(|e| RunError::Mount {
            mount: spec.to_owned(),
            reason: error_line(&e),
        })?;
    Ok(())
}

fn classify(r: wasmtime::Result<i32>, limit_hit: bool, options: &RunOptions) -> Exit {
    match r {
        Ok(code) => Exit::Code(code),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                return Exit::Code(exit.0);
            }
            if limit_hit {
                return Exit::MemoryLimit(options.memory.unwrap_or(0));
            }
            match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => {
                    match options.interrupt.as_ref().and_then(|i| i.requested()) {
                        Some(sig) => Exit::Signal(sig),
                        None => Exit::Timeout(options.timeout.unwrap_or_default()),
                    }
                }
                Some(Trap::OutOfFuel) => Exit::OutOfFuel(options.fuel.unwrap_or(0)),
                Some(t) => Exit::Trap(t.to_string()),
                None => Exit::Trap(error_line(&e)),
            }
        }
    }
}

/// A wasmtime error with its causes, on one line.
pub(crate) fn error_line(e: &wasmtime::Error) -> String {
    first_line(&format!("{e:#}"))
}

pub(crate) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_owned()
}
