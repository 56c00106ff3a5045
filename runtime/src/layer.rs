//! Filesystem layers: writing reproducible `tar+gzip` layers and unpacking
//! untrusted ones safely.
//!
//! Writing: entries sorted by path, fixed mtime, uid/gid 0, no user names,
//! deterministic gzip (no name, mtime 0), so equal trees give equal digests.
//!
//! Unpacking: every entry is resolved through a `cap_std::fs::Dir` opened on
//! the target directory, so no path, symlink or hardlink can reach outside
//! it whatever earlier entries planted; `..` entries are refused outright;
//! the compressed digest and the uncompressed diff id are both verified.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, OpenOptions, Permissions};
use oci_spec::image::{Descriptor, MediaType};

use crate::digest::{Digest, HashingReader, HashingWriter};
use crate::image::oci_digest;
use crate::store::{Store, StoreError};

/// The most bytes one layer may expand to when unpacked (a decompression
/// bomb stops here).
pub const MAX_LAYER_EXPANSION: u64 = 32 << 30;

/// Errors from writing or unpacking layers.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing failed.
    #[error("layer {layer}: {source}")]
    Io {
        /// The layer digest (or "new layer").
        layer: String,
        /// The failure.
        source: io::Error,
    },
    /// An entry tries to leave the directory it is unpacked into, or is
    /// otherwise hostile.
    #[error("layer {layer} is rejected: entry {entry:?} {reason}")]
    Hostile {
        /// The layer digest.
        layer: String,
        /// The entry path.
        entry: String,
        /// What it tried.
        reason: String,
    },
    /// The content does not match the digest or diff id it is named by.
    #[error("layer {layer} is corrupt: {reason}")]
    Corrupt {
        /// The layer digest.
        layer: String,
        /// What was wrong.
        reason: String,
    },
}

type Result<T, E = LayerError> = std::result::Result<T, E>;

/// What a layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file copied from a host path.
    File {
        /// Host file to copy.
        source: PathBuf,
        /// Permission bits.
        mode: u32,
    },
    /// A regular file with the given bytes.
    Bytes {
        /// Content.
        data: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Link target, as stored.
        target: String,
    },
    /// A whiteout: the path is deleted from lower layers.
    Whiteout,
}

/// One entry of a layer to write. `path` is relative, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// Relative path without a leading `/`.
    pub path: String,
    /// What is there.
    pub kind: EntryKind,
}

/// A layer written to the store.
#[derive(Debug, Clone)]
pub struct WrittenLayer {
    /// Descriptor of the compressed blob.
    pub descriptor: Descriptor,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
}

/// Writes `entries` as a reproducible gzipped tar into the store. Parent
/// directories missing from `entries` are added with mode 0755.
pub fn write_layer(store: &Store, entries: &[LayerEntry], mtime: u64) -> Result<WrittenLayer> {
    let io_err = |source| LayerError::Io {
        layer: "new layer".into(),
        source,
    };
    let mut sorted: BTreeMap<String, &EntryKind> = BTreeMap::new();
    let dir_kind = EntryKind::Dir { mode: 0o755 };
    for e in entries {
        let mut parent = String::new();
        let comps: Vec<&str> = e.path.split('/').filter(|c| !c.is_empty()).collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            sorted.entry(parent.clone()).or_insert(&dir_kind);
        }
        sorted.insert(comps.join("/"), &e.kind);
    }
    let blob = store.blob_writer()?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(blob, flate2::Compression::default());
    let mut builder = tar::Builder::new(HashingWriter::new(gz));
    builder.mode(tar::HeaderMode::Deterministic);
    for (path, kind) in &sorted {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        match kind {
            EntryKind::File { source, mode } => {
                let f = fs_err::File::open(source).map_err(io_err)?;
                let len = f.metadata().map_err(io_err)?.len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(mode & 0o7777);
                h.set_size(len);
                builder
                    .append_data(&mut h, path, f.take(len))
                    .map_err(io_err)?;
            }
            EntryKind::Bytes { data, mode } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(mode & 0o7777);
                h.set_size(data.len() as u64);
                builder
                    .append_data(&mut h, path, &data[..])
                    .map_err(io_err)?;
            }
            EntryKind::Dir { mode } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(mode & 0o7777);
                h.set_size(0);
                builder
                    .append_data(&mut h, format!("{path}/"), io::empty())
                    .map_err(io_err)?;
            }
            EntryKind::Symlink { target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                builder.append_link(&mut h, path, target).map_err(io_err)?;
            }
            EntryKind::Whiteout => {
                let (dir, name) = match path.rsplit_once('/') {
                    Some((d, n)) => (format!("{d}/"), n),
                    None => (String::new(), path.as_str()),
                };
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                builder
                    .append_data(&mut h, format!("{dir}.wh.{name}"), io::empty())
                    .map_err(io_err)?;
            }
        }
    }
    let hashing = builder.into_inner().map_err(io_err)?;
    let (gz, diff_id, _) = hashing.finish();
    let mut blob = gz.finish().map_err(io_err)?;
    blob.flush().map_err(io_err)?;
    let (digest, size) = blob.commit(None)?;
    Ok(WrittenLayer {
        descriptor: Descriptor::new(MediaType::ImageLayerGzip, size, oci_digest(&digest)),
        diff_id,
    })
}

