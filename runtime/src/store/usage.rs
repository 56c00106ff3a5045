//! What the store uses on disk (`wharf system df`) and pruning what no
//! container uses (`wharf system prune`).

use std::collections::BTreeSet;

use serde::Serialize;

use super::{descriptor_digest_io, dir_size, ref_name, Result, Store, StoreLock};
use crate::digest::Digest;
use crate::reference::Reference;

/// The space one kind of stored data takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// How many there are.
    pub total: usize,
    /// How many a container (or a running guest) uses.
    pub active: usize,
    /// Bytes on disk.
    pub size: u64,
    /// Bytes no container (running or stopped) uses: what `system prune
    /// -a` frees when no container is left.
    pub reclaimable: u64,
}

impl Usage {
    /// Counts one item of `size` bytes.
    pub fn add(&mut self, size: u64, active: bool) {
        self.total += 1;
        self.size += size;
        if active {
            self.active += 1;
        } else {
            self.reclaimable += size;
        }
    }
}

/// The space the store takes, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiskUsage {
    /// Images: named or leased roots; the size is every blob's.
    pub images: Usage,
    /// Unpacked image filesystems (wasm images) and unpacked layers
    /// (Linux images).
    pub snapshots: Usage,
    /// Compiled wasm code.
    pub modules: Usage,
    /// Build-step cache entries (their layers count under images).
    pub build_cache: Usage,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// The images removed: their names, or digests for unnamed ones.
    pub images: Vec<String>,
    /// The keys of the build-cache entries removed.
    pub build_cache: Vec<Digest>,
    /// Bytes freed (blobs, snapshots, compiled code, cache).
    pub reclaimed: u64,
}

impl Store {
    /// What the store takes on disk. Active data is what a lease reaches
    /// (a container's image); the rest is reclaimable. Reads without
    /// locks: a collection running meanwhile makes the figures approximate,
    /// never wrong in kind.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let sizes = self.blob_sizes()?;
        let leased: BTreeSet<Digest> = self.leases()?.into_iter().map(|(_, d)| d).collect();
        let (active_blobs, active_manifests) =
            self.mark_from(self.lease_roots(leased.iter().cloned()))?;
        let mut roots = BTreeSet::new();
        for d in self.roots()? {
            roots.insert(descriptor_digest_io(&d)?);
        }
        roots.extend(leased.iter().cloned());
        let mut usage = DiskUsage::default();
        usage.images.total = roots.len();
        usage.images.active = leased.len();
        for (digest, size) in &sizes {
            usage.images.size += size;
            if !active_blobs.contains(digest) {
                usage.images.reclaimable += size;
            }
        }

