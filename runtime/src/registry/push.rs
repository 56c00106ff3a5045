//! `push`: existence checks, cross-repository mounts, parallel uploads,
//! manifests last.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};

use super::client::{Client, Transport};
use super::{credentials_for, scope, Event, Events, RegistryError};
use crate::digest::Digest;
use crate::reference::Reference;
use crate::store::{Store, MAX_MANIFEST_SIZE};

/// Blobs up to this size go up in one `PUT`; larger ones in `PATCH` chunks
/// of this size.
pub const CHUNK_SIZE: u64 = 64 << 20;

/// How to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// TLS and configuration.
    pub transport: Transport,
}

/// A manifest to upload: its bytes, media type and digest.
struct ManifestUpload {
    bytes: Vec<u8>,
    media_type: String,
    digest: Digest,
}

/// Pushes the image `name` from `store` to `dest` (default: `name`).
/// Returns the destination and the digest of the top manifest.
pub async fn push(
    store: &Store,
    name: &str,
    dest: Option<&str>,
    options: &PushOptions,
    events: Events<'_>,
) -> Result<(Reference, Digest), RegistryError> {
    // Garbage collection must not remove a blob while it is uploaded.
    let _lock = store.lock_shared()?;
    let tagged = store.lookup(name)?;
    let target: Reference = match dest {
        Some(d) => d.parse()?,
        None => match name.parse::<Reference>() {
            Ok(_) if !name.starts_with("sha256:") => tagged.reference.clone(),
            _ => {
                return Err(RegistryError::Unsupported(format!(
                "{name} is an image id: give a destination (wharf push {name} REGISTRY/REPO:TAG)"
            )))
            }
        },
    };
    let top: Digest = crate::image::descriptor_digest(&tagged.descriptor)?;
    let (manifests, blobs) = collect(store, &top)?;

    let creds = credentials_for(target.registry(), &options.transport)?;
    let client = Client::connect(target.registry(), &options.transport, creds).await?;
    let repo = target.repository().to_owned();
    let full = format!("{}/{}", target.registry(), repo);

    super::transfer_all(store, &blobs, &full, |b| {
        upload_blob(store, &client, &repo, b, events)
    })
    .await?;

    let scopes = [scope(&repo, "pull,push")];
    let last = manifests.len() - 1;
    for (i, m) in manifests.iter().enumerate() {
        // Children by digest, the top manifest under the tag (or digest).
        let reference = match (i == last, target.tag()) {
            (true, Some(tag)) => tag.to_owned(),
            _ => m.digest.to_string(),
        };
        let path = format!("v2/{repo}/manifests/{reference}");
        let body = m.bytes.clone();
        let mt = m.media_type.clone();
        let resp = client
            .send(Method::PUT, &path, &scopes, &|r| {
                r.header(CONTENT_TYPE, mt.as_str()).body(body.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(client
                .status_error(resp, "push", &format!("{repo}:{reference}"))
                .await);
        }
        if let Some(h) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if h != m.digest.to_string() {
                return Err(RegistryError::Mismatch {
                    what: "manifest",
                    digest: m.digest.clone(),
                    reason: format!("the registry stored it as {h}"),
                });
            }
        }
        store.record_blob_source(&m.digest, &full)?;
    }
    store.record_image("push", &tagged.descriptor, &target);
    Ok((target, top))
}

/// The manifests to upload (children before their index) and the blobs
/// they refer to, each once.
fn collect(
    store: &Store,
    top: &Digest,
) -> Result<(Vec<ManifestUpload>, Vec<Descriptor>), RegistryError> {
    let read = |d: &Digest| -> Result<(Vec<u8>, serde_json::Value), RegistryError> {
        let bytes = store.read_blob(d, MAX_MANIFEST_SIZE, "manifest")?;
        let v = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::Unsupported(format!("manifest {d} in the store is malformed: {e}"))
        })?;
        Ok((bytes, v))
    };
    let media_type_of = |v: &serde_json::Value| {
        v["mediaType"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                if v.get("manifests").is_some() {
                    "application/vnd.oci.image.index.v1+json".into()
                } else {
                    "application/vnd.oci.image.manifest.v1+json".into()
                }
            })
    };
    let mut manifests = Vec::new();
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut add_image = |d: &Digest,
                         bytes: Vec<u8>,
                         v: serde_json::Value,
                         manifests: &mut Vec<ManifestUpload>|
     -> Result<(), RegistryError> {
        let m: ImageManifest = serde_json::from_value(v.clone()).map_err(|e| {
            RegistryError::Unsupported(format!("manifest {d} in the store is malformed: {e}"))
        })?;
        for b in std::iter::once(m.config()).chain(m.layers()) {
            let bd = crate::image::descriptor_digest(b)?;
            if !store.has_blob(&bd) {
                return Err(RegistryError::Unsupported(format!(
                    "blob {bd} of manifest {d} is not in the store"
                )));
            }
            if !blobs.iter().any(|x| x.digest() == b.digest()) {
                blobs.push(b.clone());
            }
        }
        manifests.push(ManifestUpload {
            bytes,
            media_type: media_type_of(&v),
            digest: d.clone(),
        });
        Ok(())
    };
    let (bytes, v) = read(top)?;
    if v.get("manifests").is_some() {
        let index: ImageIndex = serde_json::from_value(v.clone()).map_err(|e| {
            RegistryError::Unsupported(format!("index {top} in the store is malformed: {e}"))
        })?;
        for child in index.manifests() {
            let cd = crate::image::descriptor_digest(child)?;
            if !store.has_blob(&cd) {
                return Err(RegistryError::Unsupported(format!(
                    "index {top} lists {cd}, which is not in the store"
                )));
            }
            let (cb, cv) = read(&cd)?;
            add_image(&cd, cb, cv, &mut manifests)?;
        }
        manifests.push(ManifestUpload {
            bytes,
            media_type: media_type_of(&v),
            digest: top.clone(),
        });
    } else {
        add_image(top, bytes, v, &mut manifests)?;
    }
    Ok((manifests, blobs))
}

