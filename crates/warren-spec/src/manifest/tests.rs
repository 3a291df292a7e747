//! Manifest tests, data-driven: `check` for manifests that parse (compared as JSON), `check_err`
//! for the exact error (`file:line:col: message`) and the key it names.

use super::*;
use serde_json::json;

/// Where the valid manifests live: relative image paths resolve against `/srv/warren`.
const FILE: &str = "/srv/warren/spaces.toml";

/// Strips the first newline and the indentation common to all non-blank lines, so a manifest
/// can be written indented in the test and still start on line 1, column 1.
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

/// `text` parses, and the manifest's JSON form is `expect` (`file` is always [`FILE`]).
#[track_caller]
fn check(text: &str, expect: serde_json::Value) {
    let m = parse_manifest(Path::new(FILE), &dedent(text))
        .unwrap_or_else(|e| panic!("unexpected error: {e}"));
    assert_eq!(m.file, Path::new(FILE));
    let mut got = serde_json::to_value(&m).unwrap();
    got.as_object_mut().unwrap().remove("file");
    assert_eq!(
        got,
        expect,
        "\n{}",
        serde_json::to_string_pretty(&got).unwrap()
    );
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
    assert_eq!(e.file, Path::new("spaces.toml"));
    assert!(e.source.is_none());
    let prefix = format!("spaces.toml:{}:{}: ", e.line, e.column);
    assert!(display.starts_with(&prefix), "{display} vs fields {prefix}");
}

/// The JSON of a spec with every default, for an image and command.
fn defaults(image: serde_json::Value, command: &[&str]) -> serde_json::Value {
    json!({
        "image": image, "command": command, "env": {}, "memory": null, "pids": null,
        "cpus": null, "tmpfs_size": null, "restart": "no", "max_restarts": 5, "may_send": [],
        "may_discover": [], "mailbox_capacity": null, "mailbox_bytes": null, "allow_missing": [],
        "capabilities": [], "net": "none", "accept_from": [], "with": [], "init": true, "volumes": [], "add_hosts": [], "dns": [],
        "may_spawn": [], "seccomp": null,
    })
}

/// `defaults` with some fields replaced.
fn with(mut base: serde_json::Value, fields: serde_json::Value) -> serde_json::Value {
    for (k, v) in fields.as_object().unwrap() {
        assert!(base.get(k).is_some(), "no field {k}");
        base[k] = v.clone();
    }
    base
}

#[test]
fn seccomp_names_a_built_in_profile_or_a_file_next_to_the_manifest() {
    for (value, want) in [
        ("strict", json!("strict")),
        // The default written out is the key left out (compared equal by `plan`).
        ("default", json!(null)),
        ("./strict", json!("/srv/warren/strict")),
        ("/etc/warren/p.json", json!("/etc/warren/p.json")),
    ] {
        let m = parse_manifest(
            Path::new(FILE),
            &format!(
                "[space.db]\nimage = \"images/db\"\ncommand = [\"/x\"]\nseccomp = \"{value}\"\n"
            ),
        )
        .unwrap();
        let got = serde_json::to_value(m.spaces.values().next().unwrap()).unwrap();
        assert_eq!(got["seccomp"], want, "{value}");
    }
    for bad in ["seccomp = 3", "seccomp = \"\""] {
        let text = format!("[space.db]\nimage = \"images/db\"\ncommand = [\"/x\"]\n{bad}\n");
        let e = parse_manifest(Path::new("spaces.toml"), &text).unwrap_err();
        assert_eq!(e.key, "space.db.seccomp", "{bad}: {e}");
    }
}

#[test]
fn add_hosts_and_dns_are_checked_as_the_flags_are() {
    let m = parse_manifest(
        Path::new(FILE),
        "[space.db]\nimage = \"images/db\"\ncommand = [\"/x\"]\n\
         add_hosts = [\"cache:10.0.0.7\", \"v6:fd00::7\"]\ndns = [\"192.0.2.53\"]\n",
    )
    .unwrap();
    let got = serde_json::to_value(m.spaces.values().next().unwrap()).unwrap();
    assert_eq!(
        got["add_hosts"],
        json!([{"name": "cache", "ip": "10.0.0.7"}, {"name": "v6", "ip": "fd00::7"}])
    );
    assert_eq!(got["dns"], json!(["192.0.2.53"]));
    for (bad, key, named) in [
        (
            "add_hosts = [\"cache:10.0.0.300\"]",
            "space.db.add_hosts[0]",
            "10.0.0.300",
        ),
        (
            "add_hosts = [\"ok:1.2.3.4\", \"no_good:1.2.3.4\"]",
            "space.db.add_hosts[1]",
            "no_good",
        ),
        ("add_hosts = \"cache:1.2.3.4\"", "space.db.add_hosts", ""),
        ("dns = [\"1.2.3\"]", "space.db.dns[0]", "1.2.3"),
        (
            "dns = [\"1.1.1.1\", \"1.0.0.1\", \"9.9.9.9\", \"8.8.8.8\"]",
            "space.db.dns",
            "at most 3",
        ),
    ] {
        let text = format!("[space.db]\nimage = \"images/db\"\ncommand = [\"/x\"]\n{bad}\n");
        let e = parse_manifest(Path::new("spaces.toml"), &text).unwrap_err();
        assert_eq!(e.key, key, "{bad}: {e}");
        assert!(e.to_string().contains(named), "{bad}: {e}");
    }
}

#[test]
fn every_key() {
    check(
        r#"
        x-owner = "team-a"

        [host]
        name = "alpha"
        x-site = "eu"

        [space.db]
        image = "images/db"
        command = ["/bin/db", "--port", "0", ""]
        env = { KEY = "value", _under = "" }
        net = "none"
        memory = "64M"
        pids = 64
        cpus = 0.5
        tmpfs_size = "32M"
        restart = "on-failure"
        max_restarts = 3
        may_send = ["web", "log@beta", "web/admin", "web/admin@alpha", "db@beta"]
        may_discover = ["db", "web"]
        mailbox_capacity = 128
        mailbox_bytes = "8M"
        allow_missing = ["seccomp", "landlock"]
        capabilities = ["setuid", "CAP_CHOWN", "NET_BIND_SERVICE"]
        seccomp = "profiles/db.json"
        init = false
        x-owner = "team-a"
        x-nested = { anything = [1, "goes"] }
        "#,
        json!({
            "host": { "name": "alpha" },
            "spaces": {
                "db": {
                    "image": { "rootfs": "/srv/warren/images/db" },
                    "command": ["/bin/db", "--port", "0", ""],
                    "env": { "KEY": "value", "_under": "" },
                    "memory": 64 << 20,
                    "pids": 64,
                    "cpus": 500_000,
                    "tmpfs_size": 32 << 20,
                    "restart": "on-failure",
                    "max_restarts": 3,
                    "may_send": ["web", "log@beta", "web/admin", "web/admin@alpha", "db@beta"],
                    "may_discover": ["db", "web"],
                    "mailbox_capacity": 128,
                    "mailbox_bytes": 8 << 20,
                    "allow_missing": ["landlock", "seccomp"],
                    "capabilities": ["CAP_CHOWN", "CAP_SETUID", "CAP_NET_BIND_SERVICE"],
                    "net": "none",
                    "seccomp": "/srv/warren/profiles/db.json",
                    "accept_from": [],
                    "may_spawn": [],
                    "with": [],
                    "volumes": [], "add_hosts": [], "dns": [],
                    "init": false,
                }
            }
        }),
    );
}

