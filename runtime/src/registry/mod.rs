//! Sharing images: pull from and push to OCI distribution registries, and
//! the credentials that go with them (spec/registry.md).
//!
//! The protocol is spoken here, over reqwest: [`client`] does transport and
//! authentication, [`pull`] and [`push`] do the orchestration (platform
//! choice, existence checks, mounts, parallel transfers, verification into
//! the store). Every function is async; the CLI runs them on a tokio
//! runtime.

pub mod auth;
pub mod client;
mod pull;
mod push;

use std::path::PathBuf;

pub use auth::Credentials;
pub use client::{is_loopback, registry_config, RegistryConfig, Transport};
pub use pull::{pull, PullOptions};
pub use push::{push, PushOptions};

use crate::digest::Digest;

/// Parallel blob transfers per pull or push.
pub const PARALLEL_TRANSFERS: usize = 4;

/// Errors from talking to registries.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error status.
    #[error("{op} {target}: {status}{}{hint}", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Status {
        /// What wharf was doing (`pull`, `push`, `authenticate with`, ...).
        op: String,
        /// `registry/repository[:tag|@digest]` or the blob.
        target: String,
        /// The HTTP status.
        status: String,
        /// The registry's own error codes and messages.
        detail: String,
        /// What the user may do about it (may be empty).
        hint: String,
    },
    /// The registry could not be reached, or a transfer broke off.
    #[error("registry {registry}: {reason}")]
    Connect {
        /// The registry.
        registry: String,
        /// The cause.
        reason: String,
    },
    /// The registry said something that breaks the protocol.
    #[error("registry {registry}: {reason}")]
    Protocol {
        /// The registry.
        registry: String,
        /// What was wrong.
        reason: String,
    },
    /// A body was larger than wharf accepts.
    #[error("{what} is too large: more than {limit} bytes")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// Content does not match the digest or size that names it.
    #[error("{what} {digest}: {reason}")]
    Mismatch {
        /// What the content is (`manifest`, `blob`, ...).
        what: &'static str,
        /// The expected digest.
        digest: Digest,
        /// What differed.
        reason: String,
    },
    /// A manifest, config or layer of a kind wharf cannot use.
    #[error("{0}")]
    Unsupported(String),
    /// A configuration file is unreadable.
    #[error("config {}: {reason}", .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Finding or saving credentials failed.
    #[error("credentials: {0}")]
    Credentials(String),
    /// A reference does not parse.
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Reading an image from the store failed.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// Local I/O failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What a transfer reports as it goes, for progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The blob is already where it needs to be.
    Exists {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A transfer starts.
    Started {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Bytes moved (cumulative for this blob).
    Progress {
        /// The blob.
        digest: Digest,
        /// Bytes so far.
        done: u64,
    },
    /// The blob arrived and was verified (pull) or was accepted (push).
    Finished {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// The blob was mounted from another repository of the registry.
    Mounted {
        /// The blob.
        digest: Digest,
        /// The repository it came from.
        from: String,
    },
    /// Something else worth a line (resolved platform, manifest written).
    Note(String),
}

/// A receiver of [`Event`]s; shared by the parallel transfers.
pub type Events<'a> = &'a (dyn Fn(Event) + Send + Sync);

/// Checks `creds` against `registry` (as `docker login` does) and, when the
/// registry accepts them, saves them in wharf's `auth.json`.
pub async fn login(
    registry: &str,
    creds: Credentials,
    transport: &Transport,
) -> Result<(), RegistryError> {
    let registry = normalise_registry(registry);
    let client = client::Client::connect(&registry, transport, Some(creds.clone())).await?;
    // `/v2/` with credentials: basic registries check them directly; token
    // registries check them when issuing a token (any scope will do).
    let resp = client
        .send(reqwest::Method::GET, "v2/", &[], &|r| r)
        .await?;
    if !resp.status().is_success() {
        return Err(client.status_error(resp, "log in to", "").await);
    }
    if client.withheld_credentials() {
        return Err(RegistryError::Credentials(format!(
            "{registry}'s token service is on another host or plain HTTP, so wharf did not send it the credentials and could not check them; nothing was saved"
        )));
    }
    auth::save(&transport.config_dir, &registry, &creds)
}

/// Removes saved credentials; false when there were none.
pub fn logout(registry: &str, transport: &Transport) -> Result<bool, RegistryError> {
    auth::remove(&transport.config_dir, &normalise_registry(registry))
}

/// `https://host:port/` and `host:port` name the same registry; Docker
/// Hub's aliases are `docker.io`.
pub fn normalise_registry(registry: &str) -> String {
    let r = registry
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let r = r.strip_suffix("/v1").unwrap_or(r);
    match r {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        other => other.to_owned(),
    }
}

/// Credentials for `registry` from wharf's and Docker's configuration.
pub(crate) fn credentials_for(
    registry: &str,
    transport: &Transport,
) -> Result<Option<Credentials>, RegistryError> {
    if let Some(c) = &transport.credentials {
        return Ok(Some(c.clone()));
    }
    auth::lookup(
        &transport.config_dir,
        &transport.docker_config_dir,
        registry,
    )
}

/// Runs `transfer` for every blob, [`PARALLEL_TRANSFERS`] at a time, then
/// records that the blobs exist in `repository` (for later mounts).
pub(crate) async fn transfer_all<'a, F, Fut>(
    store: &crate::store::Store,
    blobs: &'a [oci_spec::image::Descriptor],
    repository: &str,
    transfer: F,
) -> Result<(), RegistryError>
where
    F: Fn(&'a oci_spec::image::Descriptor) -> Fut,
    Fut: std::future::Future<Output = Result<(), RegistryError>>,
{
    use futures_util::{StreamExt, TryStreamExt};
    futures_util::stream::iter(blobs.iter().map(transfer))
        .buffer_unordered(PARALLEL_TRANSFERS)
        .try_collect::<Vec<()>>()
        .await?;
    for b in blobs {
        store.record_blob_source(&crate::image::descriptor_digest(b)?, repository)?;
    }
    Ok(())
}

/// `repository:NAME:ACTIONS`.
pub(crate) fn scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

/// Media types asked for when fetching a manifest.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names() {
        assert_eq!(
            normalise_registry("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(
            normalise_registry("http://127.0.0.1:5000/"),
            "127.0.0.1:5000"
        );
        assert_eq!(normalise_registry("localhost:5000"), "localhost:5000");
    }
}