/// Uploads one blob unless the repository has it, mounting it from another
/// repository of the same registry when wharf knows one.
async fn upload_blob(
    store: &Store,
    client: &Client,
    repo: &str,
    blob: &Descriptor,
    events: Events<'_>,
) -> Result<(), RegistryError> {
    let digest = crate::image::descriptor_digest(blob)?;
    let size = blob.size();
    let push_scope = scope(repo, "pull,push");
    let head = client
        .send(
            Method::HEAD,
            &format!("v2/{repo}/blobs/{digest}"),
            std::slice::from_ref(&push_scope),
            &|r| r,
        )
        .await?;
    match head.status() {
        s if s.is_success() => {
            events(Event::Exists { digest, size });
            return Ok(());
        }
        StatusCode::NOT_FOUND => {}
        _ => {
            return Err(client
                .status_error(head, "push", &format!("{repo}@{digest}"))
                .await)
        }
    }
    let prefix = format!("{}/", client.registry());
    let source = store
        .blob_sources(&digest)
        .into_iter()
        .filter_map(|s| s.strip_prefix(&prefix).map(str::to_owned))
        .find(|r| r != repo);
    let mut location = None;
    if let Some(from) = &source {
        let scopes = [push_scope.clone(), scope(from, "pull")];
        let resp = client
            .send(
                Method::POST,
                &format!("v2/{repo}/blobs/uploads/?mount={digest}&from={from}"),
                &scopes,
                &|r| r.header(CONTENT_LENGTH, "0"),
            )
            .await;
        // A mount is an optimisation: any failure falls back to an upload.
        let status = resp.as_ref().map(|r| r.status()).ok();
        match status {
            Some(StatusCode::CREATED) => {
                events(Event::Mounted {
                    digest,
                    from: from.clone(),
                });
                return Ok(());
            }
            // The registry started an ordinary upload instead.
            Some(StatusCode::ACCEPTED) => {
                location = Some(upload_location(
                    client,
                    &resp.expect("status came from Ok"),
                )?)
            }
            _ => tracing::debug!("mounting {digest} from {from} failed; uploading it"),
        }
    }
    let scopes = [push_scope];
    let mut location = match location {
        Some(l) => l,
        None => {
            let resp = client
                .send(
                    Method::POST,
                    &format!("v2/{repo}/blobs/uploads/"),
                    &scopes,
                    &|r| r.header(CONTENT_LENGTH, "0"),
                )
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(client
                    .status_error(resp, "push", &format!("{repo}@{digest}"))
                    .await);
            }
            upload_location(client, &resp)?
        }
    };
    events(Event::Started {
        digest: digest.clone(),
        size,
    });
    let path = store.blob_path(&digest);
    let sent = Arc::new(AtomicU64::new(0));
    let target = format!("{repo}@{digest}");
    let mut offset = 0u64;
    // Blobs above CHUNK_SIZE go up in PATCH chunks; the final PUT closes
    // the upload (with the last chunk for small blobs).
    while size - offset > CHUNK_SIZE {
        let len = CHUNK_SIZE;
        let (p, s) = (path.clone(), sent.clone());
        let resp = with_progress(
            client.send(Method::PATCH, location.as_str(), &scopes, &|r| {
                r.header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, len.to_string())
                    .header("content-range", format!("{}-{}", offset, offset + len - 1))
                    .body(file_body(&p, offset, len, s.clone()))
            }),
            &sent,
            &digest,
            events,
        )
        .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(client.status_error(resp, "push", &target).await);
        }
        location = upload_location(client, &resp)?;
        offset += len;
    }
    let mut put = location.clone();
    put.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    let len = size - offset;
    let (p, s) = (path.clone(), sent.clone());
    let resp = with_progress(
        client.send(Method::PUT, put.as_str(), &scopes, &|r| {
            r.header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, len.to_string())
                .body(file_body(&p, offset, len, s.clone()))
        }),
        &sent,
        &digest,
        events,
    )
    .await?;
    if resp.status() != StatusCode::CREATED {
        return Err(client.status_error(resp, "push", &target).await);
    }
    events(Event::Finished { digest, size });
    Ok(())
}