#[test]
fn defaults_and_image_forms() {
    // Empty: no host name, no environments.
    check("", json!({ "host": { "name": null }, "spaces": {} }));
    check(
        r#"
        [space.a]
        image = "/abs/root/"
        command = ["/bin/a"]

        [space.b]
        image = { rootfs = "./images/../b/." }
        command = ["/bin/b"]

        [space.c]
        image = { binary = "/usr/bin/c", x-note = "ignored" }

        [space.d]
        image = { binary = "bin/d" }
        command = ["/srv/warren/bin/d", "-v"]

        [space.e]
        image.binary = "/usr/bin/e"
        "#,
        json!({
            "host": { "name": null },
            "spaces": {
                "a": defaults(json!({ "rootfs": "/abs/root" }), &["/bin/a"]),
                "b": defaults(json!({ "rootfs": "/srv/warren/images/../b" }), &["/bin/b"]),
                // A binary image without a command runs the binary itself.
                "c": defaults(json!({ "binary": "/usr/bin/c" }), &["/usr/bin/c"]),
                "d": defaults(
                    json!({ "binary": "/srv/warren/bin/d" }),
                    &["/srv/warren/bin/d", "-v"],
                ),
                "e": defaults(json!({ "binary": "/usr/bin/e" }), &["/usr/bin/e"]),
            }
        }),
    );
}

#[test]
fn value_forms() {
    let img = || json!({ "rootfs": "/srv/warren/r" });
    check(
        r#"
        space.inline = { image = "r", command = ["/x"], cpus = "0.25", memory = 4194304 }

        [space.ints]
        image = "r"
        command = ["/x"]
        cpus = 2
        pids = 0x10
        max_restarts = 0
        memory = "1.5G"
        tmpfs_size = "512k"
        restart = "always"

        [space.floats]
        image = "r"
        command = ["/x"]
        cpus = +1.5
        restart = "no"
        "#,
        json!({
            "host": { "name": null },
            "spaces": {
                "inline": with(
                    defaults(img(), &["/x"]),
                    json!({ "cpus": 250_000, "memory": 4 << 20 }),
                ),
                "ints": with(
                    defaults(img(), &["/x"]),
                    json!({
                        "cpus": 2_000_000, "pids": 16, "max_restarts": 0,
                        "memory": 3u64 << 29, "tmpfs_size": 512 << 10, "restart": "always",
                    }),
                ),
                "floats": with(defaults(img(), &["/x"]), json!({ "cpus": 1_500_000 })),
            }
        }),
    );
}

#[test]
fn unknown_keys() {
    check_err(
        r#"
        [space.db]
        image = "images/db"
        command = ["/bin/db"]
        memroy = "64M"
        "#,
        r#"spaces.toml:4:1: unknown key "memroy" in [space.db] (did you mean "memory"?)"#,
        "space.db.memroy",
    );
    check_err(
        r#"
        [spaces.db]
        image = "x"
        "#,
        r#"spaces.toml:1:2: unknown key "spaces" at the top level (did you mean "space"?)"#,
        "spaces",
    );
    check_err(
        r#"
        [host]
        nmae = "alpha"
        "#,
        r#"spaces.toml:2:1: unknown key "nmae" in [host] (did you mean "name"?)"#,
        "host.nmae",
    );
    check_err(
        r#"
        [space.db]
        image = { rootf = "r" }
        "#,
        r#"spaces.toml:2:11: unknown key "rootf" in [space.db.image] (did you mean "rootfs"?)"#,
        "space.db.image.rootf",
    );
    check_err(
        r#"
        [space.db]
        image = "r"
        command = ["/x"]
        mounts = ["/data"]
        "#,
        r#"spaces.toml:4:1: unknown key "mounts" in [space.db]"#,
        "space.db.mounts",
    );
    check_err(
        r#"
        [space.db]
        x_owner = "me"
        "#,
        r#"spaces.toml:2:1: unknown key "x_owner" in [space.db] (extension keys start with "x-")"#,
        "space.db.x_owner",
    );
    check_err(
        r#"
        X-owner = "me"
        "#,
        r#"spaces.toml:1:1: unknown key "X-owner" at the top level (extension keys start with "x-")"#,
        "X-owner",
    );
    check_err(
        r#"
        [space."my db"]
        image = "r"
        "#,
        r#"spaces.toml:1:8: environment name "my db" is not valid: use lowercase letters, digits and '-', starting and ending with a letter or digit"#,
        r#"space."my db""#,
    );
}

