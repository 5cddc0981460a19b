//! Content negotiation for cached listings: whether a request accepts gzip
//! (`Accept-Encoding`, RFC 9110 §12.5.3) and whether its `If-None-Match` names the
//! entity tag of the bytes it would get (§13.1.2), so a poller that already holds
//! them gets a 304 instead of the body again.
//!
//! Pure functions of header values; the handler decides what to send.

use axum::http::{HeaderMap, header};

/// Whether `headers` accept a gzip-coded answer: `gzip` (or `*`) listed with a
/// non-zero quality. `identity` is always acceptable as well, so anything else,
/// including a malformed header, gets the plain body.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .next()
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok());
            // An unparsable quality counts as a refusal: when in doubt, do not compress.
            let wanted = quality.is_some_and(|q| q > 0.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(wanted);
            } else if coding == "*" {
                any = Some(wanted);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// Whether `If-None-Match` in `headers` names `etag` (a quoted entity tag) or is `*`.
/// The comparison is weak, as the RFC asks for this header: `W/"x"` matches `"x"`.
pub fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|text| text.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn gzip_is_accepted_as_requests_asks_and_refused_when_zero_weighted() {
        let accept = |v: &[&str]| accepts_gzip(&headers(header::ACCEPT_ENCODING, v));
        assert!(accept(&["gzip, deflate"]), "Python requests' header");
        assert!(accept(&["br;q=1.0, GZIP;q=0.5"]));
        assert!(accept(&["*"]));
        assert!(accept(&["deflate", "gzip"]), "several header lines");
        assert!(!accept(&[]));
        assert!(!accept(&["identity"]));
        assert!(!accept(&["gzip;q=0"]));
        assert!(
            !accept(&["gzip;q=0.0, *;q=1"]),
            "gzip named explicitly wins over *"
        );
        assert!(!accept(&["gzip;q=nonsense"]));
    }

    #[test]
    fn if_none_match_compares_weakly_and_lists() {
        let matches = |v: &[&str]| none_match(&headers(header::IF_NONE_MATCH, v), "\"a-1\"");
        assert!(matches(&["\"a-1\""]));
        assert!(matches(&["W/\"a-1\""]));
        assert!(matches(&["\"x\", \"a-1\""]));
        assert!(matches(&["*"]));
        assert!(!matches(&[]));
        assert!(!matches(&["\"a-2\""]));
        assert!(!matches(&["a-1"]), "an unquoted tag is not the tag");
    }
}
