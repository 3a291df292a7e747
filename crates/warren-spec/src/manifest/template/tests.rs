//! Template tests, data-driven like the manifest's: `check` for files that parse (the templates
//! and `may_spawn` lists compared as JSON), `check_err` for the exact error and the key it names.

use std::path::Path;

use serde_json::json;

use crate::parse_manifest;

/// Strips the first newline and the common indentation, so line 1 is the first written line.
fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `text` parses; its templates' JSON is `templates` and each space's `may_spawn` is as given.
#[track_caller]
fn check(text: &str, templates: serde_json::Value, may_spawn: &[(&str, &[&str])]) {
    let m = parse_manifest(Path::new("/srv/warren/spaces.toml"), &dedent(text))
        .unwrap_or_else(|e| panic!("unexpected error: {e}"));
    let got = serde_json::to_value(&m.templates).unwrap();
    assert_eq!(
        got,
        templates,
        "\n{}",
        serde_json::to_string_pretty(&got).unwrap()
    );
    for (space, want) in may_spawn {
        let s = m
            .spaces
            .iter()
            .find(|(n, _)| n.as_str() == *space)
            .unwrap()
            .1;
        assert_eq!(s.may_spawn, *want, "may_spawn of {space}");
    }
}

/// `text` (as `spaces.toml`) is rejected with exactly `display`, naming `key`.
#[track_caller]
fn check_err(text: &str, display: &str, key: &str) {
    let e = match parse_manifest(Path::new("spaces.toml"), &dedent(text)) {
        Ok(m) => panic!("expected an error, parsed {m:?}"),
        Err(e) => e,
    };
    assert_eq!(e.to_string(), display);
    assert_eq!(e.key, key, "key of {display}");
}

#[test]
fn every_key() {
    check(
        r#"
        [space.front]
        image = { binary = "/usr/bin/front" }
        may_spawn = ["req", "batch"]

        [template.req]
        image = "images/req"
        command = ["/bin/req", "--once"]
        env = { MODE = "strict" }
        net = "auto"
        memory = "32M"
        pids = 16
        cpus = 0.25
        tmpfs_size = "4M"
        restart = "on-failure"
        max_restarts = 2
        mailbox_capacity = 8
        allow_missing = ["landlock"]
        max_instances = 100
        args = true
        env_allow = ["REQUEST_ID", "LANG"]
        detach = true
        may_spawn = ["batch"]
        init = false
        x-note = "one per request"

        [template.batch]
        image = { binary = "/usr/bin/batch" }
        max_instances = 1
        "#,
        json!({
            "batch": {
                "image": { "binary": "/usr/bin/batch" }, "command": ["/usr/bin/batch"],
                "env": {}, "net": "none", "memory": null, "pids": null, "cpus": null,
                "tmpfs_size": null, "restart": "no", "max_restarts": 5,
                "mailbox_capacity": null, "allow_missing": [], "max_instances": 1,
                "args": false, "env_allow": [], "detach": false, "may_spawn": [],
                "init": true,
            },
            "req": {
                "image": { "rootfs": "/srv/warren/images/req" },
                "command": ["/bin/req", "--once"],
                "env": { "MODE": "strict" }, "net": { "veth": { "address": null, "allow": [], "egress": false, "publish": [] } }, "memory": 32 << 20,
                "pids": 16, "cpus": 250_000, "tmpfs_size": 4 << 20, "restart": "on-failure",
                "max_restarts": 2, "mailbox_capacity": 8, "allow_missing": ["landlock"],
                "max_instances": 100, "args": true, "env_allow": ["LANG", "REQUEST_ID"],
                "detach": true, "may_spawn": ["batch"], "init": false,
            },
        }),
        &[("front", &["req", "batch"])],
    );
}

