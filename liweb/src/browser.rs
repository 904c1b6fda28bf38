//! The browser client, `liweb.js`: a dependency-free ES module served by the
//! server itself, so pages need no bundler and no npm.

/// The source of `liweb.js`.
pub const CLIENT_JS: &str = include_str!("../js/liweb.js");

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
