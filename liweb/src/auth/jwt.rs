//! The JWT strategy (feature `jwt`).

use std::sync::Arc;

use serde::{Deserialize, de::DeserializeOwned};

use super::{Auth, AuthUser};
use crate::conn::meta::ConnMeta;

/// The payload of `__auth` for the JWT strategy: `{"token": ".."}`.
#[derive(Debug, Deserialize)]
pub struct JwtToken {
    /// The encoded token.
    pub token: String,
}

impl<C: AuthUser + DeserializeOwned> Auth<C> {
    /// The JWT strategy (HS256) with the shared key `secret`: the claims
    /// of a valid token are the user. The token comes from the upgrade
    /// request (`Authorization: Bearer ..`, a `token` cookie or a
    /// `?token=` query parameter) or, when the request has none, from
    /// `__auth {"token": ".."}`. `exp` is required and checked.
    pub fn jwt_hs256(secret: &[u8]) -> Self {
        Self::jwt(
            jsonwebtoken::DecodingKey::from_secret(secret),
            jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
        )
    }

    /// The JWT strategy with any key and validation rules of the
    /// `jsonwebtoken` crate.
    pub fn jwt(key: jsonwebtoken::DecodingKey, validation: jsonwebtoken::Validation) -> Self {
        let decode = Arc::new(move |token: &str| {
            jsonwebtoken::decode::<C>(token, &key, &validation).map(|data| data.claims)
        });
        let from_event = Arc::clone(&decode);
        Self::request(move |meta: ConnMeta| {
            let user = request_token(&meta).map(|token| decode(&token));
            async move { user.transpose() }
        })
        .or_credentials(move |credentials: JwtToken, _meta| {
            let user = from_event(&credentials.token);
            async move { user }
        })
    }
}

/// A bearer token from the upgrade request, if it has one.
fn request_token(meta: &ConnMeta) -> Option<String> {
    let headers = meta.headers();
    if let Some(bearer) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_owned());
    }
    if let Some(token) = meta.query_param("token") {
        return Some(token);
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| value.to_owned())
}
