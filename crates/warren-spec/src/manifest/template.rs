//! Templates: `[template.NAME]` tables, the environments a program may create at run time
//! (`spawn`), and `may_spawn`, the list that gives an environment or a template a SPAWN
//! capability on them. A template fixes what may run (image, command, limits, network); a
//! spawner only chooses among what the administrator allowed: a name suffix, arguments when
//! `args = true`, the variables `env_allow` lists, limits at most the template's, and whether to
//! detach when `detach = true`. The schema is in `docs/manifest.md` ("Templates").

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use toml::de::DeValue;

use super::{
    DEFAULT_MAX_RESTARTS, ManifestError, Parser, RestartPolicy, TablePath, Value, entries,
    env_key_ok, is_extension,
};
use crate::limits;
use crate::net::NetSpec;
use crate::{ByteSize, CpuQuota, EnvName, ImageSpec};

/// Most templates one manifest may declare.
pub const MAX_TEMPLATES: usize = 1000;

/// Largest `max_instances` a template may declare (live children host-wide).
pub const MAX_INSTANCES: u64 = 10_000;

/// Most names one `env_allow` or `may_spawn` list may hold.
pub const MAX_TEMPLATE_LIST: usize = 256;

/// The keys of a template's table, in the order the docs list them.
const TEMPLATE_KEYS: [&str; 18] = [
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
    "mailbox_capacity",
    "allow_missing",
    "max_instances",
    "args",
    "env_allow",
    "detach",
    "may_spawn",
    "init",
];

/// One template as declared: what every child made from it runs, and what a spawner may
/// choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSpec {
    /// Where the child's root filesystem comes from.
    pub image: ImageSpec,
    /// The program and its arguments (a spawner may append arguments when `args` is true).
    pub command: Vec<String>,
    /// Environment variables every child gets (a spawner may set the `env_allow` ones).
    pub env: BTreeMap<String, String>,
    /// The child's network: [`NetSpec::None`] (loopback only) or an address from the pool
    /// (`"auto"`). Fixed addresses and published ports make no sense for many children.
    pub net: NetSpec,
    /// Memory ceiling of each child; a spawner may ask for less. `None`: unlimited (the
    /// parent's own limit still bounds the tree).
    pub memory: Option<ByteSize>,
    /// Most processes of each child; a spawner may ask for fewer.
    pub pids: Option<u64>,
    /// CPU ceiling of each child; a spawner may ask for less.
    pub cpus: Option<CpuQuota>,
    /// Size of each child's `/tmp`; a spawner may ask for less.
    pub tmpfs_size: Option<ByteSize>,
    /// What the supervisor does when a child exits.
    pub restart: RestartPolicy,
    /// Restarts allowed within the backoff window.
    pub max_restarts: u32,
    /// Bound of the child's mailboxes in messages; `None` takes the kernel's default.
    pub mailbox_capacity: Option<usize>,
    /// Protections a child may run without, sorted.
    pub allow_missing: Vec<String>,
    /// Most live children made from this template, host-wide (every spawner together).
    pub max_instances: u32,
    /// Whether a spawner may append arguments to `command`.
    pub args: bool,
    /// The variables a spawner may set, sorted.
    pub env_allow: Vec<String>,
    /// Whether a spawner may detach a child (a detached child outlives its parent).
    pub detach: bool,
    /// Templates a child made from this one may itself spawn from, in the order written.
    pub may_spawn: Vec<String>,
    /// Whether a child runs under the small init (`warren-msg init` as pid 1, the command as
    /// pid 2), as `init` in `[space.NAME]`; `false` runs the command as pid 1 (one process per
    /// child fewer, for a command that needs no init). Absent from registries written before
    /// the key existed: `true`, what those children ran with.
    #[serde(default = "init_default")]
    pub init: bool,
}

fn init_default() -> bool {
    true
}

/// The names of the templates `root` declares, read before anything else so that `may_spawn`
/// lists anywhere in the file can be checked against them. A malformed `template` table gives
/// no names here; its own parse reports the error.
pub(super) fn declared_names(root: &toml::de::DeTable<'_>) -> BTreeSet<String> {
    match root.get("template").map(|v| v.get_ref()) {
        Some(DeValue::Table(t)) => t.iter().map(|(k, _)| k.get_ref().to_string()).collect(),
        _ => BTreeSet::new(),
    }
}

