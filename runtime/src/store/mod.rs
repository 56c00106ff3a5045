//! The local content-addressed image store.
//!
//! The store root is a standard OCI Image Layout (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`), readable as it is by skopeo (`oci:ROOT`) and umoci.
//! Beside the layout wharf keeps its own derived data, all keyed by digest and
//! all rebuildable from the blobs:
//!
//! ```text
//! ROOT/oci-layout, index.json, blobs/sha256/...   the OCI layout
//! ROOT/wharf/lock                                 store-wide reader/writer lock
//! ROOT/wharf/index.lock                           serialises index.json updates
//! ROOT/wharf/tmp/                                 partial writes (same filesystem)
//! ROOT/wharf/snapshots/<manifest hex>/            unpacked image filesystems
//! ROOT/wharf/layers/<layer blob hex>/fs/           one layer, overlayfs whiteouts
//! ROOT/wharf/modules/<module hex>/<engine>.cwasm  compiled-module cache
//! ROOT/wharf/build-cache/<key hex>.json           build step cache
//! ROOT/wharf/leases/<holder>                      images kept for a holder
//! ROOT/wharf/containers/<id>/config.json          a container's record (a lease too)
//! ```
//!
//! Writes are crash-safe: every file is written to `wharf/tmp`, fsynced,
//! verified and renamed into place, and the containing directory is fsynced.

mod lock;
mod usage;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use crate::digest::{Digest, HashingWriter};
use crate::image::canonical_json;
use crate::reference::Reference;

pub use lock::{ByteLock, StoreLock};
pub use usage::{CacheRecord, DiskUsage, Pruned, Usage};

/// The annotation that names an image in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Largest manifest or index wharf will parse.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Largest image config wharf will parse.
pub const MAX_CONFIG_SIZE: u64 = 20 << 20;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed (the message names the path).
    #[error("store: {0}")]
    Io(#[from] io::Error),
    /// A blob's content does not match its digest or declared size.
    #[error("blob {digest} is corrupt: {reason}")]
    Corrupt {
        /// The digest the content should have.
        digest: Digest,
        /// What was found instead.
        reason: String,
    },
    /// A blob the image refers to is not in the store.
    #[error("blob {0} is missing from the store")]
    MissingBlob(Digest),
    /// No image has this name or id.
    #[error("no such image: {0}")]
    UnknownImage(String),
    /// An id prefix matches more than one image.
    #[error("image id {0} is ambiguous: it matches more than one image")]
    Ambiguous(String),
    /// The image is held by a lease (a container uses it).
    #[error("image {image} is in use by {holder}: remove it first, or use --force to remove only the name")]
    InUse {
        /// The image named in the request.
        image: String,
        /// The first holder of a lease on it ("container 3f2a1b2c3d4e").
        holder: String,
    },
    /// A blob is larger than wharf will read into memory.
    #[error("blob {digest} is {size} bytes, larger than the {limit}-byte limit for a {what}")]
    TooLarge {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
        /// What kind of blob it is.
        what: &'static str,
    },
    /// `index.json` or another metadata file cannot be parsed.
    #[error("{path}: {reason}")]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// Why it is unreadable.
        reason: String,
    },
    /// The root exists but is not a wharf store or OCI layout.
    #[error("{0} is not an OCI image layout (oci-layout has an unknown version)")]
    NotALayout(PathBuf),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One name in the store: a reference and the manifest (or index) it names.
#[derive(Debug, Clone)]
pub struct Tagged {
    /// The full normalised reference.
    pub reference: Reference,
    /// The descriptor of the manifest or index.
    pub descriptor: Descriptor,
}

