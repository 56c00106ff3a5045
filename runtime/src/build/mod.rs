//! `wharf build`: a Dockerfile becomes an OCI image in the store.
//!
//! The pipeline is parse ([`dockerfile`]) -> evaluate stage by stage, each
//! instruction turning one `State` (config + layers) into the next ->
//! write config and manifest -> name it. Every instruction is cached under
//! a key made of the parent state, the expanded instruction and the content
//! of its inputs, so an unchanged rebuild touches no file twice.

pub mod context;
pub mod dockerfile;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Config, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder,
    RootFsBuilder,
};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::exec::wasm::{ModuleInput, Sandbox, WasmExecutor};
use crate::exec::{RunOptions, Stdio};
use crate::image::{
    canonical_json, is_component, is_wasm_platform, oci_digest, WASM_CONFIG, WASM_LAYER,
    WASM_VARIANT_ANNOTATION,
};
use crate::layer::{diff_trees, scan_tree, unpack_layers, write_layer, EntryKind, LayerEntry};
use crate::reference::Reference;
use crate::store::Store;
use context::{SelectedKind, Source};
use dockerfile::{Command, Dockerfile, Instruction, InstructionKind};

/// Errors from building.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse.
    #[error(transparent)]
    Parse(#[from] dockerfile::ParseError),
    /// An instruction is invalid once evaluated.
    #[error("{step}: {message}")]
    Instruction {
        /// The step, e.g. `Dockerfile:3 COPY a /b`.
        step: String,
        /// What is wrong.
        message: String,
    },
    /// A COPY/ADD source leaves its source directory.
    #[error("source {path:?} is outside the {within}")]
    OutsideContext {
        /// The source as written.
        path: String,
        /// Which source directory.
        within: String,
    },
    /// A COPY/ADD source matches nothing.
    #[error("source {path:?} not found in the {within}")]
    SourceNotFound {
        /// The source as written.
        path: String,
        /// Which source directory.
        within: String,
    },
    /// A RUN step exited non-zero.
    #[error("{step}: the build step failed: {message}")]
    RunFailed {
        /// The step.
        step: String,
        /// How it ended.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An image could not be read.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// A layer could not be written or unpacked.
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    /// Running a RUN step's module failed before it started.
    #[error(transparent)]
    Run(#[from] crate::exec::RunError),
    /// I/O outside the store.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

type Result<T, E = BuildError> = std::result::Result<T, E>;

/// The output format of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// A Docker-style image: filesystem layers and a config.
    #[default]
    Image,
    /// The CNCF TAG-runtime wasm artifact (single module images only).
    Artifact,
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile; by default `CONTEXT/Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    /// Names for the result.
    pub tags: Vec<Reference>,
    /// `--build-arg` values.
    pub build_args: Vec<(String, String)>,
    /// Target platform (`os/arch`); by default the base image's, or a wasm
    /// platform inferred from the entrypoint module.
    pub platform: Option<String>,
    /// Ignore the build cache.
    pub no_cache: bool,
    /// Output format.
    pub format: OutputFormat,
    /// Timestamp for layers and history (`SOURCE_DATE_EPOCH`); 0 otherwise.
    pub source_date_epoch: Option<u64>,
    /// The stage (`FROM ... AS NAME`, case-insensitive) whose image the
    /// build makes; by default the last. Later stages do not run.
    pub target: Option<String>,
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The manifest descriptor as named in the index.
    pub descriptor: Descriptor,
    /// The manifest digest.
    pub manifest_digest: Digest,
    /// The config digest (the image id).
    pub image_id: Digest,
    /// How many steps came from the cache.
    pub cached_steps: usize,
    /// How many steps ran.
    pub total_steps: usize,
}

/// An image under construction: its config and layers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    config: ImageConfiguration,
    layers: Vec<Descriptor>,
}

impl CacheEntry {
    /// The blobs the entry needs.
    pub fn blobs(&self) -> impl Iterator<Item = Digest> + '_ {
        self.layers
            .iter()
            .filter_map(|l| l.digest().to_string().parse().ok())
    }
}

type State = CacheEntry;

impl State {
    fn id(&self) -> Digest {
        Digest::of(&canonical_json(self).expect("state serialises"))
    }

    fn process(&self) -> Config {
        self.config.config().clone().unwrap_or_default()
    }

    fn set_process(&mut self, c: Config) {
        self.config.set_config(Some(c));
    }

    fn add_history(&mut self, created: &str, text: &str, empty: bool) {
        let mut h = self.config.history().clone().unwrap_or_default();
        h.push(
            HistoryBuilder::default()
                .created(created.to_owned())
                .created_by(text.to_owned())
                .empty_layer(empty)
                .build()
                .expect("complete history"),
        );
        self.config.set_history(Some(h));
    }
}

/// Formats seconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

struct Stage {
    name: Option<String>,
    state: State,
    /// Unpacked filesystem, made on first need.
    tree: Option<tempfile::TempDir>,
    /// A CMD instruction ran in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
}

/// Runs a build, reporting progress lines to `progress`.
pub fn build(
    store: &Store,
    options: &BuildOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BuildOutput> {
    let dockerfile_path = options
        .dockerfile
        .clone()
        .unwrap_or_else(|| options.context.join("Dockerfile"));
    let text = fs_err::read_to_string(&dockerfile_path)?;
    let file_label = dockerfile_path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    let df = dockerfile::parse(&text, &dockerfile_path.display().to_string())?;
    if !options.context.is_dir() {
        return Err(BuildError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "build context {} is not a directory",
                options.context.display()
            ),
        )));
    }
    let _lock = store.lock_shared()?;
    let mut b = Builder {
        store,
        options,
        df: &df,
        file_label,
        context: Source::context(&options.context)?,
        stages: Vec::new(),
        created: rfc3339(options.source_date_epoch.unwrap_or(0)),
        cached: 0,
        steps: 0,
        progress,
        dir_cache: HashMap::new(),
    };
    b.run()
}

struct Builder<'a> {
    store: &'a Store,
    options: &'a BuildOptions,
    df: &'a Dockerfile,
    file_label: String,
    context: Source,
    stages: Vec<Stage>,
    created: String,
    cached: usize,
    steps: usize,
    progress: &'a mut dyn FnMut(&str),
    /// Answers of `is_dir`, by (layer digests, path): reading them means
    /// decompressing every parent layer.
    dir_cache: HashMap<(Vec<String>, String), bool>,
}

impl Builder<'_> {
    /// Whether `rel` is a directory in the filesystem `layers` make.
    fn is_dir(&mut self, layers: &[Descriptor], rel: &str) -> Result<bool> {
        let key = (
            layers.iter().map(|l| l.digest().to_string()).collect(),
            rel.to_owned(),
        );
        if let Some(known) = self.dir_cache.get(&key) {
            return Ok(*known);
        }
        let answer = crate::layer::is_dir_in_layers(self.store, layers, rel)?;
        self.dir_cache.insert(key, answer);
        Ok(answer)
    }

    fn step_name(&self, ins: &Instruction) -> String {
        format!("{}:{} {}", self.file_label, ins.line, ins.text)
    }

    fn err(&self, ins: &Instruction, message: impl Into<String>) -> BuildError {
        BuildError::Instruction {
            step: self.step_name(ins),
            message: message.into(),
        }
    }

    fn run(&mut self) -> Result<BuildOutput> {
        let build_args: HashMap<String, String> = self.options.build_args.iter().cloned().collect();
        // ARGs before the first FROM are visible to FROM lines and, when
        // re-declared, inside stages.
        let mut global: HashMap<String, String> = HashMap::new();
        let mut i = 0;
        let ins = &self.df.instructions;
        while i < ins.len() {
            match &ins[i].kind {
                InstructionKind::Arg(decls) => {
                    for (name, default) in decls {
                        let v = match build_args.get(name) {
                            Some(v) => Some(v.clone()),
                            None => match default {
                                Some(d) => Some(self.expand(&ins[i], d, &global)?),
                                None => None,
                            },
                        };
                        if let Some(v) = v {
                            global.insert(name.clone(), v);
                        }
                    }
                    i += 1;
                }
                InstructionKind::From { .. } => break,
                _ => return Err(self.err(&ins[i], "only ARG may come before the first FROM")),
            }
        }
        if i == ins.len() {
            return Err(BuildError::Instruction {
                step: self.file_label.clone(),
                message: "the Dockerfile has no FROM instruction".into(),
            });
        }
        let end = self.stage_end(i)?;
        let total = end - i;
        let mut n = 0;
        let mut vars: HashMap<String, String> = HashMap::new();
        let mut linux = false;
        for ins in &ins[i..end] {
            n += 1;
            self.steps += 1;
            let label = format!("[{n}/{total}] {}", ins.text);
            if let InstructionKind::From {
                image,
                platform,
                alias,
            } = &ins.kind
            {
                let image = self.expand(ins, image, &global)?;
                let platform = match platform {
                    Some(p) => Some(self.expand(ins, p, &global)?),
                    None => self.options.platform.clone(),
                };
                let state = self.base(ins, &image, platform.as_deref())?;
                linux = !is_wasm_platform(
                    &state.config.os().to_string(),
                    &state.config.architecture().to_string(),
                );
                vars = state
                    .process()
                    .env()
                    .clone()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|kv| {
                        kv.split_once('=')
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    })
                    .collect();
                self.stages.push(Stage {
                    name: alias.clone(),
                    state,
                    tree: None,
                    cmd_set: false,
                });
                (self.progress)(&label);
                continue;
            }
            if let InstructionKind::Arg(decls) = &ins.kind {
                for (name, default) in decls {
                    let v = match build_args.get(name) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => Some(self.expand(ins, d, &vars)?),
                            None => global.get(name).cloned(),
                        },
                    };
                    if let Some(v) = v {
                        vars.insert(name.clone(), v);
                    }
                }
                (self.progress)(&label);
                continue;
            }
            let current = self.stages.last().expect("a FROM came first").state.clone();
            let (next, cached) = self.step(ins, &current, &mut vars, linux)?;
            if cached {
                self.cached += 1;
                (self.progress)(&format!("{label}\n  CACHED"));
            } else {
                (self.progress)(&label);
            }
            let stage = self.stages.last_mut().expect("a FROM came first");
            stage.state = next;
            stage.tree = None;
        }
        let final_state = self
            .stages
            .last()
            .expect("at least one stage")
            .state
            .clone();
        self.finish(final_state)
    }

    /// Where the build stops: after the `--target` stage (its instructions
    /// run up to the next FROM), or at the end. `first` is the first FROM.
    fn stage_end(&self, first: usize) -> Result<usize> {
        let ins = &self.df.instructions;
        let Some(target) = &self.options.target else {
            return Ok(ins.len());
        };
        let is_from = |i: &Instruction| matches!(i.kind, InstructionKind::From { .. });
        let start = (first..ins.len())
            .find(|&k| {
                matches!(&ins[k].kind, InstructionKind::From { alias: Some(a), .. }
                    if a.eq_ignore_ascii_case(target))
            })
            .ok_or_else(|| BuildError::Instruction {
                step: self.file_label.clone(),
                message: format!("target stage {target:?} could not be found"),
            })?;
        Ok((start + 1..ins.len())
            .find(|&k| is_from(&ins[k]))
            .unwrap_or(ins.len()))
    }

    fn expand(
        &self,
        ins: &Instruction,
        raw: &str,
        vars: &HashMap<String, String>,
    ) -> Result<String> {
        dockerfile::expand_word(raw, self.df.escape, &|k| vars.get(k).cloned())
            .map_err(|e| self.err(ins, e.message))
    }

    fn expand_words(
        &self,
        ins: &Instruction,
        raw: &str,
        vars: &HashMap<String, String>,
    ) -> Result<Vec<String>> {
        dockerfile::expand_words(raw, self.df.escape, &|k| vars.get(k).cloned())
            .map_err(|e| self.err(ins, e.message))
    }

    fn base(&mut self, ins: &Instruction, image: &str, platform: Option<&str>) -> Result<State> {
        if image == "scratch" {
            let (os, arch) = match platform {
                Some(p) => {
                    let mut it = p.split('/');
                    let os = it.next().unwrap_or("wasip1");
                    let arch = it.next().unwrap_or(if is_wasm_platform(os, "") {
                        "wasm"
                    } else {
                        "amd64"
                    });
                    (
                        if os == "wasi" {
                            "wasip1".to_owned()
                        } else {
                            os.to_owned()
                        },
                        arch.to_owned(),
                    )
                }
                None => ("wasip1".to_owned(), "wasm".to_owned()),
            };
            let config = ImageConfigurationBuilder::default()
                .os(os.as_str())
                .architecture(arch.as_str())
                .created(self.created.clone())
                .rootfs(
                    RootFsBuilder::default()
                        .typ("layers")
                        .diff_ids(Vec::<String>::new())
                        .build()
                        .expect("complete"),
                )
                .config(Config::default())
                .build()
                .expect("complete config");
            return Ok(State {
                config,
                layers: Vec::new(),
            });
        }
        if let Some(stage) = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(&image.to_lowercase()))
        {
            return Ok(stage.state.clone());
        }
        let tagged = self
            .store
            .lookup(image)
            .map_err(|e| self.err(ins, format!("base image: {e}")))?;
        let img = self.store.load_image(&tagged.descriptor, platform)?;
        let mut config = img.config.clone();
        if config.config().is_none() {
            config.set_config(Some(Config::default()));
        }
        // Docker-style base images only: artifacts have no filesystem.
        if !matches!(img.module, crate::image::ModuleSource::Filesystem) {
            return Err(self.err(ins, "a wasm artifact cannot be used as a base image"));
        }
        Ok(State {
            config,
            layers: img.manifest.layers().clone(),
        })
    }

    /// Evaluates one instruction: returns the next state and whether it came
    /// from the cache.
    fn step(
        &mut self,
        ins: &Instruction,
        cur: &State,
        vars: &mut HashMap<String, String>,
        linux: bool,
    ) -> Result<(State, bool)> {
        let mut next = cur.clone();
        let mut p = cur.process();
        // Metadata-only instructions: evaluate, then key on the result.
        let mut inputs = Hasher::new();
        let mut layer: Option<Vec<LayerEntry>> = None;
        let mut run_argv: Option<Vec<String>> = None;
        let mut keep_trees: Vec<tempfile::TempDir> = Vec::new();
        let mut text = ins.text.clone();
        match &ins.kind {
            InstructionKind::Env(pairs) => {
                let mut env = p.env().clone().unwrap_or_default();
                let mut expanded = Vec::new();
                for (k, raw) in pairs {
                    let v = self.expand(ins, raw, vars)?;
                    vars.insert(k.clone(), v.clone());
                    env.retain(|kv| kv.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                    expanded.push(format!("{k}={v}"));
                }
                p.set_env(Some(env));
                text = format!("ENV {}", expanded.join(" "));
            }
            InstructionKind::Label(pairs) => {
                let mut labels = p.labels().clone().unwrap_or_default();
                for (k, raw) in pairs {
                    labels.insert(self.expand(ins, k, vars)?, self.expand(ins, raw, vars)?);
                }
                p.set_labels(Some(labels));
            }
            InstructionKind::Workdir(raw) => {
                let w = self.expand(ins, raw, vars)?;
                let base = p.working_dir().clone().unwrap_or_else(|| "/".into());
                let dir = resolve_path(&base, &w);
                // As Docker: the directory exists afterwards (a one-entry
                // layer when the image does not have it yet).
                let rel = dir.trim_start_matches('/').to_owned();
                if !rel.is_empty() && !self.is_dir(&cur.layers, &rel)? {
                    let entries = vec![LayerEntry {
                        path: rel,
                        kind: EntryKind::Dir { mode: 0o755 },
                    }];
                    hash_entries(&entries, &mut inputs)?;
                    layer = Some(entries);
                }
                p.set_working_dir(Some(dir));
            }
            InstructionKind::User(raw) => {
                p.set_user(Some(self.expand(ins, raw, vars)?));
            }
            InstructionKind::StopSignal(raw) => {
                p.set_stop_signal(Some(self.expand(ins, raw, vars)?));
            }
            InstructionKind::Maintainer(m) => {
                next.config.set_author(Some(m.clone()));
            }
            InstructionKind::Shell(_) => {}
            InstructionKind::Expose(words) => {
                let mut ports = p.exposed_ports().clone().unwrap_or_default();
                for raw in words {
                    for w in self.expand_words(ins, raw, vars)? {
                        let (port, proto) = w.split_once('/').unwrap_or((&w, "tcp"));
                        let valid_port = port
                            .split_once('-')
                            .map_or(port.parse::<u16>().is_ok(), |(a, b)| {
                                a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok()
                            });
                        if !valid_port
                            || !matches!(proto.to_lowercase().as_str(), "tcp" | "udp" | "sctp")
                        {
                            return Err(self.err(
                                ins,
                                format!("invalid port {w:?}: expected PORT[/tcp|udp|sctp]"),
                            ));
                        }
                        let v = format!("{port}/{}", proto.to_lowercase());
                        if !ports.contains(&v) {
                            ports.push(v);
                        }
                    }
                }
                ports.sort();
                p.set_exposed_ports(Some(ports));
            }
            InstructionKind::Volume(words) => {
                let mut vols = p.volumes().clone().unwrap_or_default();
                for raw in words {
                    // A word with blanks in it came from the JSON form and
                    // stays one path; shell-form words may expand to several.
                    let paths = if raw.contains(char::is_whitespace) {
                        vec![self.expand(ins, raw, vars)?]
                    } else {
                        self.expand_words(ins, raw, vars)?
                    };
                    for v in paths {
                        if !v.starts_with('/') || v.split('/').any(|c| c == "..") {
                            return Err(self.err(
                                ins,
                                format!(
                                    "volume path {v:?} must be absolute and must not contain '..'"
                                ),
                            ));
                        }
                        if !vols.contains(&v) {
                            vols.push(v);
                        }
                    }
                }
                vols.sort();
                p.set_volumes(Some(vols));
            }
            InstructionKind::Entrypoint(cmd) => {
                p.set_entrypoint(Some(self.command_argv(ins, cmd, vars, linux)?));
                // Docker: ENTRYPOINT drops a CMD inherited from the base, and
                // keeps one set earlier in this stage. The flag is part of
                // the step's cache key, since the parent state cannot show it.
                let cmd_set = self.stages.last().is_some_and(|s| s.cmd_set);
                inputs.update(if cmd_set {
                    &b"cmd-set"[..]
                } else {
                    &b"cmd-inherited"[..]
                });
                if !cmd_set {
                    p.set_cmd(None);
                }
            }
            InstructionKind::Cmd(cmd) => {
                p.set_cmd(Some(self.command_argv(ins, cmd, vars, linux)?));
                if let Some(stage) = self.stages.last_mut() {
                    stage.cmd_set = true;
                }
            }
            InstructionKind::Copy {
                sources,
                dest,
                from,
                chmod,
                ..
            } => {
                let entries = self.copy_entries(
                    ins,
                    sources,
                    dest,
                    from.as_deref(),
                    chmod.as_deref(),
                    false,
                    vars,
                    cur,
                    &mut keep_trees,
                )?;
                hash_entries(&entries, &mut inputs)?;
                layer = Some(entries);
            }
            InstructionKind::Add {
                sources,
                dest,
                chmod,
                ..
            } => {
                let entries = self.copy_entries(
                    ins,
                    sources,
                    dest,
                    None,
                    chmod.as_deref(),
                    true,
                    vars,
                    cur,
                    &mut keep_trees,
                )?;
                hash_entries(&entries, &mut inputs)?;
                layer = Some(entries);
            }
            InstructionKind::Run(cmd) => {
                // Linux images: Docker's `/bin/sh -c` for the shell form,
                // run in the native backend.
                let argv = self.command_argv(ins, cmd, vars, linux)?;
                if !linux && !argv.first().is_some_and(|a| a.ends_with(".wasm")) {
                    return Err(self.err(
                        ins,
                        "RUN in a wasm build runs a .wasm program from the image being built: the first word must be its path",
                    ));
                }
                inputs.update(canonical_json(&argv).expect("strings serialise").as_slice());
                let mut env: Vec<_> = vars.iter().collect();
                env.sort();
                inputs.update(canonical_json(&env).expect("strings serialise").as_slice());
                run_argv = Some(argv);
            }
            InstructionKind::From { .. } | InstructionKind::Arg(_) => {
                unreachable!("handled by the caller")
            }
        }
        next.set_process(p);
        // The cache key: parent state, instruction, inputs.
        let mut key = Hasher::new();
        key.update(cur.id().to_string().as_bytes());
        key.update(b"\0");
        key.update(text.as_bytes());
        key.update(b"\0");
        key.update(inputs.finish().to_string().as_bytes());
        // Build args and ENV can change what an unexpanded instruction
        // means, and SOURCE_DATE_EPOCH changes layer mtimes and history.
        let mut visible: Vec<_> = vars.iter().collect();
        visible.sort();
        key.update(
            canonical_json(&visible)
                .expect("strings serialise")
                .as_slice(),
        );
        key.update(self.created.as_bytes());
        let key = key.finish();
        if !self.options.no_cache {
            if let Some(hit) = self.cache_get(&key) {
                return Ok((hit, true));
            }
        }
        if let Some(argv) = run_argv {
            let entries_tree = self.run_step(ins, cur, &argv, vars, linux)?;
            let (entries, tree) = entries_tree;
            let written = write_layer(
                self.store,
                &entries,
                self.options.source_date_epoch.unwrap_or(0),
            )?;
            drop(tree);
            push_layer(&mut next, written);
            next.add_history(&self.created, &text, false);
        } else if let Some(entries) = layer {
            let written = write_layer(
                self.store,
                &entries,
                self.options.source_date_epoch.unwrap_or(0),
            )?;
            push_layer(&mut next, written);
            next.add_history(&self.created, &text, false);
        } else {
            next.add_history(&self.created, &text, true);
        }
        drop(keep_trees);
        self.cache_put(&key, &next)?;
        Ok((next, false))
    }

    fn command_argv(
        &self,
        ins: &Instruction,
        cmd: &Command,
        vars: &HashMap<String, String>,
        linux: bool,
    ) -> Result<Vec<String>> {
        Ok(match cmd {
            Command::Exec(v) => v.clone(),
            // Linux images get Docker's shell wrapper; wasm images have no
            // shell, so the words are split (and variables expanded) here.
            Command::Shell(s) if linux => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            Command::Shell(s) => self.expand_words(ins, s, vars)?,
        })
    }

    fn cache_get(&self, key: &Digest) -> Option<State> {
        let bytes = std::fs::read(self.store.build_cache_path(key)).ok()?;
        let state: State = serde_json::from_slice(&bytes).ok()?;
        let complete = state.blobs().all(|d| self.store.has_blob(&d));
        complete.then_some(state)
    }

    fn cache_put(&self, key: &Digest, state: &State) -> Result<()> {
        let bytes = canonical_json(state).map_err(std::io::Error::other)?;
        self.store
            .write_file_atomic(&self.store.build_cache_path(key), &bytes)?;
        Ok(())
    }

    /// Unpacks `state`'s layers into a fresh directory.
    fn materialize(&self, state: &State) -> Result<tempfile::TempDir> {
        let dir = self.store.temp_dir("build-")?;
        unpack_layers(
            self.store,
            &state.layers,
            state.config.rootfs().diff_ids(),
            dir.path(),
        )?;
        Ok(dir)
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_entries(
        &mut self,
        ins: &Instruction,
        sources: &[String],
        dest: &str,
        from: Option<&str>,
        chmod: Option<&str>,
        add: bool,
        vars: &HashMap<String, String>,
        cur: &State,
        keep_trees: &mut Vec<tempfile::TempDir>,
    ) -> Result<Vec<LayerEntry>> {
        let p = cur.process();
        let mode_override = match chmod {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| self.err(ins, format!("--chmod={m} is not an octal mode")))?,
            ),
            None => None,
        };
        let dest_raw = self.expand(ins, dest, vars)?;
        let workdir = p.working_dir().clone().unwrap_or_else(|| "/".into());
        let dest_abs = resolve_path(&workdir, &dest_raw);
        let dest_rel = dest_abs.trim_start_matches('/').to_owned();
        // As Docker: a destination that is already a directory in the
        // image receives the file, trailing slash or not.
        let dest_is_dir =
            dest_raw.ends_with('/') || sources.len() > 1 || self.is_dir(&cur.layers, &dest_rel)?;
        let source = match from {
            None => None,
            Some(f) => {
                let f = self.expand(ins, f, vars)?;
                let idx = self
                    .stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(f.to_lowercase().as_str()))
                    .or_else(|| {
                        f.parse::<usize>()
                            .ok()
                            .filter(|i| *i + 1 < self.stages.len())
                    });
                let state = match idx {
                    Some(i) => self.stages[i].state.clone(),
                    None => {
                        let t = self
                            .store
                            .lookup(&f)
                            .map_err(|e| self.err(ins, format!("--from={f}: {e}")))?;
                        let img = self.store.load_image(&t.descriptor, None)?;
                        State {
                            config: img.config.clone(),
                            layers: img.manifest.layers().clone(),
                        }
                    }
                };
                let dir = self.materialize(&state)?;
                let src = Source::tree(dir.path(), format!("filesystem of {f}"));
                keep_trees.push(dir);
                Some(src)
            }
        };
        let src = source.as_ref().unwrap_or(&self.context);
        let mut entries = Vec::new();
        let join = |a: &str, b: &str| match (a.is_empty(), b.is_empty()) {
            (true, _) => b.to_owned(),
            (_, true) => a.to_owned(),
            _ => format!("{a}/{b}"),
        };
        let mut tar_dirs = Vec::new();
        for raw in sources {
            let s = self.expand(ins, raw, vars)?;
            if s.contains("://") || s.starts_with("git@") {
                return Err(self.err(
                    ins,
                    format!("{s}: ADD and COPY of a remote URL are not supported offline"),
                ));
            }
            let selected = src.select(&s).map_err(|e| match e {
                BuildError::Instruction { message, .. } => self.err(ins, message),
                other => self.err(ins, other.to_string()),
            })?;
            let many = selected.len() > 1 || s.contains(['*', '?', '[']);
            for (top, below) in selected {
                match top.kind {
                    SelectedKind::File(mode) => {
                        let host = src.host_path(&top.rel);
                        if add && from.is_none() && is_tar(&host)? {
                            let dir = self.store.temp_dir("add-")?;
                            extract_archive(&host, dir.path())
                                .map_err(|e| self.err(ins, format!("{s}: {e}")))?;
                            let tree = scan_tree(dir.path())?;
                            for (rel, node) in &tree {
                                let kind = match node {
                                    crate::layer::Node::File(m, _) => EntryKind::File {
                                        source: dir.path().join(rel),
                                        mode: *m,
                                    },
                                    crate::layer::Node::Dir(m) => EntryKind::Dir { mode: *m },
                                    crate::layer::Node::Symlink(t) => {
                                        EntryKind::Symlink { target: t.clone() }
                                    }
                                };
                                entries.push(LayerEntry {
                                    path: join(&dest_rel, rel),
                                    kind,
                                });
                            }
                            tar_dirs.push(dir);
                            continue;
                        }
                        let name = top.rel.rsplit('/').next().unwrap_or(&top.rel);
                        let path = if dest_is_dir || many {
                            join(&dest_rel, name)
                        } else {
                            dest_rel.clone()
                        };
                        entries.push(LayerEntry {
                            path,
                            kind: EntryKind::File {
                                source: host,
                                mode: mode_override.unwrap_or(mode),
                            },
                        });
                    }
                    SelectedKind::Dir(mode) => {
                        // A directory's contents go to dest (not the directory itself).
                        if !dest_rel.is_empty() {
                            entries.push(LayerEntry {
                                path: dest_rel.clone(),
                                kind: EntryKind::Dir {
                                    mode: mode_override.unwrap_or(mode),
                                },
                            });
                        }
                        let prefix = if top.rel.is_empty() {
                            String::new()
                        } else {
                            format!("{}/", top.rel)
                        };
                        for b in below {
                            let rel = b.rel.strip_prefix(&prefix).unwrap_or(&b.rel);
                            let path = join(&dest_rel, rel);
                            let kind = match b.kind {
                                SelectedKind::File(m) => EntryKind::File {
                                    source: src.host_path(&b.rel),
                                    mode: mode_override.unwrap_or(m),
                                },
                                SelectedKind::Dir(m) => EntryKind::Dir {
                                    mode: mode_override.unwrap_or(m),
                                },
                                SelectedKind::Symlink(t) => EntryKind::Symlink { target: t },
                            };
                            entries.push(LayerEntry { path, kind });
                        }
                    }
                    SelectedKind::Symlink(_) => {}
                }
            }
        }
        if entries.is_empty() {
            return Err(self.err(ins, "no source files were specified"));
        }
        // Extracted archives must outlive the layer write.
        keep_trees.extend(tar_dirs);
        Ok(entries)
    }

    fn run_step(
        &mut self,
        ins: &Instruction,
        cur: &State,
        argv: &[String],
        vars: &HashMap<String, String>,
        linux: bool,
    ) -> Result<(Vec<LayerEntry>, tempfile::TempDir)> {
        let tree = self.materialize(cur)?;
        let before = scan_tree(tree.path())?;
        if linux {
            return self.run_linux_step(ins, cur, argv, vars, tree, before);
        }
        let p = cur.process();
        let workdir = p.working_dir().clone().unwrap_or_else(|| "/".into());
        let module_path = resolve_path(&workdir, &argv[0]);
        let root = cap_std::fs::Dir::open_ambient_dir(tree.path(), cap_std::ambient_authority())?;
        let bytes = root
            .read(module_path.trim_start_matches('/'))
            .map_err(|_| {
                self.err(
                    ins,
                    format!("module {module_path} not found in the image being built"),
                )
            })?;
        let mut env: Vec<(String, String)> =
            vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.sort();
        let sandbox = Sandbox {
            root: Some((tree.path().to_path_buf(), false)),
            mounts: Vec::new(),
            workdir,
        };
        let options = RunOptions {
            stdout: Stdio::Capture,
            stderr: Stdio::Capture,
            ..RunOptions::default()
        };
        let module = ModuleInput::Bytes {
            digest: Digest::of(&bytes),
            bytes,
        };
        let outcome =
            WasmExecutor::new(self.store.clone()).run(&module, argv, &env, &sandbox, &options)?;
        for stream in [&outcome.stdout, &outcome.stderr] {
            for line in String::from_utf8_lossy(stream).lines() {
                (self.progress)(&format!("  | {line}"));
            }
        }
        if outcome.exit.code() != 0 {
            let message = outcome
                .exit
                .message()
                .unwrap_or_else(|| format!("exit code {}", outcome.exit.code()));
            return Err(BuildError::RunFailed {
                step: self.step_name(ins),
                message,
            });
        }
        let after = scan_tree(tree.path())?;
        Ok((diff_trees(&before, &after, tree.path()), tree))
    }

    /// RUN for a Linux image: `argv` in the native backend, with the
    /// build's environment, WORKDIR and USER, directly in the
    /// materialised tree, and no network (spec/buildfile.md).
    fn run_linux_step(
        &mut self,
        ins: &Instruction,
        cur: &State,
        argv: &[String],
        vars: &HashMap<String, String>,
        tree: tempfile::TempDir,
        before: BTreeMap<String, crate::layer::Node>,
    ) -> Result<(Vec<LayerEntry>, tempfile::TempDir)> {
        let mut env: Vec<(String, String)> =
            vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.sort();
        let options = RunOptions {
            args: Some(argv.to_vec()),
            entrypoint: Some(String::new()),
            env,
            stdout: Stdio::Capture,
            stderr: Stdio::Capture,
            ..RunOptions::default()
        };
        let outcome = crate::exec::linux::run_in(
            self.store,
            tree.path(),
            &cur.process(),
            &options,
            &crate::exec::linux::LinuxOptions::default(),
        )
        .map_err(|e| BuildError::RunFailed {
            step: self.step_name(ins),
            message: e.to_string(),
        })?;
        for stream in [&outcome.stdout, &outcome.stderr] {
            for line in String::from_utf8_lossy(stream).lines() {
                (self.progress)(&format!("  | {line}"));
            }
        }
        if outcome.exit.code() != 0 {
            return Err(BuildError::RunFailed {
                step: self.step_name(ins),
                message: format!("exit code {}", outcome.exit.code()),
            });
        }
        let mut after = scan_tree(tree.path())?;
        // Mount points the runtime made for /proc, /sys and /dev are not
        // the step's output.
        after.retain(|p, _| {
            let top = p.split('/').next().unwrap_or("");
            before.contains_key(p) || !matches!(top, "proc" | "sys" | "dev")
        });
        Ok((diff_trees(&before, &after, tree.path()), tree))
    }

    fn finish(&mut self, mut state: State) -> Result<BuildOutput> {
        let p = state.process();
        let entry = p
            .entrypoint()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(p.cmd().clone().unwrap_or_default())
            .next();
        let wasm = is_wasm_platform(
            &state.config.os().to_string(),
            &state.config.architecture().to_string(),
        );
        let mut module: Option<Vec<u8>> = None;
        if wasm {
            if let Some(e) = &entry {
                let path = resolve_path(&p.working_dir().clone().unwrap_or_else(|| "/".into()), e);
                module = self.read_from_layers(&state, &path)?;
                if let (Some(m), None) = (&module, &self.options.platform) {
                    state.config.set_os(if is_component(m) {
                        "wasip2".into()
                    } else {
                        "wasip1".into()
                    });
                }
            }
        }
        state.config.set_created(Some(self.created.clone()));
        let mut annotations = BTreeMap::new();
        let descriptor = match self.options.format {
            OutputFormat::Image => {
                if wasm {
                    annotations.insert(
                        WASM_VARIANT_ANNOTATION.to_owned(),
                        "compat-smart".to_owned(),
                    );
                }
                self.store
                    .write_image(&state.config, &state.layers, annotations)?
            }
            OutputFormat::Artifact => {
                let Some(m) = module else {
                    return Err(BuildError::Instruction {
                        step: self.file_label.clone(),
                        message: "--format artifact needs a wasm image whose ENTRYPOINT names a module in the image".into(),
                    });
                };
                self.write_artifact(&m)?
            }
        };
        let manifest_digest: Digest = descriptor
            .digest()
            .to_string()
            .parse()
            .expect("we wrote it");
        for t in &self.options.tags {
            self.store.set_name(t, &descriptor)?;
        }
        let image = self.store.load_image(&descriptor, None)?;
        Ok(BuildOutput {
            descriptor,
            manifest_digest,
            image_id: image.config_digest,
            cached_steps: self.cached,
            total_steps: self.steps,
        })
    }

    fn write_artifact(&self, module: &[u8]) -> Result<Descriptor> {
        let layer_digest = self.store.put_blob(module)?;
        let os = if is_component(module) {
            "wasip2"
        } else {
            "wasip1"
        };
        let mut cfg = serde_json::json!({
            "created": self.created,
            "architecture": "wasm",
            "os": os,
            "layerDigests": [layer_digest.to_string()],
        });
        if is_component(module) {
            let engine = wasmtime::Engine::default();
            let c = wasmtime::component::Component::new(&engine, module).map_err(|e| {
                BuildError::Instruction {
                    step: self.file_label.clone(),
                    message: format!("the entrypoint is not a valid component: {e}"),
                }
            })?;
            let ty = c.component_type();
            let imports: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_owned()).collect();
            let exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_owned()).collect();
            cfg["component"] = serde_json::json!({ "imports": imports, "exports": exports });
        }
        let cfg_bytes = canonical_json(&cfg).map_err(std::io::Error::other)?;
        let cfg_digest = self.store.put_blob(&cfg_bytes)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": WASM_CONFIG,
            "config": { "mediaType": WASM_CONFIG, "digest": cfg_digest.to_string(), "size": cfg_bytes.len() },
            "layers": [{ "mediaType": WASM_LAYER, "digest": layer_digest.to_string(), "size": module.len() }],
        });
        let bytes = canonical_json(&manifest).map_err(std::io::Error::other)?;
        let digest = self.store.put_blob(&bytes)?;
        Ok(Descriptor::new(
            oci_spec::image::MediaType::ImageManifest,
            bytes.len() as u64,
            oci_digest(&digest),
        ))
    }

    /// Reads a file from the top-most layer that has it (None if a whiteout
    /// or nothing has it).
    fn read_from_layers(&self, state: &State, path: &str) -> Result<Option<Vec<u8>>> {
        let want = path.trim_start_matches('/');
        let (dir, name) = want.rsplit_once('/').unwrap_or(("", want));
        let whiteout = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        for l in state.layers.iter().rev() {
            let d: Digest = l
                .digest()
                .to_string()
                .parse()
                .map_err(|_| std::io::Error::other("bad digest"))?;
            let f = self.store.open_blob(&d)?;
            let reader = crate::layer::decompressed(f)?;
            let mut ar = tar::Archive::new(reader);
            for e in ar.entries()? {
                let mut e = e?;
                let p = String::from_utf8_lossy(&e.path_bytes())
                    .trim_start_matches("./")
                    .trim_start_matches('/')
                    .to_owned();
                if p == whiteout {
                    return Ok(None);
                }
                if p == want && e.header().entry_type().is_file() {
                    let mut v = Vec::new();
                    e.read_to_end(&mut v)?;
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }
}

fn push_layer(state: &mut State, written: crate::layer::WrittenLayer) {
    state.layers.push(written.descriptor);
    let mut rootfs = state.config.rootfs().clone();
    let mut ids = rootfs.diff_ids().clone();
    ids.push(written.diff_id.to_string());
    rootfs.set_diff_ids(ids);
    state.config.set_rootfs(rootfs);
}

fn hash_entries(entries: &[LayerEntry], h: &mut Hasher) -> Result<()> {
    for e in entries {
        h.update(e.path.as_bytes());
        h.update(b"\0");
        match &e.kind {
            EntryKind::File { source, mode } => {
                let (d, _) =
                    crate::digest::HashingReader::new(fs_err::File::open(source)?).finish()?;
                h.update(format!("f{mode:o}{d}").as_bytes());
            }
            EntryKind::Bytes { data, mode } => {
                h.update(format!("f{mode:o}{}", Digest::of(data)).as_bytes())
            }
            EntryKind::Dir { mode } => h.update(format!("d{mode:o}").as_bytes()),
            EntryKind::Symlink { target } => h.update(format!("l{target}").as_bytes()),
            EntryKind::Whiteout => h.update(b"w"),
        }
        h.update(b"\0");
    }
    Ok(())
}

/// Joins `path` onto `base` (when relative) and normalises `.` and `..`
/// lexically, never rising above `/`.
pub fn resolve_path(base: &str, path: &str) -> String {
    let full = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{base}/{path}")
    };
    let mut out: Vec<&str> = Vec::new();
    for c in full.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

fn is_tar(path: &Path) -> Result<bool> {
    let mut f = fs_err::File::open(path)?;
    let mut head = vec![0u8; 512];
    let n = read_full(&mut f, &mut head)?;
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        // Look inside the gzip stream.
        let f = fs_err::File::open(path)?;
        let mut gz = flate2::read::GzDecoder::new(f);
        let mut inner = vec![0u8; 512];
        let n = read_full(&mut gz, &mut inner).unwrap_or(0);
        return Ok(n >= 262 && &inner[257..262] == b"ustar");
    }
    Ok(n >= 262 && &head[257..262] == b"ustar")
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Extracts a local (possibly gzipped) tar archive for ADD with the same
/// confinement as image layers.
fn extract_archive(path: &Path, dest: &Path) -> Result<(), crate::layer::LayerError> {
    let f = fs_err::File::open(path).map_err(|e| crate::layer::LayerError::Io {
        layer: path.display().to_string(),
        source: e,
    })?;
    crate::layer::extract_tar(f, dest, &path.display().to_string())
}
