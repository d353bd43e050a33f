//! Exact releases over the real pipeline (issue 15): MITRE re-issued objects with the same id and
//! `modified` but other content, and every pinned root must serve its own file's content, the
//! default root its latest release's, the history root the newest; re-imports publish nothing.

use std::collections::{BTreeMap, BTreeSet};

use ingest::attack_domain::DomainChoice;
use ingest::config::ImportConfig;
use serde_json::Value;

use taxiway_tests::api::{Api, key_of, serve_projected};
use taxiway_tests::fixtures::{self, Release, id_of};
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection;

/// ICS and Mobile in an order that imports two releases after a newer one (ICS 17.1 after
/// 18.0, Mobile 17.0 after 17.1), so their re-issued objects take the out-of-order path.
const IMPORT_ORDER: [&str; 5] = [
    "ics-attack-18.0.json.zst",
    "mobile-attack-17.1.json.zst",
    "ics-attack-17.1.json.zst",
    "mobile-attack-17.0.json.zst",
    "ics-attack-18.1.json.zst",
];

fn label_of(release: &Release) -> String {
    release.collection().unwrap()["x_mitre_version"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn release_time(release: &Release) -> String {
    release.collection().unwrap()["modified"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn import(topics: &Topics, files: &[&str]) {
    for f in files {
        let path = fixtures::path(f);
        topics.ingest(ImportConfig::new([&path])).await.unwrap();
    }
}

/// Every object of a root's collection, in one response.
async fn objects(api: &Api, root: &str, id: &str) -> Vec<Value> {
    api.page(&format!("{root}collections/{id}/objects/"), "objects")
        .await
        .unwrap()
        .items
}

/// Checks `served` holds each (id, version) of `expected` once, JSON-equal to it; returns how
/// many of them differ from `other` under the same (id, version): the re-issued ones.
fn check_exact(what: &str, served: &[Value], expected: &Release, other: Option<&Release>) -> usize {
    let want = expected.by_version();
    let got: BTreeMap<(String, String), &Value> = served.iter().map(|o| (key_of(o), o)).collect();
    assert_eq!(got.len(), served.len(), "{what}: each version once");
    assert_eq!(
        got.keys().collect::<BTreeSet<_>>(),
        want.keys().collect::<BTreeSet<_>>(),
        "{what}: exactly the release's versions"
    );
    for (k, o) in &got {
        assert_eq!(*o, want[k], "{what}: {k:?} is the release's own content");
    }
    other.map_or(0, |other| {
        let theirs = other.by_version();
        want.iter()
            .filter(|(k, o)| theirs.get(*k).is_some_and(|t| t != *o))
            .count()
    })
}

/// `media_types` of a collection on a root covers the media types of its manifest.
async fn check_media_types(api: &Api, root: &str, id: &str) {
    let collection = api
        .get(&format!("{root}collections/{id}/"))
        .await
        .unwrap()
        .json();
    let announced: BTreeSet<String> = collection["media_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    let manifest = api
        .page(&format!("{root}collections/{id}/manifest/"), "objects")
        .await
        .unwrap();
    let used: BTreeSet<String> = manifest
        .items
        .iter()
        .map(|e| e["media_type"].as_str().unwrap().to_owned())
        .collect();
    assert!(!used.is_empty(), "{root} {id}: manifest empty");
    assert!(
        used.is_subset(&announced),
        "{root} {id}: media_types {announced:?} miss some of {used:?}"
    );
}

/// The history root serves every version of `releases` (oldest first) once, each with the
/// content of the newest release that has it.
async fn check_history<'a>(api: &Api, id: &str, releases: impl Iterator<Item = &'a Release>) {
    let mut newest: BTreeMap<(String, String), &Value> = BTreeMap::new();
    for release in releases {
        for o in &release.objects {
            newest.insert(key_of(o), o);
        }
    }
    let history = api
        .page(
            &format!("/api/v21/history/collections/{id}/objects/?match[version]=all"),
            "objects",
        )
        .await
        .unwrap()
        .items;
    let got: BTreeMap<(String, String), &Value> = history.iter().map(|o| (key_of(o), o)).collect();
    assert_eq!(got.len(), history.len(), "history: each version once");
    assert_eq!(got.len(), newest.len(), "history: every version");
    for (k, o) in &got {
        assert_eq!(*o, newest[k], "history: {k:?} has the newest content");
    }
}

/// Every response the test compares across re-imports: each root's objects of each collection.
async fn snapshot_of_roots(api: &Api, roots: &[String], ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for root in roots {
        for id in ids {
            let reply = api
                .get(&format!("{root}collections/{id}/objects/"))
                .await
                .unwrap();
            out.push(format!("{root} {id} {} {}", reply.status, reply.text()));
        }
    }
    out
}

async fn drop_keyspaces(control: &str) {
    let session = projection::session().await.unwrap();
    for ks in [format!("{control}_g1"), control.to_owned()] {
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_root_serves_its_own_releases_content_and_reimports_publish_nothing() {
    let topics = Topics::new("api_exact");
    import(&topics, &IMPORT_ORDER).await;
    let events = topics.events().await.unwrap();
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));
    let (control, projector, api) = serve_projected(&topics, "api_exact", &expected)
        .await
        .unwrap();

    // Each domain's files, oldest release first (by the collection's `modified`).
    let mut ics: Vec<Release> = [
        "ics-attack-17.1.json.zst",
        "ics-attack-18.0.json.zst",
        "ics-attack-18.1.json.zst",
    ]
    .iter()
    .map(|n| Release::load(n).unwrap())
    .collect();
    let mut mobile: Vec<Release> = ["mobile-attack-17.0.json.zst", "mobile-attack-17.1.json.zst"]
        .iter()
        .map(|n| Release::load(n).unwrap())
        .collect();
    ics.sort_by_key(release_time);
    mobile.sort_by_key(release_time);
    let mut reissued_served = BTreeMap::new();
    for domain in [&ics, &mobile] {
        let id = domain[0].collection_id();
        for (i, release) in domain.iter().enumerate() {
            let root = format!("/api/v21/attack-{}/", label_of(release));
            let served = objects(&api, &root, &id).await;
            // The release's re-issued objects: same version in a neighbour, other content.
            let neighbour = domain
                .get(i + 1)
                .or(i.checked_sub(1).and_then(|j| domain.get(j)));
            let differing = check_exact(&root, &served, release, neighbour);
            reissued_served.insert(label_of(release) + " " + &id, differing);
            check_media_types(&api, &root, &id).await;
        }
        // The default root: the latest release, exactly.
        let latest = domain.last().unwrap();
        let served = objects(&api, "/api/v21/", &id).await;
        check_exact("default root", &served, latest, None);
        check_media_types(&api, "/api/v21/", &id).await;

        // The history root: every version once, with the content of the newest release that
        // has it.
        check_history(&api, &id, domain.iter()).await;
        check_media_types(&api, "/api/v21/history/", &id).await;
    }
    // What the README's table says the files re-issue, computed from the files themselves above.
    let ics_id = ics[0].collection_id();
    let mobile_id = mobile[0].collection_id();
    println!("re-issued objects served with their own release's content: {reissued_served:?}");
    assert_eq!(reissued_served[&format!("17.1 {ics_id}")], 70);
    assert_eq!(reissued_served[&format!("17.0 {mobile_id}")], 1329);
    assert_eq!(reissued_served[&format!("17.1 {mobile_id}")], 1329);
    // The example, literally.
    let relationship = "relationship--0008005f-ca51-47c3-8369-55ee5de1c65a";
    let old = api
        .get(&format!(
            "/api/v21/attack-17.0/collections/{mobile_id}/objects/{relationship}/"
        ))
        .await
        .unwrap()
        .json();
    let want = mobile[0]
        .objects
        .iter()
        .find(|o| id_of(o) == relationship)
        .unwrap();
    assert_eq!(&old["objects"][0], want);

    // A full re-import, in order and in reverse, publishes nothing and changes no response.
    let roots: Vec<String> = ["/api/v21/", "/api/v21/history/"]
        .iter()
        .map(|r| (*r).to_owned())
        .chain(
            ics.iter()
                .chain(&mobile)
                .map(|r| format!("/api/v21/attack-{}/", label_of(r))),
        )
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ids = [ics_id.clone(), mobile_id.clone()];
    let before = snapshot_of_roots(&api, &roots, &ids).await;
    let published = topics.events().await.unwrap().len();
    let mut files: Vec<&str> = IMPORT_ORDER.to_vec();
    files.sort_unstable();
    import(&topics, &files).await;
    files.reverse();
    import(&topics, &files).await;
    let after_events = topics.events().await.unwrap().len();
    println!("events on the topic: {published} before the re-imports, {after_events} after");
    assert_eq!(after_events, published, "re-imports publish nothing");
    assert_eq!(snapshot_of_roots(&api, &roots, &ids).await, before);

    api.stop().await.unwrap();
    projector.stop().await.unwrap();
    drop_keyspaces(&control).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_polling_the_default_root_during_a_first_import_never_sees_a_partial_collection() {
    // Mobile first, so the topics, the projection and the API replica are up; then ICS 18.1,
    // a collection's first release, while a client polls the default root.
    let topics = Topics::new("api_partial");
    import(&topics, &["mobile-attack-17.0.json.zst"]).await;
    let events = topics.events().await.unwrap();
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));
    let (control, projector, api) = serve_projected(&topics, "api_partial", &expected)
        .await
        .unwrap();
    let ics = Release::load("ics-attack-18.1.json.zst").unwrap();
    let ics_id = ics.collection_id();

    let importing = {
        let topics = Topics {
            objects: topics.objects.clone(),
            dead_letter: topics.dead_letter.clone(),
        };
        tokio::spawn(async move { import(&topics, &["ics-attack-18.1.json.zst"]).await })
    };
    let deadline = taxiway_tests::Deadline::after(std::time::Duration::from_secs(300));
    let (mut polls, mut seen_whole) = (0u32, false);
    while !seen_whole {
        assert!(!deadline.passed(), "ICS never appeared on the default root");
        polls += 1;
        let listed = api.get("/api/v21/collections/").await.unwrap().json();
        let listed = listed["collections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == ics_id.as_str());
        let reply = api
            .get(&format!("/api/v21/collections/{ics_id}/objects/"))
            .await
            .unwrap();
        if reply.status == reqwest::StatusCode::OK {
            let served = reply.json()["objects"].as_array().unwrap().len();
            assert_eq!(
                served,
                ics.objects.len(),
                "poll {polls}: the default root served {served} of ICS 18.1's {} objects",
                ics.objects.len()
            );
            seen_whole = true;
        } else {
            assert!(!listed, "poll {polls}: listed but not served");
            assert_eq!(reply.status, reqwest::StatusCode::NOT_FOUND);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    importing.await.unwrap();
    println!("{polls} polls of the default root during the import, none partial");
    assert!(
        polls > 1,
        "the import finished before the first poll: nothing was tested"
    );

    api.stop().await.unwrap();
    projector.stop().await.unwrap();
    drop_keyspaces(&control).await;
}

/// The label of a STIX 2.0 release from its file name (`stix-2.0/enterprise-attack-18.1.json.zst`
/// → `18.1`), as `--attack-domain` names it; and its numbers, for ordering releases.
fn file_label(name: &str) -> (String, Vec<u32>) {
    let stem = name
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".json.zst");
    let label = stem.rsplit('-').next().unwrap().to_owned();
    let numbers = label.split('.').map(|n| n.parse().unwrap()).collect();
    (label, numbers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enterprise_releases_from_stix_2_0_files_are_served_exactly_on_every_root() {
    // Imported out of order (15.1 after 18.0), with MITRE's collection named from the objects'
    // domain, as an operator serving MITRE's cti files would.
    let order = [
        "stix-2.0/enterprise-attack-18.0.json.zst",
        "stix-2.0/enterprise-attack-15.1.json.zst",
        "stix-2.0/enterprise-attack-18.1.json.zst",
    ];
    let mut paths = Vec::new();
    for name in order {
        let Some(path) = fixtures::shared_only(name) else {
            return;
        };
        paths.push(path);
    }
    let topics = Topics::new("api_exact_enterprise");
    let import_all = |paths: Vec<std::path::PathBuf>| {
        let topics = &topics;
        async move {
            for path in paths {
                topics
                    .ingest(ImportConfig::new([&path]).attack_domain(DomainChoice::Auto))
                    .await
                    .unwrap();
            }
        }
    };
    import_all(paths.clone()).await;
    let events = topics.events().await.unwrap();
    let expected = projection::final_revisions(events.iter().map(|(_, e)| e));
    let (control, projector, api) = serve_projected(&topics, "api_exact_ent", &expected)
        .await
        .unwrap();
    let listed = api.get("/api/v21/collections/").await.unwrap().json();
    let ids: Vec<String> = listed["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one Enterprise collection: {ids:?}");
    let id = ids[0].clone();

    // Oldest release first.
    let mut releases: Vec<(Vec<u32>, String, Release)> = order
        .iter()
        .map(|name| {
            let (label, numbers) = file_label(name);
            (numbers, label, Release::load(name).unwrap())
        })
        .collect();
    releases.sort_by(|a, b| a.0.cmp(&b.0));
    let mut reissued = BTreeMap::new();
    for (i, (_, label, release)) in releases.iter().enumerate() {
        let root = format!("/api/v21/attack-{label}/");
        let served = objects(&api, &root, &id).await;
        let neighbour = releases
            .get(i + 1)
            .or(i.checked_sub(1).and_then(|j| releases.get(j)))
            .map(|(_, _, r)| r);
        reissued.insert(
            label.clone(),
            check_exact(&root, &served, release, neighbour),
        );
        check_media_types(&api, &root, &id).await;
    }
    let (_, _, latest) = releases.last().unwrap();
    let served = objects(&api, "/api/v21/", &id).await;
    check_exact("default root", &served, latest, None);
    check_media_types(&api, "/api/v21/", &id).await;
    check_history(&api, &id, releases.iter().map(|(_, _, r)| r)).await;
    check_media_types(&api, "/api/v21/history/", &id).await;
    println!(
        "Enterprise objects re-issued between neighbouring releases, served as each file has them: {reissued:?}"
    );
    // ../shared/attack-data/README.md: Enterprise 15.1 -> 18.0 re-issued 2 objects.
    assert_eq!(
        reissued["15.1"], 2,
        "re-issued objects checked on attack-15.1"
    );

    // Re-imports publish nothing: in reverse order here (each Enterprise import costs seconds;
    // the ICS and Mobile test above re-imports in both orders).
    let published = topics.events().await.unwrap().len();
    import_all(paths.into_iter().rev().collect()).await;
    let after = topics.events().await.unwrap().len();
    println!("Enterprise events: {published} before the re-imports, {after} after");
    assert_eq!(after, published, "re-imports publish nothing");

    api.stop().await.unwrap();
    projector.stop().await.unwrap();
    drop_keyspaces(&control).await;
}