#[test]
fn structure_errors() {
    check_err(
        r#"
        [space.Web]
        image = "r"
        "#,
        r#"spaces.toml:1:8: environment name "Web" is not valid: use lowercase letters, digits and '-', starting and ending with a letter or digit"#,
        "space.Web",
    );
    check_err(
        r#"
        [space.x-ray]
        image = "r"
        "#,
        r#"spaces.toml:1:8: environment name "x-ray" starts with "x-", which marks extension keys; choose another name (extension keys go inside [space.NAME] or at the top level)"#,
        "space.x-ray",
    );
    check_err(
        "space = 1",
        r#"spaces.toml:1:9: "space" at the top level must be a table of environments ([space.NAME]), found an integer"#,
        "space",
    );
    check_err(
        "space.db = \"images/db\"",
        r#"spaces.toml:1:12: "db" in [space] must be a table ([space.NAME]), found a string"#,
        "space.db",
    );
    check_err(
        "[[space]]\nimage = \"r\"",
        r#"spaces.toml:1:1: "space" at the top level must be a table of environments ([space.NAME]), found an array"#,
        "space",
    );
    check_err(
        "host = \"alpha\"",
        r#"spaces.toml:1:8: "host" at the top level must be a table ([host]), found a string"#,
        "host",
    );
    check_err(
        "[host]\nname = \"Alpha\"",
        r#"spaces.toml:2:8: "name" in [host]: host name "Alpha" is not valid: use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit"#,
        "host.name",
    );
    check_err(
        r#"
        [space.db]
        command = ["/bin/db"]
        "#,
        r#"spaces.toml:1:1: [space.db] has no "image": give a directory (image = "images/db") or a program (image = { binary = "/usr/bin/db" })"#,
        "space.db.image",
    );
    check_err(
        r#"
        x-a = 1

        [space.db]
        image = "images/db"
        "#,
        r#"spaces.toml:3:1: [space.db] has a rootfs image but no "command": say which program to run, e.g. command = ["/bin/db"]"#,
        "space.db.command",
    );
    // The first problem in document order is reported, whatever the names' order.
    check_err(
        r#"
        [space.zz]
        image = "r"
        pids = "1"

        [space.aa]
        image = "r"
        pids = "2"
        "#,
        r#"spaces.toml:3:8: "pids" in [space.zz] must be a whole number of at least 1, found a string"#,
        "space.zz.pids",
    );
}

#[test]
fn syntax_errors() {
    check_err(
        "[space.db]\nimage = ",
        "spaces.toml:2:9: invalid TOML: string values must be quoted, expected literal string",
        "",
    );
    check_err(
        "[space.db]\nimage = \"a\"\nimage = \"b\"",
        r#"spaces.toml:3:1: duplicate key "image": each key may be defined only once"#,
        "image",
    );
    check_err(
        "[space.db]\n[space.db]",
        r#"spaces.toml:2:8: duplicate key "db": each key may be defined only once"#,
        "db",
    );
}

#[test]
fn image_and_command_errors() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"image = 5"#,
            r#"spaces.toml:2:9: "image" in [space.db] must be a directory or a table { rootfs = "DIR" }, { binary = "PATH" } or { name = "IMAGE" }, found an integer"#,
            "space.db.image",
        ),
        (
            r#"image = """#,
            r#"spaces.toml:2:9: "image" in [space.db]: the path is empty"#,
            "space.db.image",
        ),
        (
            r#"image = "a\u0000b""#,
            r#"spaces.toml:2:9: "image" in [space.db]: the path contains a NUL byte"#,
            "space.db.image",
        ),
        (
            r#"image = { rootfs = "r", binary = "/b" }"#,
            r#"spaces.toml:2:25: [space.db.image] sets more than one of "rootfs", "binary" and "name": an image is exactly one of them"#,
            "space.db.image.binary",
        ),
        (
            r#"image = { x-note = 1 }"#,
            r#"spaces.toml:2:9: "image" in [space.db] must set "rootfs", "binary" or "name""#,
            "space.db.image",
        ),
        (
            r#"image = { name = "Not An Image" }"#,
            r#"spaces.toml:2:18: "name" in [space.db.image]: image name "Not An Image" is not valid: use lowercase path components of letters, digits and '.', '_', '-' separated by '/', optionally followed by :TAG"#,
            "space.db.image.name",
        ),
        (
            r#"image = { name = "busybox", rootfs = "r" }"#,
            r#"spaces.toml:2:29: [space.db.image] sets more than one of "rootfs", "binary" and "name": an image is exactly one of them"#,
            "space.db.image.rootfs",
        ),
        (
            r#"image = { binary = 7 }"#,
            r#"spaces.toml:2:20: "binary" in [space.db.image] must be a string, found an integer"#,
            "space.db.image.binary",
        ),
        (
            "image = \"r\"\ncommand = \"/bin/sh -c x\"",
            r#"spaces.toml:3:11: "command" in [space.db] must be an array of strings, found a string"#,
            "space.db.command",
        ),
        (
            "image = \"r\"\ncommand = []",
            r#"spaces.toml:3:11: "command" in [space.db]: the command is empty: name the program to run"#,
            "space.db.command",
        ),
        (
            "image = \"r\"\ncommand = [\"\", \"x\"]",
            r#"spaces.toml:3:12: "command" in [space.db]: the program (item 1) is empty"#,
            "space.db.command[0]",
        ),
        (
            "image = \"r\"\ncommand = [\"/x\", 2]",
            r#"spaces.toml:3:18: "command" in [space.db]: item 2 must be a string, found an integer"#,
            "space.db.command[1]",
        ),
        (
            "image = \"r\"\ncommand = [\"/x\", \"a\\u0000\"]",
            r#"spaces.toml:3:18: "command" in [space.db]: item 2 contains a NUL byte"#,
            "space.db.command[1]",
        ),
    ];
    for (body, display, key) in cases {
        check_err(&format!("[space.db]\n{body}"), display, key);
    }
}

#[test]
fn an_argument_or_environment_entry_longer_than_linux_passes_is_refused() {
    // Linux's MAX_ARG_STRLEN: 131,072 bytes with the NUL. The longest allowed item parses.
    let max = limits::MAX_ARG_BYTES;
    assert_eq!(max, 131_071);
    let ok = "a".repeat(max);
    let m = parse_manifest(
        Path::new(FILE),
        &format!("[space.db]\nimage = \"r\"\ncommand = [\"/x\", \"{ok}\"]\n"),
    )
    .unwrap();
    assert_eq!(m.spaces.values().next().unwrap().command[1].len(), max);
    let long = "a".repeat(max + 1);
    check_err(
        &format!("[space.db]\nimage = \"r\"\ncommand = [\"/x\", \"{long}\"]"),
        "spaces.toml:3:18: \"command\" in [space.db]: item 2 is 131072 bytes; Linux passes at \
         most 131071 bytes per argument or environment entry (MAX_ARG_STRLEN)",
        "space.db.command[1]",
    );
    // An environment entry counts as KEY=value: a value of max - 2 with a one-letter key fits.
    let ok = "b".repeat(max - 2);
    let m = parse_manifest(
        Path::new(FILE),
        &format!("[space.db]\nimage = \"r\"\ncommand = [\"/x\"]\nenv = {{ K = \"{ok}\" }}\n"),
    )
    .unwrap();
    assert_eq!(m.spaces.values().next().unwrap().env["K"].len(), max - 2);
    let long = "b".repeat(max - 1);
    check_err(
        &format!("[space.db]\nimage = \"r\"\ncommand = [\"/x\"]\nenv = {{ K = \"{long}\" }}"),
        "spaces.toml:4:13: \"K\" in [space.db.env]: the entry K=value is 131072 bytes; Linux passes at \
         most 131071 bytes per argument or environment entry (MAX_ARG_STRLEN)",
        "space.db.env.K",
    );
    // The control socket's check of a hand-written request says the same.
    let mut spec = m.spaces.values().next().unwrap().clone();
    spec.command.push("c".repeat(max + 1));
    let e = limits::validate_space(&spec).unwrap_err().to_string();
    assert!(e.contains("command item 2 is 131072 bytes"), "{e}");
    spec.command.pop();
    spec.env.insert("K".into(), "b".repeat(max - 1));
    let e = limits::validate_space(&spec).unwrap_err().to_string();
    assert!(e.contains("the env entry K=value is 131072 bytes"), "{e}");
}

