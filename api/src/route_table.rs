//! The route table: every path the server answers and what it serves, as data.
//!
//! Data so that the router ([`crate::routes`]) and the OpenAPI document ([`crate::openapi`]) are
//! built from the same list (a test checks both ways).

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
    /// Live stream of new versions (Server-Sent Events): a Taxiway extension.
    Stream,
    Status,
    HealthPing,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    /// `{root}/collections/{id}/changes/` (history root only): what changed between releases.
    Changes,
    /// `/`: the HTML home page for people with a browser.
    Home,
    /// `/changes`: the changes between two releases as a page.
    ChangesPage,
    /// `/api-docs`: Swagger UI over `/openapi.json`.
    ApiDocs,
    /// `/api-docs/{asset}`: the embedded files of Swagger UI.
    ApiDocsAsset,
}

impl Endpoint {
    /// TAXII endpoints get media-type negotiation and authentication; operational ones and
    /// pages don't.
    pub fn is_taxii(self) -> bool {
        !matches!(
            self,
            Endpoint::HealthPing
                | Endpoint::Healthz
                | Endpoint::Readyz
                | Endpoint::Metrics
                | Endpoint::OpenApi
        ) && !self.is_page()
    }

    /// TAXII endpoints whose `Accept` must admit the TAXII media type; the extensions answer
    /// their own media types to any client (changes: `application/json`, live stream:
    /// `text/event-stream`).
    pub fn negotiates_taxii(self) -> bool {
        self.is_taxii() && !matches!(self, Endpoint::Changes | Endpoint::Stream)
    }

    /// Pages for browsers: under the request limits like TAXII routes, but public and HTML.
    pub fn is_page(self) -> bool {
        matches!(
            self,
            Endpoint::Home | Endpoint::ChangesPage | Endpoint::ApiDocs | Endpoint::ApiDocsAsset
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
            (format!("{collection}/stream/"), Endpoint::Stream),
            (format!("{root}/status/{{status_id}}/"), Endpoint::Status),
        ] {
            table.push(RouteSpec { template, endpoint });
        }
    }
    table.push(RouteSpec {
        template: format!("{prefix}/{{root}}/collections/{{id}}/changes/"),
        endpoint: Endpoint::Changes,
    });
    for (template, endpoint) in [
        ("/health/ping", Endpoint::HealthPing),
        ("/healthz", Endpoint::Healthz),
        ("/readyz", Endpoint::Readyz),
        ("/metrics", Endpoint::Metrics),
        ("/openapi.json", Endpoint::OpenApi),
        ("/", Endpoint::Home),
        ("/changes", Endpoint::ChangesPage),
        ("/api-docs", Endpoint::ApiDocs),
        ("/api-docs/{asset}", Endpoint::ApiDocsAsset),
    ] {
        table.push(RouteSpec {
            template: template.to_owned(),
            endpoint,
        });
    }
    table
}
