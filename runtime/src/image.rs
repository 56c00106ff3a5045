//! The image model: manifests, configs and platforms over `oci-spec` types,
//! and the wasm layouts met in the wild.
//!
//! wharf reads three wasm layouts (see `spec/image-format.md`):
//! - Docker-style images: filesystem layers, platform `wasi`/`wasip1`/`wasip2`
//!   with architecture `wasm`/`wasm32`, the module named by ENTRYPOINT/CMD;
//! - the CNCF TAG-runtime wasm artifact: config
//!   `application/vnd.wasm.config.v0+json` and one `application/wasm` layer;
//! - runwasi's layers whose media type ends in `+wasm`.

use std::collections::BTreeMap;

use oci_spec::image::{
    Config, Descriptor, ImageConfiguration, ImageConfigurationBuilder, ImageManifest,
    ImageManifestBuilder, MediaType, RootFsBuilder,
};
use serde::Serialize;

use crate::digest::Digest;
use crate::reference::Reference;
use crate::store::{Store, StoreError, Tagged, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE};

/// The OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker's v2 schema2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker's gzipped layer media type.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The CNCF wasm artifact config media type.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The CNCF wasm artifact layer media type (a raw module or component).
pub const WASM_LAYER: &str = "application/wasm";
/// The manifest annotation crun reads to pick its wasm handler.
pub const WASM_VARIANT_ANNOTATION: &str = "module.wasm.image/variant";

/// Errors from reading images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A manifest or config blob does not parse.
    #[error("{what} {digest} is malformed: {reason}")]
    Malformed {
        /// What the blob should be.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// The parse error.
        reason: String,
    },
    /// The manifest, config or a layer has a media type wharf cannot use.
    #[error("{what} {digest} has unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// What the blob should be.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// The media type found.
        media_type: String,
    },
    /// An index has no manifest for the wanted platform.
    #[error("image {image} has no manifest for platform {platform} (it has: {available})")]
    NoMatchingPlatform {
        /// The image.
        image: String,
        /// The wanted platform.
        platform: String,
        /// The platforms the index lists.
        available: String,
    },
    /// An index carries both `manifests` and `layers`.
    #[error("index {0} is ambiguous: it has both manifests and layers")]
    AmbiguousIndex(Digest),
}

type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Serialises `value` as JSON with object keys sorted, so that equal values
/// always produce equal bytes (oci-spec keeps labels and annotations in
/// hash maps, whose order varies between runs).
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&serde_json::to_value(value)?)
}

/// Converts between the crate's digest and oci-spec's.
pub(crate) fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    d.to_string()
        .parse()
        .expect("a sha256 digest is a valid oci digest")
}

/// The digest of a descriptor, validated as sha256.
pub fn descriptor_digest(d: &Descriptor) -> Result<Digest> {
    d.digest()
        .to_string()
        .parse()
        .map_err(|e: crate::digest::DigestError| ImageError::Malformed {
            what: "descriptor",
            digest: Digest::of(b""),
            reason: e.to_string(),
        })
}

/// Where an image keeps its wasm module.
#[derive(Debug, Clone)]
pub enum ModuleSource {
    /// In the filesystem, at the path ENTRYPOINT/CMD names.
    Filesystem,
    /// A layer of its own (CNCF artifact or runwasi layout).
    Layer(Box<Descriptor>),
}

/// An image resolved from the store: manifest, config and where its module is.
#[derive(Debug, Clone)]
pub struct Image {
    /// The digest of the image manifest (after index resolution).
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config digest; Docker calls it the image id.
    pub config_digest: Digest,
    /// The config. For wasm artifacts it is synthesised from the artifact
    /// config: platform from it, no env, no entrypoint.
    pub config: ImageConfiguration,
    /// Where the wasm module is.
    pub module: ModuleSource,
    /// Layers that carry filesystem content, in order.
    pub fs_layers: Vec<Descriptor>,
}

impl Image {
    /// `os/architecture[/variant]`.
    pub fn platform(&self) -> String {
        let mut p = format!("{}/{}", self.config.os(), self.config.architecture());
        if let Some(v) = self.config.variant() {
            p.push('/');
            p.push_str(v);
        }
        p
    }

