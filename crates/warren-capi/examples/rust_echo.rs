//! The echo server of `clients/c/examples/echo_server.c` with the Rust client, for the tests
//! that cross every pair of client and server languages (`clients/tests/live.sh`): answers
//! every request (a message with a reply handle) through that handle, with the request's
//! correlation id and body (the kernel removes the spent handle), and stops after a body of `stop`.

use warren_client::{Client, Message};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut k = Client::connect()?;
    loop {
        let request = k.recv(None)?;
        if let Some(reply) = request.reply {
            let answer = Message {
                body: request.body.clone(),
                correlation: request.correlation,
                ..Message::default()
            };
            // The kernel removes the spent reply handle from the table (protocol.md, Send).
            k.send(reply, answer)?;
        }
        if request.body == b"stop" {
            return Ok(());
        }
    }
}
