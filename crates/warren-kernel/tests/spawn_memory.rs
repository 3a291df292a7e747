//! The kernel's own memory per spawned child (target: at most 4 KiB, docs/protocol.md §16 and
//! BENCHMARKS.md). One test in its own binary, so that nothing else allocates meanwhile: it
//! reads the process's resident memory (`/proc/self/statm`), spawns 5,000 children of one
//! parent, each with one initial name, and divides the growth by the number of children. It
//! prints the figure; run with `--nocapture` to see it.

use warren_kernel::{Action, Config, EnvSpec, Kernel, TemplateInfo};
use warren_proto::{Limits, Request, Response, Spawn};

const CHILDREN: usize = 5_000;
const PER_CHILD_LIMIT: usize = 4096;

/// Resident bytes of this process.
fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn spawn_many(k: &mut Kernel, parent: warren_kernel::EnvId, handle: u32, n: usize, id: &mut u32) {
    for _ in 0..n {
        *id += 1;
        let s = Spawn {
            handle,
            names: vec![("store".into(), 2)],
            ..Spawn::default()
        };
        k.handle_request(parent, *id, Request::Spawn(s), 0);
        let mut ticket = None;
        while let Some(a) = k.poll_action() {
            match a {
                Action::Spawn(order) => ticket = Some(order.ticket),
                Action::Respond { response, .. } => panic!("answered at once: {response:?}"),
                _ => {}
            }
        }
        k.spawned(ticket.expect("a spawn order"), 0).unwrap();
        while let Some(a) = k.poll_action() {
            if let Action::Respond { response, .. } = a {
                assert!(matches!(response, Response::Spawned(_)), "{response:?}");
            }
        }
    }
}

#[test]
fn the_kernels_memory_per_child_is_at_most_4_kib() {
    let mut k = Kernel::new(Config {
        max_handles: 4 * CHILDREN,
        ..Config::default()
    });
    k.set_templates(vec![TemplateInfo {
        name: "req".into(),
        max_instances: 2 * CHILDREN as u32,
        limits: Limits::default(),
        ..TemplateInfo::default()
    }]);
    k.set_max_children(2 * CHILDREN);
    let store = EnvSpec {
        name: "store".into(),
        ..EnvSpec::default()
    };
    k.add_env(store, 0).unwrap();
    let parent = k
        .add_env(
            EnvSpec {
                name: "front".into(),
                may_send: vec!["store".into()],
                ..EnvSpec::default()
            },
            0,
        )
        .unwrap();
    k.set_may_spawn(parent, vec!["req".into()]);
    while k.poll_action().is_some() {}
    let mut id = 0;
    // Warm up the allocator and the maps' first growth.
    spawn_many(&mut k, parent, 3, 200, &mut id);
    let before = resident();
    spawn_many(&mut k, parent, 3, CHILDREN, &mut id);
    let after = resident();
    assert_eq!(k.children_of(parent).len(), CHILDREN + 200);
    let per_child = after.saturating_sub(before) / CHILDREN;
    println!(
        "kernel memory per spawned child: {per_child} bytes ({} KiB for {CHILDREN} children, \
         resident {} -> {} KiB)",
        (after - before) / 1024,
        before / 1024,
        after / 1024
    );
    assert!(
        per_child <= PER_CHILD_LIMIT,
        "{per_child} bytes per child, over {PER_CHILD_LIMIT}"
    );
    // Positive control of the measurement: the growth is real (each child costs something).
    assert!(after > before, "resident memory did not grow at all");
}
