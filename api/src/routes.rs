//! [`app`]: the router built from the route table, with its layers (CORS, request limits, TAXII
//! media negotiation, authentication, metrics, compression, tracing). Every TAXII path is served
//! with and without its trailing slash.

use axum::extract::Request;
use axum::http::header;
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Extension, Router};
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::filters::Listing;
use crate::handlers::{
    self, api_docs, changes, collections, discovery, home, listing::listing, stream,
};
use crate::media::{TAXII_CONTENT_TYPE, accepts_taxii};
use crate::route_table::{Endpoint, route_table};
use crate::state::AppState;
use crate::{auth, health, limits, metrics, openapi};

/// `GET` of one kind of listing, all served by the one listing handler.
fn listed(kind: Listing) -> MethodRouter<AppState> {
    get(listing).layer(Extension(kind))
}

fn method_router(endpoint: Endpoint) -> MethodRouter<AppState> {
    let read_only = match endpoint {
        Endpoint::Discovery => get(discovery::discovery),
        Endpoint::ApiRoot => get(discovery::api_root),
        Endpoint::Status => get(discovery::status),
        Endpoint::Collections => get(collections::list),
        Endpoint::Collection => get(collections::one),
        // The spec's own answer to writing into a collection with can_write = false is 403.
        Endpoint::Objects => listed(Listing::Objects).post(handlers::write_refused),
        Endpoint::Object => listed(Listing::Object).delete(handlers::write_refused),
        Endpoint::Versions => listed(Listing::Versions),
        Endpoint::Manifest => listed(Listing::Manifest),
        Endpoint::Stream => get(stream::stream),
        Endpoint::HealthPing => get(health::ping),
        Endpoint::Healthz => get(health::healthz),
        Endpoint::Readyz => get(health::readyz),
        Endpoint::Metrics => get(health::metrics),
        Endpoint::OpenApi => get(openapi::serve),
        Endpoint::Changes => get(changes::changes),
        Endpoint::Home => get(home::home),
        Endpoint::ChangesPage => get(changes::page),
        Endpoint::ApiDocs => get(api_docs::page),
        Endpoint::ApiDocsAsset => get(api_docs::asset),
    };
    read_only.fallback(handlers::method_not_allowed)
}

/// The whole application: routes, CORS, request limits, TAXII media negotiation, auth, metrics,
/// compression, tracing. Health, readiness and metrics routes are outside the request limits,
/// so probes still answer while TAXII requests are shed.
pub fn app(state: AppState) -> Router {
    let table = route_table(&state.prefix);
    let mut taxii = Router::new();
    let mut extensions = Router::new();
    let mut pages = Router::new();
    let mut ops = Router::new();
    for spec in &table {
        let target = if spec.endpoint.negotiates_taxii() {
            &mut taxii
        } else if spec.endpoint.is_taxii() {
            &mut extensions
        } else if spec.endpoint.is_page() {
            &mut pages
        } else {
            &mut ops
        };
        let router = std::mem::take(target).route(&spec.template, method_router(spec.endpoint));
        let bare = spec.template.trim_end_matches('/');
        *target = if bare != spec.template && !bare.is_empty() {
            router.route(bare, method_router(spec.endpoint))
        } else {
            router
        };
    }
    // route_layer: only matched routes are negotiated and authenticated; unknown paths get the
    // TAXII 404 from the fallback. The last layer added runs first: authenticate, then Accept.
    // The limits come last, so they run first: a shed request costs no authentication.
    let taxii = taxii
        .route_layer(from_fn(require_taxii_accept))
        .merge(extensions)
        .route_layer(from_fn_with_state(state.auth.clone(), auth::authenticate));
    let taxii = limits::limit(taxii, &state.server.limits, &state.metrics);
    // Outermost on the TAXII routes: the CORS layer answers a preflight itself, so a preflight
    // needs no credentials, costs no slot of the limits and never reaches the 405 fallback.
    let taxii = match &state.cors {
        Some(cors) => taxii.route_layer(cors.clone()),
        None => taxii,
    };
    let pages = limits::limit(pages, &state.server.limits, &state.metrics);
    Router::new()
        .merge(taxii)
        .merge(pages)
        .merge(ops)
        .fallback(handlers::not_found)
        // Compression runs per response, streamed: the fastest level keeps a whole-collection
        // body (~33 MB for Enterprise) from costing most of a second of CPU per request, for
        // a few percent larger output.
        .layer(CompressionLayer::new().quality(CompressionLevel::Fastest))
        .layer(from_fn_with_state(state.metrics.clone(), metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Middleware on the TAXII routes: refuse, with a TAXII error body, requests whose `Accept`
/// header admits no media type we produce. No header means "anything".
async fn require_taxii_accept(request: Request, next: Next) -> Response {
    let values: Vec<&str> = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !values.is_empty() && !values.iter().any(|v| accepts_taxii(v)) {
        let asked = values.join(", ");
        return ApiError::NotAcceptable(format!(
            "this server produces {TAXII_CONTENT_TYPE}; Accept was {asked:?}"
        ))
        .into_response();
    }
    next.run(request).await
}
