//! The error types of the operations every layer shares: reading a frame
//! ([`DecodeError`]), encoding one ([`EncodeError`]), sending to a connection
//! ([`EmitError`]), building a handler's arguments ([`ExtractError`]) and
//! running a handler or hook ([`HandlerError`]). The errors of one area live
//! with it: `RequestError` with requests, `JoinError` with rooms,
//! `StateError` with state, `ClusterError` with the cluster, `ClientError`
//! with the client, `MiddlewareError` with middleware.
//!
//! An error that has a cause carries it as its
//! [`source`](std::error::Error::source) and keeps it out of its own
//! message, so a reporter that prints the chain prints each cause once;
//! liweb's own logs print the chain.

use std::{fmt, sync::Arc};

/// A boxed error from application code.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The underlying error of an error that must stay `Clone`
/// ([`StateError`](crate::state::StateError), [`ClusterError`](crate::cluster::ClusterError)).
///
/// The `Box` inside the `Arc` is deliberate: `Box<dyn Error>` is not itself
/// an `Error`, so thiserror's `source()` of a field of this type derefs to
/// the underlying error, which callers can then downcast; an
/// `Arc<dyn Error>` would be its own `Error` and hide the type behind it.
pub(crate) type SharedError = Arc<BoxError>;

/// `err` as a [`SharedError`]; a `String` or `&str` becomes an error with
/// that message.
pub(crate) fn shared(err: impl Into<BoxError>) -> SharedError {
    Arc::new(err.into())
}

/// Whether two shared sources are the same error, or read the same: the
/// underlying errors themselves cannot be compared.
pub(crate) fn same_source(a: &SharedError, b: &SharedError) -> bool {
    Arc::ptr_eq(a, b) || a.to_string() == b.to_string()
}

/// An inbound frame or payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    message: String,
    path: Option<String>,
}

impl DecodeError {
    pub(crate) fn frame(err: impl fmt::Display) -> Self {
        Self {
            message: format!("invalid frame: {err}"),
            path: None,
        }
    }

    pub(crate) fn payload<E: fmt::Display>(err: serde_path_to_error::Error<E>) -> Self {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            Self {
                message: format!("invalid payload: {inner}"),
                path: None,
            }
        } else {
            Self {
                message: format!("invalid payload at `{path}`: {inner}"),
                path: Some(path),
            }
        }
    }

    pub(crate) fn payload_message(err: impl fmt::Display) -> Self {
        Self {
            message: format!("invalid payload: {err}"),
            path: None,
        }
    }

    /// The path of the payload field that failed (`user.name`, `items[2]`),
    /// when the failure is inside the payload.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }
}

/// An outbound event could not be serialized; the codec's error is the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode event")]
pub struct EncodeError(#[source] BoxError);

impl EncodeError {
    pub(crate) fn new(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(err))
    }

    /// The same failure again, for the next connection it concerns (the
    /// source error is not `Clone`; its message is kept).
    pub(crate) fn again(&self) -> Self {
        Self::new(std::io::Error::other(self.0.to_string()))
    }
}

/// Why an emit did not reach a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The connection is closed (or closing); nothing was sent.
    #[error("the connection is closed")]
    Closed,
    /// The connection's outbound queue was over its byte limit; the
    /// connection is being closed with [`CloseCode::SlowConsumer`](crate::CloseCode::SlowConsumer).
    #[error("the connection reads too slowly and is being closed")]
    SlowConsumer,
    /// The event could not be serialized.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// An extractor could not produce its value, so the handler did not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// `State<T>` was asked for a type never given to
    /// [`ServerBuilder::state`](crate::ServerBuilder::state).
    #[error("no state of type `{0}` was registered with `ServerBuilder::state`")]
    MissingState(&'static str),
    /// The payload was decoded but not available (two payload arguments).
    #[error("the payload was already taken by another argument")]
    PayloadTaken,
    /// The payload does not have the event's payload type.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A user extractor failed.
    #[error(transparent)]
    Custom(BoxError),
}

