//! Image references (`[registry/]repository[:tag][@digest]`), normalised the
//! way Docker normalises them: `hello` is `docker.io/library/hello:latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry that names without a domain refer to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag that references without a tag or digest refer to.
pub const DEFAULT_TAG: &str = "latest";

/// Errors from parsing a reference.
#[derive(Debug, thiserror::Error)]
#[error("invalid reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// The text as given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A fully normalised image reference.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// The registry host (and port), e.g. `docker.io` or `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path, e.g. `library/hello`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one (`latest` is filled in when neither a
    /// tag nor a digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker prints: `hello:latest` for
    /// `docker.io/library/hello:latest`.
    pub fn familiar(&self) -> String {
        let name = self.familiar_name();
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{name}:{t}"),
            (None, Some(d)) => format!("{name}@{d}"),
            (None, None) => name,
        }
    }

    /// The short repository name Docker prints: `hello` for
    /// `docker.io/library/hello`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_owned()
        } else {
            self.name()
        }
    }

    /// The same repository with another tag.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || b"_.-".contains(&x))
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        let err = |reason| ReferenceError {
            reference: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(err("empty reference"));
        }
        if s.len() > 255 * 2 {
            return Err(err("reference is too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<Digest>()
                        .map_err(|_| err("the digest is not sha256:<64 hex characters>"))?,
                ),
            ),
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(err("invalid tag"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_owned(), remainder.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        };
        if !valid_domain(&registry) {
            return Err(err("invalid registry name"));
        }
        // Docker Hub's legacy name is the same registry.
        let registry = if registry == "index.docker.io" {
            DEFAULT_REGISTRY.to_owned()
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err("repository name must be lowercase"));
        }
        if !repository.split('/').all(valid_component) {
            return Err(err("invalid repository name"));
        }
        if registry.len() + 1 + repository.len() > 255 {
            return Err(err("repository name is longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(norm("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(norm("localhost/app:1"), "localhost/app:1");
        assert_eq!(norm("ghcr.io/a/b/c:1.0"), "ghcr.io/a/b/c:1.0");
        assert_eq!(norm("127.0.0.1:5000/x/y"), "127.0.0.1:5000/x/y:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("hello@{d}")),
            format!("docker.io/library/hello@{d}")
        );
        assert_eq!(
            norm(&format!("hello:1@{d}")),
            format!("docker.io/library/hello:1@{d}")
        );
    }

    #[test]
    fn familiar_names() {
        let r: Reference = "hello".parse().unwrap();
        assert_eq!(r.familiar(), "hello:latest");
        let r: Reference = "localhost:5000/app:2".parse().unwrap();
        assert_eq!(r.familiar(), "localhost:5000/app:2");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "UPPER",
            "a//b",
            "a:",
            "a:-x",
            "-a",
            "a@sha256:zz",
            "a b",
            "a/../b",
            "a/b:t/x",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad} accepted");
        }
    }
}

#[cfg(test)]
mod hub_alias_tests {
    use super::*;

    #[test]
    fn index_docker_io_is_docker_hub() {
        let r: Reference = "index.docker.io/busybox".parse().unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
    }
}
