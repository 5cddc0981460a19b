//! Decoding fuzz input into one HTTP request for the center.
//!
//! Shape byte (both targets):
//! - bits 0-1: endpoint (register, renew, deregister, `GET register` = 405);
//! - bits 2-4: `Content-Type` (see [`CONTENT_TYPES`]; index 7 = no header);
//! - bit 5: send a correct `Content-Length` header.
//!
//! `center_security` adds an `Authorization` byte after it: bits 0-2 the mode
//! ([`Auth`]), bits 3-7 how many of the following bytes are the header's material
//! (0 to 31); the body comes after them.

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, header};

/// The admin token of the centers that have one (`Settings::admin_token`).
pub const ADMIN_TOKEN: &str = "fuzz-admin-token-7b1e0c";

/// `Content-Type` values the shape byte chooses from; `None` = no header.
pub const CONTENT_TYPES: [Option<&[u8]>; 8] = [
    Some(b"application/json"),
    Some(b"application/json; charset=utf-8"),
    Some(b"APPLICATION/JSON"),
    Some(b"application/vnd.isek+json"),
    Some(b"text/plain"),
    Some(b"application/jsonx"),
    Some(b"application/json;\xff"),
    None,
];

/// Which endpoint an input targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /isek_center/register`.
    Register,
    /// `POST /isek_center/renew`.
    Renew,
    /// `POST /isek_center/deregister`.
    Deregister,
    /// `GET /isek_center/register`: must be a 405 envelope whatever the body.
    WrongMethod,
}

/// How the `Authorization` header is built from the input's material `m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No header.
    None,
    /// `Bearer <token>`, exactly.
    Exact,
    /// `Bearer ` + `m` (a guess).
    Guess,
    /// `Bearer <token>` + `m` (a longer token; only trailing blanks keep it valid).
    Suffixed,
    /// `m` + `Bearer <token>` (something before the scheme).
    Prefixed,
    /// `Bearer <token>` with byte `m[1] % len` XOR-ed with `m[0]` (a near miss; an
    /// XOR with 0 is the token itself).
    Flipped,
    /// `bearer <token>` (the scheme in lower case: not the admin scheme).
    LowerScheme,
    /// `m` alone as the header value.
    Raw,
}

/// The modes by number (bits 0-2 of the `Authorization` byte).
pub const AUTH_MODES: [Auth; 8] = [
    Auth::None,
    Auth::Exact,
    Auth::Guess,
    Auth::Suffixed,
    Auth::Prefixed,
    Auth::Flipped,
    Auth::LowerScheme,
    Auth::Raw,
];

/// A decoded fuzz input.
#[derive(Debug, Clone)]
pub struct FuzzRequest<'a> {
    /// Target endpoint.
    pub endpoint: Endpoint,
    /// `Content-Type` header value, if any.
    pub content_type: Option<&'static [u8]>,
    /// Whether to send `Content-Length`.
    pub content_length: bool,
    /// The `Authorization` header's bytes, if one is sent.
    pub authorization: Option<Vec<u8>>,
    /// The body bytes.
    pub body: &'a [u8],
}

impl<'a> FuzzRequest<'a> {
    /// Splits the shape byte from the body; `None` for empty input.
    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let (&shape, body) = data.split_first()?;
        Some(Self::shaped(shape, body))
    }

    /// The request of `shape` with `body` and no `Authorization` header.
    fn shaped(shape: u8, body: &'a [u8]) -> Self {
        let endpoint = match shape & 0b11 {
            0 => Endpoint::Register,
            1 => Endpoint::Renew,
            2 => Endpoint::Deregister,
            _ => Endpoint::WrongMethod,
        };
        Self {
            endpoint,
            content_type: CONTENT_TYPES[usize::from((shape >> 2) & 0b111)],
            content_length: shape & 0b10_0000 != 0,
            authorization: None,
            body,
        }
    }

    /// The shape byte, the `Authorization` byte and its material, then the body;
    /// `None` when the input is shorter than the two bytes.
    pub fn decode_with_auth(data: &'a [u8]) -> Option<Self> {
        let (&shape, rest) = data.split_first()?;
        let (&auth, rest) = rest.split_first()?;
        let mode = AUTH_MODES[usize::from(auth & 0b111)];
        let (material, body) = rest.split_at(usize::from(auth >> 3).min(rest.len()));
        let mut request = Self::shaped(shape, body);
        request.authorization = authorization(mode, material);
        Some(request)
    }

    /// The HTTP request.
    pub fn to_http(&self) -> Request<Body> {
        let (method, path) = match self.endpoint {
            Endpoint::Register => (Method::POST, "/isek_center/register"),
            Endpoint::Renew => (Method::POST, "/isek_center/renew"),
            Endpoint::Deregister => (Method::POST, "/isek_center/deregister"),
            Endpoint::WrongMethod => (Method::GET, "/isek_center/register"),
        };
        let mut request = Request::new(Body::from(self.body.to_vec()));
        *request.method_mut() = method;
        *request.uri_mut() = path.parse().unwrap_or_default();
        if let Some(value) = self
            .content_type
            .and_then(|ct| HeaderValue::from_bytes(ct).ok())
        {
            request.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        if self.content_length {
            request
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        if let Some(value) = self
            .authorization
            .as_deref()
            .and_then(|a| HeaderValue::from_bytes(a).ok())
        {
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        request
    }
}

/// The `Authorization` bytes of `mode` with `material`.
fn authorization(mode: Auth, material: &[u8]) -> Option<Vec<u8>> {
    let exact = format!("Bearer {ADMIN_TOKEN}").into_bytes();
    Some(match mode {
        Auth::None => return None,
        Auth::Exact => exact,
        Auth::Guess => [b"Bearer ".as_slice(), material].concat(),
        Auth::Suffixed => [exact.as_slice(), material].concat(),
        Auth::Prefixed => [material, exact.as_slice()].concat(),
        Auth::Flipped => {
            let mut flipped = exact;
            let (xor, at) = match material {
                [] => (0, 0),
                [xor] => (*xor, 0),
                [xor, at, ..] => (*xor, usize::from(*at)),
            };
            let len = flipped.len();
            flipped[at % len] ^= xor;
            flipped
        }
        Auth::LowerScheme => format!("bearer {ADMIN_TOKEN}").into_bytes(),
        Auth::Raw => material.to_vec(),
    })
}
