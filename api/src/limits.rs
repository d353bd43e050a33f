//! The request limits of the TAXII routes: a cap on requests in flight that sheds the excess at
//! once (503, `Retry-After`), and a timeout to the response head (504); both answer with TAXII
//! error bodies and are counted.

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;
use tower::timeout::error::Elapsed;
use tower::{BoxError, ServiceBuilder};

use crate::config::Limits;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::AppState;

/// `router` with its requests capped and timed. Axum layers each route separately, so the cap
/// is one semaphore shared by every route (`GlobalConcurrencyLimitLayer`), not one per route.
pub(crate) fn limit(
    router: Router<AppState>,
    limits: &Limits,
    metrics: &Metrics,
) -> Router<AppState> {
    let timeout = limits.response_timeout;
    let metrics = metrics.clone();
    router.route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |error: BoxError| {
                let refusal = refusal(&error, timeout, &metrics);
                async move { refusal }
            }))
            // Shed rather than queue: a queued request waits for a busy replica while a load
            // balancer could send its retry to an idle one.
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::new(
                limits.max_in_flight as usize,
            ))
            .timeout(timeout),
    )
}

/// The TAXII error a limit answers with, counted by reason.
fn refusal(error: &BoxError, timeout: Duration, metrics: &Metrics) -> ApiError {
    let (reason, answer) = if error.is::<Overloaded>() {
        ("overloaded", ApiError::Overloaded)
    } else if error.is::<Elapsed>() {
        ("timeout", ApiError::TimedOut(timeout))
    } else {
        // Routes cannot fail (their error type is Infallible): only the two limits above can.
        return ApiError::Internal(format!("request limits: {error}"));
    };
    metrics.limited.with_label_values(&[reason]).inc();
    answer
}
