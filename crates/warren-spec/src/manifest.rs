//! The manifest: the TOML file an administrator writes to declare a host and the environments it
//! should run (`warren up FILE`, `warren apply FILE`). This module turns its text into validated
//! types, or into one [`ManifestError`] that names the file, the line and column, and the key
//! that is wrong. The schema, with every key's type, default and meaning, is in
//! `docs/manifest.md`.
//!
//! The parser reads the document through `toml`'s spanned tree ([`toml::de::DeTable`]) rather
//! than through a derived `Deserialize`, so that every error, including a missing key or a bad
//! element deep in an array, points at a line. Unknown keys are rejected (a typo must never
//! silently drop a limit); keys starting with `x-` are extension keys and are ignored wherever
//! the schema names settings.
//!
//! Apart from [`load_manifest`], which reads the file, nothing here touches the system: image
//! paths are resolved lexically against the manifest's directory and are not checked to exist.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::limits::{self, Bound};
use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::{ByteSize, CpuQuota, EnvName};

mod template;

pub use template::{MAX_INSTANCES, MAX_TEMPLATE_LIST, MAX_TEMPLATES, TemplateSpec};

/// Most environments one manifest may declare.
pub const MAX_SPACES: usize = 1000;

/// Most entries one `may_discover` list may hold (a capability table holds at most 1024
/// handles); a `may_send` list holds one fewer ([`crate::limits::MAX_MAY_SEND`]).
pub const MAX_TARGETS: usize = crate::limits::MAX_MAY_DISCOVER;

/// Largest manifest [`load_manifest`] reads, in bytes.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// `max_restarts` when the manifest does not say.
pub const DEFAULT_MAX_RESTARTS: u32 = 5;

/// The protections `allow_missing` may name.
pub const PROTECTIONS: [&str; 3] = ["landlock", "seccomp", "cgroup"];

/// A validated manifest: the host and its environments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// The manifest's path, made absolute (relative image paths were resolved against its
    /// directory).
    pub file: PathBuf,
    /// The `[host]` table.
    pub host: HostSpec,
    /// The environments, by name (`[space.NAME]`).
    pub spaces: BTreeMap<EnvName, SpaceSpec>,
    /// The templates environments may spawn children from, by name (`[template.NAME]`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub templates: BTreeMap<EnvName, TemplateSpec>,
}

/// The `[host]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostSpec {
    /// The host's name, used in `name@host` addresses; a label like an environment name.
    pub name: Option<String>,
    /// Federation: the AMQP broker, `amqp://user:password@host:port/vhost` or `amqps://...`
    /// (`docs/federation.md`). Without it the host is alone and remote names are not granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// PEM file of the certificate authorities to trust for an `amqps` broker (default: the
    /// system's roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_ca: Option<PathBuf>,
    /// The host's Ed25519 signing key (hex seed, mode 600); created if missing. Default:
    /// `<state>/link/host.key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The trusted-keys file: one `HOST ed25519:HEX` per line. Required with `broker`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_keys: Option<PathBuf>,
    /// The broker queue type: `classic` (default) or `quorum` (for a RabbitMQ cluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_type: Option<String>,
    /// Seconds batches held ahead of a gap in a sender's numbering wait for the missing ones
    /// before they are given up (audited `lost`); 1 to 3,600, default 60.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_wait: Option<u64>,
}

/// One environment as declared: what the kernel needs to start it and what `plan` compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceSpec {
    /// Where its root filesystem comes from.
    pub image: ImageSpec,
    /// The program and its arguments. For a binary image declared without `command`, the
    /// binary's own path.
    pub command: Vec<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Memory limit; `None` leaves memory unlimited.
    pub memory: Option<ByteSize>,
    /// Most processes; `None` takes the launcher's default.
    pub pids: Option<u64>,
    /// CPU limit in cpus; `None` leaves cpu time unlimited.
    pub cpus: Option<CpuQuota>,
    /// Size of the writable `/tmp` tmpfs; `None` takes the launcher's default.
    pub tmpfs_size: Option<ByteSize>,
    /// What to do when the environment exits.
    pub restart: RestartPolicy,
    /// Restarts allowed within the backoff window before the supervisor gives up.
    pub max_restarts: u32,
    /// Names it gets a send capability to: `ENV`, `ENV/MAILBOX` or either with `@HOST`, in
    /// the order written.
    pub may_send: Vec<String>,
    /// Further names it may find with `lookup`, same syntax as `may_send`.
    pub may_discover: Vec<String>,
    /// Bound of its mailboxes in messages; `None` takes the kernel's default.
    pub mailbox_capacity: Option<usize>,
    /// Its byte quota in the kernel (queued messages in its mailboxes and its waiting sends);
    /// `None` takes the kernel's default.
    #[serde(default)]
    pub mailbox_bytes: Option<ByteSize>,
    /// Protections it may run without (members of [`PROTECTIONS`]), sorted.
    pub allow_missing: Vec<String>,
    /// Capabilities it holds inside its own user namespace (`CAP_` names, sorted; members of
    /// [`crate::caps::ALLOWED`]); none unless declared.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Its network: `none` (loopback only) unless declared (`docs/network.md`).
    #[serde(default)]
    pub net: crate::net::NetSpec,
    /// Its seccomp profile: `default` (when absent), `strict`, or a profile file's path
    /// (resolved against the manifest's directory; read by the launcher, docs/seccomp.md).
    #[serde(default)]
    pub seccomp: Option<String>,
    /// Remote senders (`env@host`, or `*@host`) whose messages it accepts without having
    /// given them a capability (federation's inbound policy).
    #[serde(default)]
    pub accept_from: Vec<String>,
    /// Templates it holds a SPAWN capability on (`[template.NAME]` of the same file), in the
    /// order written.
    #[serde(default)]
    pub may_spawn: Vec<String>,
    /// For a binary image: files and directories added read-only to its root at the same path
    /// (`image = { binary = "PATH", with = ["PATH", ...] }`, `warren run --with`).
    #[serde(default)]
    pub with: Vec<PathBuf>,
    /// Whether a small init runs as pid 1 and starts the command (`warren run --init`): on
    /// unless declared `init = false`.
    #[serde(default = "yes")]
    pub init: bool,
    /// Named volumes and host directories mounted in (`volumes = ["SRC:DEST[:ro]", ...]`,
    /// `warren run -v`), in the order written.
    #[serde(default)]
    pub volumes: Vec<crate::mount::MountRequest>,
    /// Whether the root is read-only (the default); `read_only = false` gives a writable root
    /// (`warren run --writable-root`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub read_only: bool,
    /// The size of a writable root's tmpfs (`--writable-root-size`); only with
    /// `read_only = false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writable_root_size: Option<ByteSize>,
    /// Extra `/etc/hosts` lines (`add_hosts = ["NAME:IP", ...]`, as `warren run --add-host`).
    #[serde(default)]
    pub add_hosts: Vec<crate::etc::HostEntry>,
    /// Name servers for `/etc/resolv.conf` (`dns = ["IP", ...]`, as `warren run --dns`).
    #[serde(default)]
    pub dns: Vec<std::net::IpAddr>,
}