        let mut active_modules = BTreeSet::new();
        for entry in read_dir(&self.meta_dir().join("snapshots"))? {
            let path = entry.path();
            let size = dir_size(&path);
            let name = entry.file_name().to_string_lossy().into_owned();
            let active = Digest::from_hex(&name).is_ok_and(|d| active_manifests.contains(&d))
                || StoreLock::in_use(&path);
            usage.snapshots.add(size, active);
            if active {
                if let Ok(m) = std::fs::read_to_string(path.join("module-digest")) {
                    if let Ok(d) = m.trim().parse::<Digest>() {
                        active_modules.insert(d);
                    }
                }
            }
        }
        for entry in read_dir(&self.meta_dir().join("layers"))? {
            let path = entry.path();
            let size = dir_size(&path);
            let name = entry.file_name().to_string_lossy().into_owned();
            let active = Digest::from_hex(&name).is_ok_and(|d| active_blobs.contains(&d))
                || StoreLock::in_use(&path);
            usage.snapshots.add(size, active);
        }
        for entry in read_dir(&self.meta_dir().join("modules"))? {
            let size = dir_size(&entry.path());
            let name = entry.file_name().to_string_lossy().into_owned();
            let active = Digest::from_hex(&name)
                .is_ok_and(|d| active_modules.contains(&d) || active_blobs.contains(&d));
            usage.modules.add(size, active);
        }
        for entry in self.build_cache_entries()? {
            usage.build_cache.add(entry.size, false);
        }
        Ok(usage)
    }

    /// Removes the images no lease holds: the unnamed ones (dangling), or
    /// with `all` every one; then collects garbage. Holds the exclusive
    /// store lock throughout, so it waits for builds, pulls and run setups
    /// in progress and none starts meanwhile.
    pub fn prune_images(&self, all: bool) -> Result<Pruned> {
        let _lock = self.lock_exclusive()?;
        let leased: BTreeSet<Digest> = self.leases()?.into_iter().map(|(_, d)| d).collect();
        let mut pruned = Pruned::default();
        {
            let _guard = self.lock_index()?;
            let mut kept = Vec::new();
            for d in self.read_index()?.manifests() {
                let digest = descriptor_digest_io(d)?;
                if leased.contains(&digest) || (!all && ref_name(d).is_some()) {
                    kept.push(d.clone());
                    continue;
                }
                pruned.images.push(
                    ref_name(d)
                        .and_then(|n| n.parse::<Reference>().ok())
                        .map(|r| r.familiar())
                        .unwrap_or_else(|| digest.to_string()),
                );
            }
            if !pruned.images.is_empty() {
                self.write_index(&kept)?;
            }
        }
        pruned.reclaimed += self.collect_garbage_locked()?;
        Ok(pruned)
    }

    /// Removes the whole build cache (the next build runs every step),
    /// then collects garbage.
    pub fn prune_build_cache(&self) -> Result<Pruned> {
        let _lock = self.lock_exclusive()?;
        let mut pruned = Pruned::default();
        for entry in self.build_cache_entries()? {
            fs_err::remove_file(self.build_cache_path(&entry.key))?;
            pruned.reclaimed += entry.size;
            pruned.build_cache.push(entry.key);
        }
        pruned.reclaimed += self.collect_garbage_locked()?;
        Ok(pruned)
    }

    /// The build cache's entries.
    pub fn build_cache_entries(&self) -> Result<Vec<CacheRecord>> {
        let mut out = Vec::new();
        for entry in read_dir(&self.meta_dir().join("build-cache"))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = name
                .strip_suffix(".json")
                .and_then(|h| Digest::from_hex(h).ok())
            else {
                continue;
            };
            let meta = entry.metadata()?;
            out.push(CacheRecord {
                key,
                size: meta.len(),
                modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// One build-cache entry: a step's key and the record of its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRecord {
    /// The step's cache key.
    pub key: Digest,
    /// Bytes the record takes (its layers count under images).
    pub size: u64,
    /// When the step was cached.
    pub modified: std::time::SystemTime,
}

/// The entries of `dir` (none if it does not exist).
fn read_dir(dir: &std::path::Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd.flatten().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::image::ImageConfiguration;

    use super::*;

    /// A store with three images: `named`, `leased` (named and leased by
    /// `c1`) and one with no name (dangling).
    fn three_images() -> (tempfile::TempDir, Store, [Digest; 3]) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut digests = Vec::new();
        for n in ["named", "leased", "dangling"] {
            let mut config = ImageConfiguration::default();
            config.set_created(Some(n.to_owned()));
            let d = store.write_image(&config, &[], Default::default()).unwrap();
            digests.push(descriptor_digest_io(&d).unwrap());
            if n == "dangling" {
                let _guard = store.lock_index().unwrap();
                let mut roots = store.roots().unwrap();
                roots.push(d);
                store.write_index(&roots).unwrap();
            } else {
                store.set_name(&n.parse().unwrap(), &d).unwrap();
            }
        }
        store.lease("c1", &digests[1]).unwrap();
        (dir, store, digests.try_into().unwrap())
    }

    #[test]
    fn prune_removes_dangling_then_unused_images_but_never_leased_ones() {
        let (_dir, store, [named, leased, dangling]) = three_images();
        let usage = store.disk_usage().unwrap();
        assert_eq!((usage.images.total, usage.images.active), (3, 1));
        assert!(usage.images.reclaimable > 0 && usage.images.reclaimable < usage.images.size);

        let pruned = store.prune_images(false).unwrap();
        assert_eq!(pruned.images, vec![dangling.to_string()]);
        assert!(pruned.reclaimed > 0);
        assert!(!store.has_blob(&dangling) && store.has_blob(&named));

        let pruned = store.prune_images(true).unwrap();
        assert_eq!(pruned.images, vec!["named:latest".to_owned()]);
        assert!(!store.has_blob(&named) && store.has_blob(&leased));
        assert_eq!(store.list().unwrap().len(), 1, "the leased name stays");

        // Its last name removed, a leased image lives on the lease alone.
        store.remove_name(&"leased".parse().unwrap()).unwrap();
        store.collect_garbage().unwrap();
        assert!(store.has_blob(&leased));
        assert!(store.root_descriptor(&leased).is_ok());
        store.release("c1").unwrap();
        store.prune_images(true).unwrap();
        assert!(store.blob_sizes().unwrap().is_empty());
        assert_eq!(store.disk_usage().unwrap(), DiskUsage::default());
    }

    #[test]
    fn a_container_record_is_a_lease_on_its_manifest() {
        let (dir, store, [named, leased, dangling]) = three_images();
        let containers = dir.path().join("wharf/containers");
        let record = |id: &str, manifest: &str| {
            let d = containers.join(id);
            std::fs::create_dir_all(&d).unwrap();
            let json = format!(r#"{{"id":"{id}","config":{{"manifest":"{manifest}"}}}}"#);
            std::fs::write(d.join("config.json"), json).unwrap();
        };
        record("c2", &dangling.to_string());
        // Being made or being removed: no lease.
        record(".new-c3", &named.to_string());
        record(".removing-c4", &named.to_string());
        let leases = store.leases().unwrap();
        assert_eq!(
            leases,
            vec![
                ("c1".to_owned(), leased.clone()),
                ("container-c2".to_owned(), dangling.clone())
            ]
        );
        let pruned = store.prune_images(true).unwrap();
        assert_eq!(pruned.images, vec!["named:latest".to_owned()]);
        assert!(store.has_blob(&dangling), "the container's image stays");
        std::fs::remove_dir_all(containers.join("c2")).unwrap();
        store.prune_images(true).unwrap();
        assert!(!store.has_blob(&dangling), "and goes with the container");
    }

    #[test]
    fn lease_holders_are_plain_names() {
        let (_dir, store, [named, ..]) = three_images();
        for bad in ["", ".hidden", "../x", "a/b"] {
            assert!(store.lease(bad, &named).is_err(), "{bad:?}");
        }
        assert_eq!(store.leases().unwrap().len(), 1);
        store.release("never-leased").unwrap();
    }
}
