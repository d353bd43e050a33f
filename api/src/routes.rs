//! The route table and [`app`]: the whole HTTP surface, its layers, and nothing else.
//!
//! The table is data so that the router and the OpenAPI document are built from the same list
//! (a test checks both ways). Every TAXII path is served with and without its trailing slash.

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{MethodRouter, get};
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::handlers::{self, collections, discovery, manifest, objects};
use crate::{auth, health, media, metrics, openapi};

/// What a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Discovery,
    ApiRoot,
    Collections,
    Collection,
    Objects,
    Object,
    Versions,
    Manifest,
    Status,
    HealthPing,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
}

impl Endpoint {
    /// TAXII endpoints get media-type negotiation and authentication; operational ones don't.
    pub fn is_taxii(self) -> bool {
        !matches!(
            self,
            Endpoint::HealthPing
                | Endpoint::Healthz
                | Endpoint::Readyz
                | Endpoint::Metrics
                | Endpoint::OpenApi
        )
    }
}

/// One route template (axum syntax, canonical trailing-slash form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub template: String,
    pub endpoint: Endpoint,
}

/// Every route the server has, for a given root prefix (`/api/v21`).
pub fn route_table(prefix: &str) -> Vec<RouteSpec> {
    let mut table = vec![RouteSpec {
        template: "/taxii2/".to_owned(),
        endpoint: Endpoint::Discovery,
    }];
    // The default root lives at the prefix itself; every other root is one segment below it.
    for root in [prefix.to_owned(), format!("{prefix}/{{root}}")] {
        let collection = format!("{root}/collections/{{id}}");
        for (template, endpoint) in [
            (format!("{root}/"), Endpoint::ApiRoot),
            (format!("{root}/collections/"), Endpoint::Collections),
            (format!("{collection}/"), Endpoint::Collection),
            (format!("{collection}/objects/"), Endpoint::Objects),
            (
                format!("{collection}/objects/{{object_id}}/"),
                Endpoint::Object,
            ),
            (
                format!("{collection}/objects/{{object_id}}/versions/"),
                Endpoint::Versions,
            ),
            (format!("{collection}/manifest/"), Endpoint::Manifest),
            (format!("{root}/status/{{status_id}}/"), Endpoint::Status),
        ] {
            table.push(RouteSpec { template, endpoint });
        }
    }
    for (template, endpoint) in [
        ("/health/ping", Endpoint::HealthPing),
        ("/healthz", Endpoint::Healthz),
        ("/readyz", Endpoint::Readyz),
        ("/metrics", Endpoint::Metrics),
        ("/openapi.json", Endpoint::OpenApi),
    ] {
        table.push(RouteSpec {
            template: template.to_owned(),
            endpoint,
        });
    }
    table
}

fn method_router(endpoint: Endpoint) -> MethodRouter<AppState> {
    let read_only = match endpoint {
        Endpoint::Discovery => get(discovery::discovery),
        Endpoint::ApiRoot => get(discovery::api_root),
        Endpoint::Status => get(discovery::status),
        Endpoint::Collections => get(collections::list),
        Endpoint::Collection => get(collections::one),
        // The spec's own answer to writing into a collection with can_write = false is 403.
        Endpoint::Objects => get(objects::list).post(handlers::write_refused),
        Endpoint::Object => get(objects::one).delete(handlers::write_refused),
        Endpoint::Versions => get(objects::versions),
        Endpoint::Manifest => get(manifest::list),
        Endpoint::HealthPing => get(health::ping),
        Endpoint::Healthz => get(health::healthz),
        Endpoint::Readyz => get(health::readyz),
        Endpoint::Metrics => get(health::metrics),
        Endpoint::OpenApi => get(openapi::serve),
    };
    read_only.fallback(handlers::method_not_allowed)
}

/// The whole application: routes, TAXII media negotiation, auth, metrics, compression, tracing.
pub fn app(state: AppState) -> Router {
    let table = route_table(&state.prefix);
    let mut taxii = Router::new();
    let mut ops = Router::new();
    for spec in &table {
        let target = if spec.endpoint.is_taxii() {
            &mut taxii
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
    let taxii = taxii
        .route_layer(from_fn(media::require_taxii_accept))
        .route_layer(from_fn_with_state(state.auth.clone(), auth::authenticate));
    Router::new()
        .merge(taxii)
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