/// The documented defaults of the optional keys (`docs/manifest.md`): a key written with its
/// default is the same declaration as the key left out.
pub mod defaults {
    /// `pids`.
    pub const PIDS: u64 = 1024;
    /// `tmpfs_size`: 16 MiB.
    pub const TMPFS_SIZE: u64 = 16 << 20;
    /// `mailbox_capacity`.
    pub const MAILBOX_CAPACITY: usize = 64;
    /// `mailbox_bytes`: 16 MiB.
    pub const MAILBOX_BYTES: u64 = 16 << 20;
    /// `writable_root_size`: 64 MiB.
    pub const WRITABLE_ROOT_SIZE: u64 = 64 << 20;
    /// `seccomp`.
    pub const SECCOMP: &str = "default";
}

impl SpaceSpec {
    /// Writes a key given its documented default as the key left out, so that `plan` (which
    /// compares specs field by field) sees `pids = 1024` and no `pids` as the same declaration
    /// ("fields are compared after validation", docs/manifest.md). What the launcher does is
    /// unchanged: an absent key takes the same default there.
    pub fn forget_explicit_defaults(&mut self) {
        fn unless<T: PartialEq>(v: &mut Option<T>, default: T) {
            if v.as_ref() == Some(&default) {
                *v = None;
            }
        }
        unless(&mut self.pids, defaults::PIDS);
        unless(&mut self.tmpfs_size, ByteSize(defaults::TMPFS_SIZE));
        unless(&mut self.mailbox_capacity, defaults::MAILBOX_CAPACITY);
        unless(&mut self.mailbox_bytes, ByteSize(defaults::MAILBOX_BYTES));
        unless(
            &mut self.writable_root_size,
            ByteSize(defaults::WRITABLE_ROOT_SIZE),
        );
        if self.seccomp.as_deref() == Some(defaults::SECCOMP) {
            self.seccomp = None;
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Where an environment's root filesystem comes from. Paths are absolute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageSpec {
    /// A directory holding a root filesystem, mounted read-only.
    Rootfs(PathBuf),
    /// A minimal root built from one program, its ELF interpreter and its libraries.
    Binary(PathBuf),
    /// An image imported into Warren's image store (`warren image import`), by name. Its
    /// configuration supplies the command when `command` is empty.
    Name(crate::ImageName),
}

/// What the supervisor does when an environment exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart (the default).
    #[default]
    No,
    /// Restart after a non-zero exit or a signal.
    OnFailure,
    /// Restart after every exit.
    Always,
}

impl RestartPolicy {
    /// Every policy, in the order the docs list them.
    pub const ALL: [RestartPolicy; 3] = [Self::No, Self::OnFailure, Self::Always];

    /// The manifest spelling: `no`, `on-failure` or `always`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::OnFailure => "on-failure",
            Self::Always => "always",
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a restart policy: the rejected text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid restart policy {0:?}: expected \"no\", \"on-failure\" or \"always\"")]
pub struct RestartPolicyError(pub String);

impl FromStr for RestartPolicy {
    type Err = RestartPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| RestartPolicyError(s.to_owned()))
    }
}

/// Why a manifest was rejected: where, which key, and what is wrong.
///
/// Displays as `FILE:LINE:COLUMN: MESSAGE`, or `FILE: MESSAGE` when the problem concerns the
/// whole file (it cannot be read); the message itself names the key.
#[derive(Debug, thiserror::Error)]
pub struct ManifestError {
    /// The manifest's path as it was given.
    pub file: PathBuf,
    /// 1-based line of the offending key or value; 0 when no line applies.
    pub line: usize,
    /// 1-based column, in characters; 0 when no line applies.
    pub column: usize,
    /// Dotted path of the offending key (`space.db.memory`, `space.db.command[1]`); empty for
    /// errors that concern no key (the file cannot be read, TOML syntax).
    pub key: String,
    /// What is wrong, naming the key.
    pub message: String,
    /// The I/O error behind a file that could not be read.
    #[source]
    pub source: Option<io::Error>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            let (file, line, col) = (self.file.display(), self.line, self.column);
            write!(f, "{file}:{line}:{col}: {}", self.message)
        }
    }
}

impl ManifestError {
    fn whole_file(file: &Path, message: impl Into<String>, source: Option<io::Error>) -> Self {
        ManifestError {
            file: file.to_owned(),
            line: 0,
            column: 0,
            key: String::new(),
            message: message.into(),
            source,
        }
    }
}

/// Reads and parses the manifest at `file`. A missing, unreadable, oversized or non-UTF-8 file
/// is an error naming the file.
pub fn load_manifest(file: &Path) -> Result<Manifest, ManifestError> {
    let bytes = match read_bounded(file) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ManifestError::whole_file(
                file,
                "manifest not found",
                Some(e),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            let msg = format!("the manifest is larger than {MAX_MANIFEST_BYTES} bytes");
            return Err(ManifestError::whole_file(file, msg, None));
        }
        Err(e) => {
            return Err(ManifestError::whole_file(
                file,
                "cannot read the manifest",
                Some(e),
            ));
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => parse(file, &text, true),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(&e.as_bytes()[..valid]);
            let (line, column) = line_col(&text, valid);
            Err(ManifestError {
                file: file.to_owned(),
                line,
                column,
                key: String::new(),
                message: "the manifest is not UTF-8 text".to_owned(),
                source: None,
            })
        }
    }
}

/// Reads at most [`MAX_MANIFEST_BYTES`]; a longer file is `FileTooLarge`.
fn read_bounded(file: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(file)?
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(io::ErrorKind::FileTooLarge.into());
    }
    Ok(bytes)
}