#[test]
fn without_templates_nothing_changes() {
    let m = parse_manifest(
        Path::new("/m.toml"),
        "[space.a]\nimage = \"/\"\ncommand = [\"/a\"]\n",
    )
    .unwrap();
    assert!(m.templates.is_empty());
    let json = serde_json::to_value(&m).unwrap();
    assert!(json.get("templates").is_none(), "{json}");
    assert_eq!(json["spaces"]["a"]["may_spawn"], json!([]), "{json}");
}

#[test]
fn errors_name_file_line_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"
            [template.req]
            image = "/r"
            command = ["/r"]
            "#,
            "spaces.toml:1:1: [template.req] has no \"max_instances\": say how many children of \
             this template may live at once, host-wide (e.g. max_instances = 100)",
            "template.req.max_instances",
        ),
        (
            r#"
            [template.req]
            command = ["/r"]
            max_instances = 1
            "#,
            "spaces.toml:1:1: [template.req] has no \"image\": give a directory (image = \
             \"images/req\") or a program (image = { binary = \"/usr/bin/req\" })",
            "template.req.image",
        ),
        (
            r#"
            [template.req]
            image = "/r"
            max_instances = 1
            "#,
            "spaces.toml:1:1: [template.req] has a rootfs image but no \"command\": say which \
             program to run, e.g. command = [\"/bin/req\"]",
            "template.req.command",
        ),
        (
            r#"
            [template.req]
            image = "/r"
            command = ["/r"]
            max_instances = 0
            "#,
            "spaces.toml:4:17: \"max_instances\" in [template.req]: 0 is out of range: expected \
             1 to 10000",
            "template.req.max_instances",
        ),
        (
            r#"
            [template.req]
            image = "/r"
            command = ["/r"]
            max_instances = 1
            max_instance = 2
            "#,
            "spaces.toml:5:1: unknown key \"max_instance\" in [template.req] (did you mean \
             \"max_instances\"?)",
            "template.req.max_instance",
        ),
        (
            r#"
            [template.req]
            image = { binary = "/r", with = ["/etc/hosts"] }
            max_instances = 1
            "#,
            "spaces.toml:2:9: \"image\" in [template.req]: a template's image takes no \"with\" \
             files: put them in its root directory",
            "template.req.image",
        ),
        (
            r#"
            [template.req]
            image = "/r"
            command = ["/r"]
            max_instances = 1
            may_send = ["db"]
            "#,
            "spaces.toml:5:1: \"may_send\" in [template.req]: a template grants no names: a \
             child gets exactly the names its spawner passes when it spawns it",
            "template.req.may_send",
        ),
        (
            r#"
            [template.req]
            image = "/r"
            command = ["/r"]
            max_instances = 1
            net = { address = "10.88.0.2/24" }
            "#,
            "spaces.toml:5:7: \"net\" in [template.req]: a template's network is \"none\" or \
             \"auto\": fixed addresses and published ports cannot be shared by many children",
            "template.req.net",
        ),
        (
            r#"
            [template.req]
            image = "/r"
            command = ["/r"]
            max_instances = 1
            net = "host"
            "#,
            "spaces.toml:5:7: \"net\" in [template.req]: \"host\" is not a template network: use \
             \"none\" (the default) or \"auto\" (an address from the host's pool)",
            "template.req.net",
        ),
        (
            r#"
            [template.req]
            image = "/r"
            command = ["/r"]
            max_instances = 1
            args = "yes"
            "#,
            "spaces.toml:5:8: \"args\" in [template.req] must be true or false, found a string",
            "template.req.args",
        ),
        (
            r#"
            [template.req]
            image = "/r"
            command = ["/r"]
            max_instances = 1
            env_allow = ["OK", "WARREN_FD"]
            "#,
            "spaces.toml:5:20: \"env_allow\" in [template.req]: variable \"WARREN_FD\" is \
             reserved: Warren sets WARREN_* variables itself",
            "template.req.env_allow[1]",
        ),
        (
            r#"
            [template.req]
            image = "/r"
            command = ["/r"]
            max_instances = 1
            env_allow = ["1X"]
            "#,
            "spaces.toml:5:14: \"env_allow\" in [template.req]: variable name \"1X\" is not \
             valid: use letters, digits and '_', not starting with a digit",
            "template.req.env_allow[0]",
        ),
        (
            r#"
            [template.req]
            image = "/r"
            command = ["/r"]
            max_instances = 1
            env_allow = ["A", "A"]
            "#,
            "spaces.toml:5:19: \"env_allow\" in [template.req]: \"A\" is listed twice",
            "template.req.env_allow[1]",
        ),
        (
            r#"
            [space.front]
            image = "/f"
            command = ["/f"]
            may_spawn = ["rq"]

            [template.req]
            image = "/r"
            command = ["/r"]
            max_instances = 1
            "#,
            "spaces.toml:4:14: \"may_spawn\" in [space.front]: \"rq\" is not a template declared \
             in this file (did you mean \"req\"?)",
            "space.front.may_spawn[0]",
        ),
        (
            r#"
            [space.front]
            image = "/f"
            command = ["/f"]
            may_spawn = ["worker"]
            "#,
            "spaces.toml:4:14: \"may_spawn\" in [space.front]: \"worker\" is not a template \
             declared in this file: declare it as [template.worker]",
            "space.front.may_spawn[0]",
        ),
        (
            r#"
            [template.req]
            image = "/r"
            command = ["/r"]
            max_instances = 1
            may_spawn = ["req", "req"]
            "#,
            "spaces.toml:5:21: \"may_spawn\" in [template.req]: \"req\" is listed twice",
            "template.req.may_spawn[1]",
        ),
        (
            r#"
            [template.req]
            image = "/r"
            command = ["/r"]
            max_instances = 1
            may_spawn = ["Req"]
            "#,
            "spaces.toml:5:14: \"may_spawn\" in [template.req]: template name \"Req\" is not \
             valid: use lowercase letters, digits and '-', starting and ending with a letter or \
             digit",
            "template.req.may_spawn[0]",
        ),
        (
            r#"
            [template.Req]
            image = "/r"
            "#,
            "spaces.toml:1:11: template name \"Req\" is not valid: use lowercase letters, digits \
             and '-', starting and ending with a letter or digit",
            "template.Req",
        ),
        (
            r#"
            [template.x-req]
            image = "/r"
            "#,
            "spaces.toml:1:11: template name \"x-req\" starts with \"x-\", which marks extension \
             keys; choose another name",
            "template.x-req",
        ),
        (
            r#"
            template = 3
            "#,
            "spaces.toml:1:12: \"template\" at the top level must be a table of templates \
             ([template.NAME]), found an integer",
            "template",
        ),
        (
            r#"
            [templates.req]
            image = "/r"
            "#,
            "spaces.toml:1:2: unknown key \"templates\" at the top level (did you mean \
             \"template\"?)",
            "templates",
        ),
    ];
    for (text, display, key) in cases {
        check_err(text, display, key);
    }
}

#[test]
fn a_template_may_spawn_itself_and_spaces_share_templates() {
    check(
        r#"
        [space.a]
        image = "/a"
        command = ["/a"]
        may_spawn = ["tree"]

        [space.b]
        image = "/b"
        command = ["/b"]
        may_spawn = ["tree"]

        [template.tree]
        image = "/t"
        command = ["/t"]
        max_instances = 10000
        may_spawn = ["tree"]
        "#,
        json!({
            "tree": {
                "image": { "rootfs": "/t" }, "command": ["/t"], "env": {}, "net": "none",
                "memory": null, "pids": null, "cpus": null, "tmpfs_size": null,
                "restart": "no", "max_restarts": 5, "mailbox_capacity": null,
                "allow_missing": [], "max_instances": 10000, "args": false, "env_allow": [],
                "detach": false, "may_spawn": ["tree"], "init": true,
            },
        }),
        &[("a", &["tree"]), ("b", &["tree"])],
    );
}
