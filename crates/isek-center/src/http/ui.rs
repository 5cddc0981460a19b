//! The operators' dashboard: the static files under `crates/isek-center/ui/`, embedded
//! in the binary and served at `/ui/` (`/` and `/ui` redirect there).
//!
//! The page is plain HTML, CSS and JavaScript (no build step); it reads live
//! membership from the center's own change stream (`GET /v1/watch`) and the
//! compatibility listing, so this module adds no API: it only serves files. Nothing is
//! fetched from elsewhere, which the Content-Security-Policy sent with every file
//! enforces in the browser. Each file has a strong ETag (a hash of its bytes, computed
//! at compile time) and `Cache-Control: no-cache`, so a browser revalidates and gets
//! `304 Not Modified` until the binary changes. Unknown paths under `/ui/` get the
//! center's JSON 404 envelope.
//!
//! Self-contained: [`router`] is generic over the state, so it merges into any router.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where the dashboard lives.
pub const UI_PATH: &str = "/ui/";

/// The policy sent with every dashboard file: only this origin's scripts, styles and
/// connections, no inline code, no frames, no plugins, no forms.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'none'; \
    object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    /// Its name under `/ui/`.
    name: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its bytes.
    body: &'static [u8],
    /// Its strong ETag, quotes included.
    etag: &'static str,
}

/// 64-bit FNV-1a of `bytes`, in a `const` context so each ETag is fixed at compile time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"` + 16 lowercase hex digits of `hash` + `"`.
const fn etag_bytes(hash: u64) -> [u8; 18] {
    let digits = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = digits[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

/// Declares an embedded file: its ETag is computed when the crate is compiled.
macro_rules! asset {
    ($name:literal, $content_type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("../../ui/", $name));
        const ETAG: [u8; 18] = etag_bytes(fnv1a(BODY));
        Asset {
            name: $name,
            content_type: $content_type,
            body: BODY,
            etag: match std::str::from_utf8(&ETAG) {
                Ok(etag) => etag,
                Err(_) => "\"0\"",
            },
        }
    }};
}

/// Every file of the dashboard; `index.html` is the page itself.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("stream.js", "text/javascript; charset=utf-8"),
    asset!("table.js", "text/javascript; charset=utf-8"),
    asset!("plots.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The dashboard's routes, to merge into the center's router (any state).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(to_dashboard))
        .route("/ui", get(to_dashboard))
        .route(UI_PATH, get(index))
        .route("/ui/{*file}", get(file))
}

/// `GET /` and `GET /ui`: a redirect to the dashboard.
async fn to_dashboard() -> Redirect {
    Redirect::temporary(UI_PATH)
}

/// `GET /ui/`: the page.
async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /ui/FILE`: one embedded file, or the JSON 404 envelope. The raw path is
/// compared (asset names are plain ASCII), so no path is ever rejected before lookup.
async fn file(uri: Uri, headers: HeaderMap) -> Response {
    serve(uri.path().strip_prefix(UI_PATH).unwrap_or(""), &headers)
}

/// Answers with the asset called `name` (304 when the client already has it).
fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return not_found();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == asset.etag || t == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.body).into_response()
    };
    let out = response.headers_mut();
    if !fresh {
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
    }
    out.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The center's JSON 404 envelope, as for any unknown path.
fn not_found() -> Response {
    let body =
        crate::render::envelope_without_data(404, "The requested URL was not found on the server.");
    let mut response = (StatusCode::NOT_FOUND, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_hex_and_differ_per_file() {
        let mut seen = std::collections::HashSet::new();
        for asset in ASSETS {
            assert_eq!(asset.etag.len(), 18, "{}", asset.name);
            assert!(asset.etag.starts_with('"') && asset.etag.ends_with('"'));
            assert!(seen.insert(asset.etag), "{} shares an ETag", asset.name);
        }
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
