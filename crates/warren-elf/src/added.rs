//! Paths added to a minimal root as they are: what `warren run --with PATH` asks for, and the
//! library directory of an interpreter the resolver recognises.
//!
//! A program often needs more than its ELF dependencies: an interpreter its standard library, a
//! client its CA certificates, a tool its data files. [`BinaryRoot::add_path`] adds a file or a
//! directory tree, read-only, at the same path inside; [`BinaryRoot::interpreter_dirs`] names the
//! directories an interpreter is known to need, where that can be decided soundly from the
//! program alone.
//!
//! Every file below an added directory is listed in [`AddedPath::files`], so that the launch
//! measurement covers the contents of what is added, not just its name.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::{BinaryRoot, RootEntry};

/// At most this many entries below one added directory: a bound on what one launch measures.
pub const MAX_ADDED_ENTRIES: usize = 100_000;

/// A path added to a minimal root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AddedPath {
    /// Where it is on the host (symlinks resolved) and where it appears inside (as given).
    pub entry: RootEntry,
    /// Whether it is a directory (bound with everything below it) or a single file.
    pub dir: bool,
    /// Every entry placed with it, as (host, target): the path itself and, for a directory,
    /// every file, directory and symbolic link below it (symbolic links that lead nowhere are
    /// left out). Sorted by target.
    pub files: Vec<RootEntry>,
}

