//! The dashboard's files through the center's router (no socket): `/ui/` serves the
//! page with its Content-Security-Policy and ETag, a matching `If-None-Match` gets
//! 304, every file the page links is served, `/` redirects, and unknown paths under
//! `/ui/` get the center's JSON 404 envelope. (The page itself is tested in Chromium:
//! scripts/ui-tests.sh.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use isek_center::Config;
use isek_center::http::ui::CONTENT_SECURITY_POLICY;
use tower::ServiceExt;

async fn router() -> Router {
    let (router, _center) = isek_center::app(Config::in_memory(Duration::from_secs(30)))
        .await
        .unwrap();
    router
}

async fn call(
    router: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn assert_not_found(status: StatusCode, headers: &HeaderMap, body: &str) {
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        body,
        isek_center::render::envelope_without_data(
            404,
            "The requested URL was not found on the server."
        )
    );
}

#[tokio::test]
async fn ui_serves_the_page_with_csp_and_etag() {
    let router = router().await;
    let (status, headers, body) = call(&router, Method::GET, "/ui/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(
        headers[header::CONTENT_SECURITY_POLICY],
        CONTENT_SECURITY_POLICY
    );
    let csp = CONTENT_SECURITY_POLICY;
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert!(body.starts_with("<!doctype html>"), "{body}");
    assert!(body.contains("<title>isek center</title>"));
    // Nothing inline for the policy to refuse, and nothing from elsewhere.
    assert!(!body.contains("<script>") && !body.contains("style="));
    assert!(!body.contains("http://") && !body.contains("https://"));

    // Revalidation: the same ETag gets 304 without a body, another one gets the page.
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2);
    let (status, again, body) =
        call(&router, Method::GET, "/ui/", &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(again[header::ETAG], etag.as_str());
    assert!(body.is_empty());
    let (status, _, _) = call(&router, Method::GET, "/ui/", &[("if-none-match", "\"x\"")]).await;
    assert_eq!(status, StatusCode::OK);

    // HEAD works like GET, without a body.
    let (status, headers, body) = call(&router, Method::HEAD, "/ui/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::ETAG], etag.as_str());
    assert!(body.is_empty());
}

#[tokio::test]
async fn every_file_the_page_links_is_served_with_its_type() {
    let router = router().await;
    let (_, _, page) = call(&router, Method::GET, "/ui/", &[]).await;
    let mut linked = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for part in page.split(attribute).skip(1) {
            linked.push(part.split('"').next().unwrap().to_owned());
        }
    }
    assert!(linked.len() >= 3, "{linked:?}");
    // And the modules app.js imports.
    let (_, _, app) = call(&router, Method::GET, "/ui/app.js", &[]).await;
    for part in app.split("from \"./").skip(1) {
        linked.push(part.split('"').next().unwrap().to_owned());
    }
    for file in &linked {
        assert!(!file.contains(':') && !file.starts_with('/'), "{file}");
        let (status, headers, body) = call(&router, Method::GET, &format!("/ui/{file}"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{file}");
        assert!(!body.is_empty(), "{file}");
        let kind = headers[header::CONTENT_TYPE].to_str().unwrap();
        let expected = match file.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("unexpected file type {other}"),
        };
        assert_eq!(kind, expected, "{file}");
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
    }
}

#[tokio::test]
async fn root_and_bare_ui_redirect_to_the_dashboard() {
    let router = router().await;
    for path in ["/", "/ui"] {
        let (status, headers, _) = call(&router, Method::GET, path, &[]).await;
        assert!(status.is_redirection(), "{path}: {status}");
        assert_eq!(headers[header::LOCATION], "/ui/", "{path}");
    }
}

#[tokio::test]
async fn unknown_ui_paths_get_the_json_404_envelope() {
    let router = router().await;
    for path in [
        "/ui/nope.js",
        "/ui/app.js/",
        "/ui/../Cargo.toml",
        "/ui/%2e%2e/src/ui.rs",
        "/ui/sub/app.js",
        "/ui/index.html%00",
        "/ui/%ff",
    ] {
        let (status, headers, body) = call(&router, Method::GET, path, &[]).await;
        assert_not_found(status, &headers, &body);
    }
    // A wrong method gets the center's JSON 405, as anywhere else.
    let (status, headers, body) = call(&router, Method::POST, "/ui/", &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
}