/// A handle on a store root. Cheap to clone; holds no open files.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// The root wharf uses when neither `--root` nor `WHARF_ROOT` is given:
/// `/var/lib/wharf` for root, else `$XDG_DATA_HOME/wharf`, else
/// `~/.local/share/wharf`.
pub fn default_root() -> PathBuf {
    if let Some(r) = std::env::var_os("WHARF_ROOT").filter(|r| !r.is_empty()) {
        return PathBuf::from(r);
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/wharf");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("wharf");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(".local/share/wharf")
}

impl Store {
    /// Opens the store at `root`, creating an empty layout if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        let store = Store { root };
        for d in [
            store.root.join("blobs/sha256"),
            store.meta_dir().join("tmp"),
            store.meta_dir().join("snapshots"),
            store.meta_dir().join("layers"),
            store.meta_dir().join("modules"),
            store.meta_dir().join("build-cache"),
        ] {
            fs_err::create_dir_all(&d)?;
        }
        let layout = store.root.join("oci-layout");
        match fs_err::read(&layout) {
            Ok(bytes) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::BadMetadata {
                        path: layout.clone(),
                        reason: e.to_string(),
                    })?;
                if v["imageLayoutVersion"] != "1.0.0" {
                    return Err(StoreError::NotALayout(store.root.clone()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                store.write_file_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            }
            Err(e) => return Err(e.into()),
        }
        if !store.root.join("index.json").exists() {
            let _guard = store.lock_index()?;
            if !store.root.join("index.json").exists() {
                store.write_index(&[])?;
            }
        }
        Ok(store)
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn meta_dir(&self) -> PathBuf {
        self.root.join("wharf")
    }

    /// Takes the store-wide lock in shared mode. Builds, runs and imports
    /// hold it while they write blobs that are not yet named in the index, so
    /// that removal (which takes it exclusively) never deletes them.
    pub fn lock_shared(&self) -> Result<StoreLock> {
        Ok(StoreLock::shared(&self.meta_dir().join("lock"))?)
    }

    /// Takes the store-wide lock in exclusive mode (removal and garbage
    /// collection).
    pub fn lock_exclusive(&self) -> Result<StoreLock> {
        Ok(StoreLock::exclusive(&self.meta_dir().join("lock"))?)
    }

    fn lock_index(&self) -> Result<StoreLock> {
        Ok(StoreLock::exclusive(&self.meta_dir().join("index.lock"))?)
    }

    // ---- blobs ---------------------------------------------------------

    /// Where the blob with this digest lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// True when the blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Stores `bytes` and returns their digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            let mut w = self.blob_writer()?;
            w.write_all(bytes)?;
            w.commit(Some((&digest, bytes.len() as u64)))?;
        }
        Ok(digest)
    }

    /// Copies `reader` into the store, verifying the digest and size when
    /// given. Nothing is stored unless the content verifies.
    pub fn ingest(
        &self,
        mut reader: impl Read,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64)> {
        if let Some((d, _)) = expected {
            if self.has_blob(d) {
                // Drain nothing: the caller's stream is simply not needed.
                let size = fs_err::metadata(self.blob_path(d))?.len();
                return Ok((d.clone(), size));
            }
        }
        let mut w = self.blob_writer()?;
        io::copy(&mut reader, &mut w)?;
        w.commit(expected)
    }

    /// A writer for a new blob whose digest is known only at the end.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.meta_dir().join("tmp"))?;
        Ok(BlobWriter {
            store: self.clone(),
            inner: HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp)),
        })
    }

    /// Reads a whole blob into memory, refusing blobs larger than `limit`
    /// and verifying the content against its digest.
    pub fn read_blob(&self, digest: &Digest, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob(digest.clone()))
            }
            Err(e) => {
                return Err(StoreError::Io(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", path.display()),
                )))
            }
        };
        let size = file.metadata()?.len();
        if size > limit {
            return Err(StoreError::TooLarge {
                digest: digest.clone(),
                size,
                limit,
                what,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(limit + 1).read_to_end(&mut bytes)?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(StoreError::Corrupt {
                digest: digest.clone(),
                reason: format!("content hashes to {actual}"),
            });
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming. The caller verifies the digest while
    /// reading (see [`crate::digest::HashingReader`]).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        File::open(self.blob_path(digest)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob(digest.clone())
            } else {
                StoreError::Io(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", self.blob_path(digest).display()),
                ))
            }
        })
    }

    /// Checks a blob's content against its digest, reading it in full.
    pub fn verify_blob(&self, digest: &Digest) -> Result<u64> {
        let (actual, size) = crate::digest::HashingReader::new(self.open_blob(digest)?).finish()?;
        if &actual != digest {
            return Err(StoreError::Corrupt {
                digest: digest.clone(),
                reason: format!("content hashes to {actual}"),
            });
        }
        Ok(size)
    }

    // ---- index.json ----------------------------------------------------

    /// All names in the store, in index order.
    pub fn list(&self) -> Result<Vec<Tagged>> {
        let index = self.read_index()?;
        let mut out = Vec::new();
        for d in index.manifests() {
            let name = d
                .annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME_ANNOTATION));
            // Entries without a full reference (written by other tools) are
            // reachable by digest only.
            if let Some(reference) = name.and_then(|n| n.parse::<Reference>().ok()) {
                out.push(Tagged {
                    reference,
                    descriptor: d.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Every manifest or index descriptor the store's index holds, named or not.
    pub fn roots(&self) -> Result<Vec<Descriptor>> {
        Ok(self.read_index()?.manifests().clone())
    }

    fn read_index(&self) -> Result<ImageIndex> {
        let path = self.root.join("index.json");
        let bytes = fs_err::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::BadMetadata {
            path,
            reason: e.to_string(),
        })
    }

    fn write_index(&self, manifests: &[Descriptor]) -> Result<()> {
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests.to_vec())
            .build()
            .map_err(|e| io::Error::other(e.to_string()))?;
        let bytes = canonical_json(&index).map_err(io::Error::other)?;
        self.write_file_atomic(&self.root.join("index.json"), &bytes)?;
        Ok(())
    }

    /// Points `reference` at `descriptor`, replacing what it named before.
    /// The blobs it refers to must already be in the store.
    pub fn set_name(&self, reference: &Reference, descriptor: &Descriptor) -> Result<()> {
        let _guard = self.lock_index()?;
        let mut manifests = self.read_index()?.manifests().clone();
        let name = reference.to_string();
        manifests.retain(|d| ref_name(d) != Some(name.as_str()));
        let mut d = descriptor.clone();
        let mut ann = d.annotations().clone().unwrap_or_default();
        ann.insert(REF_NAME_ANNOTATION.to_owned(), name);
        d.set_annotations(Some(ann));
        manifests.push(d);
        self.write_index(&manifests)?;
        self.record_image("tag", descriptor, reference);
        Ok(())
    }

    /// Records an event about the image `descriptor` names as `reference`
    /// in the store's journal.
    pub(crate) fn record_image(
        &self,
        action: &str,
        descriptor: &Descriptor,
        reference: &Reference,
    ) {
        let e = crate::events::Event::new("image", action, descriptor.digest().as_ref())
            .with("name", reference.familiar());
        crate::events::Journal::of(self).record(&e);
    }

    /// Removes a name. Returns the descriptor it named.
    pub fn remove_name(&self, reference: &Reference) -> Result<Descriptor> {
        let _guard = self.lock_index()?;
        let mut manifests = self.read_index()?.manifests().clone();
        let name = reference.to_string();
        let pos = manifests
            .iter()
            .position(|d| ref_name(d) == Some(name.as_str()))
            .ok_or_else(|| StoreError::UnknownImage(reference.familiar()))?;
        let removed = manifests.remove(pos);
        self.write_index(&manifests)?;
        self.record_image("untag", &removed, reference);
        Ok(removed)
    }

    /// Removes every index entry (named or not) whose digest is `digest`.
    pub fn remove_digest(&self, digest: &Digest) -> Result<Vec<Descriptor>> {
        let _guard = self.lock_index()?;
        let manifests = self.read_index()?.manifests().clone();
        let (removed, kept): (Vec<_>, Vec<_>) = manifests
            .into_iter()
            .partition(|d| d.digest().to_string() == digest.to_string());
        self.write_index(&kept)?;
        Ok(removed)
    }

    // ---- leases --------------------------------------------------------

    /// Keeps the image whose manifest or index is `root`, and everything it
    /// reaches, for `holder` (`container-<id>`), whether or not a name
    /// still points at it, until [`Store::release`]. Garbage collection
    /// treats leases as roots; removing the last name of a leased image
    /// needs `force`. Take the shared store lock around the lookup and
    /// the lease, so no collection runs in between.
    pub fn lease(&self, holder: &str, root: &Digest) -> Result<()> {
        let path = self.lease_path(holder)?;
        fs_err::create_dir_all(self.meta_dir().join("leases"))?;
        self.write_file_atomic(&path, root.to_string().as_bytes())
    }

    /// Ends `holder`'s lease (if it has one).
    pub fn release(&self, holder: &str) -> Result<()> {
        match fs_err::remove_file(self.lease_path(holder)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Every lease: holder and leased root. Besides the files of
    /// [`Store::lease`], every container is a lease (`container-<id>`) on
    /// the manifest its record names: `wharf/containers/<id>/config.json`
    /// is written (synced) at its creation under the shared store lock and
    /// goes with it, so it needs no file of its own.
    pub fn leases(&self) -> Result<Vec<(String, Digest)>> {
        let mut out = self.container_leases()?;
        let rd = match fs_err::read_dir(self.meta_dir().join("leases")) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                out.sort();
                return Ok(out);
            }
            Err(e) => return Err(e.into()),
        };
        for entry in rd {
            let entry = entry?;
            let holder = entry.file_name().to_string_lossy().into_owned();
            if holder.starts_with('.') {
                continue;
            }
            let text = fs_err::read_to_string(entry.path())?;
            let digest = text
                .trim()
                .parse::<Digest>()
                .map_err(|e| StoreError::BadMetadata {
                    path: entry.path(),
                    reason: e.to_string(),
                })?;
            if !out.iter().any(|(h, _)| *h == holder) {
                out.push((holder, digest));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The leases containers hold through their records (see
    /// [`Store::leases`]). A record removed meanwhile holds none.
    fn container_leases(&self) -> Result<Vec<(String, Digest)>> {
        #[derive(serde::Deserialize)]
        struct Record {
            config: RecordConfig,
        }
        #[derive(serde::Deserialize)]
        struct RecordConfig {
            #[serde(default)]
            manifest: String,
        }
        let mut out = Vec::new();
        let rd = match fs_err::read_dir(self.meta_dir().join("containers")) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for entry in rd {
            let entry = entry?;
            let id = entry.file_name().to_string_lossy().into_owned();
            // Staging and removal directories, the names.
            if id.starts_with('.') {
                continue;
            }
            let path = entry.path().join("config.json");
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())).into())
                }
            };
            let bad = |reason: String| StoreError::BadMetadata {
                path: path.clone(),
                reason,
            };
            let record: Record = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
            // Containers made before records named their manifest.
            if record.config.manifest.is_empty() {
                continue;
            }
            let digest = record
                .config
                .manifest
                .parse::<Digest>()
                .map_err(|e| bad(e.to_string()))?;
            out.push((format!("container-{id}"), digest));
        }
        Ok(out)
    }

    fn lease_path(&self, holder: &str) -> Result<PathBuf> {
        let ok = !holder.is_empty()
            && !holder.starts_with('.')
            && holder
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            return Err(io::Error::other(format!("invalid lease holder {holder:?}")).into());
        }
        Ok(self.meta_dir().join("leases").join(holder))
    }

    // ---- derived data --------------------------------------------------

    /// Records that the blob `digest` exists in `repository`
    /// (`registry/repo`), so a later push to another repository of that
    /// registry can mount it instead of uploading it.
    pub fn record_blob_source(&self, digest: &Digest, repository: &str) -> Result<()> {
        let dir = self.meta_dir().join("blob-sources");
        let path = dir.join(digest.hex());
        let mut known = self.blob_sources(digest);
        if known.iter().any(|k| k == repository) {
            return Ok(());
        }
        fs_err::create_dir_all(&dir)?;
        known.push(repository.to_owned());
        // The newest few are enough to find a mount source.
        let start = known.len().saturating_sub(16);
        let text: String = known[start..].iter().map(|k| format!("{k}\n")).collect();
        self.write_file_atomic(&path, text.as_bytes())
    }

    /// The repositories a blob is known to exist in, oldest first.
    pub fn blob_sources(&self, digest: &Digest) -> Vec<String> {
        std::fs::read_to_string(self.meta_dir().join("blob-sources").join(digest.hex()))
            .map(|t| t.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The directory holding the unpacked filesystem of the image whose
    /// manifest has this digest.
    pub fn snapshot_dir(&self, manifest: &Digest) -> PathBuf {
        self.meta_dir().join("snapshots").join(manifest.hex())
    }

    /// The directory holding the layer blob `layer` unpacked on its own,
    /// with overlayfs's whiteouts (a lower directory of Linux containers).
    pub fn layer_dir(&self, layer: &Digest) -> PathBuf {
        self.meta_dir().join("layers").join(layer.hex())
    }

    /// The directory holding compiled code for the module with this digest.
    pub fn module_cache_dir(&self, module: &Digest) -> PathBuf {
        self.meta_dir().join("modules").join(module.hex())
    }

    /// The file holding a build-cache entry.
    pub fn build_cache_path(&self, key: &Digest) -> PathBuf {
        self.meta_dir()
            .join("build-cache")
            .join(format!("{}.json", key.hex()))
    }

    /// A fresh temporary directory on the store's filesystem.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        Ok(tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(self.meta_dir().join("tmp"))?)
    }

    /// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync
    /// of the directory. Readers see the old or the new content, never a mix.
    pub fn write_file_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix("meta-")
            .tempfile_in(self.meta_dir().join("tmp"))?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        Ok(())
    }

    /// Deletes blobs and derived data that no name reaches any more.
    /// Takes the exclusive store lock, so it waits for running builds,
    /// imports and run setups to finish. Returns the number of bytes freed.
    pub fn collect_garbage(&self) -> Result<u64> {
        let _lock = self.lock_exclusive()?;
        self.collect_garbage_locked()
    }

    /// The blobs and manifests reached from the index's roots and from
    /// leases.
    fn live(&self) -> Result<(BTreeSet<Digest>, BTreeSet<Digest>)> {
        let mut roots = Vec::new();
        for d in self.roots()? {
            roots.push((descriptor_digest_io(&d)?, d.media_type().clone()));
        }
        roots.extend(self.lease_roots(self.leases()?.into_iter().map(|(_, d)| d)));
        self.mark_from(roots)
    }

    /// Leased roots with the media type their content has (a lease names a
    /// digest only); those whose blob is gone are left out.
    fn lease_roots(&self, leased: impl IntoIterator<Item = Digest>) -> Vec<(Digest, MediaType)> {
        leased
            .into_iter()
            .filter_map(|d| {
                let media_type = self.root_descriptor(&d).ok()?.media_type().clone();
                Some((d, media_type))
            })
            .collect()
    }

    /// The blobs and manifests reached from `roots`.
    fn mark_from(
        &self,
        roots: Vec<(Digest, MediaType)>,
    ) -> Result<(BTreeSet<Digest>, BTreeSet<Digest>)> {
        let mut live_blobs = BTreeSet::new();
        let mut live_manifests = BTreeSet::new();
        for (digest, media_type) in roots {
            self.mark(&digest, &media_type, &mut live_blobs, &mut live_manifests)?;
        }
        Ok((live_blobs, live_manifests))
    }

    /// [`Store::collect_garbage`] with the exclusive lock already held.
    fn collect_garbage_locked(&self) -> Result<u64> {
        let (live_blobs, live_manifests) = self.live()?;
        let mut live_modules = BTreeSet::new();
        let mut freed = 0;
        // Snapshots of images that are gone; remember modules of the rest.
        for entry in fs_err::read_dir(self.meta_dir().join("snapshots"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match Digest::from_hex(&name) {
                // A snapshot that a running guest still uses stays (with its
                // compiled module) until a later collection.
                Ok(d) if live_manifests.contains(&d) || StoreLock::in_use(&entry.path()) => {
                    if let Ok(m) = fs_err::read_to_string(entry.path().join("module-digest")) {
                        if let Ok(md) = m.trim().parse::<Digest>() {
                            live_modules.insert(md);
                        }
                    }
                }
                _ => {
                    freed += dir_size(&entry.path());
                    fs_err::remove_dir_all(entry.path())?;
                }
            }
        }
        // Unpacked layers of blobs that are gone, unless a running
        // container still has them as a lower directory.
        for entry in fs_err::read_dir(self.meta_dir().join("layers"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = Digest::from_hex(&name).is_ok_and(|d| live_blobs.contains(&d))
                || StoreLock::in_use(&entry.path());
            if !keep {
                freed += dir_size(&entry.path());
                fs_err::remove_dir_all(entry.path())?;
            }
        }
        for entry in fs_err::read_dir(self.meta_dir().join("modules"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = Digest::from_hex(&name)
                .is_ok_and(|d| live_modules.contains(&d) || live_blobs.contains(&d));
            if !keep {
                freed += dir_size(&entry.path());
                fs_err::remove_dir_all(entry.path())?;
            }
        }
        for entry in fs_err::read_dir(self.root.join("blobs/sha256"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = Digest::from_hex(&name).is_ok_and(|d| live_blobs.contains(&d));
            if !keep {
                freed += entry.metadata()?.len();
                fs_err::remove_file(entry.path())?;
            }
        }
        // Mount hints for blobs that are gone.
        if let Ok(rd) = fs_err::read_dir(self.meta_dir().join("blob-sources")) {
            for entry in rd.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !Digest::from_hex(&name).is_ok_and(|d| live_blobs.contains(&d)) {
                    fs_err::remove_file(entry.path())?;
                }
            }
        }
        // Build-cache entries whose blobs are gone are useless.
        for entry in fs_err::read_dir(self.meta_dir().join("build-cache"))? {
            let entry = entry?;
            let referenced = fs_err::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<crate::build::CacheEntry>(&b).ok())
                .map(|c| c.blobs().all(|d| live_blobs.contains(&d)))
                .unwrap_or(false);
            if !referenced {
                fs_err::remove_file(entry.path())?;
            }
        }
        // Leftovers from processes killed mid-write (none can be in use
        // while the exclusive lock is held).
        for entry in fs_err::read_dir(self.meta_dir().join("tmp"))? {
            let entry = entry?;
            let p = entry.path();
            if entry.file_type()?.is_dir() {
                let _ = fs_err::remove_dir_all(&p);
            } else {
                let _ = fs_err::remove_file(&p);
            }
        }
        sync_dir(&self.root.join("blobs/sha256"))?;
        Ok(freed)
    }

    fn mark(
        &self,
        digest: &Digest,
        media_type: &MediaType,
        live: &mut BTreeSet<Digest>,
        manifests: &mut BTreeSet<Digest>,
    ) -> Result<()> {
        if !live.insert(digest.clone()) {
            return Ok(());
        }
        if !self.has_blob(digest) {
            return Ok(());
        }
        let bytes = self.read_blob(digest, MAX_MANIFEST_SIZE, "manifest")?;
        let is_index = matches!(media_type, MediaType::ImageIndex)
            || media_type.to_string() == crate::image::DOCKER_MANIFEST_LIST;
        if is_index {
            let idx: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::BadMetadata {
                    path: self.blob_path(digest),
                    reason: e.to_string(),
                })?;
            for m in idx.manifests() {
                if let Ok(d) = m.digest().to_string().parse::<Digest>() {
                    self.mark(&d, m.media_type(), live, manifests)?;
                }
            }
        } else {
            manifests.insert(digest.clone());
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let config = v["config"]["digest"].as_str().into_iter();
            let layers = v["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["digest"].as_str());
            for d in config.chain(layers) {
                if let Ok(d) = d.parse::<Digest>() {
                    live.insert(d);
                }
            }
        }
        Ok(())
    }

    /// Sizes of blobs, by digest, for reporting.
    pub fn blob_sizes(&self) -> Result<BTreeMap<Digest, u64>> {
        let mut out = BTreeMap::new();
        for entry in fs_err::read_dir(self.root.join("blobs/sha256"))? {
            let entry = entry?;
            if let Ok(d) = Digest::from_hex(&entry.file_name().to_string_lossy()) {
                out.insert(d, entry.metadata()?.len());
            }
        }
        Ok(out)
    }
}

fn descriptor_digest_io(d: &Descriptor) -> Result<Digest> {
    d.digest()
        .to_string()
        .parse()
        .map_err(|e: crate::digest::DigestError| io::Error::other(e.to_string()).into())
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

/// Bytes the files under `p` take (0 for what cannot be read).
pub(crate) fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += dir_size(&e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

/// Fsyncs a directory so that a rename into it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A blob being written. Nothing becomes visible in the store until
/// [`BlobWriter::commit`] verifies it; dropping the writer discards it.
pub struct BlobWriter {
    store: Store,
    inner: HashingWriter<io::BufWriter<tempfile::NamedTempFile>>,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BlobWriter {
    /// Verifies the content (against `expected` digest and size when given),
    /// fsyncs it and renames it into `blobs/sha256/`.
    pub fn commit(self, expected: Option<(&Digest, u64)>) -> Result<(Digest, u64)> {
        let (buf, digest, size) = self.inner.finish();
        if let Some((want, want_size)) = expected {
            if want != &digest {
                return Err(StoreError::Corrupt {
                    digest: want.clone(),
                    reason: format!("content hashes to {digest}"),
                });
            }
            if want_size != size {
                return Err(StoreError::Corrupt {
                    digest: want.clone(),
                    reason: format!("expected {want_size} bytes, got {size}"),
                });
            }
        }
        let tmp = buf.into_inner().map_err(|e| e.into_error())?;
        let target = self.store.blob_path(&digest);
        if !target.exists() {
            tmp.as_file().sync_all()?;
            tmp.persist(&target).map_err(|e| e.error)?;
            sync_dir(target.parent().expect("blob path has a parent"))?;
        }
        Ok((digest, size))
    }
}
