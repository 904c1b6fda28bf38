//! The middleware chain: each step, its timeout and its error policy, and
//! at its end the handlers.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::Poll,
    time::Duration,
};

use futures_util::FutureExt;

use crate::{
    conn::Conn,
    error::Chain,
    error::panic_message,
    event::Events,
    handler::ack::AckSlot,
    middleware::{Envelope, ErrorPolicy, MiddlewareError, Next},
    protocol::{CloseCode, ErrorCode},
    server::Server,
};

/// Runs middleware step `position` and, through it, the rest.
pub(crate) fn run<In: Events, Out: Events>(
    server: &Server<In, Out>,
    position: usize,
    envelope: Envelope<Out>,
) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
    Box::pin(async move {
        let Some(step) = server.inner.middleware.get(position) else {
            return run_final(server, envelope).await;
        };
        let conn = envelope.conn.clone();
        let event = envelope.event;
        let ack = envelope.ack.clone();
        let passed = step
            .options
            .timeout
            .map(|_| Arc::new(AtomicBool::new(false)));
        let next = Next {
            server: server.clone(),
            position: position + 1,
            passed: passed.clone(),
            rest: run,
        };
        let future = AssertUnwindSafe(step.middleware.call(envelope, next)).catch_unwind();
        let result = match (step.options.timeout, &passed) {
            (Some(timeout), Some(passed)) => match until_passed(future, passed, timeout).await {
                Some(result) => result,
                None => {
                    return middleware_failed(
                        server,
                        &conn,
                        ack.as_deref(),
                        &step.options.on_error,
                        MiddlewareError::TimedOut { event, timeout },
                    );
                }
            },
            _ => future.await,
        };
        let error = match result {
            Ok(Ok(())) => return,
            Ok(Err(source)) => MiddlewareError::Failed { event, source },
            Err(panic) => MiddlewareError::Failed {
                event,
                source: format!("middleware panicked: {}", panic_message(&*panic)).into(),
            },
        };
        middleware_failed(server, &conn, ack.as_deref(), &step.options.on_error, error);
    })
}

fn middleware_failed<In: Events, Out: Events>(
    _server: &Server<In, Out>,
    conn: &Conn<Out>,
    ack: Option<&AckSlot>,
    policy: &ErrorPolicy,
    error: MiddlewareError,
) {
    tracing::debug!(conn = %conn.id(), error = %Chain(&error), "middleware stopped an event");
    if let Some(slot) = ack {
        // The client hears the whole chain, as before the error kept its
        // source out of its own message.
        slot.reply_error(ErrorCode::Rejected, Chain(&error).to_string(), None);
    }
    match policy {
        ErrorPolicy::Ignore => {}
        ErrorPolicy::Close => {
            conn.close(CloseCode::PolicyViolation, "rejected by middleware");
        }
        ErrorPolicy::Callback(callback) => {
            let id = conn.id();
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| callback(id, &error)))
            {
                tracing::error!(
                    panic = panic_message(&*panic),
                    "a middleware error callback panicked"
                );
            }
        }
    }
}

/// The end of the middleware chain: the handlers.
async fn run_final<In: Events, Out: Events>(server: &Server<In, Out>, envelope: Envelope<Out>) {
    let Envelope {
        conn,
        index,
        ack,
        incoming,
        ..
    } = envelope;
    super::handlers::run(server, &conn, index, incoming.payload(), ack.as_ref()).await;
}

/// Runs `future` until it ends or, when `passed` is not set within
/// `timeout`, gives up on it.
async fn until_passed<T>(
    future: impl Future<Output = T>,
    passed: &AtomicBool,
    timeout: Duration,
) -> Option<T> {
    let sleep = tokio::time::sleep(timeout);
    tokio::pin!(future);
    tokio::pin!(sleep);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if !passed.load(Ordering::Acquire) && sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}
