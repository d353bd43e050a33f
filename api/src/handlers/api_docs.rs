//! `/api-docs`: the OpenAPI document rendered by Swagger UI, whose files are embedded in the
//! binary (`api/assets/swagger-ui/`, from the npm package swagger-ui-dist; docs/api.md says how
//! to update them), so the page works offline and loads nothing from other sites.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, html};

use crate::error::ApiError;

/// The version of swagger-ui-dist under `api/assets/swagger-ui/`; also in the asset URLs, so a
/// browser never mixes a cached old file with a new page.
const SWAGGER_UI_VERSION: &str = "5.35.0";

/// `(name, content type, bytes)` of every file under `/api-docs/`.
const ASSETS: [(&str, &str, &[u8]); 3] = [
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui.css"),
    ),
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "api-docs.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/api-docs.js"),
    ),
];

/// `GET /api-docs`.
pub async fn page() -> Html<String> {
    let asset = |name: &str| format!("/api-docs/{name}?v={SWAGGER_UI_VERSION}");
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (super::home::head("API documentation", html! {
                    link rel="stylesheet" href=(asset("swagger-ui.css"));
                }))
                body {
                    p style="margin: 1em 2em; font-family: sans-serif" {
                        a href="/" { "Home" } " · the OpenAPI document: "
                        a href="/openapi.json" { "/openapi.json" }
                    }
                    div id="swagger-ui" {
                        noscript { "Swagger UI needs JavaScript; the document itself is at "
                            a href="/openapi.json" { "/openapi.json" } "." }
                    }
                    script src=(asset("swagger-ui-bundle.js")) {}
                    script src=(asset("api-docs.js")) {}
                }
            }
        }
        .into_string(),
    )
}

/// `GET /api-docs/{asset}`.
pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::NotFound(format!("no file {name:?} under /api-docs/")))?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The URLs carry the version: a day of caching is safe and spares the 1.7 MB bundle.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        *bytes,
    )
        .into_response())
}
