//! Creating and reading back whole Kafka topics in tests.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers as _;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// One message as stored.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// `(name, value)` in the order the message has them.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl From<Record> for eventlog::Record {
    /// The message as an embedded log record: key, payload and headers unchanged.
    fn from(r: Record) -> Self {
        eventlog::Record {
            key: r.key,
            payload: Some(r.payload),
            headers: r.headers,
        }
    }
}

impl Record {
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }

    /// The value of header `name` as text, if the message has it.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Creates `name` on the test broker with `partitions` and the topic `config` given, before
/// anything else does (for a test that needs other settings than ingest would choose).
pub async fn create(name: &str, partitions: i32, config: &[(&str, &str)]) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", crate::kafka_brokers())
        .create()?;
    let topic = config.iter().fold(
        NewTopic::new(name, partitions, TopicReplication::Fixed(1)),
        |topic, (key, value)| topic.set(key, value),
    );
    for created in admin.create_topics([&topic], &AdminOptions::new()).await? {
        created.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }
    Ok(())
}

/// Every message of `topic` from offset 0 to the end it has now, partition by partition in
/// offset order. A missing topic reads as empty.
pub async fn read_all(brokers: &str, topic: &str) -> anyhow::Result<Vec<Record>> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_all_blocking(&brokers, &topic)).await?
}

fn read_all_blocking(brokers: &str, topic: &str) -> anyhow::Result<Vec<Record>> {
    let timeout = Duration::from_secs(30);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "taxiway-tests-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    // Metadata of all topics: asking for one that does not exist yet is an error (or, with
    // auto-creation on, creates it), and a test may read before anything was published.
    let metadata = consumer.fetch_metadata(None, timeout)?;
    let mut assignment = TopicPartitionList::new();
    let mut open = HashSet::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            // A topic the run created a moment ago can answer "not leader" until its leader
            // is elected: ingest's own reader retries that, and so does this one.
            let (low, high) = ingest::watermarks(&consumer, topic, p.id(), timeout)?;
            if high > low {
                assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
                open.insert(p.id());
            }
        }
    }
    let mut records = Vec::new();
    if open.is_empty() {
        return Ok(records);
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !open.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "timed out reading {topic}");
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => records.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().unwrap_or_default().to_vec(),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers: m.headers().map_or_else(Vec::new, |headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                }),
            }),
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

/// A producer to the test broker that writes as ingest does: idempotent, messages up to 16 MiB.
pub fn producer() -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", crate::kafka_brokers())
        .set("message.max.bytes", "16777216")
        .set("enable.idempotence", "true")
        .create()?)
}

/// Deletes `topics` from the test broker (a test's own topics, once it is done with them).
pub async fn delete(topics: &[&str]) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", crate::kafka_brokers())
        .create()?;
    for deleted in admin.delete_topics(topics, &AdminOptions::new()).await? {
        deleted.map_err(|(topic, code)| anyhow::anyhow!("deleting {topic}: {code}"))?;
    }
    Ok(())
}