/// Parses manifest `text` that was read from `file`. `file` names the manifest in errors and
/// anchors relative image paths (a relative `file` is taken against the current directory,
/// the only thing this function reads from the system).
pub fn parse_manifest(file: &Path, text: &str) -> Result<Manifest, ManifestError> {
    parse(file, text, false)
}

/// [`parse_manifest`]; with `look`, a bare `image = "NAME"` whose directory does not exist next
/// to the manifest names an image in the store (the one check that reads the file system).
fn parse(file: &Path, text: &str, look: bool) -> Result<Manifest, ManifestError> {
    let absolute = std::path::absolute(file).map_err(|e| {
        ManifestError::whole_file(file, "cannot make the manifest's path absolute", Some(e))
    })?;
    let dir = absolute.parent().unwrap_or(Path::new("/")).to_owned();
    let mut p = Parser {
        file,
        text,
        dir,
        look,
        templates: BTreeSet::new(),
    };
    let root = DeTable::parse(text).map_err(|e| p.syntax(&e))?;
    p.templates = template::declared_names(root.get_ref());
    let (host, spaces, templates) = p.document(root.get_ref())?;
    Ok(Manifest {
        file: absolute,
        host,
        spaces,
        templates,
    })
}

/// The keys of an environment's table, in the order the docs list them.
const SPACE_KEYS: [&str; 25] = [
    "image",
    "command",
    "env",
    "net",
    "memory",
    "pids",
    "cpus",
    "tmpfs_size",
    "restart",
    "max_restarts",
    "may_send",
    "may_discover",
    "mailbox_capacity",
    "mailbox_bytes",
    "allow_missing",
    "capabilities",
    "accept_from",
    "may_spawn",
    "init",
    "volumes",
    "seccomp",
    "read_only",
    "writable_root_size",
    "add_hosts",
    "dns",
];

/// The keys of an environment's `net` table.
const NET_KEYS: [&str; 4] = ["address", "publish", "allow", "egress"];

type Key<'i> = Spanned<Cow<'i, str>>;
type Value<'i> = Spanned<DeValue<'i>>;

/// What the parser carries while it walks the tree.
struct Parser<'a> {
    file: &'a Path,
    text: &'a str,
    /// The manifest's directory, absolute.
    dir: PathBuf,
    /// Whether `image = "NAME"` may look for a directory to tell a root from a stored image.
    look: bool,
    /// The names of the templates the document declares (`may_spawn` must name one).
    templates: BTreeSet<String>,
}

/// Where in the document a table sits, as key segments (`["space", "db"]`).
#[derive(Clone)]
struct TablePath(Vec<String>);

impl TablePath {
    fn child(&self, segment: &str) -> TablePath {
        let mut v = self.0.clone();
        v.push(segment.to_owned());
        TablePath(v)
    }

    /// The dotted path of `key` in this table.
    fn key(&self, key: &str) -> String {
        self.0
            .iter()
            .map(String::as_str)
            .chain([key])
            .map(quote_segment)
            .collect::<Vec<_>>()
            .join(".")
    }

    /// `[space.db]`, or `the top level`.
    fn describe(&self) -> String {
        if self.0.is_empty() {
            "the top level".to_owned()
        } else {
            let segs: Vec<_> = self.0.iter().map(|s| quote_segment(s)).collect();
            format!("[{}]", segs.join("."))
        }
    }

    /// `in [space.db]`, or `at the top level`.
    fn within(&self) -> String {
        if self.0.is_empty() {
            "at the top level".to_owned()
        } else {
            format!("in {}", self.describe())
        }
    }

    /// `"memory" in [space.db]`.
    fn at(&self, key: &str) -> String {
        format!("{key:?} {}", self.within())
    }
}

/// A key segment as TOML would need it written: bare when it can be, quoted otherwise.
fn quote_segment(s: &str) -> Cow<'_, str> {
    let bare = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !s.is_empty() && s.chars().all(bare) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("{s:?}"))
    }
}

/// An extension key, allowed and ignored.
fn is_extension(key: &str) -> bool {
    key.starts_with("x-")
}

/// A table's entries in document order (the tree itself is sorted by key).
fn entries<'t, 'i>(table: &'t DeTable<'i>) -> Vec<(&'t Key<'i>, &'t Value<'i>)> {
    let mut v: Vec<_> = table.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

/// The closest of `candidates` to `typed`, if it is close enough to be a likely typo.
fn suggest<'c>(typed: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let typed = typed.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&typed, c), *c))
        .filter(|&(d, c)| d <= 2 && d < c.len().div_ceil(2))
        .min()
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions
/// of neighbours each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * w + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (d[(i - 1) * w + j] + 1)
                    .min(d[i * w + j - 1] + 1)
                    .min(d[(i - 1) * w + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * w + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * w + b.len()]
}

/// Lowercase TOML type names with an article, for "found ..." messages.
fn found(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The environment, mailbox and host parts of a capability target.
struct Target<'s> {
    env: &'s str,
    mailbox: Option<&'s str>,
    host: Option<&'s str>,
}

/// Splits and checks `ENV[/MAILBOX][@HOST]`; every part follows the environment-name rules.
fn parse_target(s: &str) -> Option<Target<'_>> {
    let (rest, host) = match s.split_once('@') {
        Some((r, h)) => (r, Some(h)),
        None => (s, None),
    };
    let (env, mailbox) = match rest.split_once('/') {
        Some((e, m)) => (e, Some(m)),
        None => (rest, None),
    };
    let label_ok = |l: &str| EnvName::from_str(l).is_ok();
    let ok = label_ok(env) && mailbox.is_none_or(label_ok) && host.is_none_or(label_ok);
    ok.then_some(Target { env, mailbox, host })
}

/// A portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn env_key_ok(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What [`Parser::document`] reads: the host, the environments and the templates.
type Document = (
    HostSpec,
    BTreeMap<EnvName, SpaceSpec>,
    BTreeMap<EnvName, TemplateSpec>,
);

/// An environment's settings while its table is being read.
struct SpaceDraft {
    image: Option<ImageSpec>,
    command: Option<Vec<String>>,
    spec: SpaceSpec,
}

