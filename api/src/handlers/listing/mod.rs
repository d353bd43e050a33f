//! The one listing handler: objects, object, versions and manifest, in every kind of root.
//!
//! A request goes: the collection it reads ([`ReadableCollection`]) → its query
//! ([`query::ListingQuery`]) → the versions it selects ([`crate::selection`], kept per revision in
//! the result cache) → its page and the page's bytes ([`page`]; [`lean`] for a collection whose
//! JSON is not held; [`crate::compressed`] for a whole result kept compressed).

mod lean;
mod page;
mod query;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use self::lean::LeanPage;
use self::page::{Items, Kind, PageBody};
use self::query::ListingQuery;
use super::ReadableCollection;
use crate::error::ApiError;
use crate::etag::{etag, fingerprint, not_modified, not_modified_response};
use crate::filters::Listing;
use crate::selection::{for_object, holds_object, select};
use crate::snapshot::Content;
use crate::state::AppState;

/// `GET …/objects/`, `…/objects/{object_id}/`, `…/objects/{object_id}/versions/` and
/// `…/manifest/`; the route says which (`Extension<Listing>`).
pub(crate) async fn listing(
    State(state): State<AppState>,
    Extension(listing): Extension<Listing>,
    collection: ReadableCollection,
    ListingQuery(query): ListingQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ReadableCollection {
        catalog,
        root,
        id,
        snapshot,
        sel,
        object_id,
    } = collection;
    let view = snapshot.view(sel);
    let mut filter = query.filter;
    if let Some(object_id) = &object_id {
        if !holds_object(view, object_id) {
            return Err(ApiError::NotFound(format!(
                "no object {object_id:?} in this collection"
            )));
        }
        filter = for_object(filter, object_id);
    }
    let view_key = view.key.text();
    let filter_text = filter.canonical();
    let query_hash = fingerprint(&[&id, &root.key(), &view_key, listing.as_str(), &filter_text]);
    let after = page::resume_after(&state.cursor_key, query.next.as_deref(), query_hash)?;
    let generation = catalog.generation.as_ref().map_or(0, |g| g.number);
    let tag_digest = page::tag_digest(
        query_hash,
        snapshot.revision,
        generation,
        query.limit,
        query.next.as_deref(),
    );
    let tag = etag(tag_digest);
    if not_modified(&headers, &tag) {
        state.metrics.not_modified.inc();
        return Ok(not_modified_response(tag));
    }
    let cache_key = fingerprint(&[
        &id,
        &snapshot.revision.to_string(),
        &generation.to_string(),
        &view_key,
        &filter_text,
    ]);
    let (selected, hit) = state
        .cache
        .get_or_compute(cache_key, || select(view, &filter));
    state
        .metrics
        .cache
        .with_label_values(&[if hit { "hit" } else { "miss" }])
        .inc();

    let p = page::cut(&snapshot, &selected, after.as_ref(), query.limit);
    let response_headers = page::headers(&snapshot, &selected, p, tag);
    let kind = Kind::of(listing);
    let head = page::envelope_head(kind.items_key(), query.limit, p, || {
        page::next_cursor(&state.cursor_key, &snapshot, &selected, p, query_hash)
    });
    let items = Items::new(snapshot.clone(), kind);
    // Only objects carry JSON: manifests and versions of a lean collection come from its index
    // like any other.
    if let Content::Lean { store, generation } = &snapshot.content
        && kind == Kind::Objects
        && p.start < p.end
    {
        let source = LeanPage {
            store: store.clone(),
            generation: generation.clone(),
            snapshot: snapshot.clone(),
            selected,
        };
        let limited = query.limit.is_some();
        let body = source
            .body(&state.metrics, items, head, p.start..p.end, limited)
            .await?;
        return Ok((response_headers, body).into_response());
    }
    let body = PageBody::new(items, selected, p.start..p.end, head);
    if kind == Kind::Objects && query.limit.is_none() && !snapshot.is_lean() {
        let size = body.objects_len();
        let chunks = body
            .clone()
            .map(|chunk| chunk.unwrap_or_else(|e| match e {}));
        let whole = state.compressed.whole_response(
            &state.metrics,
            &headers,
            response_headers.clone(),
            tag_digest,
            size,
            chunks,
        );
        if let Some(response) = whole.await? {
            return Ok(response);
        }
    }
    let body = Body::from_stream(futures::stream::iter(body));
    Ok((response_headers, body).into_response())
}
