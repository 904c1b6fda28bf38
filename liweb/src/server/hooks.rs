//! The application's hooks and how the server runs them.
//!
//! The builder stores them (`on_connect`, `on_disconnect`,
//! `on_auth_success`, `on_auth_error` as extractor functions; `on_message`,
//! `on_upgrade` and `on_error` as plain closures); the session and dispatch
//! fire them. A hook that panics or whose arguments cannot be extracted is
//! reported to the `on_error` hook as an [`ErrorReport`], and through
//! `tracing`; it never takes the connection down. An upgrade hook that
//! panics refuses the connection with `500`.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
};

use futures_util::FutureExt;

use super::{Server, config::UpgradeRejection};
use crate::{
    auth::AuthFailure,
    conn::{Conn, DisconnectReason, meta::ConnMeta},
    error::Chain,
    error::{HandlerError, panic_message},
    event::Events,
    handler::{extract, hook::BoxHook},
};

pub(crate) type ErrorHook<Out> = Box<dyn Fn(ErrorReport<Out>) + Send + Sync>;
pub(crate) type MessageHook<Out> = Box<dyn Fn(&Conn<Out>, &'static str) + Send + Sync>;
pub(crate) type UpgradeHook = Arc<
    dyn Fn(ConnMeta) -> Pin<Box<dyn Future<Output = Result<(), UpgradeRejection>> + Send>>
        + Send
        + Sync,
>;

/// An error from handling an event or running a hook, given to
/// [`ServerBuilder::on_error`](crate::ServerBuilder::on_error).
#[derive(Debug)]
#[non_exhaustive]
pub struct ErrorReport<Out> {
    /// The connection the event came from.
    pub conn: Conn<Out>,
    /// The wire name of the event being handled; `None` for hooks.
    pub event: Option<&'static str>,
    /// What went wrong.
    pub error: HandlerError,
}

/// What a hook may extract beyond the connection and the server.
#[derive(Clone, Copy, Default)]
pub(crate) struct HookArgs<'a> {
    pub(crate) reason: Option<&'a DisconnectReason>,
    pub(crate) failure: Option<&'a AuthFailure>,
}

impl<In: Events, Out: Events> Server<In, Out> {
    /// The upgrade hook's refusal of a new connection, if it refuses
    /// (counted in the stats); a hook that panics refuses with `500`.
    pub(crate) async fn run_upgrade_hook(&self, meta: &ConnMeta) -> Option<UpgradeRejection> {
        let hook = self.inner.on_upgrade.clone()?;
        let verdict = AssertUnwindSafe(hook(meta.clone())).catch_unwind().await;
        let rejection = match verdict {
            Ok(Ok(())) => return None,
            Ok(Err(rejection)) => rejection,
            Err(panic) => {
                tracing::error!(panic = panic_message(&*panic), "the upgrade hook panicked");
                UpgradeRejection::new(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "upgrade check failed",
                )
            }
        };
        self.inner
            .stats
            .rejected_upgrade
            .fetch_add(1, Ordering::Relaxed);
        Some(rejection)
    }

    pub(crate) async fn fire_connect(&self, conn: &Conn<Out>) {
        for hook in &self.inner.on_connect {
            self.run_hook(hook, conn, HookArgs::default()).await;
        }
    }

    pub(crate) async fn fire_disconnect(&self, conn: &Conn<Out>, reason: DisconnectReason) {
        let args = HookArgs {
            reason: Some(&reason),
            ..HookArgs::default()
        };
        for hook in &self.inner.on_disconnect {
            self.run_hook(hook, conn, args).await;
        }
    }

    pub(crate) async fn run_hook(
        &self,
        hook: &BoxHook<In, Out>,
        conn: &Conn<Out>,
        args: HookArgs<'_>,
    ) {
        let mut parts = extract::parts(self, conn, args.reason);
        parts.auth_failure = args.failure;
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| hook(&parts)));
        let outcome = match started {
            Ok(Ok(future)) => AssertUnwindSafe(future)
                .catch_unwind()
                .await
                .map_err(|panic| HandlerError::HookPanicked(panic_message(&*panic))),
            Ok(Err(err)) => Err(HandlerError::Extract(err)),
            Err(panic) => Err(HandlerError::HookPanicked(panic_message(&*panic))),
        };
        if let Err(error) = outcome {
            self.report(conn, None, error);
        }
    }

    pub(crate) fn report(
        &self,
        conn: &Conn<Out>,
        event: Option<&'static str>,
        error: HandlerError,
    ) {
        tracing::warn!(conn = %conn.id(), event, error = %Chain(&error), "event handling failed");
        if let Some(hook) = &self.inner.on_error {
            let report = ErrorReport {
                conn: conn.clone(),
                event,
                error,
            };
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| hook(report))) {
                tracing::error!(
                    panic = panic_message(&*panic),
                    "the `on_error` hook panicked"
                );
            }
        }
    }
}
