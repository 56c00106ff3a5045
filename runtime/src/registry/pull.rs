//! `pull`: manifest (and index) resolution, then verified, parallel blob
//! downloads into the store.

use std::io::Write;

use futures_util::StreamExt;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Method;

use super::client::{Client, Transport};
use super::{credentials_for, scope, Event, Events, RegistryError, MANIFEST_ACCEPT};
use crate::digest::Digest;
use crate::image::{
    descriptor_digest, is_fs_layer, is_wasm_layer, is_wasm_platform, platform_matches,
    DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
    WASM_CONFIG,
};
use crate::reference::Reference;
use crate::store::{Store, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE};

/// How to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `os[/arch]` to pick from an index (default: a wasm platform, else
    /// `linux/amd64`).
    pub platform: Option<String>,
    /// TLS and configuration.
    pub transport: Transport,
}

/// Pulls `reference` into `store` and names it; returns the normalised
/// reference and the digest of the stored manifest.
pub async fn pull(
    store: &Store,
    reference: &str,
    options: &PullOptions,
    events: Events<'_>,
) -> Result<(Reference, Digest), RegistryError> {
    let r: Reference = reference.parse()?;
    // Blobs written before the name is set must survive a concurrent GC.
    let _lock = store.lock_shared()?;
    let creds = credentials_for(r.registry(), &options.transport)?;
    let client = Client::connect(r.registry(), &options.transport, creds).await?;
    let repo = r.repository().to_owned();
    let scopes = vec![scope(&repo, "pull")];
    let what = r
        .digest()
        .map(|d| d.to_string())
        .or_else(|| r.tag().map(str::to_owned))
        .unwrap_or_else(|| "latest".into());
    let fetch = |reference: String, expected: Option<(Digest, u64)>| {
        fetch_manifest(&client, &repo, reference, expected, &scopes)
    };
    let (mut bytes, mut media_type) =
        fetch(what.clone(), r.digest().map(|d| (d.clone(), 0))).await?;
    // A reference that pins an index digest names the index (with the
    // chosen platform's manifest stored under it), so the name resolves.
    let mut pinned_index = None;
    if is_index(&media_type, &bytes) {
        if r.digest().is_some() {
            pinned_index = Some((bytes.clone(), media_type.clone()));
        }
        reject_ambiguous(&bytes, &r)?;
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::Unsupported(format!("index of {}: malformed: {e}", r.familiar()))
        })?;
        let chosen = choose_platform(&index, options.platform.as_deref()).map_err(|available| {
            RegistryError::Unsupported(format!(
                "{} has no image for platform {} (it has: {available})",
                r.familiar(),
                options
                    .platform
                    .as_deref()
                    .unwrap_or("wasi/wasm or linux/amd64")
            ))
        })?;
        let d = descriptor_digest(chosen)
            .map_err(|e| RegistryError::Unsupported(format!("index of {}: {e}", r.familiar())))?;
        if let Some(p) = chosen.platform() {
            events(Event::Note(format!(
                "platform {}/{}: {d}",
                p.os(),
                p.architecture()
            )));
        }
        (bytes, media_type) = fetch(d.to_string(), Some((d, chosen.size()))).await?;
        if is_index(&media_type, &bytes) {
            return Err(RegistryError::Unsupported(format!(
                "{}: an index inside an index is not supported",
                r.familiar()
            )));
        }
    }
    let digest = Digest::of(&bytes);
    let manifest = parse_manifest(&bytes, &media_type, &digest)?;
    let mut blobs: Vec<Descriptor> = vec![manifest.config().clone()];
    for l in manifest.layers() {
        if !blobs.iter().any(|b| b.digest() == l.digest()) {
            blobs.push(l.clone());
        }
    }
    if manifest.config().size() > MAX_CONFIG_SIZE {
        return Err(RegistryError::TooLarge {
            what: format!("config {}", manifest.config().digest()),
            limit: MAX_CONFIG_SIZE,
        });
    }
    let name = format!("{}/{}", r.registry(), repo);
    super::transfer_all(store, &blobs, &name, |b| {
        download(store, &client, &repo, b, events)
    })
    .await?;
    store.put_blob(&bytes)?;
    let mut descriptor = Descriptor::new(
        MediaType::from(media_type.as_str()),
        bytes.len() as u64,
        crate::image::oci_digest(&digest),
    );
    // Only an image wharf can read gets a name.
    store.load_image(&descriptor, None)?;
    let mut digest = digest;
    if let Some((index, index_type)) = pinned_index {
        store.put_blob(&index)?;
        digest = Digest::of(&index);
        descriptor = Descriptor::new(
            MediaType::from(index_type.as_str()),
            index.len() as u64,
            crate::image::oci_digest(&digest),
        );
    }
    let named = if r.tag().is_none() && r.digest().is_none() {
        r.with_tag(crate::reference::DEFAULT_TAG)
    } else {
        r.clone()
    };
    store.set_name(&named, &descriptor)?;
    store.record_blob_source(&digest, &name)?;
    store.record_image("pull", &descriptor, &named);
    Ok((named, digest))
}

