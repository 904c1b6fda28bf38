//! The authentication flow: `__auth` checked by the strategy, then success
//! (the connection opens to the application) or failure (`auth:error`, the
//! close, the `on_auth_error` hooks).

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use crate::{
    auth::{self, AuthConfig, AuthFailure, AuthReason, Verdict},
    codec::RawPayload,
    conn::Conn,
    event::Events,
    server::{Server, hooks::HookArgs},
};

/// Checks the credentials of `__auth` and ends the pending authentication.
pub(crate) async fn authenticate<In: Events, Out: Events>(
    server: &Server<In, Out>,
    auth: &AuthConfig,
    conn: &Conn<Out>,
    payload: RawPayload<'_>,
) {
    if refused_as_throttled(server, conn).await {
        return;
    }
    // Bounded: the deadline timer fails the attempt on time, but a
    // strategy that never answers would otherwise keep this dispatch,
    // and so the connection's task and its place among the live
    // connections, forever.
    let checking = auth.check_credentials(payload, conn.meta());
    let verdict = tokio::time::timeout(auth.timeout, checking)
        .await
        .unwrap_or_else(|_elapsed| {
            Err(AuthFailure {
                reason: AuthReason::Timeout,
                detail: Some("the auth strategy did not answer in time".into()),
            })
        });
    finish(server, conn, verdict).await;
}

/// Fails the pending authentication of `conn` with `too many failed
/// attempts`, without checking anything, when its remote address used up
/// its failures; true when it did.
pub(crate) async fn refused_as_throttled<In: Events, Out: Events>(
    server: &Server<In, Out>,
    conn: &Conn<Out>,
) -> bool {
    let (Some(throttle), Some(addr)) = (&server.inner.auth_throttle, conn.meta().remote_addr())
    else {
        return false;
    };
    if throttle.allows(addr.ip(), Instant::now()) {
        return false;
    }
    let failure = AuthFailure {
        reason: AuthReason::TooManyAttempts,
        detail: Some(format!("{} failed too often", addr.ip())),
    };
    fail(server, conn, failure).await;
    true
}

/// Ends a pending authentication with the strategy's verdict.
pub(crate) async fn finish<In: Events, Out: Events>(
    server: &Server<In, Out>,
    conn: &Conn<Out>,
    verdict: Verdict,
) {
    let user = match verdict {
        Ok(user) => user,
        Err(failure) => return fail(server, conn, failure).await,
    };
    let frame = match user.success_frame(conn.meta().codec()) {
        Ok(frame) => frame,
        Err(err) => {
            let detail = format!("cannot encode the user: {err}");
            tracing::error!(conn = %conn.id(), %detail, "authentication failed");
            let failure = AuthFailure {
                reason: AuthReason::InvalidCredentials,
                detail: Some(detail),
            };
            return fail(server, conn, failure).await;
        }
    };
    // A timeout may have ended the attempt while the strategy ran.
    if !conn.inner.settle_auth(true) {
        return;
    }
    user.install(&conn.inner);
    // `auth:success` is the first thing the connection hears once it is
    // reachable, so it goes out before the connection is registered.
    let _ = conn.send_encoded(frame);
    server.register(conn);
    for hook in &server.inner.on_auth_success {
        server.run_hook(hook, conn, HookArgs::default()).await;
    }
    server.fire_connect(conn).await;
}

/// Fails a pending authentication: `auth:error`, the close code of the
/// cause, the `on_auth_error` hooks. Does nothing if it already ended.
pub(crate) async fn fail<In: Events, Out: Events>(
    server: &Server<In, Out>,
    conn: &Conn<Out>,
    failure: AuthFailure,
) {
    if !conn.inner.settle_auth(false) {
        return;
    }
    let stats = &server.inner.stats;
    let counter = match failure.reason {
        AuthReason::Timeout => &stats.auth_timeouts,
        AuthReason::TooManyAttempts => &stats.auth_throttled,
        _ => &stats.auth_failures,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    // A refusal by the throttle is not one more guess; a timeout is not a
    // guess at all.
    if !matches!(
        failure.reason,
        AuthReason::Timeout | AuthReason::TooManyAttempts
    ) && let (Some(throttle), Some(addr)) =
        (&server.inner.auth_throttle, conn.meta().remote_addr())
    {
        throttle.failed(addr.ip(), Instant::now());
    }
    tracing::debug!(conn = %conn.id(), reason = %failure.reason, detail = ?failure.detail, "authentication failed");
    if let Ok(frame) = auth::error_frame(conn.meta().codec(), failure.reason.as_str()) {
        let _ = conn.send_encoded(frame);
    }
    conn.close(failure.reason.close_code(), failure.reason.as_str());
    let args = HookArgs {
        failure: Some(&failure),
        ..HookArgs::default()
    };
    for hook in &server.inner.on_auth_error {
        server.run_hook(hook, conn, args).await;
    }
}