    /// True for wasm platforms.
    pub fn is_wasm(&self) -> bool {
        is_wasm_platform(
            &self.config.os().to_string(),
            &self.config.architecture().to_string(),
        )
    }

    /// The process config, or an empty one.
    pub fn process(&self) -> Config {
        self.config.config().clone().unwrap_or_default()
    }

    /// Total compressed size of config and layers.
    pub fn size(&self) -> u64 {
        self.manifest.config().size() + self.manifest.layers().iter().map(|l| l.size()).sum::<u64>()
    }
}

/// True when `os`/`arch` name a wasm platform.
pub fn is_wasm_platform(os: &str, arch: &str) -> bool {
    matches!(arch, "wasm" | "wasm32" | "wasm64")
        || matches!(os, "wasi" | "wasip1" | "wasip2" | "wasip3")
}

/// True when the bytes are a wasm component rather than a core module.
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] != [1, 0, 0, 0]
}

/// True when the media type marks a layer that is itself a wasm module.
pub fn is_wasm_layer(media_type: &str) -> bool {
    media_type == WASM_LAYER || media_type.ends_with("+wasm")
}

/// True when the media type is a tar layer wharf can unpack.
pub fn is_fs_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | DOCKER_LAYER_GZIP
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

impl Store {
    /// Finds a name or id: a reference (`hello`, `hello:1`,
    /// `localhost:5000/x@sha256:...`), a full image id (`sha256:<config>`),
    /// an id prefix of at least 4 hex characters, or a manifest digest.
    pub fn lookup(&self, name: &str) -> Result<Tagged, StoreError> {
        let names = self.list()?;
        let roots = self.roots()?;
        let id = name.strip_prefix("sha256:").unwrap_or(name);
        let looks_like_id = id.len() >= 4
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if looks_like_id {
            // Match manifest digests and config digests (image ids).
            let mut hits: Vec<Tagged> = Vec::new();
            for d in &roots {
                let md = d.digest().to_string();
                let cfg = self
                    .config_digest_of(d)
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                let hit = md
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.starts_with(id))
                    || cfg
                        .strip_prefix("sha256:")
                        .is_some_and(|h| h.starts_with(id));
                if hit {
                    let reference = names
                        .iter()
                        .find(|t| t.descriptor.digest() == d.digest())
                        .map(|t| t.reference.clone())
                        .unwrap_or_else(|| {
                            format!("wharf.local/untagged@{md}").parse().expect("valid")
                        });
                    if !hits.iter().any(|h| h.descriptor.digest() == d.digest()) {
                        hits.push(Tagged {
                            reference,
                            descriptor: d.clone(),
                        });
                    }
                }
            }
            // A bare hex string may also be a repository name ("cafe").
            let by_name = name
                .parse::<Reference>()
                .ok()
                .and_then(|r| names.iter().find(|t| t.reference == r).cloned());
            match (hits.len(), by_name) {
                (_, Some(t)) if id.len() < 64 && !name.starts_with("sha256:") => return Ok(t),
                (1, _) => return Ok(hits.remove(0)),
                (n, _) if n > 1 => return Err(StoreError::Ambiguous(name.to_owned())),
                _ => {}
            }
        }
        let reference: Reference = name
            .parse()
            .map_err(|_| StoreError::UnknownImage(name.to_owned()))?;
        if let Some(d) = reference.digest() {
            // name@digest: any entry whose digest matches, in that repository or not.
            if let Some(t) = names
                .iter()
                .find(|t| t.descriptor.digest().to_string() == d.to_string())
            {
                return Ok(Tagged {
                    reference,
                    descriptor: t.descriptor.clone(),
                });
            }
            return Err(StoreError::UnknownImage(name.to_owned()));
        }
        names
            .into_iter()
            .find(|t| t.reference == reference)
            .ok_or_else(|| StoreError::UnknownImage(name.to_owned()))
    }

    /// The descriptor of the manifest or index `digest` in the store,
    /// named or not (a container's image after its last name went).
    pub fn root_descriptor(&self, digest: &Digest) -> Result<Descriptor, StoreError> {
        let bytes = self.read_blob(digest, MAX_MANIFEST_SIZE, "manifest")?;
        let is_index = serde_json::from_slice::<serde_json::Value>(&bytes)
            .is_ok_and(|v| v["manifests"].is_array() && v.get("layers").is_none());
        let media_type = if is_index {
            MediaType::ImageIndex
        } else {
            MediaType::ImageManifest
        };
        Ok(Descriptor::new(
            media_type,
            bytes.len() as u64,
            oci_digest(digest),
        ))
    }

    fn config_digest_of(&self, d: &Descriptor) -> Option<Digest> {
        let md: Digest = d.digest().to_string().parse().ok()?;
        let bytes = self.read_blob(&md, MAX_MANIFEST_SIZE, "manifest").ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        v["config"]["digest"].as_str()?.parse().ok()
    }

    /// Loads the image a descriptor names. For an index, picks the manifest
    /// for `platform` (`os/arch`), or the first wasm platform when `None`.
    pub fn load_image(&self, descriptor: &Descriptor, platform: Option<&str>) -> Result<Image> {
        let digest = descriptor_digest(descriptor)?;
        let bytes = self.read_blob(&digest, MAX_MANIFEST_SIZE, "manifest")?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::Malformed {
                what: "manifest",
                digest: digest.clone(),
                reason: e.to_string(),
            })?;
        let media_type = v["mediaType"]
            .as_str()
            .unwrap_or(descriptor.media_type().as_ref())
            .to_owned();
        if v.get("manifests").is_some() {
            if v.get("layers").is_some() {
                return Err(ImageError::AmbiguousIndex(digest));
            }
            let idx: oci_spec::image::ImageIndex =
                serde_json::from_slice(&bytes).map_err(|e| ImageError::Malformed {
                    what: "index",
                    digest: digest.clone(),
                    reason: e.to_string(),
                })?;
            let plat_of = |m: &Descriptor| {
                m.platform()
                    .as_ref()
                    .map(|p| (p.os().to_string(), p.architecture().to_string()))
                    .unwrap_or_default()
            };
            let chosen = idx.manifests().iter().find(|m| {
                let (os, arch) = plat_of(m);
                match platform {
                    Some(want) => platform_matches(want, &os, &arch),
                    None => is_wasm_platform(&os, &arch),
                }
            });
            let Some(chosen) = chosen else {
                let available = idx
                    .manifests()
                    .iter()
                    .map(|m| {
                        let (os, arch) = plat_of(m);
                        format!("{os}/{arch}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ImageError::NoMatchingPlatform {
                    image: digest.to_string(),
                    platform: platform.unwrap_or("wasi/wasm").to_owned(),
                    available,
                });
            };
            return self.load_image(chosen, platform);
        }
        if !(media_type == DOCKER_MANIFEST || media_type == OCI_MANIFEST) {
            return Err(ImageError::UnsupportedMediaType {
                what: "manifest",
                digest: digest.to_string(),
                media_type,
            });
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::Malformed {
                what: "manifest",
                digest: digest.clone(),
                reason: e.to_string(),
            })?;
        let config_digest = descriptor_digest(manifest.config())?;
        let config_type = manifest.config().media_type().to_string();
        let config_bytes = self.read_blob(&config_digest, MAX_CONFIG_SIZE, "config")?;
        let malformed = |e: serde_json::Error| ImageError::Malformed {
            what: "config",
            digest: config_digest.clone(),
            reason: e.to_string(),
        };
        let config: ImageConfiguration = if config_type == WASM_CONFIG {
            let v: serde_json::Value = serde_json::from_slice(&config_bytes).map_err(malformed)?;
            let os = v["os"].as_str().unwrap_or("wasip1");
            ImageConfigurationBuilder::default()
                .os(os)
                .architecture(v["architecture"].as_str().unwrap_or("wasm"))
                .rootfs(
                    RootFsBuilder::default()
                        .typ("layers")
                        .diff_ids(Vec::<String>::new())
                        .build()
                        .expect("complete"),
                )
                .build()
                .expect("complete")
        } else if config_type == DOCKER_CONFIG || config_type == OCI_CONFIG {
            serde_json::from_slice(&config_bytes).map_err(malformed)?
        } else {
            return Err(ImageError::UnsupportedMediaType {
                what: "config",
                digest: config_digest.to_string(),
                media_type: config_type,
            });
        };
        let mut fs_layers = Vec::new();
        let mut module = ModuleSource::Filesystem;
        for l in manifest.layers() {
            let mt = l.media_type().to_string();
            if is_wasm_layer(&mt) {
                if matches!(module, ModuleSource::Filesystem) {
                    module = ModuleSource::Layer(Box::new(l.clone()));
                }
            } else if is_fs_layer(&mt) {
                fs_layers.push(l.clone());
            } else {
                return Err(ImageError::UnsupportedMediaType {
                    what: "layer",
                    digest: l.digest().to_string(),
                    media_type: mt,
                });
            }
        }
        Ok(Image {
            manifest_digest: digest,
            manifest,
            config_digest,
            config,
            module,
            fs_layers,
        })
    }

    /// Writes a config and manifest for `config` over `layers` and returns
    /// the manifest descriptor (not yet named).
    pub fn write_image(
        &self,
        config: &ImageConfiguration,
        layers: &[Descriptor],
        annotations: BTreeMap<String, String>,
    ) -> Result<Descriptor, StoreError> {
        let config_bytes = canonical_json(config).map_err(std::io::Error::other)?;
        let config_digest = self.put_blob(&config_bytes)?;
        let config_desc = Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            oci_digest(&config_digest),
        );
        let mut builder = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(layers.to_vec());
        if !annotations.is_empty() {
            builder = builder.annotations(
                annotations
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            );
        }
        let manifest = builder
            .build()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let bytes = canonical_json(&manifest).map_err(std::io::Error::other)?;
        let digest = self.put_blob(&bytes)?;
        Ok(Descriptor::new(
            MediaType::ImageManifest,
            bytes.len() as u64,
            oci_digest(&digest),
        ))
    }
}