impl Parser<'_> {
    fn error(&self, span: Range<usize>, key: String, message: String) -> ManifestError {
        let (line, column) = line_col(self.text, span.start);
        ManifestError {
            file: self.file.to_owned(),
            line,
            column,
            key,
            message,
            source: None,
        }
    }

    fn syntax(&self, e: &toml::de::Error) -> ManifestError {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim_end_matches('.').to_owned();
        let quoted = self.text.get(span.clone()).unwrap_or("");
        if message == "duplicate key" && !quoted.is_empty() {
            let msg = format!("duplicate key {quoted:?}: each key may be defined only once");
            return self.error(span, quoted.to_owned(), msg);
        }
        self.error(span, String::new(), format!("invalid TOML: {message}"))
    }

    fn unknown(&self, table: &TablePath, key: &Key<'_>, known: &[&str]) -> ManifestError {
        let name = key.get_ref().as_ref();
        let mut msg = format!("unknown key {name:?} {}", table.within());
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("x_") || (lower.starts_with("x-") && !is_extension(name)) {
            msg.push_str(" (extension keys start with \"x-\")");
        } else if let Some(s) = suggest(name, known) {
            msg.push_str(&format!(" (did you mean {s:?}?)"));
        }
        self.error(key.span(), table.key(name), msg)
    }

    fn type_error(&self, table: &TablePath, key: &str, v: &Value<'_>, want: &str) -> ManifestError {
        let msg = format!(
            "{} must be {want}, found {}",
            table.at(key),
            found(v.get_ref())
        );
        self.error(v.span(), table.key(key), msg)
    }

    fn bad_value(
        &self,
        table: &TablePath,
        key: &str,
        span: Range<usize>,
        why: String,
    ) -> ManifestError {
        self.error(span, table.key(key), format!("{}: {why}", table.at(key)))
    }

    fn document(&self, root: &DeTable<'_>) -> Result<Document, ManifestError> {
        let top = TablePath(Vec::new());
        let (mut host, mut spaces, mut templates) = (None, None, None);
        for (k, v) in entries(root) {
            match k.get_ref().as_ref() {
                "host" => host = Some(v),
                "space" => spaces = Some(v),
                "template" => templates = Some(v),
                x if is_extension(x) => {}
                _ => return Err(self.unknown(&top, k, &["host", "space", "template"])),
            }
        }
        let host = match host {
            Some(v) => self.host(&top, v)?,
            None => HostSpec::default(),
        };
        let spaces = match spaces {
            Some(v) => self.spaces(&top, v, host.name.as_deref())?,
            None => BTreeMap::new(),
        };
        let templates = match templates {
            Some(v) => self.templates(&top, v)?,
            None => BTreeMap::new(),
        };
        Ok((host, spaces, templates))
    }

    fn host(&self, top: &TablePath, v: &Value<'_>) -> Result<HostSpec, ManifestError> {
        let DeValue::Table(t) = v.get_ref() else {
            return Err(self.type_error(top, "host", v, "a table ([host])"));
        };
        let here = top.child("host");
        let mut spec = HostSpec::default();
        for (k, v) in entries(t) {
            match k.get_ref().as_ref() {
                "name" => {
                    let s = self.string(&here, "name", v)?;
                    if EnvName::from_str(s).is_err() {
                        let why = format!(
                            "host name {s:?} is not valid: use 1 to 63 lowercase letters, digits \
                             and '-', starting and ending with a letter or digit"
                        );
                        return Err(self.bad_value(&here, "name", v.span(), why));
                    }
                    spec.name = Some(s.to_owned());
                }
                "broker" => {
                    let s = self.string(&here, "broker", v)?;
                    if !(s.starts_with("amqp://") || s.starts_with("amqps://")) {
                        let why =
                            "the broker is an AMQP URL: amqp://user:password@host:port/vhost \
                                   or amqps://..."
                                .to_owned();
                        return Err(self.bad_value(&here, "broker", v.span(), why));
                    }
                    spec.broker = Some(s.to_owned());
                }
                "broker_ca" => spec.broker_ca = Some(self.path(&here, "broker_ca", v)?),
                "key" => spec.key = Some(self.path(&here, "key", v)?),
                "trusted_keys" => spec.trusted_keys = Some(self.path(&here, "trusted_keys", v)?),
                "queue_type" => {
                    let s = self.string(&here, "queue_type", v)?;
                    if s != "classic" && s != "quorum" {
                        let why =
                            format!("{s:?} is not a queue type: use \"classic\" or \"quorum\"");
                        return Err(self.bad_value(&here, "queue_type", v.span(), why));
                    }
                    spec.queue_type = Some(s.to_owned());
                }
                "gap_wait" => {
                    spec.gap_wait = Some(self.integer(&here, "gap_wait", v, 1, 3600)?);
                }
                x if is_extension(x) => {}
                _ => {
                    return Err(self.unknown(
                        &here,
                        k,
                        &[
                            "name",
                            "broker",
                            "broker_ca",
                            "key",
                            "trusted_keys",
                            "queue_type",
                            "gap_wait",
                        ],
                    ));
                }
            }
        }
        if spec.broker.is_some() {
            let missing = if spec.name.is_none() {
                Some("name")
            } else if spec.trusted_keys.is_none() {
                Some("trusted_keys")
            } else {
                None
            };
            if let Some(key) = missing {
                let why = format!(
                    "{} sets \"broker\" but not \"{key}\": federation needs the host's name and \
                     the trusted-keys file",
                    here.describe()
                );
                return Err(self.error(v.span(), here.key(key), why));
            }
        }
        Ok(spec)
    }

    /// An `accept_from` list: `env@host` or `*@host`.
    fn accept_from(&self, here: &TablePath, v: &Value<'_>) -> Result<Vec<String>, ManifestError> {
        let key = "accept_from";
        let items = self.array(here, key, v, "an array of remote senders")?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let s = self.item(here, key, i, item)?;
            let ok = match s.split_once('@') {
                Some((env, host)) => {
                    (env == "*" || EnvName::from_str(env).is_ok())
                        && EnvName::from_str(host).is_ok()
                }
                None => false,
            };
            if !ok {
                let why = format!(
                    "{s:?} is not a remote sender: expected ENV@HOST or *@HOST, each part 1 to 63 \
                     lowercase letters, digits and '-'"
                );
                return Err(self.item_error(here, key, i, item, why));
            }
            if out.iter().any(|o| o == s) {
                let why = format!("{s:?} is listed twice");
                return Err(self.item_error(here, key, i, item, why));
            }
            out.push(s.to_owned());
        }
        Ok(out)
    }

    fn spaces(
        &self,
        top: &TablePath,
        v: &Value<'_>,
        host: Option<&str>,
    ) -> Result<BTreeMap<EnvName, SpaceSpec>, ManifestError> {
        let DeValue::Table(t) = v.get_ref() else {
            return Err(self.type_error(top, "space", v, "a table of environments ([space.NAME])"));
        };
        let here = top.child("space");
        let mut out = BTreeMap::new();
        for (i, (k, v)) in entries(t).into_iter().enumerate() {
            let raw = k.get_ref().as_ref();
            if i == MAX_SPACES {
                let msg = format!("too many environments: at most {MAX_SPACES} are allowed");
                return Err(self.error(k.span(), here.key(raw), msg));
            }
            if is_extension(raw) {
                let msg = format!(
                    "environment name {raw:?} starts with \"x-\", which marks extension keys; \
                     choose another name (extension keys go inside [space.NAME] or at the top \
                     level)"
                );
                return Err(self.error(k.span(), here.key(raw), msg));
            }
            let name: EnvName = raw.parse().map_err(|e: crate::NameError| {
                self.error(k.span(), here.key(raw), e.to_string())
            })?;
            let spec = self.space(&here.child(raw), &name, v, host)?;
            out.insert(name, spec);
        }
        Ok(out)
    }

    fn space(
        &self,
        here: &TablePath,
        name: &EnvName,
        v: &Value<'_>,
        host: Option<&str>,
    ) -> Result<SpaceSpec, ManifestError> {
        let DeValue::Table(t) = v.get_ref() else {
            let parent = TablePath(here.0[..here.0.len() - 1].to_vec());
            return Err(self.type_error(&parent, name.as_str(), v, "a table ([space.NAME])"));
        };
        let mut d = SpaceDraft {
            image: None,
            command: None,
            spec: SpaceSpec {
                image: ImageSpec::Rootfs(PathBuf::new()),
                command: Vec::new(),
                env: BTreeMap::new(),
                memory: None,
                pids: None,
                cpus: None,
                tmpfs_size: None,
                restart: RestartPolicy::No,
                max_restarts: DEFAULT_MAX_RESTARTS,
                may_send: Vec::new(),
                may_discover: Vec::new(),
                mailbox_capacity: None,
                mailbox_bytes: None,
                allow_missing: Vec::new(),
                capabilities: Vec::new(),
                net: crate::net::NetSpec::None,
                seccomp: None,
                accept_from: Vec::new(),
                may_spawn: Vec::new(),
                init: true,
                with: Vec::new(),
                volumes: Vec::new(),
                read_only: true,
                writable_root_size: None,
                add_hosts: Vec::new(),
                dns: Vec::new(),
            },
        };
        let mut size_span = None;
        for (k, v) in entries(t) {
            let key = k.get_ref().as_ref();
            let s = &mut d.spec;
            match key {
                "image" => {
                    let (image, with) = self.image(here, v)?;
                    d.image = Some(image);
                    s.with = with;
                }
                "command" => d.command = Some(self.command(here, v)?),
                "env" => s.env = self.env(here, v)?,
                "net" => s.net = self.net(here, v)?,
                "memory" => s.memory = Some(self.size(here, limits::MEMORY, v)?),
                "pids" => s.pids = Some(self.bounded(here, limits::PIDS, v)?),
                "cpus" => s.cpus = Some(self.cpus(here, v)?),
                "tmpfs_size" => s.tmpfs_size = Some(self.size(here, limits::TMPFS_SIZE, v)?),
                "restart" => s.restart = self.restart(here, v)?,
                "max_restarts" => {
                    let n = self.bounded(here, limits::MAX_RESTARTS, v)?;
                    s.max_restarts = u32::try_from(n).unwrap_or(u32::MAX);
                }
                "may_send" => s.may_send = self.targets(here, key, v, Some((name, host)))?,
                "may_discover" => s.may_discover = self.targets(here, key, v, None)?,
                "mailbox_capacity" => {
                    let n = self.bounded(here, limits::MAILBOX_CAPACITY, v)?;
                    s.mailbox_capacity = Some(usize::try_from(n).unwrap_or(usize::MAX));
                }
                "mailbox_bytes" => {
                    s.mailbox_bytes = Some(self.size(here, limits::MAILBOX_BYTES, v)?);
                }
                "allow_missing" => s.allow_missing = self.allow_missing(here, v)?,
                "capabilities" => s.capabilities = self.capabilities(here, v)?,
                "seccomp" => {
                    s.seccomp = Some(match self.string(here, "seccomp", v)? {
                        p @ ("default" | "strict") => p.to_owned(),
                        _ => self.path(here, "seccomp", v)?.display().to_string(),
                    })
                }
                "accept_from" => s.accept_from = self.accept_from(here, v)?,
                "may_spawn" => s.may_spawn = self.may_spawn(here, v)?,
                "init" => match v.get_ref() {
                    DeValue::Boolean(b) => s.init = *b,
                    _ => return Err(self.type_error(here, key, v, "true or false")),
                },
                "volumes" => s.volumes = self.volumes(here, v)?,
                "read_only" => match v.get_ref() {
                    DeValue::Boolean(b) => s.read_only = *b,
                    _ => return Err(self.type_error(here, key, v, "true or false")),
                },
                "writable_root_size" => {
                    s.writable_root_size = Some(self.size(here, limits::WRITABLE_ROOT_SIZE, v)?);
                    size_span = Some(v.span());
                }
                "add_hosts" => {
                    s.add_hosts =
                        self.etc_list(here, "add_hosts", v, crate::etc::parse_add_host)?;
                    self.etc_count(here, "add_hosts", v, &s.add_hosts, &[])?;
                }
                "dns" => {
                    s.dns = self.etc_list(here, "dns", v, crate::etc::parse_ip)?;
                    self.etc_count(here, "dns", v, &[], &s.dns)?;
                }
                x if is_extension(x) => {}
                _ => return Err(self.unknown(here, k, &SPACE_KEYS)),
            }
        }
        if let (Some(span), true) = (size_span, d.spec.read_only) {
            return Err(self.bad_value(
                here,
                "writable_root_size",
                span,
                "a size for a writable root needs read_only = false".into(),
            ));
        }
        let Some(image) = d.image else {
            let msg = format!(
                "{} has no \"image\": give a directory (image = \"images/{name}\") or a program \
                 (image = {{ binary = \"/usr/bin/{name}\" }})",
                here.describe()
            );
            return Err(self.error(v.span(), here.key("image"), msg));
        };
        d.spec.command = match (d.command, &image) {
            (Some(c), _) => c,
            (None, ImageSpec::Binary(bin)) => vec![bin.to_string_lossy().into_owned()],
            (None, ImageSpec::Name(_)) => Vec::new(),
            (None, ImageSpec::Rootfs(_)) => {
                let msg = format!(
                    "{} has a rootfs image but no \"command\": say which program to run, e.g. \
                     command = [\"/bin/{name}\"]",
                    here.describe()
                );
                return Err(self.error(v.span(), here.key("command"), msg));
            }
        };
        d.spec.image = image;
        d.spec.forget_explicit_defaults();
        Ok(d.spec)
    }

    fn string<'v>(
        &self,
        table: &TablePath,
        key: &str,
        v: &'v Value<'_>,
    ) -> Result<&'v str, ManifestError> {
        match v.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.type_error(table, key, v, "a string")),
        }
    }

    /// A path string: not empty, no NUL, resolved against the manifest's directory.
    fn path(&self, table: &TablePath, key: &str, v: &Value<'_>) -> Result<PathBuf, ManifestError> {
        let s = self.string(table, key, v)?;
        if s.is_empty() {
            return Err(self.bad_value(table, key, v.span(), "the path is empty".to_owned()));
        }
        if s.contains('\0') {
            let why = "the path contains a NUL byte".to_owned();
            return Err(self.bad_value(table, key, v.span(), why));
        }
        // `components` drops `.` and repeated or trailing separators; `..` is kept, since
        // folding it lexically would be wrong across symlinks.
        Ok(self.dir.join(s).components().collect())
    }

    /// The image, and the paths its `with` key adds (binary images only).
    fn image(
        &self,
        here: &TablePath,
        v: &Value<'_>,
    ) -> Result<(ImageSpec, Vec<PathBuf>), ManifestError> {
        let t = match v.get_ref() {
            DeValue::String(text) => {
                let path = self.path(here, "image", v)?;
                // A bare name (no `/`, not starting with `.`) with no such directory next to
                // the manifest is an image from the store: `image = "busybox:1.36"`.
                let bare = !text.contains('/') && !text.starts_with('.');
                if self.look && bare && !path.exists() {
                    if let Ok(name) = text.parse::<crate::ImageName>() {
                        return Ok((ImageSpec::Name(name), Vec::new()));
                    }
                }
                return Ok((ImageSpec::Rootfs(path), Vec::new()));
            }
            DeValue::Table(t) => t,
            _ => {
                let want = "a directory or a table { rootfs = \"DIR\" }, { binary = \"PATH\" } or \
                            { name = \"IMAGE\" }";
                return Err(self.type_error(here, "image", v, want));
            }
        };
        let table = here.child("image");
        let mut found = None;
        let mut with: Option<(Vec<PathBuf>, &Value<'_>)> = None;
        for (k, v) in entries(t) {
            let key = k.get_ref().as_ref();
            let image = match key {
                "with" => {
                    let items = self.array(&table, key, v, "an array of paths")?;
                    let mut paths = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        self.item(&table, key, i, item)?;
                        paths.push(self.path(&table, key, item)?);
                    }
                    with = Some((paths, v));
                    continue;
                }
                "rootfs" => ImageSpec::Rootfs(self.path(&table, key, v)?),
                "binary" => ImageSpec::Binary(self.path(&table, key, v)?),
                "name" => {
                    let s = self.string(&table, key, v)?;
                    match s.parse::<crate::ImageName>() {
                        Ok(n) => ImageSpec::Name(n),
                        Err(e) => return Err(self.bad_value(&table, key, v.span(), e.to_string())),
                    }
                }
                x if is_extension(x) => continue,
                _ => return Err(self.unknown(&table, k, &["rootfs", "binary", "name", "with"])),
            };
            if found.is_some() {
                let msg = format!(
                    "{} sets more than one of \"rootfs\", \"binary\" and \"name\": an image is \
                     exactly one of them",
                    table.describe()
                );
                return Err(self.error(k.span(), table.key(key), msg));
            }
            found = Some(image);
        }
        let image = found.ok_or_else(|| {
            let msg = format!(
                "{} must set \"rootfs\", \"binary\" or \"name\"",
                here.at("image")
            );
            self.error(v.span(), here.key("image"), msg)
        })?;
        match (with, &image) {
            (None, _) => Ok((image, Vec::new())),
            (Some((paths, _)), ImageSpec::Binary(_)) => Ok((image, paths)),
            (Some((_, w)), _) => {
                let msg = format!(
                    "{}: \"with\" adds paths to a binary image; a rootfs or named image \
                     already holds its files",
                    table.at("with")
                );
                Err(self.error(w.span(), table.key("with"), msg))
            }
        }
    }

    fn array<'v, 'i>(
        &self,
        table: &TablePath,
        key: &str,
        v: &'v Value<'i>,
        want: &str,
    ) -> Result<&'v [Value<'i>], ManifestError> {
        match v.get_ref() {
            DeValue::Array(a) => Ok(a),
            _ => Err(self.type_error(table, key, v, want)),
        }
    }

    /// Item `i` of array `key` as a string.
    fn item<'v>(
        &self,
        table: &TablePath,
        key: &str,
        i: usize,
        v: &'v Value<'_>,
    ) -> Result<&'v str, ManifestError> {
        match v.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            other => {
                let msg = format!(
                    "{}: item {} must be a string, found {}",
                    table.at(key),
                    i + 1,
                    found(other)
                );
                Err(self.error(v.span(), format!("{}[{i}]", table.key(key)), msg))
            }
        }
    }

    fn item_error(
        &self,
        table: &TablePath,
        key: &str,
        i: usize,
        v: &Value<'_>,
        why: String,
    ) -> ManifestError {
        let msg = format!("{}: {why}", table.at(key));
        self.error(v.span(), format!("{}[{i}]", table.key(key)), msg)
    }

    fn command(&self, here: &TablePath, v: &Value<'_>) -> Result<Vec<String>, ManifestError> {
        let items = self.array(here, "command", v, "an array of strings")?;
        if items.is_empty() {
            let why = "the command is empty: name the program to run".to_owned();
            return Err(self.bad_value(here, "command", v.span(), why));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let s = self.item(here, "command", i, item)?;
            if i == 0 && s.is_empty() {
                let why = "the program (item 1) is empty".to_owned();
                return Err(self.item_error(here, "command", i, item, why));
            }
            if s.contains('\0') {
                let why = format!("item {} contains a NUL byte", i + 1);
                return Err(self.item_error(here, "command", i, item, why));
            }
            if let Err(e) = limits::check_arg(|| format!("item {}", i + 1), s.len()) {
                return Err(self.item_error(here, "command", i, item, e.to_string()));
            }
            out.push(s.to_owned());
        }
        Ok(out)
    }

    fn env(
        &self,
        here: &TablePath,
        v: &Value<'_>,
    ) -> Result<BTreeMap<String, String>, ManifestError> {
        let DeValue::Table(t) = v.get_ref() else {
            return Err(self.type_error(
                here,
                "env",
                v,
                "a table of strings ({ KEY = \"value\" })",
            ));
        };
        let table = here.child("env");
        let mut out = BTreeMap::new();
        for (k, v) in entries(t) {
            let key = k.get_ref().as_ref();
            if let Err(e) = limits::check_env_var(key) {
                let msg = format!("{}: {e}", here.at("env"));
                return Err(self.error(k.span(), table.key(key), msg));
            }
            let DeValue::String(value) = v.get_ref() else {
                let want = "a string (quote numbers: PORT = \"8080\")";
                return Err(self.type_error(&table, key, v, want));
            };
            if value.contains('\0') {
                let why = "the value contains a NUL byte".to_owned();
                return Err(self.bad_value(&table, key, v.span(), why));
            }
            if let Err(e) = limits::check_arg(
                || format!("the entry {key}=value"),
                key.len() + 1 + value.len(),
            ) {
                return Err(self.bad_value(&table, key, v.span(), e.to_string()));
            }
            out.insert(key.to_owned(), value.clone().into_owned());
        }
        Ok(out)
    }

    fn net(&self, here: &TablePath, v: &Value<'_>) -> Result<crate::net::NetSpec, ManifestError> {
        use crate::net::{NetSpec, VethSpec};
        match v.get_ref() {
            DeValue::String(s) if s == "none" => Ok(NetSpec::None),
            DeValue::String(s) if s == "auto" => Ok(NetSpec::Veth(VethSpec::default())),
            DeValue::String(s) => {
                let why = format!(
                    "{s:?} is not a network: use \"none\" (the default), \"auto\" (an address \
                     from the host's pool) or a table {{ address = \"10.88.0.2/24\", publish = \
                     [\"127.0.0.1:8080:80\"] }}"
                );
                Err(self.bad_value(here, "net", v.span(), why))
            }
            DeValue::Table(t) => {
                let here = here.child("net");
                let mut spec = VethSpec::default();
                for (k, v) in entries(t) {
                    let key = k.get_ref().as_ref();
                    match key {
                        "address" => {
                            let s = self.string(&here, key, v)?;
                            spec.address = Some(s.parse().map_err(|e: crate::net::NetError| {
                                self.bad_value(&here, key, v.span(), e.to_string())
                            })?);
                        }
                        "publish" | "allow" => {
                            let items = self.array(&here, key, v, "an array of strings")?;
                            for (i, item) in items.iter().enumerate() {
                                let s = self.item(&here, key, i, item)?;
                                let err = |e: crate::net::NetError| {
                                    self.item_error(&here, key, i, item, e.to_string())
                                };
                                if key == "publish" {
                                    spec.publish.push(s.parse().map_err(err)?);
                                } else {
                                    spec.allow.push(crate::net::parse_peer(s).map_err(err)?);
                                }
                            }
                        }
                        "egress" => match v.get_ref() {
                            DeValue::Boolean(b) => spec.egress = *b,
                            _ => return Err(self.type_error(&here, key, v, "true or false")),
                        },
                        _ => return Err(self.unknown(&here, k, &NET_KEYS)),
                    }
                }
                Ok(NetSpec::Veth(spec))
            }
            _ => Err(self.type_error(here, "net", v, "\"none\", \"auto\" or a table")),
        }
    }

    /// The integer value of `v` if it is one, as written (any radix).
    fn int_value(v: &DeValue<'_>) -> Option<i128> {
        match v {
            DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        }
    }

    fn integer(
        &self,
        table: &TablePath,
        key: &str,
        v: &Value<'_>,
        min: u64,
        max: u64,
    ) -> Result<u64, ManifestError> {
        let Some(n) = Self::int_value(v.get_ref()) else {
            let want = if min == 0 {
                "a whole number".to_owned()
            } else {
                format!("a whole number of at least {min}")
            };
            return Err(self.type_error(table, key, v, &want));
        };
        match u64::try_from(n) {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => {
                let why = format!("{n} is out of range: expected {min} to {max}");
                Err(self.bad_value(table, key, v.span(), why))
            }
        }
    }

    /// A whole number within `bound` (`limits.rs`).
    fn bounded(&self, here: &TablePath, bound: Bound, v: &Value<'_>) -> Result<u64, ManifestError> {
        self.integer(here, bound.key, v, bound.min, bound.max)
    }

    /// A size (`"64M"` or a number of bytes) within `bound` (`limits.rs`).
    fn size(
        &self,
        here: &TablePath,
        bound: Bound,
        v: &Value<'_>,
    ) -> Result<ByteSize, ManifestError> {
        let key = bound.key;
        let size = match v.get_ref() {
            DeValue::String(s) => s
                .parse::<ByteSize>()
                .map_err(|e| self.bad_value(here, key, v.span(), e.to_string()))?,
            DeValue::Integer(_) => ByteSize(self.integer(here, key, v, 0, u64::MAX)?),
            _ => return Err(self.type_error(here, key, v, "a size such as \"64M\"")),
        };
        limits::check(bound, size.0).map_err(|_| {
            let why = format!(
                "{} is out of range: expected {} to {} bytes",
                size.0, bound.min, bound.max
            );
            self.bad_value(here, key, v.span(), why)
        })?;
        Ok(size)
    }

    fn cpus(&self, here: &TablePath, v: &Value<'_>) -> Result<CpuQuota, ManifestError> {
        let text: Cow<'_, str> = match v.get_ref() {
            DeValue::String(s) => Cow::Borrowed(s.as_ref()),
            DeValue::Float(f) => Cow::Borrowed(f.as_str().trim_start_matches('+')),
            other => match Self::int_value(other) {
                Some(n) => Cow::Owned(n.to_string()),
                None => {
                    return Err(self.type_error(here, "cpus", v, "a number of cpus such as 0.5"));
                }
            },
        };
        text.parse::<CpuQuota>()
            .map_err(|e| self.bad_value(here, "cpus", v.span(), e.to_string()))
    }

    fn restart(&self, here: &TablePath, v: &Value<'_>) -> Result<RestartPolicy, ManifestError> {
        let s = self.string(here, "restart", v)?;
        s.parse().map_err(|e: RestartPolicyError| {
            let mut why = e.to_string();
            let names = RestartPolicy::ALL.map(RestartPolicy::as_str);
            if let Some(m) = suggest(s, &names) {
                why.push_str(&format!(" (did you mean {m:?}?)"));
            }
            self.bad_value(here, "restart", v.span(), why)
        })
    }

    /// A `may_send` / `may_discover` list. `this` is the environment's own name and host name
    /// when naming itself is an error.
    fn targets(
        &self,
        here: &TablePath,
        key: &str,
        v: &Value<'_>,
        this: Option<(&EnvName, Option<&str>)>,
    ) -> Result<Vec<String>, ManifestError> {
        let items = self.array(here, key, v, "an array of names")?;
        let max = if key == "may_send" {
            crate::limits::MAX_MAY_SEND
        } else {
            MAX_TARGETS
        };
        if items.len() > max {
            let why = format!("{} names given; at most {max} are allowed", items.len());
            return Err(self.bad_value(here, key, v.span(), why));
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let s = self.item(here, key, i, item)?;
            let Some(t) = parse_target(s) else {
                let why = format!(
                    "{s:?} is not a valid name: expected ENV, ENV/MAILBOX, ENV@HOST or \
                     ENV/MAILBOX@HOST, each part 1 to 63 lowercase letters, digits and '-'"
                );
                return Err(self.item_error(here, key, i, item, why));
            };
            if let Some((me, my_host)) = this {
                let local = t.host.is_none() || t.host == my_host;
                if local && t.env == me.as_str() {
                    let why = match t.mailbox {
                        None => format!("{s:?} is the environment itself"),
                        Some(_) => format!("{s:?} is a mailbox of the environment itself"),
                    };
                    let why = format!("{why}: an environment already holds its own mailboxes");
                    return Err(self.item_error(here, key, i, item, why));
                }
            }
            if !seen.insert(s) {
                let why = format!("{s:?} is listed twice");
                return Err(self.item_error(here, key, i, item, why));
            }
            out.push(s.to_owned());
        }
        Ok(out)
    }

    fn allow_missing(&self, here: &TablePath, v: &Value<'_>) -> Result<Vec<String>, ManifestError> {
        let key = "allow_missing";
        let items = self.array(here, key, v, "an array of protection names")?;
        let mut out = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let s = self.item(here, key, i, item)?;
            if !PROTECTIONS.contains(&s) {
                let mut why = format!(
                    "unknown protection {s:?}: expected \"landlock\", \"seccomp\" or \"cgroup\""
                );
                if let Some(m) = suggest(s, &PROTECTIONS) {
                    why.push_str(&format!(" (did you mean {m:?}?)"));
                }
                return Err(self.item_error(here, key, i, item, why));
            }
            if !out.insert(s.to_owned()) {
                let why = format!("{s:?} is listed twice");
                return Err(self.item_error(here, key, i, item, why));
            }
        }
        Ok(out.into_iter().collect())
    }

    fn capabilities(&self, here: &TablePath, v: &Value<'_>) -> Result<Vec<String>, ManifestError> {
        let key = "capabilities";
        let items = self.array(here, key, v, "an array of capability names")?;
        let mut out = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let s = self.item(here, key, i, item)?;
            let cap = s
                .parse::<crate::caps::Capability>()
                .map_err(|e| self.item_error(here, key, i, item, e.to_string()))?;
            if !out.insert(cap) {
                let why = format!("{} is listed twice", cap.name);
                return Err(self.item_error(here, key, i, item, why));
            }
        }
        Ok(out.into_iter().map(|c| c.name.to_owned()).collect())
    }

    /// `add_hosts = ["NAME:IP", ...]` or `dns = ["IP", ...]`: each item checked by the same
    /// routine as `warren run --add-host`/`--dns` (`crate::etc`).
    fn etc_list<T>(
        &self,
        here: &TablePath,
        key: &str,
        v: &Value<'_>,
        parse: fn(&str) -> Result<T, crate::etc::EtcError>,
    ) -> Result<Vec<T>, ManifestError> {
        let items = self.array(here, key, v, "an array of strings")?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let s = self.item(here, key, i, item)?;
            out.push(parse(s).map_err(|e| self.item_error(here, key, i, item, e.to_string()))?);
        }
        Ok(out)
    }

    /// The list limits of `crate::etc::check_lists`.
    fn etc_count(
        &self,
        here: &TablePath,
        key: &str,
        v: &Value<'_>,
        hosts: &[crate::etc::HostEntry],
        dns: &[std::net::IpAddr],
    ) -> Result<(), ManifestError> {
        crate::etc::check_lists(hosts, dns)
            .map_err(|e| self.bad_value(here, key, v.span(), e.to_string()))
    }

    /// `volumes = ["SRC:DEST[:ro]", ...]`: the form of `warren run -v`, no two on one DEST.
    fn volumes(
        &self,
        here: &TablePath,
        v: &Value<'_>,
    ) -> Result<Vec<crate::mount::MountRequest>, ManifestError> {
        let key = "volumes";
        let items = self.array(here, key, v, "an array of \"SRC:DEST[:ro]\" strings")?;
        let mut out: Vec<crate::mount::MountRequest> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let s = self.item(here, key, i, item)?;
            let m = crate::mount::parse_volume(s)
                .map_err(|e| self.item_error(here, key, i, item, format!("{s:?}: {e}")))?;
            if out.iter().any(|o| o.dest == m.dest) {
                let why = format!("two volumes on {}", m.dest.display());
                return Err(self.item_error(here, key, i, item, why));
            }
            out.push(m);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
