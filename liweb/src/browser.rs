//! The browser client, `liweb.js`: a dependency-free ES module served by the
//! server itself, so pages need no bundler and no npm.
//!
//! Its types are in `liweb.d.ts` ([`CLIENT_DTS`]): `LiwebClient<In, Out>`
//! checks emits and listeners against the event maps that
//! `liweb::typescript::export` (feature `typescript`) writes from the Rust
//! enums. Serve it next to `liweb.js` (or copy it into a TypeScript project)
//! and `import { LiwebClient } from "./liweb.js"` is typed.

/// The source of `liweb.js`.
pub const CLIENT_JS: &str = include_str!("../js/liweb.js");

/// The TypeScript declarations of `liweb.js`.
pub const CLIENT_DTS: &str = include_str!("../js/liweb.d.ts");

/// An axum route serving [`CLIENT_JS`] as `text/javascript`:
/// `Router::new().route("/liweb.js", liweb::browser::client_js_route())`.
#[cfg(feature = "ws")]
pub fn client_js_route<S: Clone + Send + Sync + 'static>() -> axum::routing::MethodRouter<S> {
    axum::routing::get(|| async {
        (
            [(http::header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            CLIENT_JS,
        )
    })
}

/// An axum route serving [`CLIENT_DTS`]:
/// `Router::new().route("/liweb.d.ts", liweb::browser::client_dts_route())`.
#[cfg(feature = "ws")]
pub fn client_dts_route<S: Clone + Send + Sync + 'static>() -> axum::routing::MethodRouter<S> {
    axum::routing::get(|| async {
        (
            [(
                http::header::CONTENT_TYPE,
                "application/typescript; charset=utf-8",
            )],
            CLIENT_DTS,
        )
    })
}
