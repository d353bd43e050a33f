//! Measures the hot paths of ingest and projector on real ATT&CK objects and prints MB/s of object JSON.
//!
//! `cargo run --release -p taxiway-tests --example throughput [BUNDLE.json.zst] [ROUNDS]`
//! (default: `ics-attack-18.1.json.zst` where the tests find it, 20 rounds).

use std::error::Error;
use std::hint::black_box;
use std::time::Instant;

use schemas::stix::{compact_json, content_digest, validate_object};
use schemas::{Event, ObjectVersionAdded, Source, SourceKind, decode_event, encode_event_into};

#[derive(serde::Deserialize)]
struct Bundle<'a> {
    spec_version: Option<&'a str>,
    #[serde(borrow)]
    objects: Vec<&'a serde_json::value::RawValue>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let path = match args.next() {
        Some(path) => path,
        None => taxiway_tests::fixtures::path("ics-attack-18.1.json.zst")
            .display()
            .to_string(),
    };
    let rounds: usize = args.next().map_or(Ok(20), |r| r.parse())?;
    let text = String::from_utf8(zstd::decode_all(std::fs::File::open(&path)?)?)?;
    let bundle: Bundle<'_> = serde_json::from_str(&text)?;
    let objects: Vec<&str> = bundle.objects.iter().map(|o| o.get()).collect();
    let bytes: usize = objects.iter().map(|o| o.len()).sum();
    println!(
        "{path}: {} objects, {:.1} MB of object JSON, {rounds} rounds",
        objects.len(),
        bytes as f64 / 1e6
    );

    let report = |name: &str, started: Instant| {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{name:<16} {:>8.0} MB/s  {:>9.0} objects/s",
            (bytes * rounds) as f64 / 1e6 / secs,
            (objects.len() * rounds) as f64 / secs
        );
    };

    let started = Instant::now();
    for _ in 0..rounds {
        for raw in &objects {
            black_box(validate_object(raw, bundle.spec_version)?);
        }
    }
    report("validate_object", started);

    let started = Instant::now();
    for _ in 0..rounds {
        for raw in &objects {
            black_box(content_digest(raw)?);
        }
    }
    report("content_digest", started);

    let started = Instant::now();
    for _ in 0..rounds {
        for raw in &objects {
            black_box(compact_json(raw));
        }
    }
    report("compact_json", started);

    let source = Source {
        kind: SourceKind::Bundle,
        uri: path.clone(),
        sha256: None,
        position: Some(0),
    };
    let mut events = Vec::with_capacity(objects.len());
    for (i, raw) in objects.iter().enumerate() {
        let meta = validate_object(raw, bundle.spec_version)?;
        events.push(Event::ObjectVersion(ObjectVersionAdded {
            collection_id: "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09".into(),
            object_id: meta.id,
            stix_type: meta.stix_type,
            spec_version: meta.spec_version.as_str().into(),
            version: meta.version.to_string(),
            version_micros: meta.version.as_micros(),
            date_added: 1_760_000_000_000_000 + i as i64,
            content_sha256: meta.content_sha256,
            object_json: (*raw).to_owned(),
            source: source.clone(),
            ingest_run_id: "bench".into(),
            correction: false,
            supersedes_date_added: None,
            archival: false,
        }));
    }

    let mut buf = Vec::with_capacity(1 << 20);
    let started = Instant::now();
    for _ in 0..rounds {
        for event in &events {
            buf.clear();
            encode_event_into(event, &mut buf)?;
            black_box(&buf);
        }
    }
    report("encode_event", started);

    let mut encoded = Vec::with_capacity(events.len());
    for event in &events {
        let mut buf = Vec::new();
        encode_event_into(event, &mut buf)?;
        encoded.push(buf);
    }
    let started = Instant::now();
    for _ in 0..rounds {
        for message in &encoded {
            black_box(decode_event(message)?);
        }
    }
    report("decode_event", started);
    Ok(())
}