/// True when a wanted `os/arch[/variant]` matches an entry's os and arch.
/// `wasi/wasm` matches every wasm platform.
pub fn platform_matches(want: &str, os: &str, arch: &str) -> bool {
    let mut parts = want.split('/');
    let (wos, warch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if is_wasm_platform(wos, warch) && (wos == "wasi" || wos.is_empty()) {
        return is_wasm_platform(os, arch);
    }
    wos == os && (warch.is_empty() || warch == arch)
}

/// One row of `wharf images`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    /// Repository in Docker's short form.
    pub repository: String,
    /// Tag, or `<none>`.
    pub tag: String,
    /// Full image id (config digest).
    #[serde(rename = "ID")]
    pub id: String,
    /// Manifest digest.
    pub digest: String,
    /// Creation time.
    pub created_at: String,
    /// Compressed size in bytes.
    pub size: u64,
    /// `os/arch`.
    pub platform: String,
    /// The config's labels.
    pub labels: BTreeMap<String, String>,
}

/// The keys [`ImageFilter`] knows.
pub const IMAGE_FILTER_KEYS: [&str; 5] = ["dangling", "reference", "label", "before", "since"];

/// Docker's filters of an image list (`images --filter`): `dangling`
/// (`true`: rows without a tag), `reference` (a pattern, `*` and `?` not
/// crossing `/`, matched against `name:tag` and `name`), `label` (`key`
/// or `key=value`), `before` and `since` (an image: rows created before
/// or after it).
pub type ImageFilter = crate::filters::Filters<ImageKeys>;

