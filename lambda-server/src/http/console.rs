//! The web console (`GET /`): one HTML page, a script and a style sheet, embedded in the binary
//! from `lambda-server/console/` (hand-written, no build step), served with an ETag so a reload
//! costs a 304. Every page of the console (`/`, `/lambdas/{id}`, `/lambdas/{id}/invoke`,
//! `/create`) is the same HTML: the script draws the page its URL names, and does everything
//! through the HTTP API with the token the user gave (kept in session storage).
//!
//! The assets are public (the login screen must load without a token); they hold no data.

use crate::http::api::AppState;
use crate::http::paths;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::OnceLock;

/// The console's routes (public with auth on: the data they show comes from the API).
pub(crate) const ROUTES: [&str; 6] = [
    paths::CONSOLE,
    paths::CONSOLE_LAMBDA,
    paths::CONSOLE_INVOKE,
    paths::CONSOLE_CREATE,
    paths::CONSOLE_SCRIPT,
    paths::CONSOLE_STYLE,
];

const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/app.css");

/// Only the console's own script and style run; the lambda's docs are shown in a sandboxed
/// frame (inline styles allowed there, scripts not); the page is never framed elsewhere.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; frame-src blob:; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub(crate) fn routes() -> Router<AppState> {
    let page = || get(|h: HeaderMap| async move { asset(&h, Asset::Index) });
    Router::new()
        .route(ROUTES[0], page())
        .route(ROUTES[1], page())
        .route(ROUTES[2], page())
        .route(ROUTES[3], page())
        .route(
            ROUTES[4],
            get(|h: HeaderMap| async move { asset(&h, Asset::Script) }),
        )
        .route(
            ROUTES[5],
            get(|h: HeaderMap| async move { asset(&h, Asset::Style) }),
        )
}

#[derive(Clone, Copy)]
enum Asset {
    Index,
    Script,
    Style,
}

impl Asset {
    fn text(self) -> &'static str {
        match self {
            Self::Index => INDEX,
            Self::Script => SCRIPT,
            Self::Style => STYLE,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Index => "text/html; charset=utf-8",
            Self::Script => "text/javascript; charset=utf-8",
            Self::Style => "text/css; charset=utf-8",
        }
    }

    /// A strong ETag of the content (FNV-1a, computed once per process).
    fn etag(self) -> &'static HeaderValue {
        static TAGS: OnceLock<[HeaderValue; 3]> = OnceLock::new();
        let tags = TAGS.get_or_init(|| {
            [Self::Index, Self::Script, Self::Style].map(|a| {
                let hash = a.text().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
                HeaderValue::try_from(format!("\"{hash:016x}\"")).expect("hex is a header value")
            })
        });
        &tags[self as usize]
    }
}

fn asset(request: &HeaderMap, a: Asset) -> Response {
    let etag = a.etag();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let headers = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type()),
        )],
        a.text(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(INDEX.contains(r#"src="/console/app.js""#));
        assert!(INDEX.contains(r#"href="/console/app.css""#));
        // No external fonts, scripts or CDNs anywhere (the SVG namespace is a name, not a
        // place the browser goes).
        for (name, text) in [("index", INDEX), ("script", SCRIPT), ("style", STYLE)] {
            let text = text.replace("'http://www.w3.org/2000/svg'", "");
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
                "{name} names an external address"
            );
        }
    }

    #[test]
    fn an_unchanged_asset_is_a_304() {
        let mut h = HeaderMap::new();
        let first = asset(&h, Asset::Script);
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers()[header::ETAG].clone();
        h.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(asset(&h, Asset::Script).status(), StatusCode::NOT_MODIFIED);
        assert_ne!(Asset::Script.etag(), Asset::Style.etag());
    }
}
