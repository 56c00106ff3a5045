//! `wharf pull`, `push`, `login` and `logout`, and the progress display
//! they share.

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use wharf::digest::Digest;
use wharf::registry::{self, Credentials, Event, PullOptions, PushOptions, Transport};
use wharf::store::Store;

/// TLS flag shared by the registry commands.
#[derive(clap::Args)]
pub struct TlsArgs {
    /// Verify TLS certificates and refuse plain HTTP (loopback registries
    /// are always allowed HTTP, as with Docker).
    #[arg(long = "tls-verify", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    tls_verify: bool,
}

impl TlsArgs {
    fn transport(&self) -> Transport {
        Transport {
            tls_verify: self.tls_verify,
            ..Transport::default()
        }
    }
}

/// Arguments of `wharf pull`.
#[derive(clap::Args)]
pub struct PullArgs {
    /// Platform to pick from a multi-platform image (os[/arch]).
    #[arg(long)]
    platform: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Print only the manifest digest.
    #[arg(short, long)]
    quiet: bool,
    /// Image reference (NAME[:TAG|@DIGEST]).
    reference: String,
}

/// Arguments of `wharf push`.
#[derive(clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    tls: TlsArgs,
    /// Print only the manifest digest.
    #[arg(short, long)]
    quiet: bool,
    /// Image in the store.
    name: String,
    /// Destination reference (default: NAME).
    dest: Option<String>,
}

/// Arguments of `wharf login`.
#[derive(clap::Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin: command lines are visible to
    /// other users).
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// Registry (HOST[:PORT]).
    registry: String,
}

/// Arguments of `wharf logout`.
#[derive(clap::Args)]
pub struct LogoutArgs {
    /// Registry (HOST[:PORT]).
    registry: String,
}

/// Runs `fut` on a fresh tokio runtime.
fn block_on<F: std::future::Future>(fut: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    Ok(rt.block_on(fut))
}

/// Shows transfer events: a bar per blob on a terminal, else a line per
/// event, nothing with `-q`. All on stderr.
pub struct Display {
    quiet: bool,
    verb: &'static str,
    bars: Option<(MultiProgress, Mutex<HashMap<Digest, ProgressBar>>)>,
}

impl Display {
    /// A display for a transfer whose finished blobs are `verb` (pulled,
    /// pushed).
    pub fn new(quiet: bool, verb: &'static str) -> Display {
        let bars = (!quiet && std::io::stderr().is_terminal())
            .then(|| (MultiProgress::new(), Mutex::new(HashMap::new())));
        Display { quiet, verb, bars }
    }

    /// Takes one event.
    pub fn event(&self, e: Event) {
        if self.quiet {
            return;
        }
        let Some((multi, bars)) = &self.bars else {
            match e {
                Event::Exists { digest, .. } => eprintln!("{}: exists", short(&digest)),
                Event::Finished { digest, size } => {
                    eprintln!(
                        "{}: {} {}",
                        short(&digest),
                        self.verb,
                        super::human_size(size)
                    )
                }
                Event::Mounted { digest, from } => {
                    eprintln!("{}: mounted from {from}", short(&digest))
                }
                Event::Note(n) => eprintln!("{n}"),
                Event::Started { .. } | Event::Progress { .. } => {}
            }
            return;
        };
        let mut bars = bars.lock().expect("display lock");
        let mut bar = |digest: &Digest, size: u64| {
            bars.entry(digest.clone())
                .or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(size));
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    b.set_prefix(short(digest));
                    b
                })
                .clone()
        };
        match e {
            Event::Exists { digest, size } => bar(&digest, size).finish_with_message("exists"),
            Event::Started { digest, size } => {
                bar(&digest, size);
            }
            Event::Progress { digest, done } => bar(&digest, 0).set_position(done),
            Event::Finished { digest, size } => {
                let b = bar(&digest, size);
                b.set_position(size);
                b.finish();
            }
            Event::Mounted { digest, from } => {
                bar(&digest, 0).finish();
                let _ = multi.println(format!("{}: mounted from {from}", short(&digest)));
            }
            Event::Note(n) => {
                let _ = multi.println(n);
            }
        }
    }
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_owned()
}

/// Pulls `reference` with `display`; used by `pull` and by `run` for a
/// missing image.
pub fn pull_with(
    store: &Store,
    reference: &str,
    options: &PullOptions,
    display: &Display,
) -> anyhow::Result<Digest> {
    let events = |e: Event| display.event(e);
    let (r, digest) = super::lib(block_on(registry::pull(
        store, reference, options, &events,
    ))?)?;
    if !display.quiet {
        eprintln!("pulled {}", r.familiar());
    }
    Ok(digest)
}

/// Runs `wharf pull`.
pub fn pull(store: &Store, a: PullArgs) -> anyhow::Result<i32> {
    let options = PullOptions {
        platform: a.platform,
        transport: a.tls.transport(),
    };
    let digest = pull_with(
        store,
        &a.reference,
        &options,
        &Display::new(a.quiet, "pulled"),
    )?;
    super::say(digest)?;
    Ok(0)
}

/// Runs `wharf push`.
pub fn push(store: &Store, a: PushArgs) -> anyhow::Result<i32> {
    let display = Display::new(a.quiet, "pushed");
    let events = |e: Event| display.event(e);
    let options = PushOptions {
        transport: a.tls.transport(),
    };
    let (r, digest) = super::lib(block_on(registry::push(
        store,
        &a.name,
        a.dest.as_deref(),
        &options,
        &events,
    ))?)?;
    if !a.quiet {
        eprintln!("pushed {}", r.familiar());
    }
    super::say(digest)?;
    Ok(0)
}

/// Runs `wharf login`.
pub fn login(a: LoginArgs) -> anyhow::Result<i32> {
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => anyhow::bail!("--password and --password-stdin cannot be used together"),
        (Some(p), false) => {
            eprintln!("warning: a password on the command line is visible to other users: use --password-stdin");
            p
        }
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => anyhow::bail!("give the password with --password-stdin"),
    };
    let Some(username) = a.username.filter(|u| !u.is_empty()) else {
        anyhow::bail!("give the user name with -u");
    };
    if password.is_empty() {
        anyhow::bail!("the password is empty");
    }
    let creds = Credentials { username, password };
    super::lib(block_on(registry::login(
        &a.registry,
        creds,
        &a.tls.transport(),
    ))?)?;
    eprintln!("Login Succeeded");
    Ok(0)
}

/// Runs `wharf logout`.
pub fn logout(a: LogoutArgs) -> anyhow::Result<i32> {
    let name = registry::normalise_registry(&a.registry);
    if super::lib(registry::logout(&a.registry, &Transport::default()))? {
        eprintln!("Removing login credentials for {name}");
    } else {
        eprintln!("Not logged in to {name}");
    }
    Ok(0)
}
