//! The one error type of the API: every failure renders as a TAXII 2.1 error message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::media::TAXII_CONTENT_TYPE;

/// `Retry-After` of a shed request: in-flight requests take milliseconds, so a second later the
/// replica (or, behind a load balancer, another one) most likely has room.
const RETRY_AFTER_SECONDS: u32 = 1;

/// Why a request failed. Each variant maps to one HTTP status and a TAXII error body
/// (`title`, `description`, `http_status` as a string like MITRE's server, `details`).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query or path parameter with an invalid value; the body names the parameter.
    #[error("invalid parameter {parameter}: {reason}")]
    BadParameter { parameter: String, reason: String },
    /// An unknown API root, collection, object or status.
    #[error("{0}")]
    NotFound(String),
    /// The Accept header asks for a media type we don't serve.
    #[error("{0}")]
    NotAcceptable(String),
    /// Credentials missing (when required) or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this to this collection (read without rights, or any write).
    #[error("{0}")]
    Forbidden(String),
    /// An HTTP method no TAXII endpoint at this path supports.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Nothing loaded yet (the store was never reachable since start).
    #[error("{0}")]
    Unavailable(String),
    /// Every stream subscription slot of this replica is taken: refused at once, with
    /// `Retry-After` (a client retries, or a load balancer sends it to another replica).
    #[error("too many stream subscribers (at most {0})")]
    TooManySubscribers(u32),
    /// Too many requests in flight: shed at once, with `Retry-After`.
    #[error("too many requests in flight")]
    Overloaded,
    /// No response head within the response timeout.
    #[error("no response within {0:?}")]
    TimedOut(std::time::Duration),
    /// A defect or a store failure: logged here once, rendered with a generic body.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_parameter(parameter: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::BadParameter {
            parameter: parameter.into(),
            reason: reason.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) | ApiError::Overloaded | ApiError::TooManySubscribers(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The TAXII 2.1 error message resource (§3.6.1).
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    http_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (title, code, description, details) = match &self {
            ApiError::BadParameter { parameter, reason } => (
                "Bad Request",
                "invalid_parameter",
                Some(format!("invalid value for {parameter}: {reason}")),
                Some(serde_json::json!({ "parameter": parameter })),
            ),
            ApiError::NotFound(d) => ("Not Found", "not_found", Some(d.clone()), None),
            ApiError::NotAcceptable(d) => {
                ("Not Acceptable", "not_acceptable", Some(d.clone()), None)
            }
            ApiError::Unauthorized(d) => ("Unauthorized", "unauthorized", Some(d.clone()), None),
            ApiError::Forbidden(d) => ("Forbidden", "forbidden", Some(d.clone()), None),
            ApiError::MethodNotAllowed => (
                "Method Not Allowed",
                "method_not_allowed",
                Some("this server is read-only: only GET and HEAD are supported here".to_owned()),
                None,
            ),
            ApiError::Unavailable(d) => {
                ("Service Unavailable", "unavailable", Some(d.clone()), None)
            }
            ApiError::TooManySubscribers(cap) => (
                "Service Unavailable",
                "too_many_subscribers",
                Some(format!(
                    "this replica streams to at most {cap} subscribers; retry after {RETRY_AFTER_SECONDS} s"
                )),
                None,
            ),
            ApiError::Overloaded => (
                "Service Unavailable",
                "overloaded",
                Some(format!(
                    "too many requests in flight; retry after {RETRY_AFTER_SECONDS} s"
                )),
                None,
            ),
            // 504 rather than 408: the client sent its request in time, the server (waiting on
            // its store) did not answer in time.
            ApiError::TimedOut(limit) => (
                "Gateway Timeout",
                "timeout",
                Some(format!("no response within {} ms", limit.as_millis())),
                None,
            ),
            ApiError::Internal(cause) => {
                // 5xx bodies stay generic; the cause goes to the log, tagged with the id the
                // client sees so an operator can find it.
                let id = uuid::Uuid::new_v4().to_string();
                tracing::error!(error_id = %id, cause = %cause, "internal error");
                let body = ErrorBody {
                    title: "Internal Server Error",
                    description: Some("the server failed to handle the request".to_owned()),
                    error_id: Some(id),
                    error_code: Some("internal"),
                    http_status: status.as_u16().to_string(),
                    details: None,
                };
                return render(status, &body);
            }
        };
        let body = ErrorBody {
            title,
            description,
            error_id: None,
            error_code: Some(code),
            http_status: status.as_u16().to_string(),
            details,
        };
        let mut response = render(status, &body);
        match self {
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"taxiway\", Bearer realm=\"taxiway\""),
                );
            }
            ApiError::Overloaded | ApiError::TooManySubscribers(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            _ => {}
        }
        response
    }
}

fn render(status: StatusCode, body: &ErrorBody<'_>) -> Response {
    // Serializing a struct of strings and a json! value cannot fail; fall back to a fixed body
    // rather than panic if it ever did.
    let bytes = serde_json::to_vec(body)
        .unwrap_or_else(|_| br#"{"title":"Internal Server Error","http_status":"500"}"#.to_vec());
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(TAXII_CONTENT_TYPE),
        )],
        bytes,
    )
        .into_response()
}

/// Failures of the service itself (start-up, serving), as opposed to one request's `ApiError`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The auth file could not be read.
    #[error("reading {path}: {source}")]
    AuthRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The auth file is not a valid list of principals.
    #[error("auth file {path}: {reason}")]
    AuthInvalid { path: String, reason: String },
    /// `api hash-password` could not make a hash.
    #[error("hash-password: {0}")]
    Password(String),
    /// The operating system gave no randomness for a key.
    #[error("generating a random key: {0}")]
    Randomness(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A `--cors-origin` that no browser would send as its `Origin`.
    #[error("--cors-origin {origin:?}: {reason}")]
    CorsOrigin { origin: String, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_parameter_body_names_the_parameter_and_status_is_a_string() {
        let response =
            ApiError::bad_parameter("limit", "must be a positive integer").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/taxii+json;version=2.1"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["http_status"], "400");
        assert_eq!(json["details"]["parameter"], "limit");
        assert!(json["description"].as_str().unwrap().contains("limit"));
    }

    #[tokio::test]
    async fn overloaded_is_503_with_retry_after_and_timeout_is_504() {
        let shed = ApiError::Overloaded.into_response();
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            shed.headers()[header::RETRY_AFTER],
            RETRY_AFTER_SECONDS.to_string()
        );
        let body = axum::body::to_bytes(shed.into_body(), 1 << 20)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["http_status"], "503");
        let late = ApiError::TimedOut(std::time::Duration::from_millis(250)).into_response();
        assert_eq!(late.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(late.headers().get(header::RETRY_AFTER).is_none());
        let body = axum::body::to_bytes(late.into_body(), 1 << 20)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["http_status"], "504");
        assert!(json["description"].as_str().unwrap().contains("250 ms"));
    }
}
