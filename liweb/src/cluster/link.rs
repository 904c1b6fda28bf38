//! What a node needs of the others ([`Link`]) and what the others need of
//! a node ([`Deliver`]).

use std::{fmt, sync::Arc};

use uuid::Uuid;

use super::{error::ClusterError, message::Message};
use crate::{
    conn::ConnId, presence::PresenceRecord, room::key::RoomKey, state::StateStore, util::BoxFuture,
};

/// Where a node's messages for others go, and where it keeps what other
/// nodes must see (membership, presence). Not generic over the server's
/// events, so the room registry holds it as a trait object.
pub(crate) trait Link: Send + Sync + fmt::Debug + 'static {
    /// This node's id: where replies to its requests are addressed.
    fn node_id(&self) -> Uuid;

    /// Sends a message to the other nodes; never waits. Failures are
    /// reported through the adapter's error path.
    fn publish(&self, message: Message);

    /// Starts receiving the messages of `room`: called when its first local
    /// member joins. Resolves once the subscription is in place (or the
    /// adapter is disconnected, in which case it subscribes on reconnect).
    fn subscribe(&self, room: &RoomKey) -> BoxFuture<'static, ()>;

    /// Stops receiving the messages of `room`: its last local member left.
    fn unsubscribe(&self, room: &RoomKey);

    /// Records that `conn` (presence `record.key`) is now in `room` here, or
    /// updates its record.
    fn member_joined(
        &self,
        room: &RoomKey,
        conn: ConnId,
        record: PresenceRecord,
    ) -> BoxFuture<'static, ()>;

    /// Records that `conn` left `room`; `offline` is the presence record
    /// to keep (as "last seen") when it was its key's last connection here.
    fn member_left(
        &self,
        room: &RoomKey,
        conn: ConnId,
        offline: Option<PresenceRecord>,
    ) -> BoxFuture<'static, ()>;

    /// The members of `room` on every live node.
    fn members(&self, room: &RoomKey) -> BoxFuture<'static, Result<Vec<ConnId>, ClusterError>>;

    /// The presence records of `room` across live nodes, merged per key.
    fn presence(
        &self,
        room: &RoomKey,
        now_ms: u64,
    ) -> BoxFuture<'static, Result<Vec<PresenceRecord>, ClusterError>>;

    /// Forgets what this node recorded about `room`.
    fn drop_room(&self, room: &RoomKey) -> BoxFuture<'static, ()>;
}

/// What a server builder takes from an adapter.
pub(crate) struct Parts {
    pub(crate) link: Arc<dyn Link>,
    pub(crate) state: Arc<dyn StateStore>,
    pub(crate) attach: Box<dyn FnOnce(Arc<dyn Deliver>) + Send>,
}

impl fmt::Debug for Parts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parts")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// What a node does with a message from another node.
pub(crate) trait Deliver: Send + Sync + 'static {
    /// Hands the message to the local connections it is for.
    fn deliver(&self, message: Message);

    /// Every local member of every room with its presence record, to write
    /// again after the shared store lost them.
    fn memberships(&self) -> Vec<(RoomKey, Vec<(ConnId, PresenceRecord)>)>;
}
