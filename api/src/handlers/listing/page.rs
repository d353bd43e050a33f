//! One page of a listing: where it starts and ends, its envelope, its headers, its `next` cursor,
//! its ETag, and its items as response bytes.
//!
//! Items are objects from their pre-serialized JSON, manifest records and version timestamps,
//! streamed from a held collection in chunks. Object JSON is held as received and copied into
//! the body, never re-serialized: that is what serves `objects/?limit=100` of Enterprise at ~10k
//! requests/s (~3 GB/s of JSON) on the 2-core bench host. A held page is streamed in chunks of
//! about [`CHUNK`] bytes, so a whole collection (33 MB for Enterprise) is never assembled in
//! memory.

use std::convert::Infallible;
use std::ops::Range;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use bytes::Bytes;
use serde::Serialize;

use crate::cursor::{Cursor, CursorKey, Position};
use crate::error::ApiError;
use crate::etag::fingerprint;
use crate::filters::Listing;
use crate::media::{STIX_20, STIX_21, TAXII_CONTENT_TYPE};
use crate::snapshot::{Snapshot, format_micros};

static DATE_ADDED_FIRST: HeaderName = HeaderName::from_static("x-taxii-date-added-first");
static DATE_ADDED_LAST: HeaderName = HeaderName::from_static("x-taxii-date-added-last");

/// One page of a selection: `selected[start..end]`, and whether anything follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) more: bool,
}

/// Cuts the page after `after` (exclusive) of at most `limit` items.
pub(crate) fn cut(
    snapshot: &Snapshot,
    selected: &[u32],
    after: Option<&Position>,
    limit: Option<usize>,
) -> Page {
    let start = match after {
        Some(p) => selected.partition_point(|&v| snapshot.cmp_position(v, p).is_le()),
        None => 0,
    };
    let end = match limit {
        Some(n) => start.saturating_add(n).min(selected.len()),
        None => selected.len(),
    };
    Page {
        start,
        end,
        more: end < selected.len(),
    }
}

/// Where a request's page starts: after the position its `next` cursor names, which must have
/// been issued for this very query.
pub(crate) fn resume_after(
    key: &CursorKey,
    next: Option<&str>,
    query_hash: u64,
) -> Result<Option<Position>, ApiError> {
    let Some(text) = next else {
        return Ok(None);
    };
    let Cursor {
        position,
        query_hash: bound,
    } = key
        .decode(text)
        .map_err(|e| ApiError::bad_parameter("next", e.to_string()))?;
    if bound != query_hash {
        return Err(ApiError::bad_parameter(
            "next",
            "the cursor belongs to another query",
        ));
    }
    Ok(Some(position))
}

/// The digest of a page's ETag: the query, the data it reads (collection revision and projection
/// generation) and where the page starts and how long it is.
pub(crate) fn tag_digest(
    query_hash: u64,
    revision: i64,
    generation: i32,
    limit: Option<usize>,
    next: Option<&str>,
) -> u64 {
    fingerprint(&[
        &query_hash.to_string(),
        &revision.to_string(),
        &generation.to_string(),
        &format!("{limit:?}"),
        next.unwrap_or(""),
    ])
}

/// The response headers of a page: TAXII content type, ETag, and the `date_added` of its first
/// and last items (none for an empty page).
pub(crate) fn headers(
    snapshot: &Snapshot,
    selected: &[u32],
    page: Page,
    tag: HeaderValue,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(TAXII_CONTENT_TYPE),
    );
    headers.insert(header::ETAG, tag);
    if page.start < page.end {
        for (name, index) in [
            (&DATE_ADDED_FIRST, page.start),
            (&DATE_ADDED_LAST, page.end - 1),
        ] {
            let date = format_micros(snapshot.versions[selected[index] as usize].date_added);
            if let Ok(v) = HeaderValue::from_str(&date) {
                headers.insert(name.clone(), v);
            }
        }
    }
    headers
}

/// The envelope up to its first item: `{"more":…,"next":…,"<items_key>":[`. An empty page and a
/// request without `limit` (the whole result) carry no `more` key, as MITRE's server answers.
pub(crate) fn envelope_head(
    items_key: &str,
    limit: Option<usize>,
    page: Page,
    next_cursor: impl FnOnce() -> String,
) -> Vec<u8> {
    let head = if page.start == page.end {
        format!("{{\"{items_key}\":[")
    } else {
        match (limit, page.more) {
            (None, _) => format!("{{\"{items_key}\":["),
            (Some(_), false) => format!("{{\"more\":false,\"{items_key}\":["),
            (Some(_), true) => format!(
                "{{\"more\":true,\"next\":\"{}\",\"{items_key}\":[",
                next_cursor()
            ),
        }
    };
    head.into_bytes()
}

/// The `next` cursor of a page that has more after it: the position of its last item.
pub(crate) fn next_cursor(
    key: &CursorKey,
    snapshot: &Snapshot,
    selected: &[u32],
    page: Page,
    query_hash: u64,
) -> String {
    key.encode(&Cursor {
        position: snapshot.position(selected[page.end - 1]),
        query_hash,
    })
}

/// What one item of a listing is: an object, a manifest record or a version timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Objects,
    Manifest,
    Versions,
}

impl Kind {
    pub(crate) fn of(listing: Listing) -> Kind {
        match listing {
            Listing::Objects | Listing::Object => Kind::Objects,
            Listing::Manifest => Kind::Manifest,
            Listing::Versions => Kind::Versions,
        }
    }

