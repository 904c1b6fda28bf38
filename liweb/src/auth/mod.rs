//! Authentication: who a connection is, decided by the server.
//!
//! Turn it on with [`ServerBuilder::auth`](crate::ServerBuilder::auth) and an
//! [`Auth`] strategy. Until the strategy accepts a connection, none of its
//! events reaches a handler (each gets `auth:error {"reason":"not authenticated"}`),
//! it cannot join a room, it is not counted or reachable through the server,
//! and no broadcast reaches it. On success it gets
//! `auth:success {"user": ..}` with the user the strategy returned, the
//! `on_auth_success` and `on_connect` hooks run, and handlers can take the
//! user as a [`User<U>`] argument. On failure it gets
//! `auth:error {"reason": ..}` and is closed with the code of the cause:
//!
//! | reason                 | close code |
//! |------------------------|------------|
//! | `invalid credentials`  | 4001 [`CloseCode::AuthFailed`] |
//! | `invalid secret`       | 4001 [`CloseCode::AuthFailed`] |
//! | `missing auth payload` | 4005 [`CloseCode::AuthMissing`] |
//! | `auth timeout`         | 4002 [`CloseCode::AuthTimeout`] |
//! | `too many failed attempts` | 4001 [`CloseCode::AuthFailed`] |
//!
//! A remote address that fails too often is refused without its credentials
//! being checked: 30 failures a minute by default, see
//! [`Config::max_auth_failures_per_minute`](crate::Config::max_auth_failures_per_minute).
//!
//! The deadline counts from connect (default 5 s). Identity only ever comes
//! from the strategy's result: what a client claims about itself is, at
//! most, credentials for the strategy to check.
//!
//! ```
//! use liweb::prelude::*;
//! use liweb::auth::{Auth, AuthUser};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Login { name: String, password: String }
//!
//! #[derive(Clone, Serialize)]
//! struct Member { name: String, admin: bool }
//!
//! impl AuthUser for Member {
//!     fn user_id(&self) -> String { self.name.clone() }
//! }
//!
//! # #[derive(Events)] enum In { Ping }
//! # #[derive(Events)] enum Out { Pong }
//! let auth = Auth::credentials(|login: Login, _meta: ConnMeta| async move {
//!     if login.password == "hunter2" {
//!         Ok(Member { name: login.name, admin: false })
//!     } else {
//!         Err("wrong password")
//!     }
//! });
//! let server = Server::<In, Out>::builder().auth(auth).build();
//! ```

use std::{fmt, future::Future, panic::AssertUnwindSafe, pin::Pin, sync::Arc, time::Duration};

use futures_util::FutureExt;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    codec::{CodecKind, Frame, RawPayload},
    conn::{Authenticated, ConnInner, meta::ConnMeta},
    error::{DecodeError, EncodeError, panic_message},
    event::PayloadDecoder,
    presence::PresenceKey,
    protocol::{AUTH_ERROR, AUTH_SUCCESS, CloseCode},
};

/// The type of an authenticated user.
///
/// It is sent to the client in `auth:success`, so it must serialize; keep
/// secrets out of it. [`AuthUser::user_id`] keys presence: two connections
/// of one user are one online user in a room.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the user of an auth strategy",
    label = "the user type of this strategy",
    note = "implement `liweb::auth::AuthUser` for `{Self}` (it needs `Serialize + Clone`, and `user_id` returning a stable id for presence)"
)]
pub trait AuthUser: Serialize + Clone + Send + Sync + 'static {
    /// A stable id of the user.
    fn user_id(&self) -> String;
}

/// The user of the shared-secret strategy: a server-issued name per
/// connection (`guest-` and eight hex digits), since a shared secret says
/// nothing about who is connecting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretUser {
    /// The server-issued id, such as `guest-3f2a9c01`.
    pub id: String,
}

impl AuthUser for SecretUser {
    fn user_id(&self) -> String {
        self.id.clone()
    }
}

/// An authenticated connection's user, as a handler or hook argument.
///
/// Extraction fails (the handler does not run, the `on_error` hook hears of
/// it) when the server has no auth or its user type is not `U`.
#[derive(Debug, Clone)]
pub struct User<U>(pub U);

/// Why authentication failed; the reason string is what `auth:error` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthReason {
    /// The strategy refused the credentials (or failed while checking them).
    InvalidCredentials,
    /// The shared secret did not match.
    InvalidSecret,
    /// No credentials, or `__auth` with a payload of the wrong shape.
    MissingPayload,
    /// No successful authentication before the deadline.
    Timeout,
    /// The remote address failed to authenticate too often
    /// ([`Config::max_auth_failures_per_minute`](crate::Config::max_auth_failures_per_minute));
    /// the credentials were not checked.
    TooManyAttempts,
}

