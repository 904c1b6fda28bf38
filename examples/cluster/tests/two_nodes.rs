//! The chat example on two nodes behind one Redis: a message sent on one
//! node reaches a client of the other, and its history is shared.
//!
//! Needs Redis: `LIWEB_REDIS_URL=redis://127.0.0.1:6379 cargo test -p cluster -- --ignored`.

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::{SinkExt, StreamExt};
use liweb::cluster::{RedisAdapter, RedisConfig};
use serde_json::{Value, json};
use tokio::{net::TcpStream, time::timeout};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

const WAIT: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn node(url: &str, prefix: &str) -> SocketAddr {
    let adapter = RedisAdapter::connect_with(url, RedisConfig::new().prefix(prefix))
        .await
        .expect("Redis is reachable");
    let app = chat::app_configured(chat::Options::default(), |builder| builder.adapter(adapter));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        liweb::serve(listener, app).await.unwrap();
    });
    addr
}

async fn connect(addr: SocketAddr) -> Ws {
    timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
    )
    .await
    .expect("connect timed out")
    .expect("handshake")
    .0
}

/// The payload of the next `event`, skipping other events.
async fn expect(ws: &mut Ws, event: &str) -> Value {
    timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    if value["event"] == event {
                        return value["payload"].clone();
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended waiting for `{event}`: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for `{event}`"))
}

async fn send(ws: &mut Ws, event: &str, payload: Value) {
    let frame = json!({"event": event, "payload": payload}).to_string();
    ws.send(Message::text(frame)).await.unwrap();
}

#[tokio::test]
#[ignore = "needs Redis: LIWEB_REDIS_URL, run with --ignored"]
async fn a_chat_message_crosses_nodes_and_history_is_shared() {
    let url = std::env::var("LIWEB_REDIS_URL")
        .expect("set LIWEB_REDIS_URL=redis://127.0.0.1:6379 to run the cluster example's test");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("liweb-test:cluster-example:{nanos}");
    let one = node(&url, &prefix).await;
    let two = node(&url, &prefix).await;

    let mut ada = connect(one).await;
    expect(&mut ada, "welcome").await;
    let mut bob = connect(two).await;
    expect(&mut bob, "welcome").await;
    // Both are in `general`; a `join` answers once the join is complete.
    send(&mut ada, "join", json!({"room": "general"})).await;
    expect(&mut ada, "joined").await;
    send(&mut bob, "join", json!({"room": "general"})).await;
    expect(&mut bob, "joined").await;

    send(
        &mut ada,
        "chat:message",
        json!({"text": "hello from node one"}),
    )
    .await;
    let got = expect(&mut bob, "chat:message").await;
    assert_eq!(got["text"], "hello from node one");

    let mut cleo = connect(two).await;
    expect(&mut cleo, "welcome").await;
    send(&mut cleo, "join", json!({"room": "general"})).await;
    let joined = expect(&mut cleo, "joined").await;
    assert_eq!(joined["history"][0]["text"], "hello from node one");

    // Leave the shared Redis as it was (KEYS is fine on a test Redis).
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