    /// The envelope's key for the items.
    pub(crate) fn items_key(self) -> &'static str {
        if self == Kind::Versions {
            "versions"
        } else {
            "objects"
        }
    }
}

/// Writes a listing's items, comma-separated, each in its endpoint's form.
#[derive(Clone)]
pub(crate) struct Items {
    snapshot: Arc<Snapshot>,
    kind: Kind,
    first: bool,
}

impl Items {
    pub(crate) fn new(snapshot: Arc<Snapshot>, kind: Kind) -> Self {
        Items {
            snapshot,
            kind,
            first: true,
        }
    }
}

#[derive(Serialize)]
struct ManifestRecord<'a> {
    id: &'a str,
    date_added: String,
    version: &'a str,
    media_type: &'a str,
}

impl Items {
    /// Appends one version; `json` is its object JSON (only objects listings use it).
    pub(crate) fn write(&mut self, buf: &mut Vec<u8>, version: u32, json: &[u8]) {
        let v = &self.snapshot.versions[version as usize];
        if !self.first {
            buf.push(b',');
        }
        self.first = false;
        match self.kind {
            Kind::Objects => buf.extend_from_slice(json),
            Kind::Versions => {
                // Version texts are canonical timestamps, but escape anyway: it is cheap.
                let _ = serde_json::to_writer(&mut *buf, &*v.version_text);
            }
            Kind::Manifest => {
                let record = ManifestRecord {
                    id: &self.snapshot.objects[v.object as usize].id,
                    date_added: format_micros(v.date_added),
                    version: &v.version_text,
                    media_type: match v.spec {
                        schemas::SpecVersion::V2_0 => STIX_20,
                        schemas::SpecVersion::V2_1 => STIX_21,
                    },
                };
                // Writing a struct of strings into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *buf, &record);
            }
        }
    }
}

/// Streams a page held in memory in chunks of about [`CHUNK`] bytes. Holds the snapshot `Arc`,
/// so a reload during the stream doesn't change what this response sends.
#[derive(Clone)]
pub(crate) struct PageBody {
    items: Items,
    selected: Arc<[u32]>,
    next: usize,
    end: usize,
    head: Option<Vec<u8>>,
    done: bool,
}

impl PageBody {
    /// The envelope `head`, then the items `selected[range]`, then the envelope's end.
    pub(crate) fn new(
        items: Items,
        selected: Arc<[u32]>,
        range: Range<usize>,
        head: Vec<u8>,
    ) -> Self {
        PageBody {
            items,
            selected,
            next: range.start,
            end: range.end,
            head: Some(head),
            done: false,
        }
    }

    /// The size of the items' JSON, separators included: objects listings only.
    pub(crate) fn objects_len(&self) -> usize {
        let snapshot = &self.items.snapshot;
        self.selected[self.next..self.end]
            .iter()
            .map(|&v| snapshot.versions[v as usize].json.len() + 1)
            .sum()
    }
}

const CHUNK: usize = 64 * 1024;

impl Iterator for PageBody {
    type Item = Result<Bytes, Infallible>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buf = self.head.take().unwrap_or_default();
        buf.reserve(CHUNK);
        while self.next < self.end && buf.len() < CHUNK {
            let version = self.selected[self.next];
            self.next += 1;
            let snapshot = self.items.snapshot.clone();
            self.items
                .write(&mut buf, version, &snapshot.versions[version as usize].json);
        }
        if self.next >= self.end {
            buf.extend_from_slice(b"]}");
            self.done = true;
        }
        Some(Ok(Bytes::from(buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::select;
    use crate::selection::tests::{filters, rows, snapshot};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn paging_walks_every_selected_version_once(rows in rows(), f in filters(), limit in 1usize..6) {
            let s = snapshot(&rows);
            let all = select(s.history_view(), &f);
            let mut walked = Vec::new();
            let mut after = None;
            loop {
                let p = cut(&s, &all, after.as_ref(), Some(limit));
                walked.extend_from_slice(&all[p.start..p.end]);
                if !p.more { break; }
                after = Some(s.position(all[p.end - 1]));
            }
            prop_assert_eq!(walked, all);
        }

        #[test]
        fn a_cursor_resumes_only_its_own_query(position_hash in any::<u64>(), other in any::<u64>()) {
            let key = CursorKey::new("k");
            let position = Position { date_added: 1, object_id: "x".into(), version: 2 };
            let text = key.encode(&Cursor { position: position.clone(), query_hash: position_hash });
            prop_assert_eq!(resume_after(&key, Some(&text), position_hash).ok(), Some(Some(position)));
            prop_assert_eq!(resume_after(&key, Some(&text), other).is_err(), other != position_hash);
        }
    }

    #[test]
    fn the_envelope_has_more_and_next_only_for_a_limited_page_with_items() {
        let page = |start, end, more| Page { start, end, more };
        let head = |limit, p| {
            String::from_utf8(envelope_head("objects", limit, p, || "c".into())).unwrap()
        };
        assert_eq!(head(Some(5), page(0, 0, false)), r#"{"objects":["#);
        assert_eq!(head(None, page(0, 3, false)), r#"{"objects":["#);
        assert_eq!(
            head(Some(5), page(0, 3, false)),
            r#"{"more":false,"objects":["#
        );
        assert_eq!(
            head(Some(3), page(0, 3, true)),
            r#"{"more":true,"next":"c","objects":["#
        );
    }
}