#[test]
fn setting_errors() {
    // Each body follows `[space.db]` (line 1) and a valid image and command (lines 2 and 3).
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"env = ["A=b"]"#,
            r#"spaces.toml:4:7: "env" in [space.db] must be a table of strings ({ KEY = "value" }), found an array"#,
            "space.db.env",
        ),
        (
            r#"env = { 1A = "x" }"#,
            r#"spaces.toml:4:9: "env" in [space.db]: variable name "1A" is not valid: use letters, digits and '_', not starting with a digit"#,
            "space.db.env.1A",
        ),
        (
            r#"env = { "A=B" = "x" }"#,
            r#"spaces.toml:4:9: "env" in [space.db]: variable name "A=B" is not valid: use letters, digits and '_', not starting with a digit"#,
            r#"space.db.env."A=B""#,
        ),
        (
            r#"env = { WARREN_FD = "4" }"#,
            r#"spaces.toml:4:9: "env" in [space.db]: variable "WARREN_FD" is reserved: Warren sets WARREN_* variables itself"#,
            "space.db.env.WARREN_FD",
        ),
        (
            r#"env = { PORT = 8080 }"#,
            r#"spaces.toml:4:16: "PORT" in [space.db.env] must be a string (quote numbers: PORT = "8080"), found an integer"#,
            "space.db.env.PORT",
        ),
        (
            r#"net = "host""#,
            r#"spaces.toml:4:7: "net" in [space.db]: "host" is not a network: use "none" (the default), "auto" (an address from the host's pool) or a table { address = "10.88.0.2/24", publish = ["127.0.0.1:8080:80"] }"#,
            "space.db.net",
        ),
        (
            r#"net = { address = "10.88.0.1/24" }"#,
            r#"spaces.toml:4:19: "address" in [space.db.net]: invalid address "10.88.0.1/24": 10.88.0.1 is the prefix's gateway (the host end): use another address"#,
            "space.db.net.address",
        ),
        (
            r#"net = { publish = ["8080"] }"#,
            r#"spaces.toml:4:20: "publish" in [space.db.net]: invalid published port "8080": wrong number of fields (expected [HOST_ADDRESS:]HOST_PORT:ENV_PORT[/tcp|/udp], e.g. 127.0.0.1:8080:80)"#,
            "space.db.net.publish[0]",
        ),
        (
            r#"net = { adress = "10.88.0.2/24" }"#,
            r#"spaces.toml:4:9: unknown key "adress" in [space.db.net] (did you mean "address"?)"#,
            "space.db.net.adress",
        ),
        (
            r#"net = false"#,
            r#"spaces.toml:4:7: "net" in [space.db] must be "none", "auto" or a table, found a boolean"#,
            "space.db.net",
        ),
        (
            r#"memory = "64Q""#,
            r#"spaces.toml:4:10: "memory" in [space.db]: invalid size "64Q": expected a number with an optional unit b, k, m, g or t (e.g. 64M)"#,
            "space.db.memory",
        ),
        (
            r#"memory = true"#,
            r#"spaces.toml:4:10: "memory" in [space.db] must be a size such as "64M", found a boolean"#,
            "space.db.memory",
        ),
        (
            r#"memory = 0"#,
            r#"spaces.toml:4:10: "memory" in [space.db]: 0 is out of range: expected 4194304 to 17592186044416 bytes"#,
            "space.db.memory",
        ),
        (
            r#"tmpfs_size = "0""#,
            r#"spaces.toml:4:14: "tmpfs_size" in [space.db]: invalid size "0": must be above zero"#,
            "space.db.tmpfs_size",
        ),
        (
            r#"pids = 0"#,
            r#"spaces.toml:4:8: "pids" in [space.db]: 0 is out of range: expected 1 to 4194304"#,
            "space.db.pids",
        ),
        (
            r#"pids = 1.0"#,
            r#"spaces.toml:4:8: "pids" in [space.db] must be a whole number of at least 1, found a float"#,
            "space.db.pids",
        ),
        (
            r#"cpus = "x""#,
            r#"spaces.toml:4:8: "cpus" in [space.db]: invalid cpu count "x": expected a positive decimal number such as 0.5 or 2"#,
            "space.db.cpus",
        ),
        (
            r#"cpus = 0"#,
            r#"spaces.toml:4:8: "cpus" in [space.db]: invalid cpu count "0": expected a positive decimal number such as 0.5 or 2"#,
            "space.db.cpus",
        ),
        (
            r#"cpus = 5e-1"#,
            r#"spaces.toml:4:8: "cpus" in [space.db]: invalid cpu count "5e-1": expected a positive decimal number such as 0.5 or 2"#,
            "space.db.cpus",
        ),
        (
            r#"cpus = [1]"#,
            r#"spaces.toml:4:8: "cpus" in [space.db] must be a number of cpus such as 0.5, found an array"#,
            "space.db.cpus",
        ),
        (
            r#"restart = "on_failure""#,
            r#"spaces.toml:4:11: "restart" in [space.db]: invalid restart policy "on_failure": expected "no", "on-failure" or "always" (did you mean "on-failure"?)"#,
            "space.db.restart",
        ),
        (
            r#"restart = true"#,
            r#"spaces.toml:4:11: "restart" in [space.db] must be a string, found a boolean"#,
            "space.db.restart",
        ),
        (
            r#"max_restarts = -1"#,
            r#"spaces.toml:4:16: "max_restarts" in [space.db]: -1 is out of range: expected 0 to 1000"#,
            "space.db.max_restarts",
        ),
        (
            r#"max_restarts = 4294967296"#,
            r#"spaces.toml:4:16: "max_restarts" in [space.db]: 4294967296 is out of range: expected 0 to 1000"#,
            "space.db.max_restarts",
        ),
        (
            r#"mailbox_capacity = 0"#,
            r#"spaces.toml:4:20: "mailbox_capacity" in [space.db]: 0 is out of range: expected 1 to 65536"#,
            "space.db.mailbox_capacity",
        ),
        (
            r#"mailbox_capacity = 9223372036854775808"#,
            r#"spaces.toml:4:20: "mailbox_capacity" in [space.db]: 9223372036854775808 is out of range: expected 1 to 65536"#,
            "space.db.mailbox_capacity",
        ),
        (
            r#"mailbox_bytes = "2G""#,
            r#"spaces.toml:4:17: "mailbox_bytes" in [space.db]: 2147483648 is out of range: expected 4096 to 1073741824 bytes"#,
            "space.db.mailbox_bytes",
        ),
        (
            r#"mailbox_bytes = 100"#,
            r#"spaces.toml:4:17: "mailbox_bytes" in [space.db]: 100 is out of range: expected 4096 to 1073741824 bytes"#,
            "space.db.mailbox_bytes",
        ),
        (
            r#"pids = 18446744073709551615"#,
            r#"spaces.toml:4:8: "pids" in [space.db]: 18446744073709551615 is out of range: expected 1 to 4194304"#,
            "space.db.pids",
        ),
        (
            r#"memory = "1M""#,
            r#"spaces.toml:4:10: "memory" in [space.db]: 1048576 is out of range: expected 4194304 to 17592186044416 bytes"#,
            "space.db.memory",
        ),
        (
            r#"memory = "100k""#,
            r#"spaces.toml:4:10: "memory" in [space.db]: 102400 is out of range: expected 4194304 to 17592186044416 bytes"#,
            "space.db.memory",
        ),
        (
            r#"tmpfs_size = "2T""#,
            r#"spaces.toml:4:14: "tmpfs_size" in [space.db]: 2199023255552 is out of range: expected 4096 to 1099511627776 bytes"#,
            "space.db.tmpfs_size",
        ),
        (
            r#"allow_missing = ["landlok"]"#,
            r#"spaces.toml:4:18: "allow_missing" in [space.db]: unknown protection "landlok": expected "landlock", "seccomp" or "cgroup" (did you mean "landlock"?)"#,
            "space.db.allow_missing[0]",
        ),
        (
            r#"capabilities = ["CHOWN", "SYS_ADMIN"]"#,
            r#"spaces.toml:4:26: "capabilities" in [space.db]: capability CAP_SYS_ADMIN is refused: it opens mounts, namespaces and a large kernel attack surface (allowed: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, AUDIT_WRITE)"#,
            "space.db.capabilities[1]",
        ),
        (
            r#"capabilities = ["chown", "CAP_CHOWN"]"#,
            r#"spaces.toml:4:26: "capabilities" in [space.db]: CAP_CHOWN is listed twice"#,
            "space.db.capabilities[1]",
        ),
        (
            r#"allow_missing = ["cgroup", "cgroup"]"#,
            r#"spaces.toml:4:28: "allow_missing" in [space.db]: "cgroup" is listed twice"#,
            "space.db.allow_missing[1]",
        ),
        (
            r#"allow_missing = "cgroup""#,
            r#"spaces.toml:4:17: "allow_missing" in [space.db] must be an array of protection names, found a string"#,
            "space.db.allow_missing",
        ),
    ];
    for (body, display, key) in cases {
        check_err(
            &format!("[space.db]\nimage = \"r\"\ncommand = [\"/x\"]\n{body}"),
            display,
            key,
        );
    }
}