/// Why a path cannot be added to a minimal root.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// The path is relative.
    #[error("--with {path}: the path must be absolute")]
    Relative {
        /// The path as given.
        path: PathBuf,
    },
    /// The path names a place Warren provides itself.
    #[error("--with {path}: {place} is provided by Warren and cannot be replaced")]
    Reserved {
        /// The path as given.
        path: PathBuf,
        /// The reserved place.
        place: &'static str,
    },
    /// The path cannot be read.
    #[error("--with {path}")]
    Read {
        /// The path that failed (the given one, or an entry below it).
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The path is neither a regular file nor a directory.
    #[error("--with {path}: a {kind} cannot be added, only regular files and directories")]
    Kind {
        /// The path as given.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A directory holds too many entries.
    #[error("--with {path}: more than {max} entries below it")]
    TooBig {
        /// The path as given.
        path: PathBuf,
        /// The bound, [`MAX_ADDED_ENTRIES`].
        max: usize,
    },
}

impl BinaryRoot {
    /// Add `path` (absolute; a regular file or a directory) read-only at the same path inside.
    /// Adding a path twice, or a path below one already added, changes nothing.
    pub fn add_path(&mut self, path: &Path) -> Result<(), AddError> {
        let target = normalise(path)?;
        // The root and `/tmp` themselves, and anything at or below `/proc` and `/dev`, are
        // Warren's (paths below `/tmp` are fine: they are placed after its tmpfs).
        let reserved = ["/", "/tmp"]
            .into_iter()
            .find(|p| target == Path::new(p))
            .or_else(|| {
                ["/proc", "/dev"]
                    .into_iter()
                    .find(|p| target.starts_with(p))
            });
        if let Some(place) = reserved {
            return Err(AddError::Reserved {
                path: path.to_owned(),
                place,
            });
        }
        if self
            .added
            .iter()
            .any(|a| target.starts_with(&a.entry.target) && (a.dir || a.entry.target == target))
        {
            return Ok(());
        }
        let read = |source| AddError::Read {
            path: path.to_owned(),
            source,
        };
        let host = fs::canonicalize(&target).map_err(read)?;
        let meta = fs::metadata(&host).map_err(read)?;
        let entry = RootEntry {
            host: host.clone(),
            target: target.clone(),
        };
        let added = if meta.is_dir() {
            let mut files = vec![entry.clone()];
            walk(&host, &target, &mut files, path)?;
            files.sort_by(|a, b| a.target.cmp(&b.target));
            AddedPath {
                entry,
                dir: true,
                files,
            }
        } else if meta.is_file() {
            AddedPath {
                entry: entry.clone(),
                dir: false,
                files: vec![entry],
            }
        } else {
            return Err(AddError::Kind {
                path: path.to_owned(),
                kind: crate::file_kind(&meta),
            });
        };
        // A directory added now covers paths added before below it.
        self.added
            .retain(|a| !(added.dir && a.entry.target.starts_with(&target)));
        self.added.push(added);
        Ok(())
    }

    /// The directories the program needs as an interpreter, where that follows from the program
    /// alone. Only CPython is recognised: a program whose real file is named `pythonX.Y` finds its
    /// standard library at `<prefix>/lib/pythonX.Y` (the directory holding `os.py`, CPython's
    /// landmark), `<prefix>` being the parent of the program's directory, as CPython computes it
    /// from its own path. Modules outside the standard library (`dist-packages`) are not added.
    pub fn interpreter_dirs(&self) -> Vec<PathBuf> {
        let host = &self.binary.host;
        let Some(name) = host.file_name().and_then(|n| n.to_str()) else {
            return vec![];
        };
        let Some(version) = name.strip_prefix("python") else {
            return vec![];
        };
        let is_version = version
            .split_once('.')
            .is_some_and(|(major, minor)| is_number(major) && is_number(minor));
        let prefix = self.binary.target.parent().and_then(Path::parent);
        match (is_version, prefix) {
            (true, Some(prefix)) => {
                let dir = prefix.join("lib").join(name);
                if dir.join("os.py").is_file() {
                    vec![dir]
                } else {
                    vec![]
                }
            }
            _ => vec![],
        }
    }
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `path` made absolute and normal: no `.`, no `..`, no trailing slash.
fn normalise(path: &Path) -> Result<PathBuf, AddError> {
    if !path.is_absolute() {
        return Err(AddError::Relative {
            path: path.to_owned(),
        });
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Lists everything below `host` (whose target is `target`) into `files`.
fn walk(
    host: &Path,
    target: &Path,
    files: &mut Vec<RootEntry>,
    given: &Path,
) -> Result<(), AddError> {
    let read = |p: &Path| {
        let p = p.to_owned();
        move |source| AddError::Read { path: p, source }
    };
    for entry in fs::read_dir(host).map_err(read(host))? {
        let entry = entry.map_err(read(host))?;
        let h = entry.path();
        let t = target.join(entry.file_name());
        let kind = entry.file_type().map_err(read(&h))?;
        if kind.is_symlink() && fs::metadata(&h).is_err() {
            continue; // leads nowhere: nothing to measure or to use
        }
        files.push(RootEntry {
            host: h.clone(),
            target: t.clone(),
        });
        if files.len() > MAX_ADDED_ENTRIES {
            return Err(AddError::TooBig {
                path: given.to_owned(),
                max: MAX_ADDED_ENTRIES,
            });
        }
        if kind.is_dir() {
            walk(&h, &t, files, given)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn static_root(host: &Path, target: &Path) -> BinaryRoot {
        BinaryRoot {
            binary: RootEntry {
                host: host.to_owned(),
                target: target.to_owned(),
            },
            interpreter: None,
            libraries: vec![],
            library_path: vec![],
            static_binary: true,
            added: vec![],
        }
    }

    #[test]
    fn a_directory_is_added_with_every_entry_below_it() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("data");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("a"), "a").unwrap();
        fs::write(d.join("sub/b"), "b").unwrap();
        std::os::unix::fs::symlink("a", d.join("link")).unwrap();
        std::os::unix::fs::symlink("nowhere", d.join("dangling")).unwrap();
        let mut root = static_root(Path::new("/bin/x"), Path::new("/x"));
        root.add_path(&d).unwrap();
        let real = fs::canonicalize(&d).unwrap();
        assert_eq!(root.added.len(), 1);
        let a = &root.added[0];
        assert!(a.dir);
        assert_eq!(a.entry.host, real);
        let targets: Vec<_> = a
            .files
            .iter()
            .map(|f| f.target.strip_prefix(&d).unwrap().to_owned())
            .collect();
        let want: Vec<PathBuf> = ["", "a", "link", "sub", "sub/b"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(targets, want);
        // Below an added directory: nothing more. A file elsewhere: one entry.
        root.add_path(&d.join("sub")).unwrap();
        assert_eq!(root.added.len(), 1);
        let f = tmp.path().join("f");
        fs::write(&f, "f").unwrap();
        root.add_path(&f).unwrap();
        assert_eq!(root.added.len(), 2);
        assert!(!root.added[1].dir);
        assert_eq!(root.added[1].files.len(), 1);
    }

    #[test]
    fn bad_paths_are_refused_with_their_name() {
        let mut root = static_root(Path::new("/bin/x"), Path::new("/x"));
        for (path, want) in [
            ("relative", "must be absolute"),
            ("/", "provided by Warren"),
            ("/proc/self", "provided by Warren"),
            ("/dev/null", "provided by Warren"),
            ("/tmp", "provided by Warren"),
            ("/no/such/path", "--with /no/such/path"),
        ] {
            let e = root.add_path(Path::new(path)).unwrap_err().to_string();
            assert!(e.contains(want), "{path}: {e}");
        }
        assert!(root.added.is_empty());
    }

    #[test]
    fn cpython_gets_its_standard_library_and_nothing_else_does() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("usr/bin");
        let lib = tmp.path().join("usr/lib/python3.11");
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(&lib).unwrap();
        fs::write(bin.join("python3.11"), "").unwrap();
        let root = static_root(&bin.join("python3.11"), &bin.join("python3"));
        // No landmark yet: nothing is guessed.
        assert!(root.interpreter_dirs().is_empty());
        fs::write(lib.join("os.py"), "").unwrap();
        assert_eq!(root.interpreter_dirs(), vec![lib.clone()]);
        for other in ["python3", "python", "pythonx.y", "perl5.36", "node"] {
            fs::write(bin.join(other), "").unwrap();
            let r = static_root(&bin.join(other), &bin.join(other));
            assert!(r.interpreter_dirs().is_empty(), "{other}");
        }
    }
}