/// The filter keys of an image list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageKeys;

impl crate::filters::Keys for ImageKeys {
    const KEYS: &'static [&'static str] = &IMAGE_FILTER_KEYS;

    fn check(key: &str, value: &str) -> std::result::Result<(), String> {
        if key == "dangling" && !matches!(value, "true" | "false" | "1" | "0") {
            return Err(format!(
                "invalid filter dangling={value:?}: use true or false"
            ));
        }
        Ok(())
    }
}

impl ImageFilter {
    /// The rows of `rows` that pass. `before` and `since` name images of
    /// `store`; an unknown one is an error.
    pub fn apply(&self, store: &Store, rows: Vec<ImageSummary>) -> Result<Vec<ImageSummary>> {
        let mut created = BTreeMap::new();
        for key in ["before", "since"] {
            for name in self.values(key) {
                let tagged = store.lookup(name)?;
                let img = store.load_image(&tagged.descriptor, None)?;
                created.insert(
                    (key, name.as_str()),
                    time(&img.config.created().clone().unwrap_or_default()),
                );
            }
        }
        Ok(rows
            .into_iter()
            .filter(|r| {
                self.all(|key, w| match key {
                    "dangling" => (r.tag == "<none>") == matches!(w, "true" | "1"),
                    "reference" => {
                        glob(w, &format!("{}:{}", r.repository, r.tag)) || glob(w, &r.repository)
                    }
                    "label" => crate::filters::label_matches(&r.labels, w),
                    "before" => time(&r.created_at) < created[&("before", w)],
                    "since" => time(&r.created_at) > created[&("since", w)],
                    _ => true,
                })
            })
            .collect())
    }
}

