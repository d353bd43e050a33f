//! Smoke test of the Kafka client we build on, against the real broker from `dev/services`:
//! topic creation, an idempotent producer and a manually committing consumer group.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use taxiway_tests::{Deadline, kafka_brokers, unique_name};

const MESSAGES: usize = 10_000;
const PARTITIONS: i32 = 3;

fn payload_for(i: usize) -> String {
    // Payloads differ in length and content so a mixed-up key/payload pair is detected.
    format!("payload-{i}-{}", "x".repeat(i % 97))
}

#[tokio::test]
async fn idempotent_producer_and_committing_consumer_round_trip_10k_keyed_messages() {
    let brokers = kafka_brokers();
    let topic = unique_name("smoke");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(
                &topic,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_topics request");
    for result in created {
        result.expect("topic created");
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");

    let deliveries = futures::stream::iter(0..MESSAGES)
        .map(|i| {
            let producer = &producer;
            let topic = &topic;
            async move {
                let key = format!("key-{i:05}");
                let payload = payload_for(i);
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| e)
            }
        })
        .buffer_unordered(1_000)
        .collect::<Vec<_>>()
        .await;
    let delivered = deliveries.iter().filter(|d| d.is_ok()).count();
    assert_eq!(delivered, MESSAGES, "every send acknowledged");

    let group = unique_name("smoke_group");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");

    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let deadline = Deadline::after(Duration::from_secs(120));
    while seen.len() < MESSAGES {
        let message = tokio::time::timeout(deadline.remaining(), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {MESSAGES} messages", seen.len()))
            .expect("consume");
        let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8 key");
        let payload =
            String::from_utf8(message.payload().expect("payload").to_vec()).expect("utf-8");
        assert!(
            seen.insert(key.clone(), payload).is_none(),
            "{key} delivered twice"
        );
        consumer
            .commit_message(&message, CommitMode::Async)
            .expect("commit");
    }
    for i in 0..MESSAGES {
        let key = format!("key-{i:05}");
        assert_eq!(seen.get(&key), Some(&payload_for(i)), "payload of {key}");
    }

    // The group's committed offsets must cover every partition's end: a restarted member
    // would resume after the last message.
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("final commit");
    let committed = consumer
        .committed(Duration::from_secs(30))
        .expect("committed offsets");
    let mut committed_total = 0;
    for element in committed.elements() {
        let (_, high) = consumer
            .fetch_watermarks(&topic, element.partition(), Duration::from_secs(30))
            .expect("watermarks");
        assert_eq!(
            element.offset().to_raw(),
            Some(high),
            "committed offset of partition {}",
            element.partition()
        );
        committed_total += high;
    }
    assert_eq!(committed_total as usize, MESSAGES);

    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
}
