"""Reads a Taxiway objects topic as an outside consumer would: confluent-kafka's Consumer and
its schema-registry AvroDeserializer, nothing of Taxiway's own. Used by
tests/tests/e2e/schema_registry.rs.

Usage: registry_consumer.py BROKERS TOPIC REGISTRY_URL OUT_FILE

Reads every partition from the beginning to the end it has when the script starts and writes
one JSON line per message to OUT_FILE: {"schema_id", "record", "object"} where "record" is the
Avro record as deserialized (object_json left out) and "object" the STIX object parsed from
its object_json (null for collection and release events).
"""

import json
import sys

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main(brokers, topic, registry_url, out_file):
    registry = SchemaRegistryClient({"url": registry_url})
    # No reader schema: each message is read with the writer schema its id names.
    deserialize = AvroDeserializer(registry)
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "registry-consumer-test",
            "enable.auto.commit": False,
        }
    )
    metadata = consumer.list_topics(topic, timeout=30)
    ends = {}
    for partition in metadata.topics[topic].partitions:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=30
        )
        if high > low:
            ends[partition] = high
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    count = 0
    with open(out_file, "w", encoding="utf-8") as out:
        while ends:
            message = consumer.poll(30)
            if message is None:
                raise SystemExit(f"no message for 30 s with {len(ends)} partitions unread")
            if message.error():
                raise SystemExit(f"consumer error: {message.error()}")
            value = message.value()
            schema_id = int.from_bytes(value[1:5], "big") if value[:1] == b"\0" else None
            record = deserialize(
                value, SerializationContext(topic, MessageField.VALUE, message.headers())
            )
            text = record.pop("object_json", None)
            out.write(
                json.dumps(
                    {
                        "schema_id": schema_id,
                        "record": record,
                        "object": json.loads(text) if text is not None else None,
                    },
                    default=str,
                )
                + "\n"
            )
            count += 1
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
    consumer.close()
    print(f"read {count} messages of {topic}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
