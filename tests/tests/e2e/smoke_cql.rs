//! Smoke test of the CQL driver we build on, against the real Cassandra from `dev/services`
//! (ScyllaDB in production): keyspace DDL valid on both, concurrent prepared writes, paged reads.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::{DeserializeRow, SerializeRow};
use taxiway_tests::{cql_nodes, unique_name};

const ROWS: i64 = 10_000;

#[derive(Debug, Clone, PartialEq, SerializeRow, DeserializeRow)]
struct Row {
    bucket: i32,
    id: i64,
    body: String,
}

fn row_for(id: i64) -> Row {
    Row {
        bucket: (id % 16) as i32,
        id,
        body: format!("row-{id}-{}", "y".repeat((id % 53) as usize)),
    }
}

async fn connect() -> Session {
    SessionBuilder::new()
        .known_nodes(cql_nodes())
        .build()
        .await
        .expect("connect to the CQL node")
}

#[tokio::test]
async fn prepared_concurrent_writes_of_10k_rows_read_back_with_paging() {
    let session = connect().await;
    let keyspace = unique_name("smoke");
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE {keyspace} WITH replication = \
                 {{'class': 'NetworkTopologyStrategy', 'datacenter1': 1}}"
            ),
            (),
        )
        .await
        .expect("create keyspace");
    session
        .query_unpaged(
            format!(
                "CREATE TABLE {keyspace}.rows (bucket int, id bigint, body text, \
                 PRIMARY KEY ((bucket), id))"
            ),
            (),
        )
        .await
        .expect("create table");
    session
        .await_schema_agreement()
        .await
        .expect("schema agreement");

    let mut insert = session
        .prepare(format!(
            "INSERT INTO {keyspace}.rows (bucket, id, body) VALUES (?, ?, ?)"
        ))
        .await
        .expect("prepare insert");
    insert.set_is_idempotent(true);

    let failures = futures::stream::iter(0..ROWS)
        .map(|id| {
            let session = &session;
            let insert = &insert;
            async move { session.execute_unpaged(insert, row_for(id)).await }
        })
        .buffer_unordered(128)
        .filter(|r| futures::future::ready(r.is_err()))
        .count()
        .await;
    assert_eq!(failures, 0, "every write succeeded");

    let mut select = session
        .prepare(format!("SELECT bucket, id, body FROM {keyspace}.rows"))
        .await
        .expect("prepare select");
    // A page far smaller than the table, so the read really crosses page boundaries.
    select.set_page_size(500);
    let rows: Vec<Row> = session
        .execute_iter(select, ())
        .await
        .expect("paged query")
        .rows_stream::<Row>()
        .expect("row type matches")
        .try_collect()
        .await
        .expect("read all pages");

    let by_id: BTreeMap<i64, Row> = rows.iter().map(|r| (r.id, r.clone())).collect();
    assert_eq!(rows.len() as i64, ROWS, "no row read twice or lost");
    assert_eq!(by_id.len() as i64, ROWS);
    for id in 0..ROWS {
        assert_eq!(by_id.get(&id), Some(&row_for(id)), "row {id}");
    }

    session
        .query_unpaged(format!("DROP KEYSPACE {keyspace}"), ())
        .await
        .expect("drop keyspace");
}