impl Parser<'_> {
    /// The `[template.*]` tables.
    pub(super) fn templates(
        &self,
        top: &TablePath,
        v: &Value<'_>,
    ) -> Result<BTreeMap<EnvName, TemplateSpec>, ManifestError> {
        let DeValue::Table(t) = v.get_ref() else {
            let want = "a table of templates ([template.NAME])";
            return Err(self.type_error(top, "template", v, want));
        };
        let here = top.child("template");
        let mut out = BTreeMap::new();
        for (i, (k, v)) in entries(t).into_iter().enumerate() {
            let raw = k.get_ref().as_ref();
            if i == MAX_TEMPLATES {
                let msg = format!("too many templates: at most {MAX_TEMPLATES} are allowed");
                return Err(self.error(k.span(), here.key(raw), msg));
            }
            if is_extension(raw) {
                let msg = format!(
                    "template name {raw:?} starts with \"x-\", which marks extension keys; choose \
                     another name"
                );
                return Err(self.error(k.span(), here.key(raw), msg));
            }
            let name: EnvName = raw.parse().map_err(|e: crate::NameError| {
                let msg = e
                    .to_string()
                    .replacen("environment name", "template name", 1);
                self.error(k.span(), here.key(raw), msg)
            })?;
            let spec = self.template(&here.child(raw), &name, v)?;
            out.insert(name, spec);
        }
        Ok(out)
    }

    fn template(
        &self,
        here: &TablePath,
        name: &EnvName,
        v: &Value<'_>,
    ) -> Result<TemplateSpec, ManifestError> {
        let DeValue::Table(t) = v.get_ref() else {
            let parent = TablePath(here.0[..here.0.len() - 1].to_vec());
            return Err(self.type_error(&parent, name.as_str(), v, "a table ([template.NAME])"));
        };
        let mut image = None;
        let mut command = None;
        let mut max_instances = None;
        let mut s = TemplateSpec {
            image: ImageSpec::Rootfs(PathBuf::new()),
            command: Vec::new(),
            env: BTreeMap::new(),
            net: NetSpec::None,
            memory: None,
            pids: None,
            cpus: None,
            tmpfs_size: None,
            restart: RestartPolicy::No,
            max_restarts: DEFAULT_MAX_RESTARTS,
            mailbox_capacity: None,
            allow_missing: Vec::new(),
            max_instances: 0,
            args: false,
            env_allow: Vec::new(),
            detach: false,
            may_spawn: Vec::new(),
            init: true,
        };
        for (k, v) in entries(t) {
            let key = k.get_ref().as_ref();
            match key {
                "image" => {
                    let (i, with) = self.image(here, v)?;
                    if !with.is_empty() {
                        let msg = format!(
                            "{}: a template's image takes no \"with\" files: put them in its \
                             root directory",
                            here.at(key)
                        );
                        return Err(self.error(v.span(), here.key(key), msg));
                    }
                    image = Some(i);
                }
                "command" => command = Some(self.command(here, v)?),
                "env" => s.env = self.env(here, v)?,
                "net" => s.net = self.template_net(here, v)?,
                "memory" => s.memory = Some(self.size(here, limits::MEMORY, v)?),
                "pids" => s.pids = Some(self.integer(here, key, v, 1, u64::MAX)?),
                "cpus" => s.cpus = Some(self.cpus(here, v)?),
                "tmpfs_size" => s.tmpfs_size = Some(self.size(here, limits::TMPFS_SIZE, v)?),
                "restart" => s.restart = self.restart(here, v)?,
                "max_restarts" => {
                    let n = self.integer(here, key, v, 0, u64::from(u32::MAX))?;
                    s.max_restarts = u32::try_from(n).unwrap_or(u32::MAX);
                }
                "mailbox_capacity" => {
                    let n = self.integer(here, key, v, 1, usize::MAX as u64)?;
                    s.mailbox_capacity = Some(usize::try_from(n).unwrap_or(usize::MAX));
                }
                "allow_missing" => s.allow_missing = self.allow_missing(here, v)?,
                "max_instances" => {
                    let n = self.integer(here, key, v, 1, MAX_INSTANCES)?;
                    max_instances = Some(u32::try_from(n).unwrap_or(u32::MAX));
                }
                "args" => s.args = self.boolean(here, key, v)?,
                "env_allow" => s.env_allow = self.env_allow(here, v)?,
                "detach" => s.detach = self.boolean(here, key, v)?,
                "may_spawn" => s.may_spawn = self.may_spawn(here, v)?,
                "init" => s.init = self.boolean(here, key, v)?,
                "may_send" | "may_discover" | "accept_from" => {
                    let msg = format!(
                        "{}: a template grants no names: a child gets exactly the names its \
                         spawner passes when it spawns it",
                        here.at(key)
                    );
                    return Err(self.error(k.span(), here.key(key), msg));
                }
                x if is_extension(x) => {}
                _ => return Err(self.unknown(here, k, &TEMPLATE_KEYS)),
            }
        }
        let Some(image) = image else {
            let msg = format!(
                "{} has no \"image\": give a directory (image = \"images/{name}\") or a program \
                 (image = {{ binary = \"/usr/bin/{name}\" }})",
                here.describe()
            );
            return Err(self.error(v.span(), here.key("image"), msg));
        };
        s.command = match (command, &image) {
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
        s.image = image;
        let Some(max) = max_instances else {
            let msg = format!(
                "{} has no \"max_instances\": say how many children of this template may live \
                 at once, host-wide (e.g. max_instances = 100)",
                here.describe()
            );
            return Err(self.error(v.span(), here.key("max_instances"), msg));
        };
        s.max_instances = max;
        Ok(s)
    }

    /// A template's `net`: only `"none"` and `"auto"`.
    fn template_net(&self, here: &TablePath, v: &Value<'_>) -> Result<NetSpec, ManifestError> {
        match v.get_ref() {
            DeValue::String(s) if s == "none" || s == "auto" => self.net(here, v),
            DeValue::String(s) => {
                let why = format!(
                    "{s:?} is not a template network: use \"none\" (the default) or \"auto\" (an \
                     address from the host's pool)"
                );
                Err(self.bad_value(here, "net", v.span(), why))
            }
            DeValue::Table(_) => {
                let why = "a template's network is \"none\" or \"auto\": fixed addresses and \
                           published ports cannot be shared by many children"
                    .to_owned();
                Err(self.bad_value(here, "net", v.span(), why))
            }
            _ => Err(self.type_error(here, "net", v, "\"none\" or \"auto\"")),
        }
    }

    fn boolean(&self, here: &TablePath, key: &str, v: &Value<'_>) -> Result<bool, ManifestError> {
        match v.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            _ => Err(self.type_error(here, key, v, "true or false")),
        }
    }

    /// `env_allow`: variable names a spawner may set, as a sorted set.
    fn env_allow(&self, here: &TablePath, v: &Value<'_>) -> Result<Vec<String>, ManifestError> {
        let key = "env_allow";
        let items = self.array(here, key, v, "an array of variable names")?;
        if items.len() > MAX_TEMPLATE_LIST {
            let why = format!(
                "{} names given; at most {MAX_TEMPLATE_LIST} are allowed",
                items.len()
            );
            return Err(self.bad_value(here, key, v.span(), why));
        }
        let mut out = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let s = self.item(here, key, i, item)?;
            if !env_key_ok(s) {
                let why = format!(
                    "variable name {s:?} is not valid: use letters, digits and '_', not starting \
                     with a digit"
                );
                return Err(self.item_error(here, key, i, item, why));
            }
            if s.starts_with("WARREN_") {
                let why =
                    format!("variable {s:?} is reserved: Warren sets WARREN_* variables itself");
                return Err(self.item_error(here, key, i, item, why));
            }
            if !out.insert(s.to_owned()) {
                let why = format!("{s:?} is listed twice");
                return Err(self.item_error(here, key, i, item, why));
            }
        }
        Ok(out.into_iter().collect())
    }

    /// `may_spawn`, in `[space.*]` or `[template.*]`: names of templates this file declares.
    pub(super) fn may_spawn(
        &self,
        here: &TablePath,
        v: &Value<'_>,
    ) -> Result<Vec<String>, ManifestError> {
        let key = "may_spawn";
        let items = self.array(here, key, v, "an array of template names")?;
        if items.len() > MAX_TEMPLATE_LIST {
            let why = format!(
                "{} names given; at most {MAX_TEMPLATE_LIST} are allowed",
                items.len()
            );
            return Err(self.bad_value(here, key, v.span(), why));
        }
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let s = self.item(here, key, i, item)?;
            if let Err(e) = EnvName::from_str(s) {
                let why = e
                    .to_string()
                    .replacen("environment name", "template name", 1);
                return Err(self.item_error(here, key, i, item, why));
            }
            if !self.templates.contains(s) {
                let mut why = format!("{s:?} is not a template declared in this file");
                let names: Vec<&str> = self.templates.iter().map(String::as_str).collect();
                match super::suggest(s, &names) {
                    Some(m) => why.push_str(&format!(" (did you mean {m:?}?)")),
                    None => why.push_str(&format!(": declare it as [template.{s}]")),
                }
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
}

#[cfg(test)]
mod tests;
