//! The example's two binaries against each other over a real socket: the
//! server and an agent, as `cargo run` starts them.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

const WAIT: Duration = Duration::from_secs(10);

/// Reads lines until one contains `needle`, failing after [`WAIT`].
async fn line_with(lines: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> String {
    let reading = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("the output ended before `{needle}`");
    };
    tokio::time::timeout(WAIT, reading)
        .await
        .unwrap_or_else(|_| panic!("no `{needle}` within {WAIT:?}"))
}

fn start(command: &mut Command) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = command
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    (child, BufReader::new(stdout).lines())
}

#[tokio::test]
async fn the_agent_binary_registers_with_the_server_binary() {
    let (_server, mut server_out) = start(
        Command::new(env!("CARGO_BIN_EXE_telemetry-server")).env("LIWEB_TCP_ADDR", "127.0.0.1:0"),
    );
    let line = line_with(&mut server_out, "telemetry on tcp://").await;
    let url = line[line.find("tcp://").unwrap()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    let (_agent, mut agent_out) =
        start(Command::new(env!("CARGO_BIN_EXE_telemetry-agent")).args(["north-1", "north", &url]));
    let registered = line_with(&mut agent_out, "registered").await;
    assert_eq!(registered, "[north-1] registered; 1 agents online");
}
