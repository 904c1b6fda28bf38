//! liweb's cluster example: the chat example served by several nodes that
//! share their rooms through one Redis.
//!
//! ```text
//! # Three nodes in one process, on ports 3101, 3102 and 3103:
//! cargo run -p cluster
//! # or one node per process, each on its own address:
//! cargo run -p cluster -- 127.0.0.1:3101
//! cargo run -p cluster -- 127.0.0.1:3102
//! ```
//!
//! Open http://127.0.0.1:3101 in one tab and http://127.0.0.1:3102 in
//! another: messages, joins and room history cross nodes. Redis is taken
//! from `LIWEB_REDIS_URL` (default `redis://127.0.0.1:6379`).
//!
//! The chat application is unchanged: the only difference from
//! `cargo run -p chat` is the `.adapter(..)` call on its builder. The
//! `online` counts it shows are the synchronous, per-node `Room::size`; a
//! cluster-wide count is `Room::cluster_size().await`.

use liweb::cluster::{RedisAdapter, RedisConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let url =
        std::env::var("LIWEB_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let mut addrs: Vec<String> = std::env::args().skip(1).collect();
    if addrs.is_empty() {
        addrs = ["127.0.0.1:3101", "127.0.0.1:3102", "127.0.0.1:3103"]
            .map(str::to_owned)
            .to_vec();
    }
    let mut nodes = Vec::new();
    for addr in addrs {
        // Each node has its own Redis connections, as separate processes would.
        let adapter = RedisAdapter::connect_with(&url, RedisConfig::new().prefix("liweb-chat"))
            .await?
            .on_error(|err| tracing::warn!(%err, "cluster"));
        tracing::info!(node = %adapter.node_id(), "chat node on http://{addr}");
        let app =
            chat::app_configured(chat::Options::default(), |builder| builder.adapter(adapter));
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        nodes.push(tokio::spawn(
            async move { liweb::serve(listener, app).await },
        ));
    }
    tokio::signal::ctrl_c().await?;
    for node in nodes {
        node.abort();
    }
    Ok(())
}