/// Splits an entry name into clean components, refusing `..`.
fn clean_components(name: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => out.push(c.to_owned()),
        }
    }
    Some(out)
}

fn join(c: &[String]) -> PathBuf {
    c.iter().collect()
}

/// Wraps `reader` in a gzip decoder when its first bytes are the gzip
/// magic, so plain and gzipped tars read alike.
pub fn decompressed<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = io::BufReader::with_capacity(1 << 20, reader);
    let gz = io::BufRead::fill_buf(&mut br)?.starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(flate2::read::MultiGzDecoder::new(br))
    } else {
        Box::new(br)
    })
}

/// Unpacks `layers` in order into `dest`, checking each against the
/// config's `diff_ids` when there is exactly one per layer (wasm artifacts
/// carry layers that are not filesystem layers).
pub fn unpack_layers(
    store: &Store,
    layers: &[Descriptor],
    diff_ids: &[String],
    dest: &Path,
) -> Result<()> {
    let checked = diff_ids.len() == layers.len();
    for (i, layer) in layers.iter().enumerate() {
        let diff_id = diff_ids
            .get(i)
            .filter(|_| checked)
            .and_then(|d| d.parse::<Digest>().ok());
        unpack_layer(store, layer, diff_id.as_ref(), dest)?;
    }
    Ok(())
}

/// Unpacks the layer `layer` from the store into the directory `dest`
/// (applying whiteouts against what earlier layers put there). `diff_id`,
/// when given, is checked against the uncompressed stream.
///
/// `dest` must be a directory the caller can throw away on error: a hostile
/// or corrupt layer stops the unpack part-way.
pub fn unpack_layer(
    store: &Store,
    layer: &Descriptor,
    diff_id: Option<&Digest>,
    dest: &Path,
) -> Result<()> {
    unpack_layer_as(store, layer, diff_id, dest, Whiteouts::Apply)
}

/// What becomes of a layer's whiteout entries (`.wh.NAME`, `.wh..wh..opq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Applied: they remove what earlier layers unpacked into the same
    /// directory (one merged tree).
    Apply,
    /// Kept in overlayfs's format, for a layer unpacked on its own to be
    /// one lower directory of an overlay: a character device 0/0 named
    /// NAME, and the `trusted.overlay.opaque` attribute `y` on an opaque
    /// directory. Needs root (mknod, trusted xattrs).
    Overlay,
}

/// [`unpack_layer`] with a choice of what whiteouts become.
pub fn unpack_layer_as(
    store: &Store,
    layer: &Descriptor,
    diff_id: Option<&Digest>,
    dest: &Path,
    whiteouts: Whiteouts,
) -> Result<()> {
    let (name, digest) = layer_digest(layer)?;
    let io_err = |source: io::Error| LayerError::Io {
        layer: name.clone(),
        source,
    };
    let root = Dir::open_ambient_dir(dest, cap_std::ambient_authority()).map_err(io_err)?;
    let blob = store.open_blob(&digest)?;
    let mut compressed = HashingReader::new(blob);
    let raw = decompressed(&mut compressed).map_err(io_err)?;
    let mut uncompressed = HashingReader::new(raw.take(MAX_LAYER_EXPANSION + 1));
    extract_entries(&mut uncompressed, &root, &name, whiteouts)?;
    let (diff, size) = uncompressed.finish().map_err(io_err)?;
    if size > MAX_LAYER_EXPANSION {
        return Err(LayerError::Corrupt {
            layer: name,
            reason: format!("expands to more than {MAX_LAYER_EXPANSION} bytes"),
        });
    }
    let (actual, csize) = compressed.finish().map_err(io_err)?;
    if actual != digest || csize != layer.size() {
        return Err(LayerError::Corrupt {
            layer: name,
            reason: format!(
                "content is {csize} bytes hashing to {actual}, expected {} bytes",
                layer.size()
            ),
        });
    }
    if let Some(want) = diff_id {
        if want != &diff {
            return Err(LayerError::Corrupt {
                layer: name,
                reason: format!("uncompressed content hashes to {diff}, the config says {want}"),
            });
        }
    }
    Ok(())
}

