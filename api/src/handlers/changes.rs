//! What changed between two releases of a collection ([`crate::changes`] computes it): as JSON
//! at `{prefix}/history/collections/{id}/changes/?from=18.0&to=18.1` (a Taxiway extension), and
//! as a page for people at `/changes?collection={id}&from=18.0&to=18.1`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde_json::{Value, json};

use super::{ReadableCollection, Root, loaded_catalog};
use crate::changes::{self, ByType, Changes, ChangesError, release_json};
use crate::error::ApiError;
use crate::rights::Rights;
use crate::snapshot::{Release, Snapshot, format_micros};
use crate::state::AppState;

/// `GET …/changes/`. `to` defaults to the latest release, `from` to the release before `to`.
pub async fn changes(
    collection: ReadableCollection,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    if collection.root != Root::History {
        return Err(ApiError::NotFound(
            "changes between releases are served under the history root".to_owned(),
        ));
    }
    let snapshot = &collection.snapshot;
    let params = Params::parse(query.as_deref(), false)?;
    let (from, to, found) = compute(snapshot, &params)?;
    Ok(Json(json!({
        "collection": snapshot.meta.id,
        "title": snapshot.meta.title,
        "from": release_json(from),
        "to": release_json(to),
        "counts": found.counts(),
        "changes": found,
    })))
}

/// The query of either form.
struct Params {
    collection: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

impl Params {
    fn parse(query: Option<&str>, with_collection: bool) -> Result<Params, ApiError> {
        let mut params = Params {
            collection: None,
            from: None,
            to: None,
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "from" => params.from = Some(value.into_owned()),
                "to" => params.to = Some(value.into_owned()),
                "collection" if with_collection => params.collection = Some(value.into_owned()),
                other => return Err(ApiError::bad_parameter(other, "unknown parameter")),
            }
        }
        Ok(params)
    }
}

/// The two releases the parameters name (with the defaults) and the changes between them.
fn compute<'a>(
    snapshot: &'a Snapshot,
    params: &Params,
) -> Result<(&'a Release, &'a Release, Changes), ApiError> {
    let (to_index, to) = pick(snapshot, "to", params.to.as_deref(), 0)?;
    let (_, from) = match params.from.as_deref() {
        Some(label) => pick(snapshot, "from", Some(label), 0)?,
        None => pick(snapshot, "from", None, to_index + 1)?,
    };
    let found = changes::between(snapshot, from, to).map_err(|e| match e {
        ChangesError::Content(_) => ApiError::Unavailable(format!(
            "{e}: this collection is served lean (over --max-snapshot-bytes); changes need its \
             contents in memory"
        )),
    })?;
    Ok((from, to, found))
}

/// `GET /changes?collection={id}&from=…&to=…`: the page. Public like the home page, so it
/// shows only collections anonymous callers may read.
pub async fn page(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref(), true)?;
    let id = params
        .collection
        .clone()
        .ok_or_else(|| ApiError::bad_parameter("collection", "required"))?;
    let catalog = loaded_catalog(&state)?;
    let visible = match &state.auth {
        None => true,
        Some(auth) => auth
            .anonymous_rights()
            .is_some_and(|r: &Rights| r.can_read(&id)),
    };
    let snapshot = catalog
        .collections
        .get(&id)
        .filter(|_| visible)
        .ok_or_else(|| ApiError::NotFound(format!("no collection {id:?}")))?;
    let (from, to, found) = compute(snapshot, &params)?;
    let json_url = format!(
        "{}/{}/collections/{id}/changes/?from={}&to={}",
        state.prefix, state.server.history_root, from.label, to.label
    );
    let markup = render(snapshot, from, to, &found, &json_url);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        markup.into_string(),
    )
        .into_response())
}

const KINDS: [(&str, &str); 6] = [
    ("added", "Added"),
    ("removed", "Removed"),
    ("new_version", "New version"),
    ("deprecated", "Newly deprecated"),
    ("revoked", "Newly revoked"),
    ("reissued", "Re-issued without a new version"),
];

fn of_kind<'a>(changes: &'a Changes, kind: &str) -> &'a ByType {
    match kind {
        "added" => &changes.added,
        "removed" => &changes.removed,
        "new_version" => &changes.new_version,
        "deprecated" => &changes.deprecated,
        "revoked" => &changes.revoked,
        _ => &changes.reissued,
    }
}

fn render(
    snapshot: &Snapshot,
    from: &Release,
    to: &Release,
    changes: &Changes,
    json_url: &str,
) -> Markup {
    let counts = changes.counts();
    let date = |r: &Release| {
        format_micros(r.timestamp)
            .get(..10)
            .unwrap_or("")
            .to_owned()
    };
    let title = format!("{}: {} → {}", snapshot.meta.title, from.label, to.label);
    html! {
        (DOCTYPE)
        html lang="en" {
            (super::home::head(&title, html! { style { (super::home::STYLE) } }))
            body {
                nav { a href="/" { "Home" } a href=(json_url) { "As JSON" } }
                h1 { (title) }
                p {
                    "Release " (from.label) " (" (date(from)) ") to " (to.label) " (" (date(to)) ")."
                    @if snapshot.releases.len() > 2 {
                        " Other releases: "
                        @for (newer, older) in snapshot.releases.iter().zip(snapshot.releases.iter().skip(1)) {
                            a href=(format!("/changes?collection={}&from={}&to={}", snapshot.meta.id, older.label, newer.label)) {
                                (older.label) " → " (newer.label)
                            }
                            " "
                        }
                    }
                }
                table id="counts" {
                    thead { tr { th { "Change" } th { "Objects" } } }
                    tbody {
                        @for (kind, label) in KINDS {
                            tr data-kind=(kind) {
                                td { a href=(format!("#{kind}")) { (label) } }
                                td class="objects" { (counts.get(kind).copied().unwrap_or(0)) }
                            }
                        }
                    }
                }
                @for (kind, label) in KINDS {
                    h2 id=(kind) { (label) " (" (counts.get(kind).copied().unwrap_or(0)) ")" }
                    @for (stix_type, list) in of_kind(changes, kind) {
                        h3 { (stix_type) " (" (list.len()) ")" }
                        table {
                            thead { tr { th { "ATT&CK id" } th { "Name" } th { "Changed fields" } } }
                            tbody {
                                @for c in list {
                                    tr {
                                        td { (c.attack_id.as_deref().unwrap_or("")) }
                                        td { (c.name.as_deref().unwrap_or(&c.id)) }
                                        td { (c.fields.join(", ")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The release `label` names, or the one at `default_index` (newest first) without a label.
fn pick<'a>(
    snapshot: &'a Snapshot,
    parameter: &str,
    label: Option<&str>,
    default_index: usize,
) -> Result<(usize, &'a Release), ApiError> {
    match label {
        Some(label) => snapshot
            .releases
            .iter()
            .enumerate()
            .find(|(_, r)| r.label == label)
            .ok_or_else(|| ApiError::bad_parameter(parameter, format!("no release {label:?}"))),
        None => snapshot
            .releases
            .get(default_index)
            .map(|r| (default_index, r))
            .ok_or_else(|| {
                ApiError::bad_parameter(parameter, "the collection has no such release to compare")
            }),
    }
}
