//! `/`: the home page for people with a browser, server-rendered from the current catalog: the
//! server, its API roots, each collection's latest release and size, and snippets to copy.
//!
//! Only for clients that ask for HTML by name (browsers do); any other client gets the TAXII 404
//! it got before this page existed, whose description points at `/taxii2/`, so TAXII clients
//! and scripts probing `/` see no change. The page needs no JavaScript and loads nothing else
//! (the style is inline, the favicon a data URL).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::Root;
use crate::error::ApiError;
use crate::media::{TAXII_CONTENT_TYPE, accepts_html};
use crate::rights::Rights;
use crate::snapshot::{Catalog, Snapshot, ViewSel, format_micros};
use crate::state::AppState;

/// The head every HTML page has; `extra` brings the page's own style or stylesheet.
pub(super) fn head(title: &str, extra: Markup) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            // No favicon request (it would be a 404 in the console).
            link rel="icon" href="data:,";
            (extra)
        }
    }
}

pub(super) const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem;
       color: #1b1f24; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.35rem 0.6rem; border-bottom: 1px solid #d0d7de; }
td.objects { text-align: right; font-variant-numeric: tabular-nums; }
td.date { white-space: nowrap; }
pre { background: #f6f8fa; padding: 0.8rem; border-radius: 4px; white-space: pre-wrap;
      overflow-wrap: anywhere; }
code { font-size: 0.9em; }
nav a { margin-right: 1rem; }
";

/// One row of the collections table: a collection as the default root serves it.
struct Row {
    id: String,
    title: String,
    objects: usize,
    /// Label and date (`YYYY-MM-DD`) of the latest complete release; `None` for a collection
    /// not delivered as releases.
    release: Option<(String, String)>,
    /// The collection's URL in the default root.
    url: String,
    /// Labels of the release before the latest one and of the latest, for the changes page.
    changes: Option<(String, String)>,
}

/// `GET /`.
pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let wants_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(accepts_html);
    if !wants_html {
        return Err(ApiError::NotFound(
            "no TAXII endpoint here: TAXII discovery is at /taxii2/ (this address serves an HTML \
             page to clients that accept text/html)"
                .to_owned(),
        ));
    }
    let base = base_url(&state, &headers);
    let catalog = state.catalog();
    // Shown to anyone: with authentication on, only what a caller without credentials may read.
    let visible = match &state.auth {
        None => Some(Rights::All),
        Some(auth) => auth.anonymous_rights().cloned(),
    };
    let rows = rows(&state, &catalog, &base, visible.as_ref());
    let hidden = catalog.collections.len() - rows.len();
    let page = render(&state, &catalog, &base, &rows, hidden);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            // The same URL answers TAXII clients with JSON: caches must key on Accept.
            (header::VARY, HeaderValue::from_static("accept")),
        ],
        page.into_string(),
    )
        .into_response())
}

/// Where clients reach this server: `--public-url`, else the request's `Host` (https when a
/// proxy in front says so), else relative links.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.server.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    match host {
        Some(host) => format!("{}://{host}", if https { "https" } else { "http" }),
        None => String::new(),
    }
}

fn rows(state: &AppState, catalog: &Catalog, base: &str, visible: Option<&Rights>) -> Vec<Row> {
    let mut rows: Vec<Row> = catalog
        .collections
        .values()
        .filter(|s| visible.is_some_and(|r| r.can_read(&s.meta.id)))
        .filter_map(|s| Root::Default.view_of(s).map(|sel| row(state, s, sel, base)))
        .collect();
    rows.sort_by(|a, b| a.title.cmp(&b.title));
    rows
}

fn row(state: &AppState, snapshot: &Snapshot, sel: ViewSel, base: &str) -> Row {
    let view = snapshot.view(sel);
    let objects = (0..snapshot.objects.len() as u32)
        .filter(|&o| view.has_object(o))
        .count();
    let release = match sel {
        ViewSel::Release(i) => snapshot.releases.get(i).map(|r| {
            let date = format_micros(r.timestamp);
            (r.label.clone(), date.get(..10).unwrap_or(&date).to_owned())
        }),
        ViewSel::All => None,
    };
    let changes = match (snapshot.releases.first(), snapshot.releases.get(1)) {
        (Some(latest), Some(before)) => Some((before.label.clone(), latest.label.clone())),
        _ => None,
    };
    Row {
        changes,
        id: snapshot.meta.id.clone(),
        title: snapshot.meta.title.clone(),
        objects,
        release,
        url: format!(
            "{base}{}collections/{}/",
            Root::Default.path(state),
            snapshot.meta.id
        ),
    }
}