/// A layer descriptor's digest, as text (for messages) and parsed.
fn layer_digest(layer: &Descriptor) -> Result<(String, Digest)> {
    let name = layer.digest().to_string();
    let digest = name
        .parse()
        .map_err(|e: crate::digest::DigestError| LayerError::Corrupt {
            layer: name.clone(),
            reason: e.to_string(),
        })?;
    Ok((name, digest))
}

/// Whether `rel` (a path relative to the image root) is a directory in the
/// filesystem that `layers` make, read from the layer tars' headers alone
/// (nothing is unpacked). Whiteouts and opaque directories in upper layers
/// hide what lower layers put there; a symlinked ancestor is not followed.
pub fn is_dir_in_layers(store: &Store, layers: &[Descriptor], rel: &str) -> Result<bool> {
    let Some(want) = clean_components(rel) else {
        return Ok(false);
    };
    if want.is_empty() {
        return Ok(true);
    }
    let mut is_dir = false;
    for layer in layers {
        let (name, digest) = layer_digest(layer)?;
        let io_err = |source: io::Error| LayerError::Io {
            layer: name.clone(),
            source,
        };
        let reader = decompressed(store.open_blob(&digest)?).map_err(io_err)?;
        let mut archive = tar::Archive::new(reader);
        // What this layer says of `rel`: hidden by a whiteout, and/or
        // written (the entry wins over a whiteout in the same layer).
        let (mut hidden, mut written) = (false, None);
        for entry in archive.entries().map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let Some(comps) = clean_components(&String::from_utf8_lossy(&entry.path_bytes()))
            else {
                continue;
            };
            let Some((base, parent)) = comps.split_last() else {
                continue;
            };
            if let Some(h) = base.strip_prefix(".wh.") {
                let covers = if h == ".wh..opq" {
                    // Opaque `parent`: everything strictly below it.
                    want.len() > parent.len() && want.starts_with(parent)
                } else {
                    let mut target = parent.to_vec();
                    target.push(h.to_owned());
                    want.starts_with(&target)
                };
                hidden |= covers;
            } else if comps == want {
                written = Some(entry.header().entry_type().is_dir());
            } else if comps.len() > want.len() && comps.starts_with(&want) {
                // An entry below `want` makes it a directory (tars often
                // leave parents implicit).
                written = Some(true);
            } else if want.starts_with(&comps) && !entry.header().entry_type().is_dir() {
                // An ancestor replaced by a non-directory.
                written = Some(false);
            }
        }
        if hidden {
            is_dir = false;
        }
        if let Some(w) = written {
            is_dir = w;
        }
    }
    Ok(is_dir)
}

/// Extracts a (possibly gzipped) tar stream into `dest` with the same
/// confinement as image layers, without digest checks (ADD of a local
/// archive).
pub fn extract_tar(reader: impl Read, dest: &Path, name: &str) -> Result<()> {
    let io_err = |source: io::Error| LayerError::Io {
        layer: name.to_owned(),
        source,
    };
    let root = Dir::open_ambient_dir(dest, cap_std::ambient_authority()).map_err(io_err)?;
    let reader = decompressed(reader).map_err(io_err)?;
    extract_entries(
        reader.take(MAX_LAYER_EXPANSION),
        &root,
        name,
        Whiteouts::Apply,
    )
}

