//! Order-independence and idempotence end to end: the same events, published twice and shuffled,
//! project to exactly the same tables; poison messages go to the dead-letter topic.

use std::time::Duration;

use ingest::config::ImportConfig;
use projector::config::Command;
use rdkafka::producer::FutureRecord;
use schemas::Event;
use taxiway_tests::Deadline;
use taxiway_tests::pipeline::Topics;
use taxiway_tests::projection;

async fn create_topic(name: &str, partitions: i32) {
    taxiway_tests::topic::create(name, partitions, &[("max.message.bytes", "16777216")])
        .await
        .unwrap();
}

/// A deterministic shuffle (xorshift), so a failure can be reproduced.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_twice_and_shuffled_project_identical_tables() {
    let original = Topics::new("proj_replay_a");
    for file in ["ics-attack-17.1.json.zst", "ics-attack-18.0.json.zst"] {
        let path = taxiway_tests::fixtures::path(file);
        original.ingest(ImportConfig::new([&path])).await.unwrap();
    }
    let events = original.events().await.unwrap();

    // Every event twice, decoded and re-encoded, shuffled across the whole topic but kept in
    // its partition with its key: a worst case the real topic never produces.
    let shuffled = Topics::new("proj_replay_b");
    let partitions = events.iter().map(|(r, _)| r.partition).max().unwrap() + 1;
    create_topic(&shuffled.objects, partitions.max(3)).await;
    create_topic(&shuffled.dead_letter, 1).await;
    let mut copies: Vec<&(taxiway_tests::topic::Record, Event)> =
        events.iter().chain(events.iter()).collect();
    shuffle(&mut copies, 0x5eed_1234_abcd_ef01);
    let producer = taxiway_tests::topic::producer().unwrap();
    for (record, event) in &copies {
        let payload = schemas::encode_event(event).unwrap();
        producer
            .send(
                FutureRecord::to(&shuffled.objects)
                    .partition(record.partition)
                    .key(&record.key)
                    .payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let session = projection::session().await.unwrap();
    let mut dumps = Vec::new();
    for (topics, count) in [(&original, events.len()), (&shuffled, copies.len())] {
        let control = projection::control_keyspace("proj_replay");
        let running = projection::start(topics, &control, Command::Run).unwrap();
        projection::wait_for_applied(
            &running,
            count as u64,
            Deadline::after(Duration::from_secs(300)),
        )
        .await
        .unwrap();
        assert_eq!(running.dead_lettered(), 0);
        running.stop().await.unwrap();
        let (_, keyspace) = projection::active(&session, &control)
            .await
            .unwrap()
            .unwrap();
        dumps.push(projection::dump(&session, &keyspace).await.unwrap());
    }
    projection::assert_same_rows(&dumps[0], &dumps[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_and_later_events_projected() {
    let topics = Topics::new("proj_poison");
    let first = taxiway_tests::fixtures::path("ics-attack-17.1.json.zst");
    topics.ingest(ImportConfig::new([&first])).await.unwrap();
    let events = topics.events().await.unwrap();
    let (record, valid) = events
        .iter()
        .find_map(|(r, e)| match e {
            Event::ObjectVersion(v) => Some((r, v.clone())),
            _ => None,
        })
        .unwrap();

    // In the collection's partition, between two imports: garbage, then a well-formed event
    // whose object is not STIX.
    let mut invalid = valid.clone();
    invalid.object_id = "attack-pattern--not-a-uuid".into();
    invalid.object_json =
        r#"{"type": "attack-pattern", "id": "attack-pattern--not-a-uuid"}"#.into();
    let producer = taxiway_tests::topic::producer().unwrap();
    let garbage = b"\x00\x01 definitely not avro".to_vec();
    let invalid_bytes = schemas::encode_event(&Event::ObjectVersion(invalid)).unwrap();
    for (key, payload) in [
        (&b"garbage"[..], &garbage),
        (&b"invalid"[..], &invalid_bytes),
    ] {
        producer
            .send(
                FutureRecord::to(&topics.objects)
                    .partition(record.partition)
                    .key(key)
                    .payload(payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let second = taxiway_tests::fixtures::path("ics-attack-18.0.json.zst");
    topics.ingest(ImportConfig::new([&second])).await.unwrap();
    let all = topics.object_records().await.unwrap();

    let control = projection::control_keyspace("proj_poison");
    let running = projection::start(&topics, &control, Command::Run).unwrap();
    projection::wait_for_applied(
        &running,
        all.len() as u64,
        Deadline::after(Duration::from_secs(240)),
    )
    .await
    .unwrap();
    assert_eq!(running.dead_lettered(), 2);
    running.stop().await.unwrap();

    let letters = topics.dead_letters().await.unwrap();
    let ours: Vec<_> = letters.iter().filter(|l| l.stage == "projector").collect();
    assert_eq!(ours.len(), 2, "{letters:?}");
    // The dead-letter topic has several partitions: find each letter by its key.
    let by_key = |key: &[u8]| {
        *ours
            .iter()
            .find(|l| l.original_key.as_deref() == Some(key))
            .expect("a dead letter for the key")
    };
    let garbage_letter = by_key(b"garbage");
    let invalid_letter = by_key(b"invalid");
    assert!(
        garbage_letter.reason.contains("undecodable"),
        "{}",
        garbage_letter.reason
    );
    assert_eq!(garbage_letter.payload.as_deref(), Some(&garbage[..]));
    assert_eq!(
        garbage_letter.original_topic.as_deref(),
        Some(topics.objects.as_str())
    );
    assert!(
        invalid_letter.reason.contains("not valid STIX"),
        "{}",
        invalid_letter.reason
    );
    assert_eq!(invalid_letter.payload.as_deref(), Some(&invalid_bytes[..]));
    assert_eq!(invalid_letter.original_partition, Some(record.partition));
    assert!(invalid_letter.original_offset > garbage_letter.original_offset);

    // The release imported after the poison is there and complete.
    let session = projection::session().await.unwrap();
    let (_, keyspace) = projection::active(&session, &control)
        .await
        .unwrap()
        .unwrap();
    let releases = projection::releases(&session, &keyspace, &valid.collection_id)
        .await
        .unwrap();
    assert_eq!(releases[0].label, "18.0");
    assert!(releases[0].complete);
    let file = taxiway_tests::fixtures::Release::load("ics-attack-18.0.json.zst").unwrap();
    assert_eq!(releases[0].members, file.versions());
}
