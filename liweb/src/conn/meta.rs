//! What is known about a connection from its opening request.

use std::{fmt, net::SocketAddr, sync::Arc};

use http::HeaderMap;

use crate::codec::CodecKind;
/// The transport a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// WebSocket (the axum route).
    WebSocket,
    /// Length-prefixed frames over TCP ([`Server::serve_tcp`](crate::Server::serve_tcp)).
    Tcp,
    /// A transport outside liweb, by its name; see [`transport`](crate::transport).
    Other(&'static str),
}

/// What is known about a connection from its opening request: headers,
/// remote address, query string, transport and codec. Cheap to clone.
#[derive(Clone)]
pub struct ConnMeta(Arc<MetaInner>);

struct MetaInner {
    /// The headers as one compact buffer (each name and value behind its
    /// length): a `HeaderMap` costs several allocations per connection for
    /// something most applications read once or never.
    raw_headers: Box<[u8]>,
    /// The headers as a map, built from `raw_headers` on first use.
    headers: std::sync::OnceLock<Box<HeaderMap>>,
    remote_addr: Option<SocketAddr>,
    path: String,
    query: Option<String>,
    transport: Transport,
    codec: CodecKind,
}

impl ConnMeta {
    /// The metadata of a connection; `headers` are copied (a request's
    /// header values are slices of the whole request buffer, which must not
    /// live as long as the connection).
    pub(crate) fn new(
        headers: &HeaderMap,
        remote_addr: Option<SocketAddr>,
        path: String,
        query: Option<String>,
        transport: Transport,
        codec: CodecKind,
    ) -> Self {
        Self(Arc::new(MetaInner {
            raw_headers: pack_headers(headers),
            headers: std::sync::OnceLock::new(),
            remote_addr,
            path,
            query,
            transport,
            codec,
        }))
    }

    /// Starts the metadata of a connection of a transport of your own; see
    /// [`transport`](crate::transport). Everything but the transport and
    /// the codec is unknown (empty) unless set.
    pub fn builder(transport: Transport, codec: CodecKind) -> ConnMetaBuilder {
        ConnMetaBuilder {
            headers: HeaderMap::new(),
            remote_addr: None,
            path: String::new(),
            query: None,
            transport,
            codec,
        }
    }

    /// The headers of the upgrade request, as sent.
    pub fn headers(&self) -> &HeaderMap {
        self.0
            .headers
            .get_or_init(|| Box::new(unpack_headers(&self.0.raw_headers)))
    }

    /// The peer's address. For the axum route, `liweb::serve`
    /// provides it; with `axum::serve` it needs the router served with
    /// `into_make_service_with_connect_info::<SocketAddr>()`, and without it
    /// the address is unknown (`None`).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.0.remote_addr
    }

    /// The request path the connection was opened on.
    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// The raw query string (without `?`), if the request had one.
    pub fn query(&self) -> Option<&str> {
        self.0.query.as_deref()
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()?
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
    }

    /// The transport the connection uses.
    pub fn transport(&self) -> Transport {
        self.0.transport
    }

    /// The codec the connection speaks.
    pub fn codec(&self) -> CodecKind {
        self.0.codec
    }
}

impl fmt::Debug for ConnMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnMeta")
            .field("remote_addr", &self.0.remote_addr)
            .field("path", &self.0.path)
            .field("query", &self.0.query)
            .field("transport", &self.0.transport)
            .field("codec", &self.0.codec)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ConnMeta`]; made by [`ConnMeta::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConnMetaBuilder {
    headers: HeaderMap,
    remote_addr: Option<SocketAddr>,
    path: String,
    query: Option<String>,
    transport: Transport,
    codec: CodecKind,
}

impl ConnMetaBuilder {
    /// The headers the connection was opened with.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// The peer's address.
    pub fn remote_addr(mut self, addr: SocketAddr) -> Self {
        self.remote_addr = Some(addr);
        self
    }

    /// The path the connection was opened on.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The raw query string, without `?`.
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// The metadata.
    pub fn build(self) -> ConnMeta {
        ConnMeta::new(
            &self.headers,
            self.remote_addr,
            self.path,
            self.query,
            self.transport,
            self.codec,
        )
    }
}

fn pack_headers(headers: &HeaderMap) -> Box<[u8]> {
    let mut packed = Vec::new();
    for (name, value) in headers {
        for part in [name.as_str().as_bytes(), value.as_bytes()] {
            // Header lines are bounded by the server's request limits, far
            // below `u32::MAX`.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            packed.extend_from_slice(&len.to_le_bytes());
            packed.extend_from_slice(&part[..len as usize]);
        }
    }
    packed.into_boxed_slice()
}

fn unpack_headers(mut packed: &[u8]) -> HeaderMap {
    fn part<'a>(packed: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (len, rest) = packed.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let (part, rest) = rest.split_at_checked(len)?;
        *packed = rest;
        Some(part)
    }
    let mut headers = HeaderMap::new();
    while let (Some(name), Some(value)) = (part(&mut packed), part(&mut packed)) {
        // Both were a valid name and value when packed.
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::{pack_headers, percent_decode, unpack_headers};

    #[test]
    fn headers_survive_packing_with_repeats_and_order() {
        let mut headers = http::HeaderMap::new();
        headers.append("x-token", "abc".parse().unwrap());
        headers.append("cookie", "a=1".parse().unwrap());
        headers.append("cookie", "b=2".parse().unwrap());
        headers.append("x-empty", "".parse().unwrap());
        headers.append(
            "x-bytes",
            http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        assert_eq!(unpack_headers(&pack_headers(&headers)), headers);
        assert!(unpack_headers(&pack_headers(&http::HeaderMap::new())).is_empty());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("gr%C3%BCn"), "grün");
    }
}
