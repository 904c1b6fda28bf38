//! Runs the chat example; see the crate docs of `chat`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr = std::env::var("LIWEB_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let options = match std::env::var("LIWEB_SECRET") {
        Ok(secret) if !secret.is_empty() => chat::Options::secret(secret),
        _ => chat::Options::default(),
    };
    tracing::info!(
        secret = options.secret.is_some(),
        "chat on http://{}",
        listener.local_addr()?
    );
    liweb::serve(listener, chat::app_with(options))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
