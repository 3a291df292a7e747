//! What a program needs to run in a root that contains nothing else.
//!
//! `warren run --binary PATH` builds a minimal root holding the program, its ELF interpreter
//! (`PT_INTERP`) and the shared libraries named by `DT_NEEDED`, transitively, and nothing else.
//! This crate decides which host files those are and at which path each must appear inside the
//! environment, by replaying the search of glibc's dynamic loader (modelled on Debian 12, glibc
//! 2.36) against a filesystem root. It only reads files; it never runs them.
//!
//! # The search, in the loader's order
//! Objects are visited breadth-first from the program, and each `DT_NEEDED` name of an object is
//! handled as `ld.so` handles it:
//! 1. a name that an object already loaded answers to (the name it was requested by, its path, or
//!    its `DT_SONAME`) loads nothing. The interpreter counts as loaded, which is how `libc.so.6`'s
//!    own need for `ld-linux-x86-64.so.2` is met without a second copy;
//! 2. a name containing `/` is opened as that path;
//! 3. the `DT_RPATH` of the requesting object, then of the object that loaded it, and so on up to
//!    the program. The whole step is skipped when the requesting object has `DT_RUNPATH`, and an
//!    object that has both ignores its own `DT_RPATH`;
//! 4. `LD_LIBRARY_PATH` is not consulted: Warren starts programs with a clean environment;
//! 5. the `DT_RUNPATH` of the requesting object (only that object);
//! 6. `/etc/ld.so.cache`, stood in for by the directories listed in `/etc/ld.so.conf` and its
//!    `include`d files, which is what `ldconfig` builds the cache from;
//! 7. the loader's built-in system directories: on Debian x86_64 `/lib/x86_64-linux-gnu`,
//!    `/usr/lib/x86_64-linux-gnu`, `/lib`, `/usr/lib` (as `ld.so --help` lists them; not
//!    `/lib64` or `/usr/lib64`).
//!
//! Steps 6 and 7 are skipped for an object linked with `-z nodefaultlib` (`DF_1_NODEFLIB`). A
//! file found on the way is used only if it is an ELF file of the host's class and machine;
//! others (a 32-bit `libc.so.6` in a directory searched first, say) are passed over, as `ld.so`
//! passes over them. A file that is not ELF at all, or is an executable, stops the search with
//! an error, as it stops `ld.so`.
//!
//! `$ORIGIN`, `$LIB` and `$PLATFORM` (also written `${ORIGIN}` and so on) are expanded in search
//! paths and in needed names. On Debian, glibc expands `$LIB` to `lib/x86_64-linux-gnu` and
//! `$PLATFORM` to `x86_64` (measured with `LD_DEBUG=libs` on the build host).
//!
//! # Host paths and target paths
//! Every file has a `target`, the absolute path at which the loader inside the environment will
//! open it, and a `host`, the real file (all symlinks resolved) that Warren places there. They
//! differ in three ways:
//! - `host` carries the `fs_root` prefix (tests resolve inside a fake filesystem);
//! - symlinked directories: a library found as `/lib/x86_64-linux-gnu/libc.so.6` keeps that
//!   target although `/lib` is a symlink on merged-`/usr` hosts, because Warren creates real
//!   directories inside the environment;
//! - `$ORIGIN`: inside the environment it is the directory of the loading object's *target*.
//!   For the program that is the path the user gave, not where a symlink leads, so for
//!   `/usr/bin/app -> /opt/app/bin/app` with `RUNPATH=$ORIGIN/../lib` the library's target is
//!   `/usr/lib/libx.so` while its host file is `/opt/app/lib/libx.so`, the file the host's loader
//!   would load when started through the symlink.
//!
//! Symlinks inside `fs_root` are resolved relative to `fs_root` (an absolute link target never
//! escapes to the real root).
//!
//! `BinaryRoot::library_path` lists the directories that the host's loader reaches only through
//! `ld.so.cache` (step 6) and that are not system directories, such as `/usr/local/lib`. A minimal
//! root has no cache, so they must go into `LD_LIBRARY_PATH`. Each needed name is placed at
//! exactly one path, so searching these directories earlier than the host loader would does not
//! change which file any name resolves to.
//!
//! # Known limits
//! - Libraries opened with `dlopen` are not found: NSS modules (`libnss_*`, so user and host name
//!   lookups through `/etc/nsswitch.conf`), `gconv` character-set modules, and plug-ins. A program
//!   that needs them fails inside the environment where it would work on the host.
//! - The `glibc-hwcaps/x86-64-v*` and legacy hwcap subdirectories (`tls`, `x86_64`) of search
//!   directories are not searched; the baseline copy in the directory itself is used, which runs
//!   on every CPU. A library that exists only in such a subdirectory is reported missing.
//! - Relative and empty search path entries mean the process's working directory to `ld.so`;
//!   they are skipped, and a relative path in `DT_NEEDED` is an error.
//! - The cache stand-in searches every file in the configured directories, while `ldconfig`
//!   caches only files named like libraries. When one name exists in several configured
//!   directories, the first directory listed wins.
//! - Only glibc's loader is modelled; a program whose interpreter is another libc's (musl) is
//!   resolved with glibc's rules. The restrictions of secure (setuid) mode are not modelled:
//!   Warren sets `no_new_privs`, so programs never run in that mode.
//! - `ld.so.conf` `include` patterns support `*` and `?` in the last path component only.
#![forbid(unsafe_code)]

mod added;

pub use added::{AddError, AddedPath};

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use goblin::container::Ctx;
use goblin::elf::Elf;
use goblin::elf::dynamic::{
    DF_1_NODEFLIB, DF_1_PIE, DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, Dynamic,
};
use goblin::elf::header::{self, ET_CORE, ET_DYN, ET_EXEC, ET_REL};
use goblin::elf::program_header::{PT_INTERP, ProgramHeader};

/// One file to place in the minimal root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RootEntry {
    /// The real file on the host, all symlinks resolved; includes the `fs_root` prefix.
    pub host: PathBuf,
    /// The absolute path inside the environment at which the loader (or the user) opens it.
    pub target: PathBuf,
}

/// Everything a program needs in an otherwise empty root.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BinaryRoot {
    /// The program itself; its target is the path as given (normalised, symlinks kept).
    pub binary: RootEntry,
    /// The ELF interpreter named by `PT_INTERP`; `None` for a static program.
    pub interpreter: Option<RootEntry>,
    /// The shared libraries the loader will open, in the order it opens them.
    pub libraries: Vec<RootEntry>,
    /// Directories that must be put in `LD_LIBRARY_PATH`, because the loader would find their
    /// libraries only through `ld.so.cache`, which the minimal root does not have.
    pub library_path: Vec<PathBuf>,
    /// The program has no interpreter, so no library is loaded for it.
    pub static_binary: bool,
    /// Paths added as they are (`warren run --with`, an interpreter's library directory): files
    /// or directory trees, placed read-only at the same path. Empty from [`resolve`].
    pub added: Vec<AddedPath>,
}

impl BinaryRoot {
    /// Every file to place: the program, then the interpreter, then the libraries.
    pub fn entries(&self) -> impl Iterator<Item = &RootEntry> {
        std::iter::once(&self.binary)
            .chain(self.interpreter.as_ref())
            .chain(self.libraries.iter())
    }
}