fn extract_entries(reader: impl Read, root: &Dir, name: &str, whiteouts: Whiteouts) -> Result<()> {
    let name = name.to_owned();
    let io_err = |source: io::Error| LayerError::Io {
        layer: name.clone(),
        source,
    };
    let mut archive = tar::Archive::new(reader);
    let mut created: BTreeSet<PathBuf> = BTreeSet::new();
    let as_root = rustix::process::geteuid().is_root();
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let hostile = |reason: &str| LayerError::Hostile {
            layer: name.clone(),
            entry: raw_path.clone(),
            reason: reason.to_owned(),
        };
        let comps = clean_components(&raw_path).ok_or_else(|| hostile("has a '..' component"))?;
        let Some(base) = comps.last().cloned() else {
            continue; // the root itself
        };
        let parent = join(&comps[..comps.len() - 1]);
        if let Some(hidden) = base.strip_prefix(".wh.") {
            let malformed = hidden.is_empty()
                || hidden == "."
                || hidden == ".."
                || (hidden.starts_with(".wh.") && hidden != ".wh..opq");
            if malformed {
                return Err(hostile("is a malformed whiteout"));
            }
            if whiteouts == Whiteouts::Overlay {
                if !parent.as_os_str().is_empty() {
                    root.create_dir_all(&parent)
                        .map_err(|e| escape_or(e, &hostile, &io_err))?;
                }
                let dir =
                    open_parent(root, &parent).map_err(|e| escape_or(e, &hostile, &io_err))?;
                let dir = dir.as_ref().unwrap_or(root);
                if hidden == ".wh..opq" {
                    // Through the descriptor (cap-std's may be O_PATH, which
                    // fsetxattr refuses): the directory itself, confined.
                    let fd = std::os::fd::AsRawFd::as_raw_fd(dir);
                    rustix::fs::setxattr(
                        format!("/proc/self/fd/{fd}"),
                        "trusted.overlay.opaque",
                        b"y",
                        rustix::fs::XattrFlags::empty(),
                    )
                    .map_err(|e| io_err(e.into()))?;
                } else {
                    let _ = remove_any(root, &parent.join(hidden));
                    rustix::fs::mknodat(
                        dir,
                        hidden,
                        rustix::fs::FileType::CharacterDevice,
                        rustix::fs::Mode::empty(),
                        0,
                    )
                    .map_err(|e| io_err(e.into()))?;
                }
                continue;
            }
            if hidden == ".wh..opq" {
                // Opaque directory: drop what lower layers put there.
                if let Ok(d) = root.open_dir(&parent) {
                    for child in d.entries().map_err(io_err)? {
                        let child = child.map_err(io_err)?;
                        let p = parent.join(child.file_name());
                        if !created.contains(&p) {
                            remove_any(root, &p).map_err(io_err)?;
                        }
                    }
                }
            } else {
                let target = parent.join(hidden);
                match remove_any(root, &target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            continue;
        }
        let path = join(&comps);
        if !parent.as_os_str().is_empty() {
            root.create_dir_all(&parent).map_err(|e| {
                // A parent that exists but cannot be opened as a directory
                // inside the root is a symlink planted to lead outside.
                if root.metadata(&parent).is_err() {
                    hostile("resolves outside the layer root (through a symlink)")
                } else {
                    escape_or(e, &hostile, &io_err)
                }
            })?;
        }
        let etype = entry.header().entry_type();
        let mode = entry.header().mode().map_err(io_err)? & 0o7777;
        // Ownership from the header, applied only when unpacking as root
        // (anyone else could only give files to themselves), and before
        // the mode, since chown clears the set-id bits.
        // An unreadable or out-of-range id leaves the unpacking user.
        let owner = if as_root {
            let h = entry.header();
            let uid = h.uid().ok().and_then(|u| u32::try_from(u).ok());
            let gid = h.gid().ok().and_then(|g| u32::try_from(g).ok());
            uid.zip(gid)
                .filter(|&(u, g)| u != u32::MAX && g != u32::MAX)
        } else {
            None
        };
        // Replace whatever is there unless both are directories.
        if let Ok(meta) = root.symlink_metadata(&path) {
            if !(meta.is_dir() && etype.is_dir()) {
                remove_any(root, &path).map_err(io_err)?;
            }
        }
        match etype {
            tar::EntryType::Directory => {
                if root.symlink_metadata(&path).is_err() {
                    root.create_dir(&path)
                        .map_err(|e| escape_or(e, &hostile, &io_err))?;
                }
                if let Some(owner) = owner {
                    chown_in(root, &parent, &base, owner).map_err(io_err)?;
                }
                root.set_permissions(
                    &path,
                    Permissions::from_std(std::fs::Permissions::from_mode(mode)),
                )
                .map_err(|e| escape_or(e, &hostile, &io_err))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = root
                    .open_with(&path, OpenOptions::new().write(true).create_new(true))
                    .map_err(|e| escape_or(e, &hostile, &io_err))?;
                io::copy(&mut entry, &mut f).map_err(io_err)?;
                if let Some((uid, gid)) = owner {
                    rustix::fs::fchown(
                        &f,
                        Some(rustix::fs::Uid::from_raw(uid)),
                        Some(rustix::fs::Gid::from_raw(gid)),
                    )
                    .map_err(|e| io_err(e.into()))?;
                }
                f.set_permissions(Permissions::from_std(std::fs::Permissions::from_mode(mode)))
                    .map_err(io_err)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io_err)?
                    .ok_or_else(|| hostile("is a symlink without a target"))?;
                // The target is only text: absolute ones (`/bin/sh ->
                // /bin/busybox`) are common in Linux images. The link is
                // made in its parent opened through the root, and nothing
                // here ever follows it outside the root.
                symlink_in(root, &parent, &base, &target)
                    .map_err(|e| escape_or(e, &hostile, &io_err))?;
                if let Some(owner) = owner {
                    chown_in(root, &parent, &base, owner).map_err(io_err)?;
                }
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .ok_or_else(|| hostile("is a hardlink without a target"))?;
                let tcomps = clean_components(&target)
                    .ok_or_else(|| hostile("is a hardlink that leaves the layer"))?;
                let tpath = join(&tcomps);
                if !root.symlink_metadata(&tpath).is_ok_and(|m| m.is_file()) {
                    return Err(hostile(
                        "is a hardlink to something that is not a regular file of the image",
                    ));
                }
                root.hard_link(&tpath, root, &path)
                    .map_err(|e| escape_or(e, &hostile, &io_err))?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            other => {
                // Devices and fifos have no meaning for wasm guests; the
                // Linux backend handles them separately.
                tracing::debug!(entry = %raw_path, kind = ?other, "skipping special file");
                continue;
            }
        }
        created.insert(path);
    }
    Ok(())
}

/// `parent` (relative, possibly empty) opened through `root`, so that no
/// symlink planted on the way leads outside it; `None` for the root.
fn open_parent(root: &Dir, parent: &Path) -> io::Result<Option<Dir>> {
    if parent.as_os_str().is_empty() {
        Ok(None)
    } else {
        root.open_dir(parent).map(Some)
    }
}

/// Creates the symlink `parent/name` -> `target` (any text).
fn symlink_in(root: &Dir, parent: &Path, name: &str, target: &Path) -> io::Result<()> {
    let dir = open_parent(root, parent)?;
    rustix::fs::symlinkat(target, dir.as_ref().unwrap_or(root), name)?;
    Ok(())
}

/// Gives `parent/name` (never followed if it is a symlink) to `owner`.
fn chown_in(root: &Dir, parent: &Path, name: &str, (uid, gid): (u32, u32)) -> io::Result<()> {
    let dir = open_parent(root, parent)?;
    rustix::fs::chownat(
        dir.as_ref().unwrap_or(root),
        name,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// cap-std reports escapes as PermissionDenied with a telltale message.
fn escape_or(
    e: io::Error,
    hostile: &dyn Fn(&str) -> LayerError,
    io_err: &dyn Fn(io::Error) -> LayerError,
) -> LayerError {
    if e.kind() == io::ErrorKind::PermissionDenied && e.to_string().contains("outside") {
        hostile("resolves outside the layer root (through a symlink)")
    } else {
        io_err(e)
    }
}

fn remove_any(root: &Dir, path: &Path) -> io::Result<()> {
    let meta = root.symlink_metadata(path)?;
    if meta.is_dir() {
        root.remove_dir_all(path)
    } else {
        root.remove_file(path)
    }
}

/// The state of one path in a scanned tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file: mode and content digest.
    File(u32, Digest),
    /// A directory and its mode.
    Dir(u32),
    /// A symlink and its target.
    Symlink(String),
}

/// Records every path under `dir` (never following symlinks) with its
/// state, for diffing before and after a build step.
pub fn scan_tree(dir: &Path) -> io::Result<BTreeMap<String, Node>> {
    fn walk(base: &Path, rel: &str, out: &mut BTreeMap<String, Node>) -> io::Result<()> {
        let here = if rel.is_empty() {
            base.to_path_buf()
        } else {
            base.join(rel)
        };
        for e in fs_err::read_dir(&here)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let p = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = fs_err::symlink_metadata(e.path())?;
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let t = fs_err::read_link(e.path())?;
                out.insert(p, Node::Symlink(t.to_string_lossy().into_owned()));
            } else if meta.is_dir() {
                out.insert(p.clone(), Node::Dir(mode));
                walk(base, &p, out)?;
            } else if meta.is_file() {
                let (d, _) = HashingReader::new(fs_err::File::open(e.path())?).finish()?;
                out.insert(p, Node::File(mode, d));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}

/// The layer entries that turn tree `before` into tree `after` (whose files
/// live under `after_dir`): changed and new paths, and whiteouts for removed
/// ones (only the top-most removed path of a removed subtree).
pub fn diff_trees(
    before: &BTreeMap<String, Node>,
    after: &BTreeMap<String, Node>,
    after_dir: &Path,
) -> Vec<LayerEntry> {
    let mut out = Vec::new();
    for (p, n) in after {
        if before.get(p) == Some(n) {
            continue;
        }
        let kind = match n {
            Node::File(mode, _) => EntryKind::File {
                source: after_dir.join(p),
                mode: *mode,
            },
            Node::Dir(mode) => EntryKind::Dir { mode: *mode },
            Node::Symlink(t) => EntryKind::Symlink { target: t.clone() },
        };
        out.push(LayerEntry {
            path: p.clone(),
            kind,
        });
    }
    for p in before.keys() {
        if after.contains_key(p) {
            continue;
        }
        let parent_gone = p
            .rsplit_once('/')
            .is_some_and(|(parent, _)| !after.contains_key(parent));
        if !parent_gone {
            out.push(LayerEntry {
                path: p.clone(),
                kind: EntryKind::Whiteout,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;

    fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let raw = b.into_inner().unwrap();
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        gz.finish().unwrap()
    }

    fn put(store: &Store, bytes: &[u8]) -> Descriptor {
        let d = store.put_blob(bytes).unwrap();
        Descriptor::new(
            MediaType::ImageLayerGzip,
            bytes.len() as u64,
            oci_digest(&d),
        )
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h
    }

    /// Writes a raw entry name (the tar crate refuses `..` in append_data).
    fn raw_entry(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
    ) {
        let mut h = header(kind, data.len() as u64);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            h.as_gnu_mut().unwrap().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn setup() -> (
        tempfile::TempDir,
        Store,
        tempfile::TempDir,
        tempfile::TempDir,
    ) {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path().join("store")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        (root, store, outside, dest)
    }

    #[test]
    fn dotdot_entries_are_rejected() {
        let (_r, store, _o, dest) = setup();
        let layer = put(
            &store,
            &tar_gz(|b| raw_entry(b, "../evil", tar::EntryType::Regular, None, b"x")),
        );
        let err = unpack_layer(&store, &layer, None, dest.path()).unwrap_err();
        assert!(matches!(err, LayerError::Hostile { .. }), "{err}");
        assert!(!dest.path().parent().unwrap().join("evil").exists());
    }

    #[test]
    fn writes_through_planted_symlinks_stay_inside() {
        let (_r, store, outside, dest) = setup();
        let target = outside.path().to_str().unwrap().to_owned();
        let layer = put(
            &store,
            &tar_gz(|b| {
                raw_entry(b, "link", tar::EntryType::Symlink, Some(&target), b"");
                raw_entry(b, "link/pwned", tar::EntryType::Regular, None, b"x");
            }),
        );
        let err = unpack_layer(&store, &layer, None, dest.path()).unwrap_err();
        assert!(
            matches!(err, LayerError::Hostile { .. } | LayerError::Io { .. }),
            "{err}"
        );
        assert!(!outside.path().join("pwned").exists());
    }

    #[test]
    fn relative_symlink_escape_stays_inside() {
        let (_r, store, outside, dest) = setup();
        let rel = format!("../../../../../../../..{}", outside.path().display());
        let layer = put(
            &store,
            &tar_gz(|b| {
                raw_entry(b, "up", tar::EntryType::Symlink, Some(&rel), b"");
                raw_entry(b, "up/pwned", tar::EntryType::Regular, None, b"x");
            }),
        );
        let err = unpack_layer(&store, &layer, None, dest.path()).unwrap_err();
        assert!(matches!(err, LayerError::Hostile { .. }), "{err}");
        assert!(!outside.path().join("pwned").exists());
    }

    #[test]
    fn dotdot_symlink_parents_are_rejected() {
        let (_r, store, _o, dest) = setup();
        let layer = put(
            &store,
            &tar_gz(|b| {
                raw_entry(
                    b,
                    "up",
                    tar::EntryType::Symlink,
                    Some("../../../../../../../../.."),
                    b"",
                );
                raw_entry(b, "up/pwned", tar::EntryType::Regular, None, b"x");
            }),
        );
        let err = unpack_layer(&store, &layer, None, dest.path()).unwrap_err();
        assert!(matches!(err, LayerError::Hostile { .. }), "{err}");
    }

    #[test]
    fn hardlinks_out_are_rejected() {
        let (_r, store, _o, dest) = setup();
        let layer = put(
            &store,
            &tar_gz(|b| {
                raw_entry(
                    b,
                    "passwd",
                    tar::EntryType::Link,
                    Some("../../../etc/passwd"),
                    b"",
                )
            }),
        );
        let err = unpack_layer(&store, &layer, None, dest.path()).unwrap_err();
        assert!(matches!(err, LayerError::Hostile { .. }), "{err}");
        // An absolute in-root hardlink is legitimate.
        let layer = put(
            &store,
            &tar_gz(|b| {
                raw_entry(b, "a", tar::EntryType::Regular, None, b"hi");
                raw_entry(b, "b", tar::EntryType::Link, Some("/a"), b"");
            }),
        );
        unpack_layer(&store, &layer, None, dest.path()).unwrap();
        assert_eq!(std::fs::read(dest.path().join("b")).unwrap(), b"hi");
    }

    #[test]
    fn ownership_and_set_id_bits_survive_unpacking_as_root() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: ownership is applied only when unpacking as root");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let (_r, store, outside, dest) = setup();
        let owned = |b: &mut tar::Builder<Vec<u8>>, name: &str, kind, link, mode, data: &[u8]| {
            let mut h = header(kind, data.len() as u64);
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                let l: &str = l;
                h.as_gnu_mut().unwrap().linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_uid(1234);
            h.set_gid(4321);
            h.set_mode(mode);
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        let target = outside.path().join("host-file");
        std::fs::write(&target, "host").unwrap();
        let layer = put(
            &store,
            &tar_gz(|b| {
                owned(b, "d", tar::EntryType::Directory, None, 0o755, b"");
                owned(b, "d/suid", tar::EntryType::Regular, None, 0o4755, b"x");
                owned(
                    b,
                    "d/link",
                    tar::EntryType::Symlink,
                    Some(target.to_str().unwrap()),
                    0o777,
                    b"",
                );
            }),
        );
        unpack_layer(&store, &layer, None, dest.path()).unwrap();
        let d = std::fs::metadata(dest.path().join("d")).unwrap();
        assert_eq!((d.uid(), d.gid()), (1234, 4321));
        let f = std::fs::metadata(dest.path().join("d/suid")).unwrap();
        assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (1234, 4321, 0o4755));
        let l = std::fs::symlink_metadata(dest.path().join("d/link")).unwrap();
        assert_eq!((l.uid(), l.gid()), (1234, 4321));
        // The symlink's owner changed, not its host target's.
        let t = std::fs::metadata(&target).unwrap();
        assert_eq!((t.uid(), t.gid()), (0, 0));
    }

    #[test]
    fn absolute_symlinks_are_kept_as_text() {
        let (_r, store, outside, dest) = setup();
        let layer = put(
            &store,
            &tar_gz(|b| {
                raw_entry(b, "bin/busybox", tar::EntryType::Regular, None, b"bb");
                raw_entry(
                    b,
                    "bin/sh",
                    tar::EntryType::Symlink,
                    Some("/bin/busybox"),
                    b"",
                );
                let host = outside.path().join("x");
                raw_entry(b, "host", tar::EntryType::Symlink, host.to_str(), b"");
            }),
        );
        unpack_layer(&store, &layer, None, dest.path()).unwrap();
        assert_eq!(
            std::fs::read_link(dest.path().join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        // A link to a host path is created but never followed: a later
        // entry written through it stays refused.
        assert!(std::fs::symlink_metadata(dest.path().join("host")).is_ok());
        let layer = put(
            &store,
            &tar_gz(|b| raw_entry(b, "host/evil", tar::EntryType::Regular, None, b"x")),
        );
        assert!(unpack_layer(&store, &layer, None, dest.path()).is_err());
        assert!(!outside.path().join("x").exists());
        assert!(!outside.path().join("x/evil").exists());
    }

    /// Two layers: `d/a`, `d/b`, `e/c`; then a whiteout of `d/a`, an
    /// opaque `e` and `e/new`.
    fn whiteout_layers(store: &Store) -> (Descriptor, Descriptor) {
        let l1 = put(
            store,
            &tar_gz(|b| {
                raw_entry(b, "d/a", tar::EntryType::Regular, None, b"1");
                raw_entry(b, "d/b", tar::EntryType::Regular, None, b"2");
                raw_entry(b, "e/c", tar::EntryType::Regular, None, b"3");
            }),
        );
        let l2 = put(
            store,
            &tar_gz(|b| {
                raw_entry(b, "d/.wh.a", tar::EntryType::Regular, None, b"");
                raw_entry(b, "e/new", tar::EntryType::Regular, None, b"4");
                raw_entry(b, "e/.wh..wh..opq", tar::EntryType::Regular, None, b"");
            }),
        );
        (l1, l2)
    }

    #[test]
    fn whiteouts_remove_lower_files_only_inside() {
        let (_r, store, outside, dest) = setup();
        std::fs::write(outside.path().join("keep"), b"k").unwrap();
        let (l1, l2) = whiteout_layers(&store);
        unpack_layer(&store, &l1, None, dest.path()).unwrap();
        unpack_layer(&store, &l2, None, dest.path()).unwrap();
        assert!(!dest.path().join("d/a").exists());
        assert!(dest.path().join("d/b").exists());
        assert!(!dest.path().join("e/c").exists());
        assert!(dest.path().join("e/new").exists());
        let bad = put(
            &store,
            &tar_gz(|b| raw_entry(b, "d/.wh..", tar::EntryType::Regular, None, b"")),
        );
        assert!(unpack_layer(&store, &bad, None, dest.path()).is_err());
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn overlay_whiteouts_merge_as_applied_ones_do() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: overlay whiteouts need root (mknod, trusted xattrs, mount)");
            return;
        }
        let (_r, store, outside, dest) = setup();
        let (l1, l2) = whiteout_layers(&store);
        let (lower, upper, merged) = (
            dest.path().join("1"),
            dest.path().join("2"),
            dest.path().join("m"),
        );
        for d in [&lower, &upper, &merged] {
            std::fs::create_dir(d).unwrap();
        }
        unpack_layer_as(&store, &l1, None, &lower, Whiteouts::Overlay).unwrap();
        unpack_layer_as(&store, &l2, None, &upper, Whiteouts::Overlay).unwrap();
        use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
        let wh = std::fs::symlink_metadata(upper.join("d/a")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        let mut opaque = [0u8; 4];
        let n =
            rustix::fs::getxattr(upper.join("e"), "trusted.overlay.opaque", &mut opaque).unwrap();
        assert_eq!(&opaque[..n], b"y");

        // Mounted, the two layers read as the applied merge does.
        let data =
            std::ffi::CString::new(format!("lowerdir={}:{}", upper.display(), lower.display()))
                .unwrap();
        rustix::mount::mount(
            "overlay",
            &merged,
            "overlay",
            rustix::mount::MountFlags::RDONLY,
            data.as_c_str(),
        )
        .unwrap();
        let seen = |p: &str| merged.join(p).exists();
        let view = [seen("d/a"), seen("d/b"), seen("e/c"), seen("e/new")];
        rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::DETACH).unwrap();
        assert_eq!(view, [false, true, false, true]);

        // A whiteout under a planted symlink stays inside.
        let hostile = put(
            &store,
            &tar_gz(|b| {
                raw_entry(
                    b,
                    "s",
                    tar::EntryType::Symlink,
                    Some(outside.path().to_str().unwrap()),
                    b"",
                );
                raw_entry(b, "s/.wh.x", tar::EntryType::Regular, None, b"");
            }),
        );
        let fresh = dest.path().join("3");
        std::fs::create_dir(&fresh).unwrap();
        assert!(unpack_layer_as(&store, &hostile, None, &fresh, Whiteouts::Overlay).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn corrupt_digest_is_detected() {
        let (_r, store, _o, dest) = setup();
        let bytes = tar_gz(|b| raw_entry(b, "a", tar::EntryType::Regular, None, b"1"));
        let mut layer = put(&store, &bytes);
        layer.set_size(bytes.len() as u64 + 1);
        assert!(matches!(
            unpack_layer(&store, &layer, None, dest.path()),
            Err(LayerError::Corrupt { .. })
        ));
    }

    #[test]
    fn written_layers_are_reproducible_and_round_trip() {
        let (_r, store, _o, dest) = setup();
        let entries = vec![
            LayerEntry {
                path: "b/file".into(),
                kind: EntryKind::Bytes {
                    data: b"hello".to_vec(),
                    mode: 0o755,
                },
            },
            LayerEntry {
                path: "a".into(),
                kind: EntryKind::Symlink {
                    target: "b/file".into(),
                },
            },
        ];
        let one = write_layer(&store, &entries, 0).unwrap();
        let two = write_layer(&store, &entries, 0).unwrap();
        assert_eq!(one.descriptor.digest(), two.descriptor.digest());
        unpack_layer(&store, &one.descriptor, Some(&one.diff_id), dest.path()).unwrap();
        assert_eq!(std::fs::read(dest.path().join("a")).unwrap(), b"hello");
        let mode = std::fs::metadata(dest.path().join("b/file"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let wrong = Digest::of(b"nope");
        assert!(unpack_layer(&store, &one.descriptor, Some(&wrong), dest.path()).is_err());
    }
}
