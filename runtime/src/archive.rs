//! `wharf save` and `wharf load`: images in and out of tar archives.
//!
//! `save` writes an OCI Image Layout as a tar (readable by
//! `skopeo inspect oci-archive:FILE`), plus Docker's `manifest.json` so that
//! `docker load` accepts it too. `load` reads that, OCI archives from other
//! tools, and the classic `docker save` format (`manifest.json`,
//! `<id>.json`, `<dir>/layer.tar`). Every blob is verified against its
//! digest before it enters the store, and names are only added once every
//! blob an image needs is present.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::Path;

use oci_spec::image::{Descriptor, MediaType};

use crate::digest::Digest;
use crate::image::{canonical_json, descriptor_digest, oci_digest};
use crate::reference::Reference;
use crate::store::{Store, StoreError, MAX_MANIFEST_SIZE, REF_NAME_ANNOTATION};

/// Errors from saving or loading archives.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An image could not be read.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The archive is not in a format wharf reads.
    #[error("{path}: {reason}")]
    Format {
        /// The archive.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// I/O failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

fn append(
    b: &mut tar::Builder<impl io::Write>,
    path: &str,
    data: impl Read,
    size: u64,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    b.append_data(&mut h, path, data)
}

/// Writes the images `names` to an OCI archive at `out`.
pub fn save(store: &Store, names: &[String], out: &Path) -> Result<()> {
    let mut entries = Vec::new();
    let mut blobs = BTreeSet::new();
    let mut docker_manifest = Vec::new();
    for name in names {
        let tagged = store.lookup(name)?;
        let mut d = tagged.descriptor.clone();
        let mut ann = d.annotations().clone().unwrap_or_default();
        ann.insert(REF_NAME_ANNOTATION.to_owned(), tagged.reference.to_string());
        d.set_annotations(Some(ann));
        entries.push(d);
        collect(store, &tagged.descriptor, &mut blobs)?;
        if let Ok(img) = store.load_image(&tagged.descriptor, None) {
            if matches!(img.module, crate::image::ModuleSource::Filesystem) {
                docker_manifest.push(serde_json::json!({
                    "Config": format!("blobs/sha256/{}", img.config_digest.hex()),
                    "RepoTags": [tagged.reference.familiar()],
                    "Layers": img.fs_layers.iter().map(|l| format!("blobs/sha256/{}", l.digest().digest())).collect::<Vec<_>>(),
                }));
            }
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let tmp = tempfile::NamedTempFile::new_in(
        out.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    {
        let mut b = tar::Builder::new(io::BufWriter::new(tmp.as_file()));
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        append(&mut b, "oci-layout", &layout[..], layout.len() as u64)?;
        let idx = canonical_json(&index).map_err(io::Error::other)?;
        append(&mut b, "index.json", &idx[..], idx.len() as u64)?;
        if !docker_manifest.is_empty() {
            let m = serde_json::to_vec(&docker_manifest).map_err(io::Error::other)?;
            append(&mut b, "manifest.json", &m[..], m.len() as u64)?;
        }
        for d in &blobs {
            let f = store.open_blob(d)?;
            let size = f.metadata()?.len();
            append(&mut b, &format!("blobs/sha256/{}", d.hex()), f, size)?;
        }
        b.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(out).map_err(|e| e.error)?;
    Ok(())
}

/// Adds every blob reachable from `d` to `out`.
fn collect(store: &Store, d: &Descriptor, out: &mut BTreeSet<Digest>) -> Result<()> {
    let digest = descriptor_digest(d)?;
    if !out.insert(digest.clone()) {
        return Ok(());
    }
    let bytes = store.read_blob(&digest, MAX_MANIFEST_SIZE, "manifest")?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
    for m in v["manifests"].as_array().into_iter().flatten() {
        let child: Descriptor = serde_json::from_value(m.clone()).map_err(io::Error::other)?;
        collect(store, &child, out)?;
    }
    let config = v["config"]["digest"].as_str().into_iter();
    for s in config.chain(
        v["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str()),
    ) {
        out.insert(
            s.parse()
                .map_err(|e: crate::digest::DigestError| io::Error::other(e.to_string()))?,
        );
    }
    for d in out.iter() {
        if !store.has_blob(d) {
            return Err(StoreError::MissingBlob(d.clone()).into());
        }
    }
    Ok(())
}

fn clean(path: &str) -> String {
    path.trim_start_matches("./").to_owned()
}

/// Loads the images of an OCI archive or `docker save` tar at `path`.
/// Returns the names (or, for unnamed images, digests) loaded.
pub fn load(store: &Store, path: &Path) -> Result<Vec<String>> {
    let label = path.display().to_string();
    let format_err = |reason: String| ArchiveError::Format {
        path: label.clone(),
        reason,
    };
    // Pass 1: the small metadata files.
    let mut meta: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    {
        let mut ar = tar::Archive::new(fs_err::File::open(path)?);
        for e in ar.entries()? {
            let e = e?;
            let name = clean(&String::from_utf8_lossy(&e.path_bytes()));
            if matches!(name.as_str(), "index.json" | "manifest.json" | "oci-layout") {
                if e.size() > MAX_MANIFEST_SIZE {
                    return Err(format_err(format!(
                        "{name} is larger than {MAX_MANIFEST_SIZE} bytes"
                    )));
                }
                let mut v = Vec::new();
                e.take(MAX_MANIFEST_SIZE).read_to_end(&mut v)?;
                meta.insert(name, v);
            }
        }
    }
    let _lock = store.lock_shared()?;
    if let Some(index) = meta.get("index.json") {
        // OCI layout: ingest blobs under their names, verified.
        let mut ar = tar::Archive::new(fs_err::File::open(path)?);
        for e in ar.entries()? {
            let e = e?;
            let name = clean(&String::from_utf8_lossy(&e.path_bytes()));
            if let Some(hex) = name
                .strip_prefix("blobs/sha256/")
                .filter(|h| !h.is_empty() && e.header().entry_type().is_file())
            {
                let d = Digest::from_hex(hex)
                    .map_err(|_| format_err(format!("bad blob name {name}")))?;
                let size = e.size();
                store.ingest(e, Some((&d, size)))?;
            }
        }
        let idx: serde_json::Value =
            serde_json::from_slice(index).map_err(|e| format_err(format!("index.json: {e}")))?;
        let mut loaded = Vec::new();
        for m in idx["manifests"].as_array().into_iter().flatten() {
            let d: Descriptor = serde_json::from_value(m.clone())
                .map_err(|e| format_err(format!("index.json: {e}")))?;
            collect(store, &d, &mut BTreeSet::new())?;
            let ann = d.annotations().clone().unwrap_or_default();
            let name = ann
                .get("io.containerd.image.name")
                .or_else(|| ann.get(REF_NAME_ANNOTATION))
                .and_then(|n| {
                    n.parse::<Reference>()
                        .ok()
                        .filter(|_| n.contains('/') || n.contains(':') || !n.is_empty())
                });
            let mut plain = d.clone();
            plain.set_annotations(None);
            match name {
                Some(r)
                    if ann
                        .get(REF_NAME_ANNOTATION)
                        .is_some_and(|n| n.contains('/') || n.contains(':'))
                        || ann.contains_key("io.containerd.image.name") =>
                {
                    store.set_name(&r, &plain)?;
                    loaded.push(r.familiar());
                }
                _ => {
                    let dg = descriptor_digest(&d)?;
                    let r: Reference = format!("wharf.local/untagged@{dg}").parse().expect("valid");
                    store.set_name(&r, &plain)?;
                    loaded.push(dg.to_string());
                }
            }
        }
        return Ok(loaded);
    }
    let Some(manifest) = meta.get("manifest.json") else {
        return Err(format_err(
            "neither index.json nor manifest.json found: not an OCI or docker save archive".into(),
        ));
    };
    let items: Vec<serde_json::Value> =
        serde_json::from_slice(manifest).map_err(|e| format_err(format!("manifest.json: {e}")))?;
    let wanted: BTreeSet<String> = items
        .iter()
        .flat_map(|i| {
            let c = i["Config"].as_str().map(clean);
            let ls = i["Layers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(clean));
            c.into_iter().chain(ls).collect::<Vec<_>>()
        })
        .collect();
    let mut ingested: BTreeMap<String, (Digest, u64)> = BTreeMap::new();
    let mut ar = tar::Archive::new(fs_err::File::open(path)?);
    for e in ar.entries()? {
        let e = e?;
        let name = clean(&String::from_utf8_lossy(&e.path_bytes()));
        if wanted.contains(&name) && e.header().entry_type().is_file() {
            let r = store.ingest(e, None)?;
            ingested.insert(name, r);
        }
    }
    let mut loaded = Vec::new();
    for item in &items {
        let get = |p: &str| {
            ingested
                .get(&clean(p))
                .cloned()
                .ok_or_else(|| format_err(format!("{p} is listed in manifest.json but missing")))
        };
        let (cd, cs) = get(item["Config"].as_str().unwrap_or(""))?;
        let mut layers = Vec::new();
        for l in item["Layers"].as_array().into_iter().flatten() {
            let (ld, ls) = get(l.as_str().unwrap_or(""))?;
            let mut magic = [0u8; 2];
            let gz = store.open_blob(&ld)?.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
            let mt = if gz {
                MediaType::ImageLayerGzip
            } else {
                MediaType::ImageLayer
            };
            layers.push(Descriptor::new(mt, ls, oci_digest(&ld)));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cs },
            "layers": layers,
        });
        let bytes = canonical_json(&manifest).map_err(io::Error::other)?;
        let md = store.put_blob(&bytes)?;
        let desc = Descriptor::new(
            MediaType::ImageManifest,
            bytes.len() as u64,
            oci_digest(&md),
        );
        let tags: Vec<Reference> = item["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str()?.parse().ok())
            .collect();
        if tags.is_empty() {
            let r: Reference = format!("wharf.local/untagged@{md}").parse().expect("valid");
            store.set_name(&r, &desc)?;
            loaded.push(md.to_string());
        }
        for t in tags {
            store.set_name(&t, &desc)?;
            loaded.push(t.familiar());
        }
    }
    Ok(loaded)
}
