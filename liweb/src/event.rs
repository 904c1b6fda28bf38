//! The traits `#[derive(Events)]` implements.

use serde::{Serialize, Serializer, de::DeserializeOwned};

/// An enum of events: what clients send (`In`) or what the server sends (`Out`).
///
/// Implemented by `#[derive(Events)]`; implementing it by hand is possible but
/// the derive also checks names and writes the per-variant keys.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an enum of events",
    label = "`Events` is not implemented for `{Self}`",
    note = "add `#[derive(liweb::Events)]` to the enum"
)]
pub trait Events: Sized + Send + 'static {
    /// The wire names of the events, by index.
    const NAMES: &'static [&'static str];

    /// One message per event, used when an exhaustive handler list misses it.
    #[doc(hidden)]
    const MISSING_HANDLER: &'static [&'static str];

    /// The dense index of this event (its position in [`Events::NAMES`]).
    fn index(&self) -> usize;

    /// The wire name of this event.
    fn name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// The index of the event with this wire name, if there is one.
    fn index_of(name: &str) -> Option<usize>;

    /// Decodes the payload of the event at `index` straight into its variant.
    ///
    /// Returns `None` when `index` is not an event of this enum.
    fn decode<D: PayloadDecoder>(index: usize, payload: D) -> Option<Result<Self, D::Error>>;

    /// Serializes the payload alone (not the event name).
    fn serialize_payload<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;
}

/// One event of an [`Events`] enum, named in a type.
///
/// `#[derive(Events)]` writes one key per variant in the enum's companion
/// module: `ChatIn::Message` has the key `chat_in::Message`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the key of an event",
    note = "event keys live in the companion module `#[derive(Events)]` writes: `ChatIn::Message` has the key `chat_in::Message`"
)]
pub trait EventKey: Send + Sync + 'static {
    /// The enum this event belongs to.
    type Events: Events;
    /// The payload type: the newtype field, `()` for unit variants, the key
    /// itself for struct variants.
    type Payload: Serialize + DeserializeOwned + Send + 'static;
    /// The wire name.
    const NAME: &'static str;
    /// The dense index in [`Events::NAMES`].
    const INDEX: usize;
    /// Wraps a payload into its event.
    fn into_event(payload: Self::Payload) -> Self::Events;
}

/// A payload in some wire format, waiting to be decoded into a concrete type.
///
/// Each codec provides one; the generated [`Events::decode`] asks it for the
/// variant's payload type, so no intermediate value tree is built.
pub trait PayloadDecoder {
    /// What goes wrong.
    type Error;
    /// Decodes the payload as `T`.
    fn decode<T: DeserializeOwned>(self) -> Result<T, Self::Error>;
}

/// The events of a direction that has none: a simplex server, one that only
/// pushes.
///
/// `NoEvents` has no value, so nothing of it can be sent: a server that
/// only pushes is a `Server<NoEvents, Out>`, and its Rust clients are
/// `Client<Out, NoEvents>`. Whatever such a client sends anyway is answered
/// with an `error` event of code `unknown_event` (see
/// [`ErrorCode`](crate::ErrorCode)); the connection stays open.
///
/// ```
/// use liweb::prelude::*;
/// use liweb::NoEvents;
///
/// #[derive(Events)]
/// enum Ticker {
///     Price(f64),
/// }
///
/// // Handlers need an event of `In`: this server registers none.
/// let server = Server::<NoEvents, Ticker>::builder().build();
/// // No client listens yet, so nobody receives this.
/// server.broadcast(Ticker::Price(101.5)).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NoEvents {}

impl Events for NoEvents {
    const NAMES: &'static [&'static str] = &[];
    const MISSING_HANDLER: &'static [&'static str] = &[];

    fn index(&self) -> usize {
        match *self {}
    }

    fn index_of(_name: &str) -> Option<usize> {
        None
    }

    fn decode<D: PayloadDecoder>(_index: usize, _payload: D) -> Option<Result<Self, D::Error>> {
        None
    }

    fn serialize_payload<S: Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
        match *self {}
    }
}

/// Serializes an event's payload through [`Events::serialize_payload`].
pub(crate) struct PayloadOf<'a, E>(pub(crate) &'a E);

impl<E: Events> Serialize for PayloadOf<'_, E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_payload(serializer)
    }
}