#[test]
fn capability_errors() {
    // Each body follows `[host]`, `name = "alpha"`, `[space.db]`, image and command (lines
    // 1 to 5).
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"may_send = ["web", "db"]"#,
            r#"spaces.toml:6:20: "may_send" in [space.db]: "db" is the environment itself: an environment already holds its own mailboxes"#,
            "space.db.may_send[1]",
        ),
        (
            r#"may_send = ["db@alpha"]"#,
            r#"spaces.toml:6:13: "may_send" in [space.db]: "db@alpha" is the environment itself: an environment already holds its own mailboxes"#,
            "space.db.may_send[0]",
        ),
        (
            r#"may_send = ["db/jobs"]"#,
            r#"spaces.toml:6:13: "may_send" in [space.db]: "db/jobs" is a mailbox of the environment itself: an environment already holds its own mailboxes"#,
            "space.db.may_send[0]",
        ),
        (
            r#"may_send = ["Web"]"#,
            r#"spaces.toml:6:13: "may_send" in [space.db]: "Web" is not a valid name: expected ENV, ENV/MAILBOX, ENV@HOST or ENV/MAILBOX@HOST, each part 1 to 63 lowercase letters, digits and '-'"#,
            "space.db.may_send[0]",
        ),
        (
            r#"may_discover = ["web@"]"#,
            r#"spaces.toml:6:17: "may_discover" in [space.db]: "web@" is not a valid name: expected ENV, ENV/MAILBOX, ENV@HOST or ENV/MAILBOX@HOST, each part 1 to 63 lowercase letters, digits and '-'"#,
            "space.db.may_discover[0]",
        ),
        (
            r#"may_discover = ["a/b/c"]"#,
            r#"spaces.toml:6:17: "may_discover" in [space.db]: "a/b/c" is not a valid name: expected ENV, ENV/MAILBOX, ENV@HOST or ENV/MAILBOX@HOST, each part 1 to 63 lowercase letters, digits and '-'"#,
            "space.db.may_discover[0]",
        ),
        (
            r#"may_send = ["web", "web"]"#,
            r#"spaces.toml:6:20: "may_send" in [space.db]: "web" is listed twice"#,
            "space.db.may_send[1]",
        ),
        (
            r#"may_send = [1]"#,
            r#"spaces.toml:6:13: "may_send" in [space.db]: item 1 must be a string, found an integer"#,
            "space.db.may_send[0]",
        ),
        (
            r#"may_send = "web""#,
            r#"spaces.toml:6:12: "may_send" in [space.db] must be an array of names, found a string"#,
            "space.db.may_send",
        ),
    ];
    for (body, display, key) in cases {
        check_err(
            &format!(
                "[host]\nname = \"alpha\"\n[space.db]\nimage = \"r\"\ncommand = [\"/x\"]\n{body}"
            ),
            display,
            key,
        );
    }
}

