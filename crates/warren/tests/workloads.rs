//! Run what people run (issue 15): the flags and host fixes that real workloads need, each with
//! its negative case, driven through the real `warren` binary as root.
//!
//! * published ports survive an earlier server's connections in `TIME_WAIT`, and stay
//!   exclusive (positive control: a second environment on the same port is refused);
//! * persistent data (images, volumes) survives an emptied state directory, as a reboot
//!   empties a tmpfs `/run`;
//! * the usual `warren run` flags (`--user`, `--workdir`, `--entrypoint`, `--env-file`),
//!   each with the input that must be refused.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Background, assert_code, busybox_root, stderr, unique, warren};

/// The busybox root as a string argument.
fn root() -> String {
    busybox_root().to_str().unwrap().to_owned()
}

/// GET / on `addr` from the host, retried while the server inside may still be starting.
fn http_get_eventually(addr: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = (|| {
            let sa: SocketAddr = addr.parse().unwrap();
            let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2))
                .map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut out = String::new();
            s.read_to_string(&mut out).map_err(|e| e.to_string())?;
            Ok(out)
        })();
        if r.is_ok() || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the host has a TCP connection in `TIME_WAIT` whose local port is `port`.
fn time_wait_on(port: u16) -> bool {
    let o = Command::new("ss")
        .args(["-Htan", "state", "time-wait", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) is needed");
    !String::from_utf8_lossy(&o.stdout).trim().is_empty()
}

/// A host port whose last server's connection is still in `TIME_WAIT`: a listener accepts one
/// connection and closes it first (the server side keeps the `TIME_WAIT`), then goes away.
fn port_in_time_wait() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (conn, _) = listener.accept().unwrap();
    drop(conn);
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).unwrap(), 0, "the server closed first");
    drop(client);
    drop(listener);
    assert!(time_wait_on(port), "port {port} has no TIME_WAIT entry");
    port
}

#[test]
fn a_published_port_in_time_wait_is_taken_and_stays_exclusive() {
    let port = port_in_time_wait();
    let publish = format!("{port}:80");
    let web = Background::start(
        &unique("tw"),
        &[
            "--rootfs",
            &root(),
            "--net",
            "auto",
            "-p",
            &publish,
            "--",
            "/bin/sh",
            "-c",
            "mkdir -p /tmp/www && echo after-time-wait > /tmp/www/index.html && httpd -f -p 80 -h /tmp/www",
        ],
    );
    // The port was still in TIME_WAIT when the environment took it.
    assert!(time_wait_on(port), "the TIME_WAIT entry expired too early");
    let body = http_get_eventually(&format!("127.0.0.1:{port}")).expect("published port");
    assert!(body.contains("after-time-wait"), "{body}");

    // Positive control: the hold is still exclusive. Neither a second environment nor a host
    // program (a listener with SO_REUSEADDR, as Rust's std sets it) can take the port.
    let o = warren()
        .args(["run", "--name", &unique("tw2"), "--rootfs", &root()])
        .args(["--net", "auto", "-p", &publish, "--", "/bin/true"])
        .output()
        .unwrap();
    assert_code(&o, 125);
    assert!(stderr(&o).contains("host port in use"), "{}", stderr(&o));
    assert!(TcpListener::bind(("127.0.0.1", port)).is_err());
    drop(web);
}
