//! Build sources: the build context (with `.dockerignore`) or another
//! stage's filesystem, and the files a COPY/ADD selects from them.

use cap_std::fs::PermissionsExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::dockerfile::DockerIgnore;
use super::BuildError;

/// A directory files are copied from.
pub struct Source {
    root: PathBuf,
    ignore: Option<DockerIgnore>,
    label: String,
}

/// One file system object selected for copying.
#[derive(Debug, Clone)]
pub struct Selected {
    /// Path relative to the source root.
    pub rel: String,
    /// What it is.
    pub kind: SelectedKind,
}

/// Kinds of selected objects.
#[derive(Debug, Clone)]
pub enum SelectedKind {
    /// A regular file with its permission bits.
    File(u32),
    /// A directory with its permission bits.
    Dir(u32),
    /// A symlink and its target.
    Symlink(String),
}

impl Source {
    /// The build context at `root`, filtered by its `.dockerignore`.
    pub fn context(root: &Path) -> Result<Source, BuildError> {
        let ignore = match fs_err::read_to_string(root.join(".dockerignore")) {
            Ok(t) => Some(DockerIgnore::parse(&t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Source {
            root: root.to_path_buf(),
            ignore,
            label: "build context".into(),
        })
    }

    /// Another stage's or image's unpacked filesystem.
    pub fn tree(root: &Path, label: String) -> Source {
        Source {
            root: root.to_path_buf(),
            ignore: None,
            label,
        }
    }

    /// The host path of a selected object.
    pub fn host_path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn excluded(&self, rel: &str) -> bool {
        self.ignore.as_ref().is_some_and(|i| i.is_excluded(rel))
    }

    /// Expands a COPY/ADD source (a path or glob) into the objects it
    /// names, each with everything below it for directories.
    /// Returns `(top-level matches, is-single-file)`.
    pub fn select(&self, pattern: &str) -> Result<Vec<(Selected, Vec<Selected>)>, BuildError> {
        let outside = || BuildError::OutsideContext {
            path: pattern.to_owned(),
            within: self.label.clone(),
        };
        let mut comps: Vec<&str> = Vec::new();
        for c in pattern.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    comps.pop().ok_or_else(outside)?;
                }
                c => comps.push(c),
            }
        }
        let clean = comps.join("/");
        let is_glob = clean.contains(['*', '?', '[']);
        let tops: Vec<String> = if is_glob {
            let pat = glob::Pattern::new(&clean).map_err(|e| BuildError::Instruction {
                step: String::new(),
                message: format!("bad pattern {pattern:?}: {e}"),
            })?;
            let opts = glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: false,
            };
            let mut all = Vec::new();
            self.walk("", &mut all)?;
            all.into_iter()
                .map(|s| s.rel)
                .filter(|r| pat.matches_with(r, opts))
                .collect()
        } else {
            vec![clean.clone()]
        };
        let mut out = Vec::new();
        for rel in tops {
            if !rel.is_empty() && self.excluded(&rel) {
                continue;
            }
            let dir = cap_std::fs::Dir::open_ambient_dir(&self.root, cap_std::ambient_authority())?;
            let meta = if rel.is_empty() {
                dir.dir_metadata()
            } else {
                dir.metadata(&rel)
            };
            let meta = match meta {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => return Err(outside()),
            };
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                let mut below = Vec::new();
                self.walk(&rel, &mut below)?;
                out.push((
                    Selected {
                        rel,
                        kind: SelectedKind::Dir(mode),
                    },
                    below,
                ));
            } else if meta.is_file() {
                out.push((
                    Selected {
                        rel,
                        kind: SelectedKind::File(mode),
                    },
                    Vec::new(),
                ));
            }
        }
        if out.is_empty() {
            return Err(BuildError::SourceNotFound {
                path: pattern.to_owned(),
                within: self.label.clone(),
            });
        }
        Ok(out)
    }

    /// Everything below `rel` (not following symlinks), in sorted order,
    /// minus ignored paths.
    fn walk(&self, rel: &str, out: &mut Vec<Selected>) -> Result<(), BuildError> {
        let here = if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        };
        let mut entries: Vec<_> = fs_err::read_dir(&here)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = fs_err::symlink_metadata(e.path())?;
            let mode = meta.permissions().mode() & 0o7777;
            let excluded = self.excluded(&child);
            if meta.file_type().is_symlink() {
                if !excluded {
                    let t = fs_err::read_link(e.path())?;
                    out.push(Selected {
                        rel: child,
                        kind: SelectedKind::Symlink(t.to_string_lossy().into_owned()),
                    });
                }
            } else if meta.is_dir() {
                if !excluded {
                    out.push(Selected {
                        rel: child.clone(),
                        kind: SelectedKind::Dir(mode),
                    });
                }
                if !excluded
                    || self
                        .ignore
                        .as_ref()
                        .is_some_and(|i| i.may_include_below(&child))
                {
                    self.walk(&child, out)?;
                }
            } else if meta.is_file() && !excluded {
                out.push(Selected {
                    rel: child,
                    kind: SelectedKind::File(mode),
                });
            }
        }
        Ok(())
    }
}