#[test]
fn limits() {
    let mut text = String::new();
    for i in 0..=MAX_SPACES {
        text.push_str(&format!(
            "[space.e{i}]\nimage = \"r\"\ncommand = [\"/x\"]\n"
        ));
    }
    check_err(
        &text,
        r#"spaces.toml:3001:8: too many environments: at most 1000 are allowed"#,
        "space.e1000",
    );
    // may_discover: 1,024 (a capability table's size); may_send: 1,023 (handle 1 is the
    // environment's own mailbox, each name takes one more).
    let names: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("\"e{i}\"")).collect();
    check_err(
        &format!(
            "[space.db]\nimage = \"r\"\ncommand = [\"/x\"]\nmay_discover = [{}]",
            names.join(", ")
        ),
        r#"spaces.toml:4:16: "may_discover" in [space.db]: 1025 names given; at most 1024 are allowed"#,
        "space.db.may_discover",
    );
    check_err(
        &format!(
            "[space.db]\nimage = \"r\"\ncommand = [\"/x\"]\nmay_send = [{}]",
            names[..MAX_TARGETS].join(", ")
        ),
        r#"spaces.toml:4:12: "may_send" in [space.db]: 1024 names given; at most 1023 are allowed"#,
        "space.db.may_send",
    );
    for (key, n) in [("may_send", MAX_TARGETS - 1), ("may_discover", MAX_TARGETS)] {
        let text = format!(
            "[space.db]\nimage = \"r\"\ncommand = [\"/x\"]\n{key} = [{}]",
            names[..n].join(", ")
        );
        let m = parse_manifest(Path::new(FILE), &text).unwrap();
        let db = &m.spaces.values().next().unwrap();
        let got = if key == "may_send" {
            &db.may_send
        } else {
            &db.may_discover
        };
        assert_eq!(got.len(), n, "{key} at its limit");
    }
    // Exactly at the limits is fine.
    let ok = text.rsplit_once("[space.e1000]").unwrap().0;
    let m = parse_manifest(Path::new(FILE), ok).unwrap();
    assert_eq!(m.spaces.len(), MAX_SPACES);
}

#[test]
fn columns_count_characters() {
    // A multi-byte character before the error moves the column by one, not by its bytes.
    check_err(
        "[space.db]\nimage = \"r\"\ncommand = [\"/x\"]\nenv = { \"A\" = \"é\", \"1é\" = \"x\" }",
        r#"spaces.toml:4:20: "env" in [space.db]: variable name "1é" is not valid: use letters, digits and '_', not starting with a digit"#,
        r#"space.db.env."1é""#,
    );
    assert_eq!(line_col("ab\ncdé\nf", 7), (2, 4));
    assert_eq!(
        line_col("ab\ncdé\nf", 6),
        (2, 3),
        "inside a character: its start"
    );
    assert_eq!(line_col("ab\ncdé\nf", 8), (3, 1));
    assert_eq!(line_col("", 5), (1, 1));
}

#[test]
fn suggestions() {
    let keys = &SPACE_KEYS;
    assert_eq!(suggest("memroy", keys), Some("memory"));
    assert_eq!(suggest("Memory", keys), Some("memory"));
    assert_eq!(suggest("comand", keys), Some("command"));
    assert_eq!(suggest("cpu", keys), Some("cpus"));
    assert_eq!(suggest("max_restart", keys), Some("max_restarts"));
    assert_eq!(suggest("volume", keys), Some("volumes"));
    assert_eq!(suggest("mounts", keys), None);
    assert_eq!(suggest("ab", &["cd"]), None);
    assert_eq!(edit_distance("abc", "acb"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
}

#[test]
fn load_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spaces.toml");
    std::fs::write(
        &file,
        "[space.db]\nimage = \"images/db\"\ncommand = [\"/db\"]\n",
    )
    .unwrap();
    let m = load_manifest(&file).unwrap();
    assert_eq!(m.file, file);
    assert_eq!(
        m.spaces[&"db".parse::<EnvName>().unwrap()].image,
        ImageSpec::Rootfs(dir.path().join("images/db"))
    );

    let missing = dir.path().join("nope.toml");
    let e = load_manifest(&missing).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: manifest not found", missing.display())
    );
    assert_eq!((e.line, e.column, e.key.as_str()), (0, 0, ""));
    assert_eq!(e.source.as_ref().unwrap().kind(), io::ErrorKind::NotFound);

    let e = load_manifest(dir.path()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: cannot read the manifest", dir.path().display())
    );
    assert!(e.source.is_some());

    std::fs::write(&file, b"x-a = 1\nx-b = \"\xff\"\n").unwrap();
    let e = load_manifest(&file).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}:2:8: the manifest is not UTF-8 text", file.display())
    );

    let big = vec![b'#'; MAX_MANIFEST_BYTES as usize + 1];
    std::fs::write(&file, big).unwrap();
    let e = load_manifest(&file).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes",
            file.display()
        )
    );
}

#[test]
fn relative_manifest_path_resolves_against_the_current_directory() {
    let m = parse_manifest(
        Path::new("conf/spaces.toml"),
        "[space.db]\nimage = \"db\"\ncommand = [\"/db\"]",
    )
    .unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(m.file, cwd.join("conf/spaces.toml"));
    assert_eq!(
        m.spaces.values().next().unwrap().image,
        ImageSpec::Rootfs(cwd.join("conf/db"))
    );
}

