//! CORS on the TAXII routes, off by default: lets a page on another site (the ATT&CK Navigator
//! loads TAXII sources from the browser) read collections, for the origins the operator lists.
//!
//! Only reads: `GET` and `HEAD`, with the request headers TAXII clients send and the response
//! headers they read. No credentials mode: a page sends its token in `Authorization` itself,
//! which needs no cookies and works with `*`.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::Error;

/// Response headers a TAXII client reads besides the simple ones: the paging headers of
/// TAXII 2.1 §3.4.3 and the ETag for `If-None-Match`.
const EXPOSED: [HeaderName; 3] = [
    HeaderName::from_static("x-taxii-date-added-first"),
    HeaderName::from_static("x-taxii-date-added-last"),
    header::ETAG,
];

/// How long a browser may reuse a preflight answer; browsers cap it anyway (Chromium: 2 h).
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer for `origins` (`--cors-origin`), or `None` when the list is empty. An origin
/// a browser would never send (a path, a trailing slash, capitals) is refused here, at start,
/// instead of silently never matching.
pub(crate) fn layer(origins: &[String]) -> Result<Option<CorsLayer>, Error> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| {
                origin_value(o.trim()).map_err(|reason| Error::CorsOrigin {
                    origin: o.clone(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::HEAD])
            .allow_headers([header::ACCEPT, header::AUTHORIZATION, header::IF_NONE_MATCH])
            .expose_headers(EXPOSED)
            .max_age(PREFLIGHT_MAX_AGE),
    ))
}

/// An origin as browsers serialise it: `scheme://host[:port]`, lower case, nothing after.
fn origin_value(origin: &str) -> Result<HeaderValue, String> {
    let (scheme, host) = origin
        .split_once("://")
        .ok_or("an origin is scheme://host[:port], e.g. https://example.org")?;
    if scheme.is_empty() || host.is_empty() {
        return Err("an origin is scheme://host[:port], e.g. https://example.org".to_owned());
    }
    if host.contains('/') {
        return Err("an origin has no path, not even a trailing slash".to_owned());
    }
    if origin.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("browsers send origins in lower case".to_owned());
    }
    HeaderValue::from_str(origin).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_origin_means_no_layer() {
        assert!(layer(&[]).unwrap().is_none());
    }

    #[test]
    fn origins_a_browser_sends_are_accepted_and_others_refused_at_start() {
        let ok = [
            "https://mitre-attack.github.io",
            "http://127.0.0.1:8080",
            "*",
        ];
        for o in ok {
            assert!(layer(&[o.to_owned()]).unwrap().is_some(), "{o}");
        }
        for bad in [
            "mitre-attack.github.io",
            "https://mitre-attack.github.io/",
            "https://example.org/attack-navigator",
            "https://Example.org",
            "://x",
        ] {
            let message = layer(&[bad.to_owned()]).unwrap_err().to_string();
            assert!(message.contains(bad), "{message}");
        }
    }
}