impl AuthReason {
    /// The `reason` of the `auth:error` event.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid credentials",
            Self::InvalidSecret => "invalid secret",
            Self::MissingPayload => "missing auth payload",
            Self::Timeout => "auth timeout",
            Self::TooManyAttempts => "too many failed attempts",
        }
    }

    /// The code the connection is closed with.
    pub const fn close_code(self) -> CloseCode {
        match self {
            Self::InvalidCredentials | Self::InvalidSecret | Self::TooManyAttempts => {
                CloseCode::AuthFailed
            }
            Self::MissingPayload => CloseCode::AuthMissing,
            Self::Timeout => CloseCode::AuthTimeout,
        }
    }
}

impl fmt::Display for AuthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed authentication, as the `on_auth_error` hook's argument: the
/// reason sent to the client, and the detail it was not sent (the
/// strategy's error, a panic message, a decode error).
#[derive(Debug, Clone)]
pub struct AuthFailure {
    /// What the client was told.
    pub reason: AuthReason,
    /// Why, for the server's logs.
    pub detail: Option<String>,
}

/// The `auth:error` payload.
#[derive(Serialize)]
struct AuthErrorPayload<'a> {
    reason: &'a str,
}

/// The `auth:success` payload.
#[derive(Serialize)]
struct AuthSuccessPayload<'a, U> {
    user: &'a U,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A user accepted by a strategy, with its type erased.
pub(crate) trait Accepted: Send {
    /// `auth:success {"user": ..}` in `codec`.
    fn success_frame(&self, codec: CodecKind) -> Result<Frame, EncodeError>;
    /// Stores the user in the connection's data and keys its presence by it.
    fn install(self: Box<Self>, conn: &ConnInner);
}

struct AcceptedUser<U>(U);

impl<U: AuthUser> Accepted for AcceptedUser<U> {
    fn success_frame(&self, codec: CodecKind) -> Result<Frame, EncodeError> {
        codec.encode_parts(AUTH_SUCCESS, None, &AuthSuccessPayload { user: &self.0 })
    }

    fn install(self: Box<Self>, conn: &ConnInner) {
        conn.insert_data(PresenceKey::user(self.0.user_id()));
        conn.insert_data(Authenticated(self.0));
    }
}

pub(crate) type Verdict = Result<Box<dyn Accepted>, AuthFailure>;

type CredentialsFn =
    Arc<dyn Fn(RawPayload<'_>, ConnMeta) -> Result<BoxFuture<Verdict>, DecodeError> + Send + Sync>;
type RequestFn = Arc<dyn Fn(ConnMeta) -> BoxFuture<Option<Verdict>> + Send + Sync>;

/// An authentication strategy for users of type `U`; give it to
/// [`ServerBuilder::auth`](crate::ServerBuilder::auth). See the
/// [module docs](self).
pub struct Auth<U> {
    pub(crate) config: AuthConfig,
    _user: std::marker::PhantomData<fn() -> U>,
}

/// A strategy with its user type erased, as the server keeps it.
#[derive(Clone)]
pub(crate) struct AuthConfig {
    pub(crate) timeout: Duration,
    credentials: Option<CredentialsFn>,
    request: Option<RequestFn>,
}

impl<U> fmt::Debug for Auth<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("timeout", &self.config.timeout)
            .field("credentials", &self.config.credentials.is_some())
            .field("request", &self.config.request.is_some())
            .finish()
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The default deadline, counted from connect.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a strategy future, turning its error or panic into a failure.
async fn verdict<U: AuthUser, E: fmt::Display>(
    future: impl Future<Output = Result<U, E>> + Send,
    refused: AuthReason,
) -> Verdict {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(Ok(user)) => Ok(Box::new(AcceptedUser(user))),
        Ok(Err(err)) => Err(AuthFailure {
            reason: refused,
            detail: Some(err.to_string()),
        }),
        Err(panic) => Err(AuthFailure {
            reason: refused,
            detail: Some(format!(
                "the auth function panicked: {}",
                panic_message(&*panic)
            )),
        }),
    }
}

impl<U: AuthUser> Auth<U> {
    fn empty() -> Self {
        Self {
            config: AuthConfig {
                timeout: DEFAULT_AUTH_TIMEOUT,
                credentials: None,
                request: None,
            },
            _user: std::marker::PhantomData,
        }
    }