fn render(state: &AppState, catalog: &Catalog, base: &str, rows: &[Row], hidden: usize) -> Markup {
    let s = &state.server;
    let mut roots = vec![(
        Root::Default.path(state),
        "each collection as of its latest release".to_owned(),
    )];
    roots.extend(catalog.labels().into_iter().map(|label| {
        let text = format!("exactly ATT&CK release {label}");
        (Root::Pinned(label).path(state), text)
    }));
    roots.push((
        Root::History.path(state),
        "every version of every object ever published".to_owned(),
    ));
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&s.title, html! { style { (STYLE) } }))
            body {
                header {
                    h1 { (s.title) }
                    p { (s.description) }
                    nav {
                        a href="/taxii2/" { "TAXII discovery" }
                        a href="/api-docs" { "API documentation" }
                        a href="/openapi.json" { "OpenAPI document" }
                    }
                }
                main {
                    h2 { "Collections" }
                    @if !catalog.loaded {
                        p id="loading" { "Collections are still loading; reload in a moment." }
                    }
                    table id="collections" {
                        thead { tr {
                            th { "Collection" } th { "Objects" } th { "Latest release" }
                            th { "Released" } th { "Changes" } th { "URL" }
                        } }
                        tbody {
                            @for r in rows {
                                tr data-collection=(r.id) {
                                    td class="title" { (r.title) }
                                    td class="objects" { (r.objects) }
                                    @if let Some((label, date)) = &r.release {
                                        td class="release" { (label) }
                                        td class="date" { (date) }
                                    } @else {
                                        td class="release" { "—" }
                                        td class="date" { "—" }
                                    }
                                    td class="changes" {
                                        @if let Some((before, latest)) = &r.changes {
                                            a href=(format!("/changes?collection={}&from={before}&to={latest}", r.id)) {
                                                (before) " → " (latest)
                                            }
                                        }
                                    }
                                    td class="url" { a href=(r.url) { code { (r.url) } } }
                                }
                            }
                        }
                    }
                    @if hidden > 0 {
                        p { (hidden) " more collection(s) need credentials." }
                    }
                    h2 { "API roots" }
                    ul id="roots" {
                        @for (path, text) in &roots {
                            li { a href=(path) { code { (base) (path) } } " — " (text) }
                        }
                    }
                    h2 { "Use it" }
                    (snippets(base, rows.first()))
                }
            }
        }
    }
}

/// Copy-paste examples over the first collection, with this server's real URLs.
fn snippets(base: &str, first: Option<&Row>) -> Markup {
    let (url, id) = match first {
        Some(r) => (r.url.clone(), r.id.clone()),
        None => (
            format!("{base}/api/v21/collections/<collection-id>/"),
            "<collection-id>".to_owned(),
        ),
    };
    let curl = format!(
        "curl -H 'Accept: {TAXII_CONTENT_TYPE}' \\\n  '{url}objects/?match[type]=attack-pattern&limit=10'"
    );
    let taxii2_client = format!(
        "from taxii2client.v21 import Collection\n\n\
         collection = Collection(\"{url}\")\n\
         envelope = collection.get_objects(type=\"attack-pattern\")\n\
         print(len(envelope[\"objects\"]), \"techniques\")"
    );
    let stix2 = format!(
        "from stix2 import Filter, TAXIICollectionSource\n\
         from taxii2client.v21 import Collection\n\n\
         source = TAXIICollectionSource(Collection(\"{url}\"))\n\
         techniques = source.query([Filter(\"type\", \"=\", \"attack-pattern\")])"
    );
    html! {
        p { "Collection " code { (id) } ":" }
        h3 { "curl" }
        pre id="snippet-curl" { code { (curl) } }
        h3 { "taxii2-client" }
        pre id="snippet-taxii2client" { code { (taxii2_client) } }
        h3 { "stix2" }
        pre id="snippet-stix2" { code { (stix2) } }
    }
}