#[test]
fn spec_round_trips_through_json() {
    let m = parse_manifest(
        Path::new(FILE),
        &dedent(
            r#"
            [space.db]
            image = { binary = "/usr/bin/db" }
            memory = "64M"
            cpus = 0.5
            restart = "on-failure"
            env = { A = "b" }
            "#,
        ),
    )
    .unwrap();
    let spec = m.spaces.values().next().unwrap();
    let text = serde_json::to_string(spec).unwrap();
    let back: SpaceSpec = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, spec);
    for p in RestartPolicy::ALL {
        assert_eq!(p.as_str().parse::<RestartPolicy>(), Ok(p));
        assert_eq!(serde_json::to_value(p).unwrap(), json!(p.as_str()));
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const SEED: &str = "x-a = 1\n[host]\nname = \"alpha\"\n[space.db]\nimage = \"images/db\"\n\
                        command = [\"/bin/db\", \"-v\"]\nenv = { K = \"v\" }\nmemory = \"64M\"\n\
                        cpus = 0.5\nmay_send = [\"web@beta\"]\nallow_missing = [\"cgroup\"]\n\
                        [space.web]\nimage = { binary = \"/usr/bin/web\" }\n";

    /// One edit of the seed: where, what to insert (TOML punctuation and name characters),
    /// and how many bytes to delete there.
    fn edit() -> impl Strategy<Value = (prop::sample::Index, String, usize)> {
        (
            any::<prop::sample::Index>(),
            "[\\[\\]=\"{},.a-z0-9 \n-]{0,3}",
            0usize..4,
        )
    }

    /// Every error points inside the text (or at its end) and names the file.
    fn well_formed(text: &str, r: Result<Manifest, ManifestError>) {
        if let Err(e) = r {
            let lines = text.split('\n').count();
            assert!(e.line >= 1 && e.line <= lines, "{e} outside {lines} lines");
            assert!(e.column >= 1);
            assert!(e.to_string().starts_with("m.toml:"));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            well_formed(&text, parse_manifest(Path::new("m.toml"), &text));
        }

        #[test]
        fn mutated_manifests_never_panic(
            edits in proptest::collection::vec(edit(), 1..6)
        ) {
            let mut text = SEED.to_owned();
            for (at, insert, delete) in edits {
                let mut i = at.index(text.len() + 1);
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                let mut end = (i + delete).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(i..end, &insert);
            }
            well_formed(&text, parse_manifest(Path::new("m.toml"), &text));
        }
    }

    #[test]
    fn the_seed_is_valid() {
        let m = parse_manifest(Path::new("m.toml"), SEED).unwrap();
        assert_eq!(m.spaces.len(), 2);
    }
}

#[test]
fn federation_keys() {
    let text = r#"
        [host]
        name = "alpha"
        broker = "amqps://warren:secret@broker.example:5671/warren"
        broker_ca = "ca.pem"
        key = "keys/alpha.key"
        trusted_keys = "trusted"
        queue_type = "quorum"
        gap_wait = 5

        [space.web]
        image = "images/web"
        command = ["/web"]
        may_send = ["db@beta"]
        accept_from = ["db@beta", "*@gamma"]
    "#;
    let m = parse_manifest(Path::new(FILE), &dedent(text)).unwrap();
    let h = &m.host;
    assert_eq!(
        h.broker.as_deref(),
        Some("amqps://warren:secret@broker.example:5671/warren")
    );
    assert_eq!(
        h.broker_ca.as_deref(),
        Some(Path::new("/srv/warren/ca.pem"))
    );
    assert_eq!(
        h.key.as_deref(),
        Some(Path::new("/srv/warren/keys/alpha.key"))
    );
    assert_eq!(h.queue_type.as_deref(), Some("quorum"));
    assert_eq!(h.gap_wait, Some(5));
    let web = m.spaces.values().next().unwrap();
    assert_eq!(web.accept_from, ["db@beta", "*@gamma"]);

    for (text, display, key) in [
        (
            "[host]\nname = \"a\"\nbroker = \"http://x\"\n",
            r#"spaces.toml:3:10: "broker" in [host]: the broker is an AMQP URL: amqp://user:password@host:port/vhost or amqps://..."#,
            "host.broker",
        ),
        (
            "[host]\nname = \"a\"\nbroker = \"amqp://x\"\n",
            r#"spaces.toml:1:1: [host] sets "broker" but not "trusted_keys": federation needs the host's name and the trusted-keys file"#,
            "host.trusted_keys",
        ),
        (
            "[host]\ngap_wait = 0\n",
            r#"spaces.toml:2:12: "gap_wait" in [host]: 0 is out of range: expected 1 to 3600"#,
            "host.gap_wait",
        ),
        (
            "[host]\nqueue_type = \"mirrored\"\n",
            r#"spaces.toml:2:14: "queue_type" in [host]: "mirrored" is not a queue type: use "classic" or "quorum""#,
            "host.queue_type",
        ),
        (
            "[space.db]\nimage = \"/\"\ncommand = [\"/x\"]\naccept_from = [\"web\"]\n",
            r#"spaces.toml:4:16: "accept_from" in [space.db]: "web" is not a remote sender: expected ENV@HOST or *@HOST, each part 1 to 63 lowercase letters, digits and '-'"#,
            "space.db.accept_from[0]",
        ),
    ] {
        check_err(text, display, key);
    }
}

#[test]
fn named_images_take_their_command_from_the_image() {
    check(
        r#"
        [space.app]
        image = { name = "busybox" }

        [space.tool]
        image = { name = "registry:5000/team/tool:v2" }
        command = ["--help"]
        "#,
        json!({
            "host": { "name": null },
            "spaces": {
                "app": defaults(json!({ "name": "busybox:latest" }), &[]),
                "tool": defaults(json!({ "name": "registry:5000/team/tool:v2" }), &["--help"]),
            }
        }),
    );
}

#[test]
fn a_bare_image_string_is_a_directory_when_one_exists_and_a_stored_image_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    let file = dir.path().join("spaces.toml");
    std::fs::write(
        &file,
        "[space.dir]\nimage = \"root\"\ncommand = [\"/bin/sh\"]\n\n\
         [space.img]\nimage = \"web\"\n\n\
         [space.tagged]\nimage = \"busybox:1.36\"\ncommand = [\"sh\"]\n\n\
         [space.path]\nimage = \"./web\"\ncommand = [\"/x\"]\n",
    )
    .unwrap();
    let m = load_manifest(&file).unwrap();
    let image = |n: &str| m.spaces[&n.parse::<EnvName>().unwrap()].image.clone();
    assert_eq!(image("dir"), ImageSpec::Rootfs(dir.path().join("root")));
    assert_eq!(image("img"), ImageSpec::Name("web".parse().unwrap()));
    assert_eq!(
        image("tagged"),
        ImageSpec::Name("busybox:1.36".parse().unwrap())
    );
    // A path-looking string stays a directory even when it does not exist (the launch then
    // says so), and a stored image takes its command from its configuration.
    assert_eq!(image("path"), ImageSpec::Rootfs(dir.path().join("web")));
    assert!(
        m.spaces[&"img".parse::<EnvName>().unwrap()]
            .command
            .is_empty()
    );
    // `parse_manifest` reads nothing: there a bare string is always a directory.
    let text = std::fs::read_to_string(&file).unwrap();
    let err = parse_manifest(&file, &text).unwrap_err();
    assert!(err.message.contains("no \"command\""), "{err}");
}

#[test]
fn init_is_a_boolean() {
    check_err(
        r#"
        [space.a]
        image = "/"
        command = ["/bin/true"]
        init = "yes"
        "#,
        "spaces.toml:4:8: \"init\" in [space.a] must be true or false, found a string",
        "space.a.init",
    );
}