impl ExtractError {
    /// Wraps an application error from a [`FromConnParts`](crate::FromConnParts) impl.
    pub fn custom(err: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Custom(err.into())
    }
}

/// A handler's refusal of bad or unwelcome input: return it as a handler's
/// error (`Err(Refused::new(..))`, or an error of the application's own
/// type that has it as its [`source`](std::error::Error::source), such as a
/// thiserror variant `#[error("{0}")] Refused(#[from] Refused)`) and the
/// client hears it as an `error` event of code `refused` with this message
/// (as the error reply, when the event was a request). Refusing input is not
/// a failure: the error hook is not told, and the handlers after this one do
/// not run.
///
/// ```
/// use liweb::Refused;
///
/// async fn rename(name: String) -> Result<(), Refused> {
///     if name.len() > 32 {
///         return Err(Refused::new("names are at most 32 bytes"));
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    message: std::borrow::Cow<'static, str>,
}

impl Refused {
    /// A refusal the client reads as `message`.
    pub fn new(message: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// What the client reads.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What went wrong while handling an event; given to the error hook.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The handler returned `Err`; that error is the field and the
    /// [`source`](std::error::Error::source).
    #[error("handler failed")]
    Returned(#[source] BoxError),
    /// The handler panicked; the message is the panic payload when it was a string.
    #[error("handler panicked: {0}")]
    Panicked(String),
    /// An argument could not be extracted, so the handler did not run; the
    /// [`ExtractError`] is the [`source`](std::error::Error::source).
    #[error("handler not run")]
    Extract(#[from] ExtractError),
    /// A lifecycle hook (`on_connect`, `on_disconnect`) panicked.
    #[error("hook panicked: {0}")]
    HookPanicked(String),
}

/// Shows an error with every source behind it, `outer: inner: innermost`:
/// errors keep their causes out of their own messages (reporters print the
/// chain), so logs print it with this.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Fails when an error of `err`'s chain repeats its source's text in its
/// own: a reporter that prints the chain would print the source twice.
#[cfg(test)]
pub(crate) fn assert_source_not_repeated(err: &(dyn std::error::Error + 'static)) {
    let mut current = Some(err);
    while let Some(err) = current {
        let source = err.source();
        if let Some(source) = source {
            let (text, cause) = (err.to_string(), source.to_string());
            assert!(
                !text.contains(&cause),
                "`{text}` repeats its source `{cause}`"
            );
        }
        current = source;
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn errors_with_a_source_do_not_print_it() {
        let io = || std::io::Error::other("disk on fire");
        let encode = EncodeError::new(io());
        assert_eq!(encode.to_string(), "cannot encode event");
        assert!(encode.source().is_some_and(|s| s.is::<std::io::Error>()));
        assert_source_not_repeated(&encode);
        // Transparent wrappers show the source's message, once.
        let emit = EmitError::from(EncodeError::new(io()));
        assert_eq!(emit.to_string(), "cannot encode event");
        assert_source_not_repeated(&emit);

        let returned = HandlerError::Returned(Box::new(io()));
        assert_eq!(returned.to_string(), "handler failed");
        let source = returned.source().map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk on fire"));
        assert_source_not_repeated(&returned);

        let decode = DecodeError::payload_message("expected a string");
        let not_run = HandlerError::from(ExtractError::from(decode.clone()));
        assert_eq!(not_run.to_string(), "handler not run");
        let source = not_run.source().map(ToString::to_string);
        assert_eq!(source, Some(decode.to_string()));
        assert_source_not_repeated(&not_run);
        let custom = HandlerError::from(ExtractError::custom("no token"));
        assert_source_not_repeated(&custom);
    }

    #[test]
    fn the_check_catches_a_message_that_repeats_its_source() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Repeats(#[source] std::io::Error);

        let err = Repeats(std::io::Error::other("inner"));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_source_not_repeated(&err);
        }));
        assert!(caught.is_err());
    }
}
