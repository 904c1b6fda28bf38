//! Drains a connection's outbound queue into its transport.

use std::sync::Arc;

use futures_util::{Sink, SinkExt};

use crate::{conn::ConnInner, transport::item::Outbound};

/// How many queued frames the writer feeds before flushing once.
const WRITE_BATCH: usize = 64;

/// How many slots the writer's batch keeps between bursts.
const IDLE_BATCH: usize = 4;
pub(super) async fn write_loop<W>(mut sink: W, conn: Arc<ConnInner>)
where
    W: Sink<Outbound> + Unpin,
{
    // The connection task drops this future when the connection ends; it
    // needs no signal of its own. The batch starts small and gives back
    // what a burst grew, so a connection that once received a burst does
    // not keep a batch's worth of slots for its whole life.
    let mut batch = Vec::with_capacity(IDLE_BATCH);
    loop {
        std::future::poll_fn(|cx| conn.queue.poll_take(cx, &mut batch, WRITE_BATCH)).await;
        if !write_batch(&mut sink, &mut batch, &conn).await {
            // Dropping the sink (with the reader) closes the socket; closing
            // it here would wait on a handshake only the reader can finish.
            return;
        }
        // Given back once a burst is over, not between its batches.
        if batch.capacity() > IDLE_BATCH && conn.queue.is_empty() {
            batch.shrink_to(IDLE_BATCH);
        }
    }
}

/// Feeds every queued item, then flushes once. Returns `false` when the
/// connection is done (a close frame went out, or the transport failed).
async fn write_batch<W>(sink: &mut W, batch: &mut Vec<Outbound>, conn: &ConnInner) -> bool
where
    W: Sink<Outbound> + Unpin,
{
    let mut items = batch.drain(..);
    while let Some(item) = items.next() {
        if conn.queue.is_urgent() {
            // A policy close dropped the backlog after this batch was taken:
            // drop the rest of it too, and take the close next.
            conn.queue.sent(&item);
            for rest in items {
                conn.queue.sent(&rest);
            }
            return true;
        }
        let close = matches!(item, Outbound::Close(..));
        conn.queue.sent(&item);
        if sink.feed(item).await.is_err() {
            return false;
        }
        if close {
            let _ = sink.flush().await;
            return false;
        }
    }
    sink.flush().await.is_ok()
}
