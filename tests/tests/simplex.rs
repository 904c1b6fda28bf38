//! A simplex server, one that only pushes: `Server<NoEvents, Out>` and its
//! clients `Client<Out, NoEvents>`, over a real socket.

use liweb::{
    Conn, ErrorCode, Events, NoEvents, Server,
    client::{Client, Incoming},
};
use liweb_tests::{WAIT, serve};
use tokio::sync::mpsc;

#[derive(Events, Debug, Clone, PartialEq)]
enum Pushed {
    Tick(u32),
}

/// A push-only server on a loopback port, and a client of it that the
/// server has registered (so a broadcast reaches it).
async fn start() -> (Server<NoEvents, Pushed>, Client<Pushed, NoEvents>) {
    let (connected, mut connects) = mpsc::unbounded_channel();
    let server = Server::<NoEvents, Pushed>::builder()
        .on_connect(move |_conn: Conn<Pushed>| {
            let connected = connected.clone();
            async move {
                let _ = connected.send(());
            }
        })
        .build();
    let (addr, _tcp) = serve(&server).await;
    let url = format!("ws://{addr}/ws");
    let connecting = Client::<Pushed, NoEvents>::connect(&url);
    let client = tokio::time::timeout(WAIT, connecting)
        .await
        .expect("connect timed out")
        .expect("connect failed");
    tokio::time::timeout(WAIT, connects.recv())
        .await
        .expect("on_connect timed out")
        .expect("the server dropped its hook");
    (server, client)
}

async fn next(client: &mut Client<Pushed, NoEvents>) -> Incoming<Pushed> {
    tokio::time::timeout(WAIT, client.recv())
        .await
        .expect("timed out waiting for the server")
        .expect("the client ended without `Closed`")
}

#[tokio::test]
async fn a_push_only_server_broadcasts_to_its_clients() {
    let (server, mut client) = start().await;
    assert_eq!(server.broadcast(Pushed::Tick(1)).unwrap(), 1);
    match next(&mut client).await {
        Incoming::Event(event) => assert_eq!(event, Pushed::Tick(1)),
        other => panic!("expected the broadcast, got {other:?}"),
    }
}

#[tokio::test]
async fn an_event_sent_to_a_push_only_server_is_unknown_and_the_connection_stays_open() {
    let (server, mut client) = start().await;
    client
        .emit_raw(r#"{"event":"hello","payload":null}"#)
        .unwrap();
    match next(&mut client).await {
        Incoming::Error(error) => {
            assert_eq!(error.code, ErrorCode::UnknownEvent);
            assert_eq!(error.event.as_deref(), Some("hello"));
        }
        other => panic!("expected an `unknown_event` error, got {other:?}"),
    }
    assert_eq!(server.broadcast(Pushed::Tick(2)).unwrap(), 1);
    match next(&mut client).await {
        Incoming::Event(event) => assert_eq!(event, Pushed::Tick(2)),
        other => panic!("expected the later broadcast, got {other:?}"),
    }
}