/// An RFC 3339 time as (seconds, nanoseconds); unreadable ones first.
fn time(s: &str) -> Option<(i64, u32)> {
    crate::container::logs::parse_rfc3339(s)
}

/// Shell-style matching of `text` against `pattern` (`*`, `?`, `[...]`),
/// none crossing a `/`, as Go's `path.Match` that Docker's reference
/// filter uses (the glob crate, as COPY's patterns).
fn glob(pattern: &str, text: &str) -> bool {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches_with(text, options))
}

/// Lists the named images.
pub fn summaries(store: &Store) -> Result<Vec<ImageSummary>> {
    let mut out = Vec::new();
    for t in store.list()? {
        let img = store.load_image(&t.descriptor, None);
        let (id, created, size, platform) = match &img {
            Ok(i) => (
                i.config_digest.to_string(),
                i.config.created().clone().unwrap_or_default(),
                i.size(),
                i.platform(),
            ),
            Err(_) => ("<unreadable>".into(), String::new(), 0, String::new()),
        };
        let labels = img
            .as_ref()
            .ok()
            .and_then(|i| i.config.config().as_ref())
            .and_then(|c| c.labels().clone())
            .map(|l| l.into_iter().collect())
            .unwrap_or_default();
        out.push(ImageSummary {
            repository: t.reference.familiar_name(),
            tag: t.reference.tag().unwrap_or("<none>").to_owned(),
            id,
            digest: t.descriptor.digest().to_string(),
            created_at: created,
            size,
            platform,
            labels,
        });
    }
    Ok(out)
}

/// `docker image inspect`-shaped JSON for an image.
pub fn inspect(store: &Store, name: &str) -> Result<serde_json::Value> {
    let tagged = store.lookup(name)?;
    let img = store.load_image(&tagged.descriptor, None)?;
    let tags: Vec<String> = store
        .list()?
        .into_iter()
        .filter(|t| {
            t.descriptor.digest() == tagged.descriptor.digest() && t.reference.tag().is_some()
        })
        .map(|t| t.reference.familiar())
        .collect();
    let p = img.process();
    let ports: serde_json::Map<String, serde_json::Value> = p
        .exposed_ports()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|k| (k, serde_json::json!({})))
        .collect();
    let volumes: serde_json::Map<String, serde_json::Value> = p
        .volumes()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|k| (k, serde_json::json!({})))
        .collect();
    let labels: BTreeMap<String, String> =
        p.labels().clone().unwrap_or_default().into_iter().collect();
    let module = match &img.module {
        ModuleSource::Filesystem => serde_json::Value::Null,
        ModuleSource::Layer(l) => {
            serde_json::json!({ "MediaType": l.media_type().to_string(), "Digest": l.digest().to_string() })
        }
    };
    Ok(serde_json::json!([{
        "Id": img.config_digest.to_string(),
        "RepoTags": tags,
        "RepoDigests": [format!("{}@{}", tagged.reference.familiar_name(), img.manifest_digest)],
        "Created": img.config.created().clone().unwrap_or_default(),
        "Author": img.config.author().clone().unwrap_or_default(),
        "Architecture": img.config.architecture().to_string(),
        "Os": img.config.os().to_string(),
        "Variant": img.config.variant().clone(),
        "Size": img.size(),
        "Config": {
            "User": p.user().clone().unwrap_or_default(),
            "Env": p.env().clone().unwrap_or_default(),
            "Entrypoint": p.entrypoint().clone(),
            "Cmd": p.cmd().clone(),
            "WorkingDir": p.working_dir().clone().unwrap_or_default(),
            "Labels": labels,
            "ExposedPorts": ports,
            "Volumes": volumes,
            "StopSignal": p.stop_signal().clone(),
        },
        "RootFS": { "Type": "layers", "Layers": img.config.rootfs().diff_ids() },
        "Descriptor": {
            "mediaType": img.manifest.media_type().as_ref().map(|m| m.to_string()),
            "digest": img.manifest_digest.to_string(),
        },
        "WasmModule": module,
    }]))
}