    /// Authenticates with credentials of type `C` that the client sends as
    /// the payload of `__auth`. `check` returns the user, or an error (the
    /// client is told `invalid credentials`; the error goes to the
    /// `on_auth_error` hook). A payload that is not a `C` fails with
    /// `missing auth payload`.
    pub fn credentials<C, F, Fut, E>(check: F) -> Self
    where
        C: DeserializeOwned + Send + 'static,
        F: Fn(C, ConnMeta) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<U, E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        Self::empty().or_credentials(check)
    }

    /// Authenticates from the upgrade request (a header, a cookie, a
    /// `?token=` query parameter: [`ConnMeta`] has them all), with no
    /// `__auth` message. `check` returns `Ok(None)` when the request carries
    /// no credentials: the connection then waits for `__auth` if
    /// [`Auth::or_credentials`] is set, and fails with
    /// `missing auth payload` otherwise.
    pub fn request<F, Fut, E>(check: F) -> Self
    where
        F: Fn(ConnMeta) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<U>, E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let check = Arc::new(check);
        let mut auth = Self::empty();
        auth.config.request = Some(Arc::new(move |meta| {
            let check = Arc::clone(&check);
            Box::pin(async move {
                match AssertUnwindSafe(check(meta)).catch_unwind().await {
                    Ok(Ok(None)) => None,
                    Ok(Ok(Some(user))) => Some(
                        verdict(async { Ok::<_, E>(user) }, AuthReason::InvalidCredentials).await,
                    ),
                    Ok(Err(err)) => Some(Err(AuthFailure {
                        reason: AuthReason::InvalidCredentials,
                        detail: Some(err.to_string()),
                    })),
                    Err(panic) => Some(Err(AuthFailure {
                        reason: AuthReason::InvalidCredentials,
                        detail: Some(format!(
                            "the auth function panicked: {}",
                            panic_message(&*panic)
                        )),
                    })),
                }
            }) as BoxFuture<Option<Verdict>>
        }));
        auth
    }

    /// Also accepts credentials sent in `__auth`, for connections whose
    /// upgrade request carried none (see [`Auth::request`]).
    pub fn or_credentials<C, F, Fut, E>(mut self, check: F) -> Self
    where
        C: DeserializeOwned + Send + 'static,
        F: Fn(C, ConnMeta) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<U, E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let check = Arc::new(check);
        self.config.credentials = Some(Arc::new(move |payload, meta| {
            let credentials = payload.decode::<C>()?;
            let check = Arc::clone(&check);
            Ok(Box::pin(async move {
                verdict(
                    async move { check(credentials, meta).await },
                    AuthReason::InvalidCredentials,
                )
                .await
            }) as BoxFuture<Verdict>)
        }));
        self
    }

    /// How long after connecting a client may take to authenticate
    /// (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }
}

/// The payload of `__auth` for the shared-secret strategy.
#[derive(Deserialize)]
struct SecretCredentials {
    secret: String,
}

impl Auth<SecretUser> {
    /// The shared-secret strategy, compatible with liwebjs clients: the
    /// client sends `__auth {"secret": ".."}`; a wrong secret fails with
    /// `invalid secret`. The comparison takes the same time wherever the
    /// first difference is (the secret's length is not hidden). Each
    /// connection becomes a [`SecretUser`] with a server-issued id.
    pub fn secret(secret: impl Into<String>) -> Self {
        let secret: Arc<[u8]> = Arc::from(secret.into().into_bytes());
        let mut auth = Self::empty();
        auth.config.credentials = Some(Arc::new(move |payload, _meta| {
            let credentials = payload.decode::<SecretCredentials>()?;
            let matches = constant_time_eq(credentials.secret.as_bytes(), &secret);
            Ok(Box::pin(async move {
                if matches {
                    let id = uuid::Uuid::new_v4().simple().to_string();
                    Ok(Box::new(AcceptedUser(SecretUser {
                        id: format!("guest-{}", &id[..8]),
                    })) as Box<dyn Accepted>)
                } else {
                    Err(AuthFailure {
                        reason: AuthReason::InvalidSecret,
                        detail: None,
                    })
                }
            }) as BoxFuture<Verdict>)
        }));
        auth
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(feature = "jwt")]
pub use self::jwt::JwtToken;

#[cfg(feature = "jwt")]
mod jwt;
pub(crate) mod throttle;

impl AuthConfig {
    /// Runs the request strategy, if there is one: `None` when the request
    /// says nothing and `__auth` must be waited for.
    pub(crate) async fn check_request(&self, meta: &ConnMeta) -> Option<Verdict> {
        match &self.request {
            Some(check) => match check(meta.clone()).await {
                Some(verdict) => Some(verdict),
                None if self.credentials.is_some() => None,
                None => Some(Err(AuthFailure {
                    reason: AuthReason::MissingPayload,
                    detail: Some("the upgrade request carries no credentials".to_owned()),
                })),
            },
            None => None,
        }
    }

    /// Checks the payload of `__auth`.
    pub(crate) async fn check_credentials(
        &self,
        payload: RawPayload<'_>,
        meta: &ConnMeta,
    ) -> Verdict {
        let Some(check) = &self.credentials else {
            return Err(AuthFailure {
                reason: AuthReason::MissingPayload,
                detail: Some("this server takes credentials from the upgrade request only".into()),
            });
        };
        match check(payload, meta.clone()) {
            Ok(future) => future.await,
            Err(err) => Err(AuthFailure {
                reason: AuthReason::MissingPayload,
                detail: Some(err.to_string()),
            }),
        }
    }
}

/// Encodes `auth:error {"reason": ..}`.
pub(crate) fn error_frame(codec: CodecKind, reason: &str) -> Result<Frame, EncodeError> {
    codec.encode_parts(AUTH_ERROR, None, &AuthErrorPayload { reason })
}

/// The reason given to events sent before authentication.
pub(crate) const NOT_AUTHENTICATED: &str = "not authenticated";