/// Why the files a program needs could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Warren was built for an architecture whose loader this module does not model.
    #[error("resolving what a program needs is not supported on {arch}")]
    UnsupportedHost {
        /// The architecture Warren was built for.
        arch: &'static str,
    },
    /// The filesystem root to resolve in cannot be used.
    #[error("cannot use {path} as the filesystem root")]
    Root {
        /// The root as given.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// A relative program path was given while resolving in a root other than `/`.
    #[error("program path {path} is relative, which has a meaning only in the real root")]
    RelativePath {
        /// The path as given.
        path: PathBuf,
    },
    /// The current directory, needed to make a relative program path absolute, is unknown.
    #[error("cannot find the current directory to make {path} absolute")]
    CurrentDir {
        /// The path as given.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The program does not exist.
    #[error("{path} does not exist")]
    NotFound {
        /// The program's absolute path.
        path: PathBuf,
    },
    /// The program or its interpreter is a directory, device or other non-regular file.
    #[error("{path} is a {kind}, not a regular file")]
    NotRegularFile {
        /// The file's absolute path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The program has no execute permission bit set at all.
    #[error("{path} is not executable by anyone (mode {mode:o})")]
    NotExecutable {
        /// The program's absolute path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The program or its interpreter does not start with the ELF magic number.
    #[error("{path} is not an ELF file")]
    NotElf {
        /// The file's absolute path.
        path: PathBuf,
    },
    /// The program or its interpreter was built for another class, byte order or machine.
    #[error("{path} is {found}, but this host runs {expected}")]
    WrongArchitecture {
        /// The file's absolute path.
        path: PathBuf,
        /// The file's class, byte order and machine.
        found: String,
        /// The host's.
        expected: &'static str,
    },
    /// The program is an ELF file that cannot be started, such as a shared library.
    #[error("{path} is an ELF {kind}, not a program")]
    NotAProgram {
        /// The program's absolute path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// An ELF file's headers or dynamic section are malformed.
    #[error("cannot parse the ELF headers of {path}")]
    Parse {
        /// The file's absolute path (a target path for libraries).
        path: PathBuf,
        /// What the parser rejected.
        #[source]
        source: goblin::error::Error,
    },
    /// The program's `PT_INTERP` is a relative path, which the kernel would resolve against the
    /// working directory.
    #[error("program interpreter {interpreter} of {binary} is not an absolute path")]
    RelativeInterpreter {
        /// The `PT_INTERP` string.
        interpreter: PathBuf,
        /// The program.
        binary: PathBuf,
    },
    /// The program's interpreter does not exist.
    #[error("program interpreter {interpreter} of {binary} does not exist")]
    MissingInterpreter {
        /// The `PT_INTERP` path.
        interpreter: PathBuf,
        /// The program.
        binary: PathBuf,
    },
    /// A `DT_NEEDED` library was found in none of the directories the loader searches.
    #[error("{library} needed by {needed_by} was not found{}", searched_suffix(.searched))]
    MissingLibrary {
        /// The `DT_NEEDED` name, `$` tokens expanded.
        library: String,
        /// The target path of the object that needs it.
        needed_by: PathBuf,
        /// The directories searched, as target paths, in order.
        searched: Vec<PathBuf>,
    },
    /// A `DT_NEEDED` name is a relative path, which the loader would open relative to the
    /// working directory.
    #[error("{library} needed by {needed_by} is a relative path")]
    RelativeLibraryPath {
        /// The `DT_NEEDED` name, `$` tokens expanded.
        library: String,
        /// The target path of the object that needs it.
        needed_by: PathBuf,
    },
    /// The first file the loader would find for a library cannot be loaded, which stops the
    /// loader rather than making it search on.
    #[error("{path}, found for {library} needed by {needed_by}, cannot be loaded: {reason}")]
    InvalidLibrary {
        /// The target path of the file found.
        path: PathBuf,
        /// The `DT_NEEDED` name.
        library: String,
        /// The target path of the object that needs it.
        needed_by: PathBuf,
        /// Why the loader rejects it.
        reason: &'static str,
    },
    /// Reading a file failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file (a host path).
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
}

/// The end of a [`ElfError::MissingLibrary`] message: where the library was looked for.
fn searched_suffix(searched: &[PathBuf]) -> String {
    if searched.is_empty() {
        return String::new();
    }
    let dirs: Vec<String> = searched.iter().map(|d| d.display().to_string()).collect();
    format!(" in {}", dirs.join(", "))
}

/// What the host's loader accepts and where it looks, for the architecture Warren was built for.
#[derive(Debug)]
struct HostAbi {
    /// `EI_CLASS` of loadable files.
    class: u8,
    /// `EI_DATA` (byte order) of loadable files.
    data: u8,
    /// `e_machine` of loadable files.
    machine: u16,
    /// How error messages name the host's kind of ELF file.
    description: &'static str,
    /// The expansion of `$LIB`.
    dst_lib: &'static str,
    /// The expansion of `$PLATFORM` (`AT_PLATFORM`).
    dst_platform: &'static str,
    /// The loader's built-in search path, as `ld.so --help` prints it under "system search
    /// path". `/lib64` and `/usr/lib64` are deliberately absent: Debian's loader does not search
    /// them, so a library only there would not load inside the environment either.
    system_dirs: &'static [&'static str],
}

/// Debian's x86_64 glibc.
const X86_64: HostAbi = HostAbi {
    class: header::ELFCLASS64,
    data: header::ELFDATA2LSB,
    machine: header::EM_X86_64,
    description: "ELF64 little-endian X86_64",
    dst_lib: "lib/x86_64-linux-gnu",
    dst_platform: "x86_64",
    system_dirs: &[
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib",
        "/usr/lib",
    ],
};

/// Debian's arm64 glibc (by analogy with x86_64; not measured).
const AARCH64: HostAbi = HostAbi {
    class: header::ELFCLASS64,
    data: header::ELFDATA2LSB,
    machine: header::EM_AARCH64,
    description: "ELF64 little-endian AARCH64",
    dst_lib: "lib/aarch64-linux-gnu",
    dst_platform: "aarch64",
    system_dirs: &[
        "/lib/aarch64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib",
        "/usr/lib",
    ],
};

/// The loader model for the architecture this was compiled for.
fn host_abi() -> Option<&'static HostAbi> {
    if cfg!(target_arch = "x86_64") {
        Some(&X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(&AARCH64)
    } else {
        None
    }
}

/// Where the `ld.so.conf` that stands in for `ld.so.cache` lives, inside `fs_root`.
const LD_SO_CONF: &str = "/etc/ld.so.conf";
/// How deep `include` may nest in `ld.so.conf`; a guard against include cycles.
const MAX_INCLUDE_DEPTH: usize = 16;
/// How many symlinks one path may cross, as the kernel's limit.
const MAX_SYMLINKS: usize = 40;
/// Bytes read to classify a candidate library before reading all of it.
const IDENT_LEN: usize = 64;

/// Resolves the program at `binary` and everything the loader will load for it.
///
/// `fs_root` is `/` normally; tests point it at a directory holding a fake filesystem. All paths
/// in the result are absolute paths as seen from `fs_root`, except `host`, which includes
/// `fs_root`. A relative `binary` is taken relative to the current directory, which is only
/// allowed when `fs_root` is `/`.
pub fn resolve(binary: &Path, fs_root: &Path) -> Result<BinaryRoot, ElfError> {
    let abi = host_abi().ok_or(ElfError::UnsupportedHost {
        arch: std::env::consts::ARCH,
    })?;
    let root = fs::canonicalize(fs_root).map_err(|source| ElfError::Root {
        path: fs_root.to_path_buf(),
        source,
    })?;
    let given = if binary.is_absolute() {
        binary.to_path_buf()
    } else if root == Path::new("/") {
        let cwd = std::env::current_dir().map_err(|source| ElfError::CurrentDir {
            path: binary.to_path_buf(),
            source,
        })?;
        cwd.join(binary)
    } else {
        return Err(ElfError::RelativePath {
            path: binary.to_path_buf(),
        });
    };
    let resolver = Resolver {
        cache_dirs: ld_so_conf_dirs(&root),
        root,
        abi,
    };
    resolver.run(&given)
}

/// The dynamic-linking facts of one ELF file.
#[derive(Debug, Clone, Default)]
struct DynInfo {
    e_type: u16,
    entry: u64,
    interp: Option<Vec<u8>>,
    needed: Vec<Vec<u8>>,
    /// `DT_RPATH`, already dropped when `DT_RUNPATH` is present (the loader ignores it then).
    rpath: Option<Vec<u8>>,
    runpath: Option<Vec<u8>>,
    soname: Option<Vec<u8>>,
    flags_1: u64,
}

/// An object the loader has loaded, with what its dependents' search needs from it.
#[derive(Debug)]
struct Object {
    target: PathBuf,
    /// `$ORIGIN` inside the environment.
    origin_target: PathBuf,
    /// `$ORIGIN` for finding the host file: a path in `fs_root`, symlinks possibly unresolved.
    origin_host: PathBuf,
    info: DynInfo,
    /// The object whose `DT_NEEDED` caused this one to load; `None` for the program.
    loader: Option<usize>,
}

/// The search step that found a library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Path,
    Rpath,
    Runpath,
    Cache,
    System,
}

/// One directory to search: where the loader inside the environment looks, and where the host
/// file for it is.
#[derive(Debug, Clone)]
struct SearchDir {
    target: PathBuf,
    /// A path inside `fs_root`, possibly through symlinks and `..`.
    host: PathBuf,
}

/// A library file that the loader accepts.
#[derive(Debug)]
struct Found {
    object: Object,
    host: PathBuf,
    step: Step,
    dir: PathBuf,
}

/// The loader's view of one filesystem root.
struct Resolver {
    root: PathBuf,
    abi: &'static HostAbi,
    /// Directories from `ld.so.conf`, standing in for `ld.so.cache`.
    cache_dirs: Vec<PathBuf>,
}

impl Resolver {
    fn run(&self, given: &Path) -> Result<BinaryRoot, ElfError> {
        let target = normalize(given);
        let host_in_root = resolve_in_root(&self.root, given).map_err(|source| {
            if is_not_found(&source) {
                ElfError::NotFound {
                    path: target.clone(),
                }
            } else {
                ElfError::Io {
                    action: "resolve",
                    path: self.host_path(given),
                    source,
                }
            }
        })?;
        let host = self.host_path(&host_in_root);
        let meta = fs::metadata(&host).map_err(|source| ElfError::Io {
            action: "stat",
            path: host.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(ElfError::NotRegularFile {
                path: target,
                kind: file_kind(&meta),
            });
        }
        let mode = meta.permissions().mode();
        if mode & 0o111 == 0 {
            return Err(ElfError::NotExecutable {
                path: target,
                mode: mode & 0o7777,
            });
        }
        let info = self.read_startable(&host, &target)?;
        match info.e_type {
            ET_EXEC => {}
            ET_DYN if info.interp.is_some() || info.entry != 0 => {}
            other => {
                return Err(ElfError::NotAProgram {
                    path: target,
                    kind: elf_type_name(other),
                });
            }
        }

        let binary = RootEntry {
            host,
            target: target.clone(),
        };
        let Some(interp) = info.interp.clone() else {
            return Ok(BinaryRoot {
                binary,
                interpreter: None,
                libraries: Vec::new(),
                library_path: Vec::new(),
                static_binary: true,
                added: Vec::new(),
            });
        };

        let mut satisfied: HashSet<Vec<u8>> = HashSet::new();
        let interpreter = self.interpreter(&interp, &target, &mut satisfied)?;
        if let Some(soname) = &info.soname {
            satisfied.insert(soname.clone());
        }
        let mut objects = vec![Object {
            origin_target: parent(&target),
            origin_host: parent(&host_in_root),
            target,
            info,
            loader: None,
        }];
        let mut libraries = Vec::new();
        let mut library_path: Vec<PathBuf> = Vec::new();
        let mut next = 0;
        while next < objects.len() {
            let needed = objects[next].info.needed.clone();
            for name in needed {
                let expanded = expand_dst(&name, &objects[next].origin_target, self.abi);
                if satisfied.contains(&expanded) {
                    continue;
                }
                let found = self.find(&name, next, &objects)?;
                satisfied.insert(expanded);
                satisfied.insert(found.object.target.as_os_str().as_bytes().to_vec());
                if let Some(soname) = &found.object.info.soname {
                    satisfied.insert(soname.clone());
                }
                let system = self
                    .abi
                    .system_dirs
                    .iter()
                    .any(|d| Path::new(d) == found.dir);
                if found.step == Step::Cache && !system && !library_path.contains(&found.dir) {
                    library_path.push(found.dir.clone());
                }
                libraries.push(RootEntry {
                    host: found.host,
                    target: found.object.target.clone(),
                });
                objects.push(Object {
                    loader: Some(next),
                    ..found.object
                });
            }
            next += 1;
        }
        Ok(BinaryRoot {
            binary,
            interpreter: Some(interpreter),
            libraries,
            library_path,
            static_binary: false,
            added: Vec::new(),
        })
    }

    /// Checks the program's interpreter and records the names it answers to.
    fn interpreter(
        &self,
        interp: &[u8],
        binary: &Path,
        satisfied: &mut HashSet<Vec<u8>>,
    ) -> Result<RootEntry, ElfError> {
        let literal = PathBuf::from(OsStr::from_bytes(interp));
        if !literal.is_absolute() {
            return Err(ElfError::RelativeInterpreter {
                interpreter: literal,
                binary: binary.to_path_buf(),
            });
        }
        let in_root = resolve_in_root(&self.root, &literal).map_err(|source| {
            if is_not_found(&source) {
                ElfError::MissingInterpreter {
                    interpreter: literal.clone(),
                    binary: binary.to_path_buf(),
                }
            } else {
                ElfError::Io {
                    action: "resolve",
                    path: self.host_path(&literal),
                    source,
                }
            }
        })?;
        let host = self.host_path(&in_root);
        let meta = fs::metadata(&host).map_err(|source| ElfError::Io {
            action: "stat",
            path: host.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(ElfError::NotRegularFile {
                path: literal,
                kind: file_kind(&meta),
            });
        }
        let info = self.read_startable(&host, &literal)?;
        satisfied.insert(interp.to_vec());
        if let Some(soname) = info.soname {
            satisfied.insert(soname);
        }
        Ok(RootEntry {
            host,
            target: literal,
        })
    }

    /// Reads a program or interpreter, which must be an ELF file for this host.
    fn read_startable(&self, host: &Path, shown: &Path) -> Result<DynInfo, ElfError> {
        let bytes = fs::read(host).map_err(|source| ElfError::Io {
            action: "read",
            path: host.to_path_buf(),
            source,
        })?;
        let ident = Ident::read(&bytes).ok_or_else(|| ElfError::NotElf {
            path: shown.to_path_buf(),
        })?;
        if !ident.matches(self.abi) {
            return Err(ElfError::WrongArchitecture {
                path: shown.to_path_buf(),
                found: ident.describe(),
                expected: self.abi.description,
            });
        }
        parse_dynamic(&bytes).map_err(|source| ElfError::Parse {
            path: shown.to_path_buf(),
            source,
        })
    }

    /// Finds the file the loader opens for `name`, needed by `objects[loader]`.
    fn find(&self, name: &[u8], loader: usize, objects: &[Object]) -> Result<Found, ElfError> {
        let requester = &objects[loader];
        let expanded = expand_dst(name, &requester.origin_target, self.abi);
        let library = String::from_utf8_lossy(&expanded).into_owned();
        let needed_by = requester.target.clone();
        if expanded.contains(&b'/') {
            if expanded.first() != Some(&b'/') {
                return Err(ElfError::RelativeLibraryPath { library, needed_by });
            }
            let target = normalize(Path::new(OsStr::from_bytes(&expanded)));
            let host = expand_dst(name, &requester.origin_host, self.abi);
            let host = PathBuf::from(OsString::from_vec(host));
            let dir = parent(&target);
            return match self.probe(target, &host, &library, &needed_by)? {
                Some((object, host)) => Ok(Found {
                    object,
                    host,
                    step: Step::Path,
                    dir,
                }),
                None => Err(ElfError::MissingLibrary {
                    library,
                    needed_by,
                    searched: Vec::new(),
                }),
            };
        }

        // Without a `/`, the expansion cannot contain $ORIGIN, so it is the same on both sides.
        let file = OsStr::from_bytes(&expanded);
        let mut plan: Vec<(Step, SearchDir)> = Vec::new();
        if requester.info.runpath.is_none() {
            let mut current = Some(loader);
            while let Some(index) = current {
                let object = &objects[index];
                if let Some(rpath) = &object.info.rpath {
                    let dirs = self.search_path(rpath, object);
                    plan.extend(dirs.into_iter().map(|d| (Step::Rpath, d)));
                }
                current = object.loader;
            }
        }
        if let Some(runpath) = &requester.info.runpath {
            let dirs = self.search_path(runpath, requester);
            plan.extend(dirs.into_iter().map(|d| (Step::Runpath, d)));
        }
        if requester.info.flags_1 & DF_1_NODEFLIB == 0 {
            for dir in &self.cache_dirs {
                plan.push((Step::Cache, SearchDir::plain(dir)));
            }
            for dir in self.abi.system_dirs {
                plan.push((Step::System, SearchDir::plain(Path::new(dir))));
            }
        }

        let mut searched: Vec<PathBuf> = Vec::new();
        for (step, dir) in plan {
            if !searched.contains(&dir.target) {
                searched.push(dir.target.clone());
            }
            let target = dir.target.join(file);
            if let Some((object, host)) =
                self.probe(target, &dir.host.join(file), &library, &needed_by)?
            {
                return Ok(Found {
                    object,
                    host,
                    step,
                    dir: dir.target,
                });
            }
        }
        Err(ElfError::MissingLibrary {
            library,
            needed_by,
            searched,
        })
    }

    /// Splits and expands a `DT_RPATH` or `DT_RUNPATH` of `object`.
    fn search_path(&self, list: &[u8], object: &Object) -> Vec<SearchDir> {
        list.split(|&b| b == b':')
            .filter(|entry| !entry.is_empty())
            .filter_map(|entry| {
                let target = expand_dst(entry, &object.origin_target, self.abi);
                if target.first() != Some(&b'/') {
                    return None;
                }
                let host = expand_dst(entry, &object.origin_host, self.abi);
                Some(SearchDir {
                    target: normalize(Path::new(OsStr::from_bytes(&target))),
                    host: PathBuf::from(OsString::from_vec(host)),
                })
            })
            .collect()
    }

    /// Decides whether the loader would load the file at `host_in_root` (a path inside
    /// `fs_root`) for `library`: `None` means it passes over it and searches on.
    fn probe(
        &self,
        target: PathBuf,
        host_in_root: &Path,
        library: &str,
        needed_by: &Path,
    ) -> Result<Option<(Object, PathBuf)>, ElfError> {
        let Ok(resolved) = resolve_in_root(&self.root, host_in_root) else {
            return Ok(None);
        };
        let host = self.host_path(&resolved);
        match fs::metadata(&host) {
            Ok(meta) if meta.is_file() => {}
            _ => return Ok(None),
        }
        let invalid = |reason| ElfError::InvalidLibrary {
            path: target.clone(),
            library: library.to_owned(),
            needed_by: needed_by.to_path_buf(),
            reason,
        };
        let head = read_head(&host).map_err(|source| ElfError::Io {
            action: "read",
            path: host.clone(),
            source,
        })?;
        let ident = Ident::read(&head).ok_or_else(|| invalid("it is not an ELF file"))?;
        if ident.class != self.abi.class {
            return Ok(None);
        }
        if ident.data != self.abi.data {
            return Err(invalid("its byte order is not the host's"));
        }
        if ident.machine != self.abi.machine {
            return Ok(None);
        }
        if ident.e_type != ET_DYN {
            return Err(invalid("it is not a shared object"));
        }
        let bytes = fs::read(&host).map_err(|source| ElfError::Io {
            action: "read",
            path: host.clone(),
            source,
        })?;
        let info = parse_dynamic(&bytes).map_err(|source| ElfError::Parse {
            path: target.clone(),
            source,
        })?;
        if info.flags_1 & DF_1_PIE != 0 {
            return Err(invalid("it is a position-independent executable"));
        }
        let object = Object {
            origin_target: parent(&target),
            origin_host: parent(host_in_root),
            target,
            info,
            loader: None,
        };
        Ok(Some((object, host)))
    }

    /// The host path of a path inside `fs_root`.
    fn host_path(&self, in_root: &Path) -> PathBuf {
        host_path(&self.root, in_root)
    }
}

impl SearchDir {
    /// A directory named without `$ORIGIN`: the same path on both sides.
    fn plain(dir: &Path) -> Self {
        SearchDir {
            target: normalize(dir),
            host: dir.to_path_buf(),
        }
    }
}

/// The identifying fields at the start of an ELF file.
#[derive(Debug, Clone, Copy)]
struct Ident {
    class: u8,
    data: u8,
    e_type: u16,
    machine: u16,
}

impl Ident {
    /// `None` if `bytes` does not start with an ELF header's first 20 bytes.
    fn read(bytes: &[u8]) -> Option<Ident> {
        if bytes.len() < 20 || bytes[..4] != header::ELFMAG[..] {
            return None;
        }
        let data = bytes[header::EI_DATA];
        let half = |at: usize| {
            let pair = [bytes[at], bytes[at + 1]];
            if data == header::ELFDATA2MSB {
                u16::from_be_bytes(pair)
            } else {
                u16::from_le_bytes(pair)
            }
        };
        Some(Ident {
            class: bytes[header::EI_CLASS],
            data,
            e_type: half(16),
            machine: half(18),
        })
    }

    fn matches(&self, abi: &HostAbi) -> bool {
        self.class == abi.class && self.data == abi.data && self.machine == abi.machine
    }

    fn describe(&self) -> String {
        let class = match self.class {
            header::ELFCLASS32 => "ELF32",
            header::ELFCLASS64 => "ELF64",
            _ => "ELF of unknown class",
        };
        let data = match self.data {
            header::ELFDATA2LSB => "little-endian",
            header::ELFDATA2MSB => "big-endian",
            _ => "unknown-endian",
        };
        format!("{class} {data} {}", header::machine_to_str(self.machine))
    }
}

/// What an ELF type is called in messages.
fn elf_type_name(e_type: u16) -> &'static str {
    match e_type {
        ET_DYN => "shared library",
        ET_REL => "relocatable object",
        ET_CORE => "core dump",
        ET_EXEC => "executable",
        _ => "file of unknown type",
    }
}

/// What a non-regular file is called in messages.
fn file_kind(meta: &fs::Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        "directory"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_fifo() {
        "fifo"
    } else if kind.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Reads up to [`IDENT_LEN`] bytes from the start of a file.
fn read_head(path: &Path) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(IDENT_LEN);
    File::open(path)?
        .take(IDENT_LEN as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Reads what the loader reads: the ELF header, the program headers and the dynamic section.
/// Section headers and symbols, which the loader never looks at, are not parsed.
fn parse_dynamic(bytes: &[u8]) -> Result<DynInfo, goblin::error::Error> {
    let malformed = |what: &str| goblin::error::Error::Malformed(what.to_owned());
    let elf_header = Elf::parse_header(bytes)?;
    let ctx = Ctx::new(elf_header.container()?, elf_header.endianness()?);
    let phdrs = ProgramHeader::parse(
        bytes,
        usize::try_from(elf_header.e_phoff).map_err(|_| malformed("program header offset"))?,
        usize::from(elf_header.e_phnum),
        ctx,
    )?;
    let mut info = DynInfo {
        e_type: elf_header.e_type,
        entry: elf_header.e_entry,
        ..DynInfo::default()
    };
    if let Some(ph) = phdrs.iter().find(|ph| ph.p_type == PT_INTERP) {
        let text = file_range(bytes, ph.p_offset, ph.p_filesz)
            .ok_or_else(|| malformed("PT_INTERP lies outside the file"))?;
        info.interp = Some(until_nul(text).to_vec());
    }
    let Some(dynamic) = Dynamic::parse(bytes, &phdrs, ctx)? else {
        return Ok(info);
    };
    let strtab = file_range(bytes, dynamic.info.strtab as u64, dynamic.info.strsz as u64)
        .ok_or_else(|| malformed("dynamic string table lies outside the file"))?;
    let string = |offset: u64| -> Result<Vec<u8>, goblin::error::Error> {
        let start =
            usize::try_from(offset).map_err(|_| malformed("dynamic string offset too large"))?;
        strtab
            .get(start..)
            .map(|s| until_nul(s).to_vec())
            .ok_or_else(|| malformed("dynamic string offset outside the string table"))
    };
    for entry in &dynamic.dyns {
        // As the loader does, the last DT_RPATH, DT_RUNPATH and DT_SONAME entry wins.
        match entry.d_tag {
            DT_NEEDED => info.needed.push(string(entry.d_val)?),
            DT_RPATH => info.rpath = Some(string(entry.d_val)?),
            DT_RUNPATH => info.runpath = Some(string(entry.d_val)?),
            DT_SONAME => info.soname = Some(string(entry.d_val)?),
            _ => {}
        }
    }
    if info.runpath.is_some() {
        info.rpath = None;
    }
    info.flags_1 = dynamic.info.flags_1;
    Ok(info)
}

/// `len` bytes of `bytes` from `offset`, if they are all there.
fn file_range(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

/// The bytes before the first NUL.
fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// Expands the loader's dynamic string tokens in `text`, as glibc does: `$NAME` or `${NAME}`,
/// where an unbraced name must not be followed by a letter, digit or `_`. Unknown tokens are
/// kept as written.
fn expand_dst(text: &[u8], origin: &Path, abi: &HostAbi) -> Vec<u8> {
    let tokens: [(&[u8], &[u8]); 3] = [
        (b"ORIGIN", origin.as_os_str().as_bytes()),
        (b"LIB", abi.dst_lib.as_bytes()),
        (b"PLATFORM", abi.dst_platform.as_bytes()),
    ];
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    'scan: while i < text.len() {
        if text[i] == b'$' {
            let rest = &text[i + 1..];
            for (name, value) in tokens {
                if let Some(len) = dst_len(rest, name) {
                    out.extend_from_slice(value);
                    i += 1 + len;
                    continue 'scan;
                }
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// The length of token `name` at the start of `rest` (the text after a `$`), if it is there.
fn dst_len(rest: &[u8], name: &[u8]) -> Option<usize> {
    if let Some(braced) = rest.strip_prefix(b"{") {
        let after = braced.strip_prefix(name)?;
        return after.starts_with(b"}").then_some(name.len() + 2);
    }
    let after = rest.strip_prefix(name)?;
    match after.first() {
        Some(&c) if c.is_ascii_alphanumeric() || c == b'_' => None,
        _ => Some(name.len()),
    }
}

/// Makes `path` absolute and removes `.`, `..` and repeated slashes without looking at the
/// filesystem: inside the environment every directory is real, so `..` is lexical there.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The directory of `path`, or `/`.
fn parent(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// The host path of `in_root`, an absolute path inside `root`.
fn host_path(root: &Path, in_root: &Path) -> PathBuf {
    root.join(in_root.strip_prefix("/").unwrap_or(in_root))
}

/// Whether an error from [`resolve_in_root`] means the path does not exist.
fn is_not_found(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// One step still to walk in [`resolve_in_root`].
enum WalkStep {
    Up,
    Into(OsString),
}

/// Resolves every symlink in `path` as if `root` were `/`, and returns the result as an
/// absolute path inside `root`. An absolute link target restarts at `root`, and `..` never
/// climbs above it, so nothing outside `root` is reached.
fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    fn push_components(pending: &mut Vec<WalkStep>, path: &Path) {
        for component in path.components().rev() {
            match component {
                Component::Normal(name) => pending.push(WalkStep::Into(name.to_os_string())),
                Component::ParentDir => pending.push(WalkStep::Up),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
    }
    let mut resolved = PathBuf::from("/");
    let mut pending = Vec::new();
    push_components(&mut pending, path);
    let mut links = 0;
    while let Some(step) = pending.pop() {
        let name = match step {
            WalkStep::Up => {
                resolved.pop();
                continue;
            }
            WalkStep::Into(name) => name,
        };
        let next = resolved.join(&name);
        let on_host = host_path(root, &next);
        let meta = fs::symlink_metadata(&on_host)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::other("too many levels of symbolic links"));
            }
            let link = fs::read_link(&on_host)?;
            if link.is_absolute() {
                resolved = PathBuf::from("/");
            }
            push_components(&mut pending, &link);
        } else if !pending.is_empty() && !meta.is_dir() {
            return Err(io::ErrorKind::NotADirectory.into());
        } else {
            resolved = next;
        }
    }
    Ok(resolved)
}

/// One meaningful line of an `ld.so.conf` file.
#[derive(Debug, PartialEq, Eq)]
enum ConfLine {
    /// `include PATTERN...`: more configuration files.
    Include(Vec<PathBuf>),
    /// A directory whose libraries go into the cache.
    Dir(PathBuf),
}

/// Parses `ld.so.conf` text as `ldconfig` does: `#` starts a comment, `include` takes
/// whitespace-separated glob patterns, `hwcap` lines are ignored, and any other line is a
/// directory, with an old-style `=TYPE` suffix dropped. Relative directories are skipped.
fn parse_conf(text: &[u8]) -> Vec<ConfLine> {
    let mut lines = Vec::new();
    for raw in text.split(|&b| b == b'\n') {
        let line = raw
            .split(|&b| b == b'#')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if line.is_empty() {
            continue;
        }
        let keyword = |word: &[u8]| {
            line.strip_prefix(word)
                .filter(|rest| rest.first().is_some_and(|&b| b == b' ' || b == b'\t'))
        };
        if let Some(rest) = keyword(b"include") {
            let patterns = rest
                .split(|b| b.is_ascii_whitespace())
                .filter(|p| !p.is_empty())
                .map(|p| PathBuf::from(OsStr::from_bytes(p)))
                .collect();
            lines.push(ConfLine::Include(patterns));
        } else if keyword(b"hwcap").is_some() {
            continue;
        } else {
            let dir = line
                .split(|&b| b == b'=')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if dir.first() == Some(&b'/') {
                lines.push(ConfLine::Dir(normalize(Path::new(OsStr::from_bytes(dir)))));
            }
        }
    }
    lines
}

/// The directories `ldconfig` would cache, from `/etc/ld.so.conf` inside `root`, in order,
/// without duplicates. Unreadable files are skipped, as `ldconfig` skips them.
fn ld_so_conf_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    read_conf(root, Path::new(LD_SO_CONF), 0, &mut dirs);
    dirs
}

/// Adds the directories of configuration file `file` (a path inside `root`) to `dirs`.
fn read_conf(root: &Path, file: &Path, depth: usize, dirs: &mut Vec<PathBuf>) {
    if depth > MAX_INCLUDE_DEPTH {
        return;
    }
    let Ok(resolved) = resolve_in_root(root, file) else {
        return;
    };
    let Ok(text) = fs::read(host_path(root, &resolved)) else {
        return;
    };
    for line in parse_conf(&text) {
        match line {
            ConfLine::Dir(dir) => {
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
            ConfLine::Include(patterns) => {
                for pattern in patterns {
                    // A relative pattern is relative to the including file's directory.
                    let pattern = parent(file).join(pattern);
                    for included in glob(root, &pattern) {
                        read_conf(root, &included, depth + 1, dirs);
                    }
                }
            }
        }
    }
}

/// Expands a glob `pattern` (a path inside `root`) whose wildcards `*` and `?` may appear only
/// in the last component, into the matching paths, sorted. As with glob(3), a wildcard does not
/// match a leading `.` and a pattern without wildcards yields the path only if it exists.
fn glob(root: &Path, pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
        return Vec::new();
    };
    let name = name.as_bytes();
    let wild = |b: &u8| *b == b'*' || *b == b'?';
    if dir.as_os_str().as_bytes().iter().any(wild) {
        return Vec::new();
    }
    if !name.iter().any(wild) {
        let exists = resolve_in_root(root, pattern).is_ok();
        return if exists {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let Ok(resolved) = resolve_in_root(root, dir) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(host_path(root, &resolved)) else {
        return Vec::new();
    };
    let mut names: Vec<OsString> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .filter(|entry| {
            let entry = entry.as_bytes();
            (!entry.starts_with(b".") || name.starts_with(b".")) && wildcard_match(name, entry)
        })
        .collect();
    names.sort();
    names.into_iter().map(|entry| dir.join(entry)).collect()
}

/// Whether `text` matches `pattern`, where `*` matches any run of bytes and `?` any one byte.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it is currently assumed to match up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    const INTERP: &str = "/lib64/ld-linux-x86-64.so.2";
    const SYSTEM_DIRS: &str = "/lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu, /lib, /usr/lib";

    /// Says why a test that needs something from the host did not run.
    fn skip(why: &str) {
        eprintln!("skip: {why}");
    }

    /// What the host's own loader loads for `binary`, run as `ld.so --list` in a clean
    /// environment: the paths it opened, and the names it did not find.
    fn loader_list(interpreter: &Path, binary: &Path) -> (BTreeSet<PathBuf>, Vec<String>) {
        let out = Command::new(interpreter)
            .arg("--list")
            .arg(binary)
            .env_clear()
            .output()
            .expect("run the host's loader");
        let mut found = BTreeSet::new();
        let mut missing = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((name, rest)) = line.trim().split_once(" => ") else {
                continue;
            };
            if rest.starts_with("not found") {
                missing.push(name.to_owned());
            } else {
                let path = rest.rsplit_once(" (").map_or(rest, |(path, _)| path);
                found.insert(PathBuf::from(path));
            }
        }
        // A missing library is either listed as "not found" or stops the loader with an error.
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Some((_, rest)) = stderr.split_once("error while loading shared libraries: ") {
            missing.extend(rest.split_once(':').map(|(name, _)| name.to_owned()));
        }
        (found, missing)
    }

    fn targets(root: &BinaryRoot) -> BTreeSet<PathBuf> {
        root.libraries.iter().map(|e| e.target.clone()).collect()
    }

    fn file_names(root: &BinaryRoot) -> Vec<String> {
        let name = |e: &RootEntry| e.target.file_name().unwrap().to_string_lossy().into_owned();
        root.libraries.iter().map(name).collect()
    }

    /// Resolves `binary` in the real root and checks the result against the host's loader.
    fn assert_matches_loader(binary: &Path) -> BinaryRoot {
        let resolved = resolve(binary, Path::new("/"))
            .unwrap_or_else(|e| panic!("resolving {}: {e}", binary.display()));
        let interpreter = resolved.interpreter.as_ref().expect("a dynamic program");
        let (found, missing) = loader_list(&interpreter.target, binary);
        assert!(
            missing.is_empty(),
            "{}: loader misses {missing:?}",
            binary.display()
        );
        assert_eq!(
            targets(&resolved),
            found,
            "libraries of {}",
            binary.display()
        );
        for entry in resolved.entries() {
            assert!(entry.host.is_file(), "{entry:?}");
            assert_eq!(
                entry.host,
                fs::canonicalize(&entry.target).unwrap(),
                "{entry:?}"
            );
        }
        resolved
    }

    #[test]
    fn ls_resolves_as_the_host_loader_does() {
        let root = assert_matches_loader(Path::new("/bin/ls"));
        assert_eq!(root.binary.target, Path::new("/bin/ls"));
        assert_eq!(root.binary.host, fs::canonicalize("/bin/ls").unwrap());
        let interpreter = root.interpreter.clone().unwrap();
        assert_eq!(interpreter.target, Path::new(INTERP));
        assert_eq!(interpreter.host, fs::canonicalize(INTERP).unwrap());
        let names = file_names(&root);
        for name in ["libselinux.so.1", "libc.so.6", "libpcre2-8.so.0"] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {names:?}"
            );
        }
        // libc.so.6 needs ld-linux-x86-64.so.2, which the interpreter already is.
        assert!(
            !names.iter().any(|n| n.starts_with("ld-linux")),
            "{names:?}"
        );
        assert_eq!(
            names.len(),
            BTreeSet::from_iter(&names).len(),
            "duplicates: {names:?}"
        );
        assert!(root.library_path.is_empty());
        assert!(!root.static_binary);
        assert_eq!(root.entries().count(), 2 + root.libraries.len());
        let json = serde_json::to_value(&root).unwrap();
        assert_eq!(json["binary"]["target"], "/bin/ls");
        assert_eq!(json["interpreter"]["target"], INTERP);
        assert_eq!(json["static_binary"], false);
    }

    #[test]
    fn python_or_bash_resolves_as_the_host_loader_does() {
        let python = Path::new("/usr/bin/python3");
        let program = if python.exists() {
            python
        } else {
            Path::new("/bin/bash")
        };
        let root = assert_matches_loader(program);
        assert!(!root.libraries.is_empty());
        assert_eq!(root.binary.target, program);
    }

    #[test]
    fn programs_in_usr_bin_resolve_as_the_host_loader_does() {
        let mut names: Vec<PathBuf> = fs::read_dir("/usr/bin")
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        let mut compared = 0;
        for path in names {
            if compared == 60 {
                break;
            }
            match resolve(&path, Path::new("/")) {
                Ok(root) if root.static_binary => {}
                Ok(_) => {
                    assert_matches_loader(&path);
                    compared += 1;
                }
                Err(ElfError::MissingLibrary { library, .. }) => {
                    let (_, missing) = loader_list(Path::new(INTERP), &path);
                    assert!(missing.contains(&library), "{}: {library}", path.display());
                    compared += 1;
                }
                Err(
                    ElfError::NotElf { .. }
                    | ElfError::NotExecutable { .. }
                    | ElfError::NotRegularFile { .. },
                ) => {}
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
        assert_eq!(compared, 60, "too few dynamic programs in /usr/bin");
    }

    #[test]
    fn relative_binary_path_is_taken_from_the_current_directory() {
        let cwd = std::env::current_dir().unwrap();
        let mut relative = PathBuf::new();
        for _ in cwd.components().skip(1) {
            relative.push("..");
        }
        relative.push("bin/ls");
        let root = resolve(&relative, Path::new("/")).unwrap();
        assert_eq!(root.binary.target, Path::new("/bin/ls"));
    }

    #[test]
    fn resolving_in_the_real_root_agrees_with_canonicalize() {
        for path in [
            "/bin/ls",
            INTERP,
            "/usr/bin/../lib/x86_64-linux-gnu/libc.so.6",
            "/lib/x86_64-linux-gnu/../../bin/sh",
        ] {
            let expected = fs::canonicalize(path).unwrap();
            assert_eq!(
                resolve_in_root(Path::new("/"), Path::new(path)).unwrap(),
                expected
            );
        }
    }

    #[test]
    fn symlink_loops_are_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        assert!(resolve_in_root(dir.path(), Path::new("/a/x")).is_err());
    }

    /// A fake filesystem root in a temporary directory.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    /// The host files of `/bin/true`: the program, its interpreter, and its libraries.
    struct HostTrue {
        binary: PathBuf,
        interpreter: PathBuf,
        libraries: Vec<(String, PathBuf)>,
    }

    fn host_true() -> HostTrue {
        let root = resolve(Path::new("/bin/true"), Path::new("/")).unwrap();
        let libraries = root
            .libraries
            .iter()
            .map(|e| {
                (
                    e.target.file_name().unwrap().to_string_lossy().into_owned(),
                    e.host.clone(),
                )
            })
            .collect();
        HostTrue {
            binary: root.binary.host,
            interpreter: root.interpreter.unwrap().host,
            libraries,
        }
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        /// A merged-/usr root holding `/usr/bin/true`, the interpreter behind an absolute
        /// `/lib64` symlink, and the libraries of `/bin/true` behind a relative `/lib` symlink.
        fn with_true() -> Self {
            let fixture = Fixture::new();
            let host = host_true();
            fixture.copy(&host.binary, "/usr/bin/true", 0o755);
            fixture.copy(&host.interpreter, "/usr/lib64/ld-linux-x86-64.so.2", 0o755);
            fixture.link("/lib64", "/usr/lib64");
            fixture.link("/lib", "usr/lib");
            for (name, file) in &host.libraries {
                fixture.copy(file, &format!("/usr/lib/x86_64-linux-gnu/{name}"), 0o644);
            }
            fixture
        }

        fn root(&self) -> PathBuf {
            fs::canonicalize(self.dir.path()).unwrap()
        }

        fn host(&self, in_root: &str) -> PathBuf {
            host_path(&self.root(), Path::new(in_root))
        }

        fn copy(&self, from: &Path, to: &str, mode: u32) {
            let to = self.host(to);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(from, &to).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(mode)).unwrap();
        }

        fn write(&self, to: &str, text: &str, mode: u32) {
            let to = self.host(to);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::write(&to, text).unwrap();
            fs::set_permissions(&to, fs::Permissions::from_mode(mode)).unwrap();
        }

        fn link(&self, link: &str, target: &str) {
            let link = self.host(link);
            fs::create_dir_all(link.parent().unwrap()).unwrap();
            symlink(target, link).unwrap();
        }

        fn remove(&self, in_root: &str) {
            fs::remove_file(self.host(in_root)).unwrap();
        }

        fn resolve(&self, binary: &str) -> Result<BinaryRoot, ElfError> {
            resolve(Path::new(binary), self.dir.path())
        }
    }

    fn have_patchelf() -> bool {
        Command::new("patchelf")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn patchelf(file: &Path, args: &[&str]) {
        let status = Command::new("patchelf")
            .args(args)
            .arg(file)
            .status()
            .unwrap();
        assert!(status.success(), "patchelf {args:?} {}", file.display());
    }

    /// A 32-bit ELF file from the host, if it has one.
    fn host_elf32() -> Option<PathBuf> {
        [
            "/usr/libexec/valgrind",
            "/usr/lib/i386-linux-gnu",
            "/usr/lib32",
            "/usr/libx32",
        ]
        .iter()
        .filter_map(|dir| fs::read_dir(dir).ok())
        .flat_map(|entries| entries.filter_map(Result::ok).map(|e| e.path()))
        .find(|path| {
            path.is_file()
                && read_head(path)
                    .ok()
                    .and_then(|h| Ident::read(&h))
                    .is_some_and(|ident| ident.class == header::ELFCLASS32)
        })
    }

    #[test]
    fn fake_root_with_merged_usr_resolves_inside_the_root() {
        let fixture = Fixture::with_true();
        let root = fixture.resolve("/usr/bin/true").unwrap();
        assert_eq!(root.binary.target, Path::new("/usr/bin/true"));
        assert_eq!(root.binary.host, fixture.host("/usr/bin/true"));
        let interpreter = root.interpreter.unwrap();
        assert_eq!(interpreter.target, Path::new(INTERP));
        // /lib64 is an absolute symlink; it must be followed inside the fake root.
        assert_eq!(
            interpreter.host,
            fixture.host("/usr/lib64/ld-linux-x86-64.so.2")
        );
        let libc = RootEntry {
            host: fixture.host("/usr/lib/x86_64-linux-gnu/libc.so.6"),
            target: PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
        };
        assert_eq!(root.libraries, vec![libc]);
        assert!(root.library_path.is_empty());
        assert!(!root.static_binary);
    }

    #[test]
    fn missing_library_names_itself_its_requester_and_the_search() {
        let fixture = Fixture::with_true();
        fixture.remove("/usr/lib/x86_64-linux-gnu/libc.so.6");
        let err = fixture.resolve("/usr/bin/true").unwrap_err();
        let ElfError::MissingLibrary {
            library,
            needed_by,
            searched,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(library, "libc.so.6");
        assert_eq!(needed_by, Path::new("/usr/bin/true"));
        assert_eq!(searched.len(), 4);
        assert_eq!(
            err.to_string(),
            format!("libc.so.6 needed by /usr/bin/true was not found in {SYSTEM_DIRS}")
        );
    }

    #[test]
    fn missing_interpreter_is_reported() {
        let fixture = Fixture::with_true();
        fixture.remove("/usr/lib64/ld-linux-x86-64.so.2");
        match fixture.resolve("/usr/bin/true") {
            Err(ElfError::MissingInterpreter {
                interpreter,
                binary,
            }) => {
                assert_eq!(interpreter, Path::new(INTERP));
                assert_eq!(binary, Path::new("/usr/bin/true"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn files_that_are_not_programs_are_rejected() {
        let fixture = Fixture::with_true();
        fixture.write("/usr/bin/script", "#!/bin/sh\necho hi\n", 0o755);
        fixture.copy(&host_true().binary, "/usr/bin/noexec", 0o644);
        fixture.copy(
            Path::new("/lib/x86_64-linux-gnu/libz.so.1"),
            "/usr/bin/libz",
            0o755,
        );
        fs::create_dir_all(fixture.host("/usr/bin/dir")).unwrap();
        fs::set_permissions(
            fixture.host("/usr/bin/dir"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();

        match fixture.resolve("/usr/bin/script") {
            Err(ElfError::NotElf { path }) => assert_eq!(path, Path::new("/usr/bin/script")),
            other => panic!("{other:?}"),
        }
        match fixture.resolve("/usr/bin/noexec") {
            Err(ElfError::NotExecutable { path, mode }) => {
                assert_eq!(path, Path::new("/usr/bin/noexec"));
                assert_eq!(mode, 0o644);
            }
            other => panic!("{other:?}"),
        }
        match fixture.resolve("/usr/bin/libz") {
            Err(ElfError::NotAProgram { kind, .. }) => assert_eq!(kind, "shared library"),
            other => panic!("{other:?}"),
        }
        match fixture.resolve("/usr/bin/dir") {
            Err(ElfError::NotRegularFile { path, kind }) => {
                assert_eq!(path, Path::new("/usr/bin/dir"));
                assert_eq!(kind, "directory");
            }
            other => panic!("{other:?}"),
        }
        for absent in ["/usr/bin/absent", "/nowhere/true", "/usr/bin/true/x"] {
            match fixture.resolve(absent) {
                Err(ElfError::NotFound { path }) => assert_eq!(path, Path::new(absent)),
                other => panic!("{absent}: {other:?}"),
            }
        }
        assert!(matches!(
            fixture.resolve("usr/bin/true"),
            Err(ElfError::RelativePath { .. })
        ));
    }

    #[test]
    fn program_for_another_architecture_is_rejected() {
        let Some(elf32) = host_elf32() else {
            return skip("no 32-bit ELF file on this host");
        };
        let fixture = Fixture::with_true();
        fixture.copy(&elf32, "/usr/bin/prog32", 0o755);
        match fixture.resolve("/usr/bin/prog32") {
            Err(ElfError::WrongArchitecture { path, found, .. }) => {
                assert_eq!(path, Path::new("/usr/bin/prog32"));
                assert!(found.starts_with("ELF32"), "{found}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn library_of_another_class_is_passed_over() {
        let Some(elf32) = host_elf32() else {
            return skip("no 32-bit ELF file on this host");
        };
        let fixture = Fixture::with_true();
        fixture.write("/etc/ld.so.conf", "/usr/local/lib\n", 0o644);
        fixture.copy(&elf32, "/usr/local/lib/libc.so.6", 0o644);
        let root = fixture.resolve("/usr/bin/true").unwrap();
        assert_eq!(
            root.libraries[0].target,
            Path::new("/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert!(root.library_path.is_empty());

        // The 32-bit directory was searched: without the real libc it is the first one named.
        fixture.remove("/usr/lib/x86_64-linux-gnu/libc.so.6");
        match fixture.resolve("/usr/bin/true") {
            Err(ElfError::MissingLibrary { searched, .. }) => {
                assert_eq!(searched[0], Path::new("/usr/local/lib"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn file_found_first_that_is_not_elf_stops_the_search() {
        let fixture = Fixture::with_true();
        fixture.write("/etc/ld.so.conf", "/usr/local/lib\n", 0o644);
        fixture.write("/usr/local/lib/libc.so.6", "GROUP ( libc.so.6 )\n", 0o644);
        match fixture.resolve("/usr/bin/true") {
            Err(ElfError::InvalidLibrary {
                path,
                library,
                needed_by,
                ..
            }) => {
                assert_eq!(path, Path::new("/usr/local/lib/libc.so.6"));
                assert_eq!(library, "libc.so.6");
                assert_eq!(needed_by, Path::new("/usr/bin/true"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ld_so_conf_directory_goes_into_library_path() {
        let fixture = Fixture::with_true();
        let libc = fixture.host("/usr/lib/x86_64-linux-gnu/libc.so.6");
        fixture.write(
            "/etc/ld.so.conf",
            "# local\ninclude ld.so.conf.d/*.conf\n",
            0o644,
        );
        // Sorted before custom.conf, so it would win if the pattern matched it.
        fixture.write("/etc/ld.so.conf.d/a-decoy.conf.off", "/opt/decoy\n", 0o644);
        fixture.write(
            "/etc/ld.so.conf.d/custom.conf",
            "/opt/custom/lib/ # ours\n",
            0o644,
        );
        fixture.copy(&libc, "/opt/decoy/libc.so.6", 0o644);
        fixture.copy(&libc, "/opt/custom/lib/libc.so.6", 0o644);
        fixture.remove("/usr/lib/x86_64-linux-gnu/libc.so.6");
        let root = fixture.resolve("/usr/bin/true").unwrap();
        assert_eq!(
            root.libraries,
            vec![RootEntry {
                host: fixture.host("/opt/custom/lib/libc.so.6"),
                target: PathBuf::from("/opt/custom/lib/libc.so.6"),
            }]
        );
        assert_eq!(root.library_path, vec![PathBuf::from("/opt/custom/lib")]);
    }

    #[test]
    fn ld_so_conf_system_directory_needs_no_library_path() {
        let fixture = Fixture::with_true();
        fixture.write("/etc/ld.so.conf", "/usr/lib/x86_64-linux-gnu\n", 0o644);
        let root = fixture.resolve("/usr/bin/true").unwrap();
        assert_eq!(
            root.libraries[0].target,
            Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert!(root.library_path.is_empty());
    }

    #[test]
    fn runpath_origin_is_the_directory_inside_the_environment() {
        if !have_patchelf() {
            return skip("patchelf is not installed");
        }
        let fixture = Fixture::with_true();
        let libc = fixture.host("/usr/lib/x86_64-linux-gnu/libc.so.6");
        fixture.copy(&libc, "/opt/app/lib/libc.so.6", 0o644);
        fixture.copy(&libc, "/opt/app/lib/x86_64-linux-gnu/libc.so.6", 0o644);
        fixture.remove("/usr/lib/x86_64-linux-gnu/libc.so.6");
        fixture.copy(&fixture.host("/usr/bin/true"), "/opt/app/bin/app", 0o755);
        patchelf(
            &fixture.host("/opt/app/bin/app"),
            &["--set-rpath", "$ORIGIN/../lib"],
        );
        fixture.copy(&fixture.host("/usr/bin/true"), "/opt/app/bin/app2", 0o755);
        patchelf(
            &fixture.host("/opt/app/bin/app2"),
            &["--set-rpath", "${ORIGIN}/../$LIB"],
        );

        let root = fixture.resolve("/opt/app/bin/app").unwrap();
        let expected = RootEntry {
            host: fixture.host("/opt/app/lib/libc.so.6"),
            target: PathBuf::from("/opt/app/lib/libc.so.6"),
        };
        assert_eq!(root.libraries, vec![expected.clone()]);
        assert!(root.library_path.is_empty());

        let root = fixture.resolve("/opt/app/bin/app2").unwrap();
        assert_eq!(
            root.libraries[0].target,
            Path::new("/opt/app/lib/x86_64-linux-gnu/libc.so.6")
        );

        // Started through a symlink, the program is a real file at the link's path inside the
        // environment, so its $ORIGIN is /usr/bin there; the file is the one the host's
        // loader finds through the link.
        fixture.link("/usr/bin/app", "/opt/app/bin/app");
        let root = fixture.resolve("/usr/bin/app").unwrap();
        assert_eq!(root.binary.target, Path::new("/usr/bin/app"));
        assert_eq!(root.binary.host, fixture.host("/opt/app/bin/app"));
        assert_eq!(
            root.libraries,
            vec![RootEntry {
                host: expected.host,
                target: PathBuf::from("/usr/lib/libc.so.6"),
            }]
        );
    }

    #[test]
    fn executable_found_as_a_library_stops_the_search() {
        if !have_patchelf() {
            return skip("patchelf is not installed");
        }
        let fixture = Fixture::with_true();
        patchelf(
            &fixture.host("/usr/bin/true"),
            &["--add-needed", "libfake.so.1"],
        );
        fixture.copy(
            &host_true().binary,
            "/usr/lib/x86_64-linux-gnu/libfake.so.1",
            0o755,
        );
        match fixture.resolve("/usr/bin/true") {
            Err(ElfError::InvalidLibrary {
                library, reason, ..
            }) => {
                assert_eq!(library, "libfake.so.1");
                assert!(
                    reason.contains("position-independent executable"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn needed_names_expand_tokens_and_may_be_paths() {
        if !have_patchelf() {
            return skip("patchelf is not installed");
        }
        let zlib = Path::new("/lib/x86_64-linux-gnu/libz.so.1");
        if !zlib.exists() {
            return skip("no libz.so.1 on this host");
        }
        let fixture = Fixture::with_true();
        let program = fixture.host("/usr/bin/true");
        patchelf(&program, &["--add-needed", "libplat-$PLATFORM.so.1"]);
        patchelf(&program, &["--add-needed", "$ORIGIN/../share/libnext.so.1"]);
        fixture.copy(zlib, "/usr/lib/x86_64-linux-gnu/libplat-x86_64.so.1", 0o644);
        fixture.copy(zlib, "/usr/share/libnext.so.1", 0o644);
        let root = fixture.resolve("/usr/bin/true").unwrap();
        let targets = targets(&root);
        for expected in [
            "/lib/x86_64-linux-gnu/libplat-x86_64.so.1",
            "/usr/share/libnext.so.1",
            "/lib/x86_64-linux-gnu/libc.so.6",
        ] {
            assert!(
                targets.contains(Path::new(expected)),
                "{expected} in {targets:?}"
            );
        }
        // Both copies have the soname libz.so.1, but neither was asked for by that name.
        assert_eq!(root.libraries.len(), 3, "{:?}", root.libraries);

        fixture.remove("/usr/share/libnext.so.1");
        match fixture.resolve("/usr/bin/true") {
            Err(e @ ElfError::MissingLibrary { .. }) => assert_eq!(
                e.to_string(),
                "/usr/bin/../share/libnext.so.1 needed by /usr/bin/true was not found"
            ),
            other => panic!("{other:?}"),
        }
    }

    /// RPATH inheritance, RUNPATH cutting it off, dependency cycles and `-z nodefaultlib`,
    /// checked against the host's loader on files in a real directory.
    #[test]
    fn rpath_runpath_and_nodeflib_agree_with_the_host_loader() {
        if !have_patchelf() {
            return skip("patchelf is not installed");
        }
        let zlib = Path::new("/lib/x86_64-linux-gnu/libz.so.1");
        if !zlib.exists() {
            return skip("no libz.so.1 on this host");
        }
        let dir = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        let rp = base.join("rp");
        fs::create_dir_all(&rp).unwrap();
        fs::create_dir_all(base.join("bin")).unwrap();
        let prog = base.join("bin/prog");
        let outer = rp.join("libouter.so.1");
        let inner = rp.join("libinner.so.1");
        fs::copy("/bin/true", &prog).unwrap();
        fs::copy(zlib, &outer).unwrap();
        fs::copy(zlib, &inner).unwrap();
        let rp_text = rp.to_str().unwrap();
        patchelf(&prog, &["--force-rpath", "--set-rpath", rp_text]);
        patchelf(&prog, &["--add-needed", "libouter.so.1"]);
        patchelf(&outer, &["--set-soname", "libouter.so.1"]);
        patchelf(&outer, &["--add-needed", "libinner.so.1"]);
        patchelf(&inner, &["--set-soname", "libinner.so.1"]);
        // A cycle: inner needs outer, which is already loaded.
        patchelf(&inner, &["--add-needed", "libouter.so.1"]);

        // libinner.so.1 has no search path of its own: the program's DT_RPATH finds it.
        let root = assert_matches_loader(&prog);
        assert!(targets(&root).contains(&inner), "{root:?}");
        assert_eq!(root.libraries.len(), 3, "{root:?}");

        // A DT_RUNPATH on the requester turns the inherited DT_RPATH off.
        patchelf(&outer, &["--set-rpath", "/nonexistent"]);
        let (_, missing) = loader_list(Path::new(INTERP), &prog);
        assert_eq!(missing, vec!["libinner.so.1".to_owned()]);
        match resolve(&prog, Path::new("/")) {
            Err(ElfError::MissingLibrary {
                library,
                needed_by,
                searched,
            }) => {
                assert_eq!(library, "libinner.so.1");
                assert_eq!(needed_by, outer);
                assert_eq!(searched[0], Path::new("/nonexistent"));
            }
            other => panic!("{other:?}"),
        }

        // -z nodefaultlib: neither the cache nor the system directories are searched.
        let nodef = base.join("bin/nodef");
        fs::copy("/bin/true", &nodef).unwrap();
        patchelf(&nodef, &["--no-default-lib"]);
        let (_, missing) = loader_list(Path::new(INTERP), &nodef);
        assert_eq!(missing, vec!["libc.so.6".to_owned()]);
        match resolve(&nodef, Path::new("/")) {
            Err(ElfError::MissingLibrary {
                library, searched, ..
            }) => {
                assert_eq!(library, "libc.so.6");
                assert!(searched.is_empty(), "{searched:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn static_program_needs_nothing_else() {
        let busybox = Path::new("/bin/busybox");
        let is_static = resolve(busybox, Path::new("/")).is_ok_and(|r| r.static_binary);
        if !is_static {
            return skip("no static /bin/busybox on this host");
        }
        let root = resolve(busybox, Path::new("/")).unwrap();
        assert_eq!(root.binary.target, busybox);
        assert!(root.interpreter.is_none());
        assert!(root.libraries.is_empty());

        // It resolves in a root that holds nothing but itself.
        let fixture = Fixture::new();
        fixture.copy(busybox, "/bin/busybox", 0o755);
        let root = fixture.resolve("/bin/busybox").unwrap();
        assert!(root.static_binary);
        assert_eq!(root.entries().count(), 1);
        assert_eq!(root.binary.host, fixture.host("/bin/busybox"));
    }

    #[test]
    fn dynamic_string_tokens_expand_as_in_glibc() {
        let origin = Path::new("/opt/app/bin");
        let cases: [(&str, &str); 8] = [
            ("$ORIGIN/../lib", "/opt/app/bin/../lib"),
            ("${ORIGIN}/lib", "/opt/app/bin/lib"),
            ("/usr/$LIB", "/usr/lib/x86_64-linux-gnu"),
            ("/opt/${PLATFORM}/x", "/opt/x86_64/x"),
            ("$ORIGINAL/x", "$ORIGINAL/x"),
            ("${ORIGIN/x", "${ORIGIN/x"),
            ("/x/$HOME", "/x/$HOME"),
            ("$LIB_x$", "$LIB_x$"),
        ];
        for (text, expected) in cases {
            let expanded = expand_dst(text.as_bytes(), origin, &X86_64);
            assert_eq!(String::from_utf8(expanded).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn normalize_is_lexical_and_absolute() {
        for (path, expected) in [
            ("/usr/bin/../lib//x/./y/", "/usr/lib/x/y"),
            ("/../..", "/"),
            ("a/b", "/a/b"),
        ] {
            assert_eq!(normalize(Path::new(path)), Path::new(expected), "{path}");
        }
    }

    #[test]
    fn wildcards_match_as_glob_does() {
        for (pattern, text, expected) in [
            ("*.conf", "libc.conf", true),
            ("*.conf", "libc.conf.off", false),
            ("*", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("lib?.conf", "libc.conf", true),
            ("lib?.conf", "lib.conf", false),
            ("exact", "exact", true),
            ("exact", "exacto", false),
        ] {
            let matched = wildcard_match(pattern.as_bytes(), text.as_bytes());
            assert_eq!(matched, expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn ld_so_conf_lines_parse_as_ldconfig_reads_them() {
        let text = b"# comment\n\n  include /etc/a/*.conf  b.conf\ninclude\thwcap.conf\n\
            hwcap 0 nosegneg\n/usr/local/lib/ # trailing\n/opt/old=libc5\nrelative/dir\n\
            includeme\n";
        assert_eq!(
            parse_conf(text),
            vec![
                ConfLine::Include(vec!["/etc/a/*.conf".into(), "b.conf".into()]),
                ConfLine::Include(vec!["hwcap.conf".into()]),
                ConfLine::Dir("/usr/local/lib".into()),
                ConfLine::Dir("/opt/old".into()),
            ]
        );
    }

    #[test]
    fn ld_so_conf_include_cycles_end_and_directories_are_listed_once() {
        let fixture = Fixture::new();
        fixture.write(
            "/etc/ld.so.conf",
            "/one\ninclude /etc/ld.so.conf\n/two\n/one\n",
            0o644,
        );
        let dirs = ld_so_conf_dirs(&fixture.root());
        assert_eq!(dirs, vec![PathBuf::from("/one"), PathBuf::from("/two")]);
    }

    #[test]
    fn glob_stays_inside_the_root() {
        let fixture = Fixture::new();
        fixture.write("/etc/conf.d/b.conf", "", 0o644);
        fixture.write("/etc/conf.d/a.conf", "", 0o644);
        fixture.write("/etc/conf.d/.hidden.conf", "", 0o644);
        fixture.write("/etc/conf.d/c.txt", "", 0o644);
        fixture.link("/conf", "/etc/conf.d");
        let found = glob(&fixture.root(), Path::new("/conf/*.conf"));
        assert_eq!(
            found,
            vec![PathBuf::from("/conf/a.conf"), PathBuf::from("/conf/b.conf")]
        );
        assert!(glob(&fixture.root(), Path::new("/conf/none")).is_empty());
        assert_eq!(
            glob(&fixture.root(), Path::new("/conf/c.txt")),
            vec![PathBuf::from("/conf/c.txt")]
        );
    }
}
