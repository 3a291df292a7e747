//! From the manifest's templates to what the kernel and the launcher need: the kernel's view of
//! a template ([`template_info`]: its permissions and ceilings) and the spec a spawned child is
//! launched with ([`child_spec`]: the template's image and command, the spawner's arguments
//! appended, its variables on top of the template's, its limits). Pure: the daemon calls these
//! when it declares templates to the kernel and when it carries out an `Action::Spawn`.

use warren_kernel::{SpawnOrder, TemplateInfo};
use warren_proto::Limits;
use warren_spec::{ByteSize, CpuQuota, EnvName, SpaceSpec, TemplateSpec};

/// The kernel's view of template `name`.
pub fn template_info(name: &EnvName, t: &TemplateSpec) -> TemplateInfo {
    TemplateInfo {
        name: name.as_str().to_owned(),
        max_instances: t.max_instances,
        args: t.args,
        env_allow: t.env_allow.clone(),
        detach: t.detach,
        limits: Limits {
            memory: t.memory.map(|b| b.0),
            pids: t.pids,
            cpus: t.cpus.map(|c| c.micros),
            tmpfs_size: t.tmpfs_size.map(|b| b.0),
        },
        may_spawn: t.may_spawn.clone(),
        mailbox_capacity: t.mailbox_capacity,
    }
}

/// The spec child `order.child` is launched with. The kernel has already checked the order
/// against the template (arguments allowed, variables in `env_allow`, limits within the
/// ceilings); a child never gets `may_send`, `may_discover` or `accept_from`: its names are the
/// initial names the kernel installs.
pub fn child_spec(t: &TemplateSpec, order: &SpawnOrder) -> SpaceSpec {
    let mut command = t.command.clone();
    command.extend(order.args.iter().cloned());
    let mut env = t.env.clone();
    env.extend(order.env.iter().cloned());
    SpaceSpec {
        image: t.image.clone(),
        command,
        env,
        memory: order.limits.memory.map(ByteSize),
        pids: order.limits.pids,
        cpus: order.limits.cpus.map(|micros| CpuQuota { micros }),
        tmpfs_size: order.limits.tmpfs_size.map(ByteSize),
        restart: t.restart,
        max_restarts: t.max_restarts,
        may_send: Vec::new(),
        may_discover: Vec::new(),
        mailbox_capacity: t.mailbox_capacity,
        allow_missing: t.allow_missing.clone(),
        net: t.net.clone(),
        seccomp: None,
        accept_from: Vec::new(),
        may_spawn: t.may_spawn.clone(),
        mailbox_bytes: None,
        // Like a declared environment: unless the template says `init = false`, a small init
        // is pid 1 (reaps, forwards signals, exits as the command).
        init: t.init,
        with: Vec::new(),
        // A template grants no capabilities and mounts no volumes (its keys do not exist).
        capabilities: Vec::new(),
        volumes: Vec::new(),
        read_only: true,
        writable_root_size: None,
        add_hosts: Vec::new(),
        dns: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn manifest() -> warren_spec::Manifest {
        let text = r#"
            [template.req]
            image = { binary = "/bin/req" }
            command = ["/bin/req", "--serve"]
            env = { MODE = "strict", REQUEST_ID = "none" }
            memory = "32M"
            cpus = 0.5
            max_instances = 7
            args = true
            env_allow = ["REQUEST_ID"]
            may_spawn = ["req"]
        "#;
        warren_spec::parse_manifest(Path::new("/m.toml"), text).unwrap()
    }

    #[test]
    fn the_kernel_sees_the_templates_permissions_and_ceilings() {
        let m = manifest();
        let (name, t) = m.templates.iter().next().unwrap();
        let info = template_info(name, t);
        assert_eq!(info.name, "req");
        assert_eq!(info.max_instances, 7);
        assert!(info.args && !info.detach);
        assert_eq!(info.env_allow, vec!["REQUEST_ID".to_string()]);
        assert_eq!(info.limits.memory, Some(32 << 20));
        assert_eq!(info.limits.cpus, Some(500_000));
        assert_eq!((info.limits.pids, info.limits.tmpfs_size), (None, None));
        assert_eq!(info.may_spawn, vec!["req".to_string()]);
    }

    #[test]
    fn a_child_runs_the_template_with_the_spawners_choices() {
        let m = manifest();
        let t = m.templates.values().next().unwrap();
        let order = SpawnOrder {
            ticket: 1,
            parent: warren_kernel::EnvId(3),
            parent_name: "front".into(),
            template: "req".into(),
            child: "req-a".into(),
            args: vec!["--once".into()],
            env: vec![("REQUEST_ID".into(), "42".into())],
            limits: Limits {
                memory: Some(8 << 20),
                pids: Some(4),
                cpus: Some(500_000),
                tmpfs_size: None,
            },
            detach: false,
        };
        let spec = child_spec(t, &order);
        assert_eq!(spec.command, ["/bin/req", "--serve", "--once"]);
        assert_eq!(spec.env["REQUEST_ID"], "42", "the spawner's value wins");
        assert_eq!(spec.env["MODE"], "strict");
        assert_eq!(spec.memory, Some(ByteSize(8 << 20)));
        assert_eq!(spec.pids, Some(4));
        assert!(spec.may_send.is_empty() && spec.may_discover.is_empty());
        assert_eq!(spec.may_spawn, vec!["req".to_string()]);
    }
}
