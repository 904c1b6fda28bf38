//! Runs the telemetry server; see the crate docs of `telemetry`.

use std::time::Duration;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = std::env::var("LIWEB_TCP_ADDR").unwrap_or_else(|_| "127.0.0.1:4000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!("telemetry on tcp://{}", listener.local_addr()?);
    let server = telemetry::server();

    // Every ten seconds, ask every agent how it is, waiting a second at most.
    let polling = server.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(10));
        loop {
            every.tick().await;
            for (agent, status) in telemetry::census(&polling, Duration::from_secs(1)).await {
                match status {
                    Ok(status) => {
                        tracing::info!(agent = agent.name, uptime = status.uptime_secs, "alive")
                    }
                    Err(err) => tracing::warn!(agent = agent.name, %err, "no answer"),
                }
            }
        }
    });

    tokio::select! {
        served = server.serve_tcp(listener) => served,
        _ = tokio::signal::ctrl_c() => {
            server.shutdown(Duration::from_secs(5)).await;
            Ok(())
        }
    }
}
