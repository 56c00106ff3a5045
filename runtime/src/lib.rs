//! # wharf
//!
//! An embeddable container runtime for WebAssembly: an OCI image store,
//! Dockerfile builds and isolated WASI execution, the library behind the
//! `wharf` CLI.
//!
//! ```no_run
//! use wharf::{build, exec, store::Store};
//!
//! # fn main() -> Result<(), wharf::Error> {
//! let store = Store::open("/tmp/wharf-root")?;
//! let options = build::BuildOptions {
//!     context: "examples/hello".into(),
//!     tags: vec!["hello:latest".parse()?],
//!     ..Default::default()
//! };
//! build::build(&store, &options, &mut |line| eprintln!("{line}"))?;
//!
//! let tagged = store.lookup("hello")?;
//! let image = store.load_image(&tagged.descriptor, None)?;
//! let outcome = exec::run_image(&store, "hello", &image, &exec::RunOptions::default())?;
//! assert_eq!(outcome.exit.code(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! The modules follow the nouns of the Docker workflow: [`reference`](mod@reference) and
//! [`digest`] name things, [`store`] keeps them, [`image`] reads them,
//! [`layer`] packs and unpacks filesystems, [`build`] turns Dockerfiles into
//! images, [`exec`] runs them, [`container`] keeps them running, [`archive`] moves them in and out as tar files, and
//! [`registry`] shares them through OCI registries.

#![deny(missing_docs)]

pub mod archive;
pub mod build;
pub mod container;
pub mod daemon;
pub mod digest;
pub mod events;
pub mod exec;
pub mod filters;
pub mod image;
pub mod layer;
pub mod reference;
pub mod registry;
pub mod serve;
pub mod store;

/// Any error wharf reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A bad digest.
    #[error(transparent)]
    Digest(#[from] digest::DigestError),
    /// A bad reference.
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    /// A store failure.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// An image could not be read.
    #[error(transparent)]
    Image(#[from] image::ImageError),
    /// A layer could not be written or unpacked.
    #[error(transparent)]
    Layer(#[from] layer::LayerError),
    /// A build failed.
    #[error(transparent)]
    Build(#[from] build::BuildError),
    /// A run failed before or outside the guest.
    #[error(transparent)]
    Run(#[from] exec::RunError),
    /// An import or export failed.
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    /// Talking to a registry failed.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// Managing a container failed.
    #[error(transparent)]
    Container(#[from] container::ContainerError),
    /// The API daemon failed.
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
}

impl Error {
    /// The exit code the CLI reports for this error (Docker's conventions:
    /// 125 for wharf's own failures, 126/127 for modules that cannot start).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Run(e) => e.exit_code(),
            Error::Container(container::ContainerError::Run(e)) => e.exit_code(),
            Error::Container(container::ContainerError::Start { code, .. }) => *code,
            _ => exec::EXIT_WHARF_ERROR,
        }
    }
}