/// An index that also carries `layers` could be read two ways: refused.
fn reject_ambiguous(bytes: &[u8], r: &Reference) -> Result<(), RegistryError> {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if v.get("manifests").is_some() && (v.get("layers").is_some() || v.get("config").is_some()) {
        return Err(RegistryError::Unsupported(format!(
            "index {} of {} is ambiguous: it has both manifests and layers",
            Digest::of(bytes),
            r.familiar()
        )));
    }
    Ok(())
}

fn is_index(media_type: &str, bytes: &[u8]) -> bool {
    media_type == OCI_INDEX
        || media_type == DOCKER_MANIFEST_LIST
        || (media_type.is_empty()
            && serde_json::from_slice::<serde_json::Value>(bytes)
                .is_ok_and(|v| v.get("manifests").is_some()))
}

/// Picks the manifest for `want` (or a wasm platform, else linux/amd64);
/// on failure returns the platforms the index has.
fn choose_platform<'a>(
    index: &'a ImageIndex,
    want: Option<&str>,
) -> Result<&'a Descriptor, String> {
    let plat = |m: &Descriptor| {
        m.platform()
            .as_ref()
            .map(|p| (p.os().to_string(), p.architecture().to_string()))
            .unwrap_or_default()
    };
    let found = match want {
        Some(w) => index.manifests().iter().find(|m| {
            let (os, arch) = plat(m);
            platform_matches(w, &os, &arch)
        }),
        None => index
            .manifests()
            .iter()
            .find(|m| {
                let (os, arch) = plat(m);
                is_wasm_platform(&os, &arch)
            })
            .or_else(|| {
                index
                    .manifests()
                    .iter()
                    .find(|m| plat(m) == ("linux".into(), "amd64".into()))
            }),
    };
    found.ok_or_else(|| {
        index
            .manifests()
            .iter()
            .map(|m| {
                let (os, arch) = plat(m);
                format!("{os}/{arch}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// GETs a manifest, capped at 4 MiB and checked against `expected` (digest
/// and, when non-zero, size) and the registry's `Docker-Content-Digest`.
/// Returns the bytes and the media type.
async fn fetch_manifest(
    client: &Client,
    repo: &str,
    reference: String,
    expected: Option<(Digest, u64)>,
    scopes: &[String],
) -> Result<(Vec<u8>, String), RegistryError> {
    let path = format!("v2/{repo}/manifests/{reference}");
    let resp = client
        .send(Method::GET, &path, scopes, &|r| {
            r.header(ACCEPT, MANIFEST_ACCEPT)
        })
        .await?;
    let target = if reference.starts_with("sha256:") {
        format!("{repo}@{reference}")
    } else {
        format!("{repo}:{reference}")
    };
    if !resp.status().is_success() {
        return Err(client.status_error(resp, "pull", &target).await);
    }
    let header_digest = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Digest>().ok());
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    let bytes = client
        .read_capped(resp, MAX_MANIFEST_SIZE, &format!("manifest of {target}"))
        .await?;
    let digest = Digest::of(&bytes);
    if let Some((want, size)) = &expected {
        if &digest != want {
            return Err(RegistryError::Mismatch {
                what: "manifest",
                digest: want.clone(),
                reason: format!(
                    "digest mismatch: the registry sent content that hashes to {digest}"
                ),
            });
        }
        if *size != 0 && *size != bytes.len() as u64 {
            return Err(RegistryError::Mismatch {
                what: "manifest",
                digest: want.clone(),
                reason: format!("expected {size} bytes, got {}", bytes.len()),
            });
        }
    }
    if let Some(h) = header_digest {
        if h != digest {
            return Err(RegistryError::Mismatch {
                what: "manifest",
                digest: h,
                reason: format!(
                    "digest mismatch: the registry's Docker-Content-Digest names other content ({digest})"
                ),
            });
        }
    }
    // The body's own mediaType wins over a generic Content-Type; an OCI
    // document without either is an index when it lists manifests.
    let body = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default();
    let body_type = body["mediaType"].as_str().map(str::to_owned);
    let media_type = match body_type {
        Some(t) => t,
        None if matches!(
            content_type.as_str(),
            OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_MANIFEST_LIST
        ) =>
        {
            content_type
        }
        None if body.get("manifests").is_some() => OCI_INDEX.to_owned(),
        None => OCI_MANIFEST.to_owned(),
    };
    Ok((bytes, media_type))
}

/// Parses and checks an image manifest: schema 2, a known manifest, config
/// and layer media type for each part.
fn parse_manifest(
    bytes: &[u8],
    media_type: &str,
    digest: &Digest,
) -> Result<ImageManifest, RegistryError> {
    let unsupported = |what: &str, d: &str, mt: &str| {
        RegistryError::Unsupported(format!("{what} {d} has unsupported media type {mt:?}"))
    };
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Unsupported(format!("manifest {digest} is malformed: {e}")))?;
    if v.get("manifests").is_some() {
        return Err(RegistryError::Unsupported(format!(
            "manifest {digest} is ambiguous: it has both manifests and layers"
        )));
    }
    if v["schemaVersion"].as_u64() != Some(2) {
        return Err(RegistryError::Unsupported(format!(
            "manifest {digest} has schemaVersion {} (only 2 is supported)",
            v["schemaVersion"]
        )));
    }
    let mt = if media_type.is_empty() {
        OCI_MANIFEST
    } else {
        media_type
    };
    if mt != OCI_MANIFEST && mt != DOCKER_MANIFEST {
        return Err(unsupported("manifest", &digest.to_string(), mt));
    }
    let m: ImageManifest = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Unsupported(format!("manifest {digest} is malformed: {e}")))?;
    let ct = m.config().media_type().to_string();
    if !matches!(ct.as_str(), OCI_CONFIG | DOCKER_CONFIG | WASM_CONFIG) {
        return Err(unsupported("config", m.config().digest().as_ref(), &ct));
    }
    for l in m.layers() {
        let lt = l.media_type().to_string();
        if !(is_fs_layer(&lt) || is_wasm_layer(&lt)) {
            return Err(unsupported("layer", l.digest().as_ref(), &lt));
        }
    }
    for d in std::iter::once(m.config()).chain(m.layers()) {
        descriptor_digest(d)
            .map_err(|e| RegistryError::Unsupported(format!("manifest {digest}: {e}")))?;
    }
    Ok(m)
}

fn is_foreign(media_type: &str) -> bool {
    media_type.contains(".foreign.") || media_type.contains(".nondistributable.")
}

/// Downloads one blob into the store unless it is there already, checking
/// size and sha256 as it streams.
async fn download(
    store: &Store,
    client: &Client,
    repo: &str,
    blob: &Descriptor,
    events: Events<'_>,
) -> Result<(), RegistryError> {
    let digest = descriptor_digest(blob).expect("checked in parse_manifest");
    let size = blob.size();
    if store.has_blob(&digest) {
        events(Event::Exists { digest, size });
        return Ok(());
    }
    let scopes = [scope(repo, "pull")];
    let path = format!("v2/{repo}/blobs/{digest}");
    let mut resp = client.send(Method::GET, &path, &scopes, &|r| r).await?;
    if !resp.status().is_success() && is_foreign(blob.media_type().as_ref()) {
        // Foreign layers live elsewhere: fetched with no credentials.
        for url in blob.urls().clone().unwrap_or_default() {
            let r = client.get_anonymous(&url).await?;
            if r.status().is_success() {
                resp = r;
                break;
            }
        }
    }
    if !resp.status().is_success() {
        return Err(client
            .status_error(resp, "pull", &format!("{repo}@{digest}"))
            .await);
    }
    let mismatch = |reason: String| RegistryError::Mismatch {
        what: "blob",
        digest: digest.clone(),
        reason,
    };
    if let Some(n) = resp.content_length() {
        if n != size {
            return Err(mismatch(format!(
                "the registry sends {n} bytes, the manifest says {size}"
            )));
        }
    }
    events(Event::Started {
        digest: digest.clone(),
        size,
    });
    let mut writer = store.blob_writer()?;
    let mut done = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            mismatch(format!(
                "transfer broke off after {done} of {size} bytes: {}",
                super::client::describe(&e)
            ))
        })?;
        done += chunk.len() as u64;
        if done > size {
            return Err(mismatch(format!(
                "the registry sent more than {size} bytes"
            )));
        }
        writer.write_all(&chunk)?;
        events(Event::Progress {
            digest: digest.clone(),
            done,
        });
    }
    if done != size {
        return Err(mismatch(format!(
            "transfer ended after {done} of {size} bytes"
        )));
    }
    writer.commit(Some((&digest, size))).map_err(|e| match e {
        crate::store::StoreError::Corrupt { reason, .. } => {
            mismatch(format!("digest or size mismatch: {reason}"))
        }
        other => other.into(),
    })?;
    events(Event::Finished { digest, size });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(plats: &[(&str, &str)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = plats
            .iter()
            .enumerate()
            .map(|(i, (os, arch))| {
                serde_json::json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": format!("sha256:{:064x}", i),
                    "size": 1,
                    "platform": {"os": os, "architecture": arch}
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    #[test]
    fn platform_choice() {
        let i = index(&[("linux", "arm64"), ("linux", "amd64"), ("wasip1", "wasm")]);
        let os = |d: &Descriptor| d.platform().as_ref().unwrap().os().to_string();
        assert_eq!(os(choose_platform(&i, None).unwrap()), "wasip1");
        assert_eq!(
            choose_platform(&i, Some("linux/arm64"))
                .unwrap()
                .platform()
                .as_ref()
                .unwrap()
                .architecture()
                .to_string(),
            "arm64"
        );
        let linux = index(&[("linux", "arm64"), ("linux", "amd64")]);
        assert_eq!(os(choose_platform(&linux, None).unwrap()), "linux");
        let err = choose_platform(&linux, Some("windows/amd64")).unwrap_err();
        assert_eq!(err, "linux/arm64, linux/amd64");
    }

    #[test]
    fn unknown_media_types_are_refused() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": format!("sha256:{:064x}", 1), "size": 1},
            "layers": [{"mediaType": "application/x-evil", "digest": format!("sha256:{:064x}", 2), "size": 1}]
        });
        let bytes = serde_json::to_vec(&m).unwrap();
        let e = parse_manifest(&bytes, OCI_MANIFEST, &Digest::of(&bytes)).unwrap_err();
        assert!(e.to_string().contains("unsupported media type"), "{e}");
    }
}