/// Runs `fut`, reporting the bytes counted in `sent` four times a second.
async fn with_progress<F, T>(fut: F, sent: &AtomicU64, digest: &Digest, events: Events<'_>) -> T
where
    F: std::future::Future<Output = T>,
{
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => events(Event::Progress {
                digest: digest.clone(),
                done: sent.load(Ordering::Relaxed),
            }),
        }
    }
}

/// The absolute URL of an upload session from a response's `Location`.
fn upload_location(client: &Client, resp: &reqwest::Response) -> Result<Url, RegistryError> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| RegistryError::Protocol {
            registry: client.registry().to_owned(),
            reason: "an upload was started without a Location".into(),
        })?;
    // Relative to the request that returned it (which may be a storage
    // host rather than the registry).
    resp.url().join(loc).map_err(|e| RegistryError::Protocol {
        registry: client.registry().to_owned(),
        reason: format!("bad upload location {loc:?}: {e}"),
    })
}

/// `len` bytes of the file at `path` from `offset`, as a streaming body
/// that counts what it has sent in `sent`.
fn file_body(path: &std::path::Path, offset: u64, len: u64, sent: Arc<AtomicU64>) -> reqwest::Body {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let path = path.to_owned();
    let stream =
        futures_util::stream::try_unfold((None::<tokio::fs::File>, len), move |(file, left)| {
            let path = path.clone();
            let sent = sent.clone();
            async move {
                if left == 0 {
                    return Ok::<_, std::io::Error>(None);
                }
                let mut file = match file {
                    Some(f) => f,
                    None => {
                        let mut f = tokio::fs::File::open(&path).await?;
                        f.seek(std::io::SeekFrom::Start(offset)).await?;
                        f
                    }
                };
                let mut buf = vec![0u8; (left.min(1 << 20)) as usize];
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{} is shorter than its descriptor", path.display()),
                    ));
                }
                buf.truncate(n);
                sent.fetch_add(n as u64, Ordering::Relaxed);
                Ok(Some((buf, (Some(file), left - n as u64))))
            }
        });
    reqwest::Body::wrap_stream(stream)
}
