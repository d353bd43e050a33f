//! Response bodies the way Express and passport send them (content types included).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `res.status(n).send('text')`: Express marks a string body as HTML.
pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    with_type(status, "text/html; charset=utf-8", body.into())
}

/// `res.status(n).send(object)`.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => json_text(status, body),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "Server error."),
    }
}

/// A JSON body that was serialized already (bundles and documents spliced from stored raw STIX text).
pub(crate) fn json_text(status: StatusCode, body: String) -> Response {
    with_type(status, "application/json; charset=utf-8", body)
}

/// passport's failure response: `res.end(http.STATUS_CODES[status])`, no content type.
pub(crate) fn passport_failure(status: StatusCode, www_authenticate: Option<String>) -> Response {
    let mut response = Response::new(Body::from(
        status.canonical_reason().unwrap_or("Unauthorized"),
    ));
    *response.status_mut() = status;
    if let Some(challenge) = www_authenticate.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A refused request, rendered only when answered (keeps `Result`s small).
#[derive(Debug)]
pub(crate) enum Rejection {
    /// `res.status(n).send('text')`.
    Text(StatusCode, String),
    /// passport's failure, with an optional `WWW-Authenticate` challenge.
    Passport(StatusCode, Option<String>),
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::Text(status, body) => text(status, body),
            Rejection::Passport(status, challenge) => passport_failure(status, challenge),
        }
    }
}
