//! Reading everything an API serves, for comparing two servers: discovery, every root, its
//! collections, every page of objects and manifest, the first page of a few filters, and the
//! first objects of each page with their versions.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::TAXII;

/// Objects per listing page: several pages per collection.
const PAGE: usize = 400;

/// What one GET answered: status, content type and body, with the server's own base URL
/// replaced by `BASE` (discovery names roots by absolute URL).
pub type Answer = (u16, Option<String>, String);

/// Every answer, by request. Pages after the first are named by their number, not by their
/// `next` cursor, which differs between servers that sign with different keys.
pub async fn crawl(
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<BTreeMap<String, Answer>> {
    let mut answers = BTreeMap::new();
    let get = |path: String| async move {
        let reply = client
            .get(format!("{base}{path}"))
            .header("accept", TAXII)
            .send()
            .await?;
        let status = reply.status().as_u16();
        let content_type = reply
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = reply.text().await?.replace(base, "BASE");
        anyhow::Ok((status, content_type, body))
    };
    let json = |answer: &Answer| serde_json::from_str::<Value>(&answer.2).unwrap_or(Value::Null);

    let discovery = get("/taxii2/".to_owned()).await?;
    let roots: Vec<String> = json(&discovery)["api_roots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(|r| r.replace("BASE", "")))
        .collect();
    anyhow::ensure!(!roots.is_empty(), "no api_roots in {}", discovery.2);
    answers.insert("/taxii2/".to_owned(), discovery);
    for root in roots {
        answers.insert(root.clone(), get(root.clone()).await?);
        let path = format!("{root}collections/");
        let collections = get(path.clone()).await?;
        let listed = json(&collections)["collections"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        answers.insert(path, collections);
        for collection in listed {
            let id = collection["id"].as_str().unwrap_or_default();
            let base_path = format!("{root}collections/{id}/");
            answers.insert(base_path.clone(), get(base_path.clone()).await?);
            // Filters, first pages: the same engine over the same index on every backend.
            for query in [
                "objects/?match[type]=attack-pattern&limit=50",
                "objects/?match[version]=all&limit=50",
                "manifest/?match[version]=first&limit=50",
                "objects/?match[spec_version]=2.0&limit=20",
            ] {
                let path = format!("{base_path}{query}");
                answers.insert(path.clone(), get(path).await?);
            }
            for listing in ["objects", "manifest"] {
                let first = format!("{base_path}{listing}/?limit={PAGE}");
                let mut path = first.clone();
                for page in 0.. {
                    let answer = get(path.clone()).await?;
                    let parsed = json(&answer);
                    answers.insert(format!("{first}#page{page}"), answer);
                    if listing == "objects" {
                        for object in parsed["objects"].as_array().into_iter().flatten().take(3) {
                            let object_id = object["id"].as_str().unwrap_or_default();
                            for p in [
                                format!("{base_path}objects/{object_id}/"),
                                format!("{base_path}objects/{object_id}/versions/"),
                            ] {
                                answers.insert(p.clone(), get(p).await?);
                            }
                        }
                    }
                    match parsed["next"].as_str() {
                        Some(next) => path = format!("{first}&next={next}"),
                        None => break,
                    }
                }
            }
        }
    }
    Ok(answers)
}

/// `answers` with what two imports of the same files at different moments differ in taken out
/// of every JSON body: `date_added` values and `next` cursors.
pub fn without_dates(answers: &BTreeMap<String, Answer>) -> BTreeMap<String, Answer> {
    fn strip(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("date_added");
                map.remove("next");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    answers
        .iter()
        .map(|(path, (status, content_type, body))| {
            let body = match serde_json::from_str::<Value>(body) {
                Ok(mut json) => {
                    strip(&mut json);
                    json.to_string()
                }
                Err(_) => body.clone(),
            };
            (path.clone(), (*status, content_type.clone(), body))
        })
        .collect()
}
