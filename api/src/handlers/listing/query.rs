//! The listing query as an extractor: the query string parsed by [`crate::filters`] for the
//! route's listing, rejected with a TAXII error that names the parameter.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::filters::{Listing, Query, parse_query};
use crate::state::AppState;

/// A parsed listing query; which listing it is for comes from the route (an
/// `Extension<Listing>`), since it decides the default of `match[version]`.
pub(crate) struct ListingQuery(pub(crate) Query);

impl FromRequestParts<AppState> for ListingQuery {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let listing = *parts
            .extensions
            .get::<Listing>()
            .ok_or_else(|| ApiError::Internal("a listing route without its kind".to_owned()))?;
        parse_query(parts.uri.query(), listing, state.server.max_page_size).map(ListingQuery)
    }
}
