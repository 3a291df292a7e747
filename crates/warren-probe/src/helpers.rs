//! Hidden subcommands the integration tests start directly: `memory-bomb`, `spin`, `sleep`,
//! `listen-tcp`, and `__ids` (used by `priv.setuid_exec`). Each prints one JSON object per line
//! (`listen-tcp` prints the bare word `ready` once it listens).

use std::io::{self, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::probes::privs::Ids;

fn line(text: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Allocate and touch `mib` MiB, one MiB at a time, printing progress every 16 MiB. Inside an
/// environment the memory limit should OOM-kill this before it finishes.
pub fn memory_bomb(mib: u64) {
    let mut held: Vec<Vec<u8>> = Vec::new();
    for i in 1..=mib {
        let mut block = vec![0u8; 1 << 20];
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        held.push(std::hint::black_box(block));
        if i % 16 == 0 || i == mib {
            line(&format!(r#"{{"allocated_mib":{i}}}"#));
        }
    }
    line(&format!(r#"{{"done_mib":{mib}}}"#));
}

/// Burn one CPU for `seconds`, printing the iterations completed in each second.
pub fn spin(seconds: u64) {
    let mut total: u64 = 0;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for second in 1..=seconds {
        let end = Instant::now() + Duration::from_secs(1);
        let mut iterations: u64 = 0;
        while Instant::now() < end {
            for _ in 0..1024 {
                x = std::hint::black_box(x.rotate_left(5) ^ 0x2545_f491_4f6c_dd1d).wrapping_mul(3);
            }
            iterations += 1024;
        }
        total += iterations;
        line(&format!(
            r#"{{"second":{second},"iterations":{iterations}}}"#
        ));
    }
    line(&format!(
        r#"{{"seconds":{seconds},"total_iterations":{total}}}"#
    ));
}

/// Sleep for `seconds`.
pub fn sleep(seconds: u64) {
    std::thread::sleep(Duration::from_secs(seconds));
}

/// Listen on `127.0.0.1:port` in this environment's own network namespace for `seconds`,
/// printing `ready` once bound and one line per accepted connection; each connection is sent
/// `warren-probe\n` and closed.
pub fn listen_tcp(port: u16, seconds: u64) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    line("ready");
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let _ = stream.write_all(b"warren-probe\n");
                line(&format!(r#"{{"accepted":"{peer}"}}"#));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Print this process's ids and capability sets as one JSON object.
pub fn ids() {
    line(&serde_json::to_string(&Ids::current()).expect("ids always serialise"));
}