#[test]
fn a_writable_root_is_declared_with_read_only_false() {
    let m = parse_manifest(
        Path::new("spaces.toml"),
        "[space.a]\nimage = \"/srv/r\"\ncommand = [\"/bin/true\"]\nread_only = false\n\
         writable_root_size = \"8M\"\n",
    )
    .unwrap();
    let a = m.spaces.values().next().unwrap();
    assert!(!a.read_only);
    assert_eq!(a.writable_root_size, Some(ByteSize(8 << 20)));
    check_err(
        r#"
        [space.a]
        image = "/"
        command = ["/bin/true"]
        read_only = "no"
        "#,
        "spaces.toml:4:13: \"read_only\" in [space.a] must be true or false, found a string",
        "space.a.read_only",
    );
    check_err(
        r#"
        [space.a]
        image = "/"
        command = ["/bin/true"]
        writable_root_size = "8M"
        "#,
        "spaces.toml:4:22: \"writable_root_size\" in [space.a]: a size for a writable root needs \
         read_only = false",
        "space.a.writable_root_size",
    );
    let e = parse_manifest(
        Path::new("spaces.toml"),
        "[space.a]\nimage = \"/\"\ncommand = [\"/bin/true\"]\nread_only = false\n\
         writable_root_size = \"4K\"\n",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("\"writable_root_size\" in [space.a]: 4096 is out of range"),
        "{e}"
    );
}

#[test]
fn a_binary_image_adds_paths_with_with() {
    let mut py = defaults(
        json!({ "binary": "/usr/bin/python3" }),
        &["/usr/bin/python3"],
    );
    py["with"] = json!(["/etc/ssl/certs", "/srv/warren/data"]);
    check(
        r#"
        [space.py]
        image = { binary = "/usr/bin/python3", with = ["/etc/ssl/certs", "data"] }
        "#,
        json!({ "host": { "name": null }, "spaces": { "py": py } }),
    );
}

#[test]
fn with_is_only_for_binary_images_and_holds_paths() {
    check_err(
        "[space.db]\nimage = { rootfs = \"/r\", with = [\"/etc\"] }\ncommand = [\"/x\"]\n",
        r#"spaces.toml:2:33: "with" in [space.db.image]: "with" adds paths to a binary image; a rootfs or named image already holds its files"#,
        "space.db.image.with",
    );
    check_err(
        "[space.db]\nimage = { binary = \"/b\", with = \"/etc\" }\n",
        r#"spaces.toml:2:33: "with" in [space.db.image] must be an array of paths, found a string"#,
        "space.db.image.with",
    );
    check_err(
        "[space.db]\nimage = { binary = \"/b\", with = [5] }\n",
        r#"spaces.toml:2:34: "with" in [space.db.image]: item 1 must be a string, found an integer"#,
        "space.db.image.with[0]",
    );
}

#[test]
fn volumes_take_the_form_of_run_v() {
    let m = parse_manifest(
        Path::new("spaces.toml"),
        &dedent(
            r#"
            [space.db]
            image = "debian"
            command = ["/x"]
            volumes = ["pgdata:/var/lib/postgresql", "/srv/conf:/etc/app:ro"]
            "#,
        ),
    )
    .unwrap();
    let v = &m.spaces.values().next().unwrap().volumes;
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].kind, crate::mount::MountKind::Volume);
    assert_eq!(v[0].source, "pgdata");
    assert_eq!(v[0].dest, Path::new("/var/lib/postgresql"));
    assert!(!v[0].read_only);
    assert_eq!(v[1].kind, crate::mount::MountKind::Bind);
    assert!(v[1].read_only);
    for (item, why) in [
        (
            r#""pg:data""#,
            r#""pg:data": destination "data" is not an absolute path"#,
        ),
        (
            r#""pg:/a/../etc""#,
            r#""pg:/a/../etc": destination "/a/../etc" climbs out with '..'"#,
        ),
        (
            r#""pg:/proc/x""#,
            r#""pg:/proc/x": destination "/proc/x" is under /proc, which Warren mounts itself"#,
        ),
        (
            r#""/a/../b:/mnt""#,
            r#""/a/../b:/mnt": bind source "/a/../b" climbs out with '..' (the source is a volume name or an absolute host path)"#,
        ),
        (r#""p/q:/mnt""#, "\"p/q:/mnt\": invalid volume name \"p/q\""),
        (r#""pg:/mnt", "other:/mnt/""#, "two volumes on /mnt"),
        ("[1]", "item 1 must be a string"),
    ] {
        let text =
            format!("[space.db]\nimage = \"debian\"\ncommand = [\"/x\"]\nvolumes = [{item}]\n");
        let e = parse_manifest(Path::new("spaces.toml"), &text).unwrap_err();
        assert!(e.to_string().contains(why), "{item}: {e}");
        assert!(e.key.starts_with("space.db.volumes["), "{item}: {}", e.key);
    }
    let text = "[space.db]\nimage = \"debian\"\ncommand = [\"/x\"]\nvolumes = \"pg:/mnt\"\n";
    let e = parse_manifest(Path::new("spaces.toml"), text).unwrap_err();
    assert!(
        e.to_string()
            .contains("must be an array of \"SRC:DEST[:ro]\" strings"),
        "{e}"
    );
}

/// A key written with its documented default is the same declaration as the key left out, so
/// `plan` (which compares specs field by field) keeps the environment instead of replacing it.
#[test]
fn a_documented_default_written_out_equals_the_key_left_out() {
    let parse = |extra: &str| {
        let text =
            format!("[space.a]\nimage = \"r\"\ncommand = [\"/x\"]\nread_only = false\n{extra}");
        parse_manifest(Path::new(FILE), &text)
            .unwrap_or_else(|e| panic!("{e}"))
            .spaces
            .into_values()
            .next()
            .unwrap()
    };
    let bare = parse("");
    let explicit = parse(
        "pids = 1024\ntmpfs_size = \"16M\"\nmailbox_capacity = 64\nmailbox_bytes = \"16M\"\n\
         seccomp = \"default\"\nwritable_root_size = \"64M\"\nrestart = \"no\"\n\
         max_restarts = 5\ninit = true\nnet = \"none\"\n",
    );
    assert_eq!(explicit, bare);
    // A value other than the default is still a difference.
    for other in [
        "pids = 1023",
        "tmpfs_size = \"32M\"",
        "mailbox_capacity = 65",
        "mailbox_bytes = \"8M\"",
        "seccomp = \"strict\"",
        "writable_root_size = \"32M\"",
    ] {
        assert_ne!(parse(other), bare, "{other}");
    }
}