/// Removes an image name (or, for an id or digest, every name of that
/// image; with more than one name only when `force`) and then the blobs and
/// caches nothing else uses. Returns the names removed.
pub fn remove(store: &Store, name: &str, force: bool) -> Result<Vec<String>> {
    let tagged = store.lookup(name)?;
    let by_name = name
        .parse::<Reference>()
        .is_ok_and(|r| r == tagged.reference)
        && !name.starts_with("sha256:");
    let digest = descriptor_digest(&tagged.descriptor)?;
    let last_name = !by_name
        || store
            .list()?
            .iter()
            .filter(|t| t.descriptor.digest() == tagged.descriptor.digest())
            .count()
            <= 1;
    if last_name && !force {
        if let Some((holder, _)) = store.leases()?.into_iter().find(|(_, d)| *d == digest) {
            return Err(StoreError::InUse {
                image: name.to_owned(),
                holder: crate::container::lease_holder_label(&holder),
            }
            .into());
        }
    }
    let mut removed = Vec::new();
    if by_name {
        store.remove_name(&tagged.reference)?;
        removed.push(tagged.reference.familiar());
    } else {
        let names: Vec<Tagged> = store
            .list()?
            .into_iter()
            .filter(|t| t.descriptor.digest() == tagged.descriptor.digest())
            .collect();
        if names.len() > 1 && !force {
            return Err(StoreError::Ambiguous(format!(
                "{name} (it is tagged as {}; remove the names or use --force)",
                names
                    .iter()
                    .map(|t| t.reference.familiar())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
        for t in store.remove_digest(&digest)? {
            if let Some(n) = t
                .annotations()
                .as_ref()
                .and_then(|a| a.get(crate::store::REF_NAME_ANNOTATION))
            {
                removed.push(
                    n.parse::<Reference>()
                        .map(|r| r.familiar())
                        .unwrap_or_else(|_| n.clone()),
                );
            }
        }
    }
    store.collect_garbage()?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_as_path_match() {
        assert!(glob("hello", "hello"));
        assert!(glob("hel*", "hello"));
        assert!(glob("*:v?", "app:v1"));
        assert!(!glob("*", "library/x"), "* does not cross /");
        assert!(glob("*/*", "library/x"));
        assert!(!glob("hello", "hello2"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*/c", "ab/x/c"));
        // Many stars against a long text that almost matches: linear.
        let long = "a".repeat(5000);
        assert!(!glob(&format!("{}b", "*a".repeat(50)), &long));
    }

    #[test]
    fn image_filters_pick_rows() {
        let row = |repository: &str, tag: &str, label: Option<(&str, &str)>| ImageSummary {
            repository: repository.into(),
            tag: tag.into(),
            id: String::new(),
            digest: String::new(),
            created_at: String::new(),
            size: 0,
            platform: String::new(),
            labels: label
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        };
        let rows = vec![
            row("hello", "latest", Some(("tier", "a"))),
            row("hello", "v2", None),
            row("other", "<none>", Some(("tier", "b"))),
        ];
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let pick = |filters: &[&str]| {
            let mut f = ImageFilter::default();
            for x in filters {
                f.add(x).unwrap();
            }
            f.apply(&store, rows.clone())
                .unwrap()
                .into_iter()
                .map(|r| format!("{}:{}", r.repository, r.tag))
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(&["reference=hello"]), ["hello:latest", "hello:v2"]);
        assert_eq!(pick(&["reference=*:v*"]), ["hello:v2"]);
        assert_eq!(pick(&["dangling=true"]), ["other:<none>"]);
        assert_eq!(pick(&["dangling=false", "label=tier"]), ["hello:latest"]);
        assert_eq!(pick(&["label=tier=b", "label=tier=a"]).len(), 2);
        assert!(ImageFilter::default().add("dangling=maybe").is_err());
        assert!(ImageFilter::default().add("network=x").is_err());
        let mut f = ImageFilter::default();
        f.add("before=nope").unwrap();
        assert!(
            f.apply(&store, rows).is_err(),
            "an unknown image is an error"
        );
    }
}
