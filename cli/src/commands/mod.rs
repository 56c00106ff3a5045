//! One module per subcommand.

pub mod build;
pub mod images;
pub mod inspect;
pub mod load;
pub mod rmi;
pub mod run;
pub mod save;
pub mod tag;

/// Wraps a library error so `main` can map it to an exit code.
pub fn lib<T>(r: Result<T, impl Into<wharf::Error>>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::Error::from(e.into()))
}
