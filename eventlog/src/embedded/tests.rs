use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

fn record(key: &str, payload: &str) -> Record {
    Record {
        key: key.as_bytes().to_vec(),
        payload: Some(payload.as_bytes().to_vec()),
        headers: vec![("taxiway-event-type".to_owned(), key.as_bytes().to_vec())],
    }
}

fn fresh() -> (tempfile::TempDir, EmbeddedLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("log.sqlite")).unwrap();
    (dir, log)
}

fn payloads(stored: &[Stored]) -> Vec<(i64, String)> {
    stored
        .iter()
        .map(|s| {
            let payload = s.record.payload.clone().unwrap_or_default();
            (s.offset, String::from_utf8(payload).unwrap())
        })
        .collect()
}

#[test]
fn offsets_count_from_zero_per_topic_and_reads_return_them_in_order() {
    let (_dir, log) = fresh();
    assert_eq!(log.high_water("objects").unwrap(), 0);
    assert_eq!(
        log.append("objects", &[record("a", "1"), record("b", "2")])
            .unwrap(),
        0..2
    );
    assert_eq!(log.append("dead", &[record("x", "bad")]).unwrap(), 0..1);
    assert_eq!(log.append("objects", &[record("c", "3")]).unwrap(), 2..3);
    assert_eq!(log.high_water("objects").unwrap(), 3);
    assert_eq!(log.high_water("dead").unwrap(), 1);

    let all = log.read("objects", 0, 100).unwrap();
    assert_eq!(
        payloads(&all),
        [(0, "1".into()), (1, "2".into()), (2, "3".into())]
    );
    assert_eq!(all[0].record, record("a", "1"));
    assert_eq!(
        payloads(&log.read("objects", 1, 1).unwrap()),
        [(1, "2".into())]
    );
    assert!(log.read("objects", 3, 10).unwrap().is_empty());
    assert_eq!(
        payloads(&log.read("dead", 0, 10).unwrap()),
        [(0, "bad".into())]
    );
}

#[test]
fn an_empty_append_changes_nothing() {
    let (_dir, log) = fresh();
    let appends = log.subscribe();
    assert_eq!(log.append("objects", &[]).unwrap(), 0..0);
    assert_eq!(log.high_water("objects").unwrap(), 0);
    assert!(!appends.has_changed().unwrap());
}

#[test]
fn tombstones_headers_and_binary_keys_come_back_as_written() {
    let (_dir, log) = fresh();
    let written = vec![
        Record {
            key: vec![0, 1, 2, 255],
            payload: None,
            headers: Vec::new(),
        },
        Record {
            key: b"k".to_vec(),
            payload: Some(vec![0xC3, 0x01, 0, 0]),
            headers: vec![
                ("content-type".to_owned(), b"application/avro".to_vec()),
                ("empty".to_owned(), Vec::new()),
            ],
        },
    ];
    log.append("objects", &written).unwrap();
    let read: Vec<Record> = log
        .read("objects", 0, 10)
        .unwrap()
        .into_iter()
        .map(|s| s.record)
        .collect();
    assert_eq!(read, written);
}

#[test]
fn a_reopened_log_holds_every_record_and_goes_on_at_its_high_water_mark() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sqlite");
    {
        let log = EmbeddedLog::open(&path).unwrap();
        log.append("objects", &[record("a", "1"), record("b", "2")])
            .unwrap();
    }
    let log = EmbeddedLog::open(&path).unwrap();
    assert_eq!(log.high_water("objects").unwrap(), 2);
    assert_eq!(log.append("objects", &[record("c", "3")]).unwrap(), 2..3);
    assert_eq!(log.read("objects", 0, 10).unwrap().len(), 3);
}

#[test]
fn compaction_keeps_the_latest_record_of_each_key_at_its_offset() {
    let (_dir, log) = fresh();
    log.append(
        "objects",
        &[
            record("a", "a1"),
            record("b", "b1"),
            record("a", "a2"),
            Record {
                key: b"b".to_vec(),
                payload: None,
                headers: Vec::new(),
            },
            record("c", "c1"),
        ],
    )
    .unwrap();
    log.append("other", &[record("a", "x1"), record("a", "x2")])
        .unwrap();

    assert_eq!(
        log.compact("objects").unwrap(),
        Compaction {
            removed: 2,
            kept: 3
        }
    );
    let kept: Vec<(i64, Option<Vec<u8>>)> = log
        .read("objects", 0, 10)
        .unwrap()
        .into_iter()
        .map(|s| (s.offset, s.record.payload))
        .collect();
    assert_eq!(
        kept,
        [
            (2, Some(b"a2".to_vec())),
            (3, None),
            (4, Some(b"c1".to_vec()))
        ]
    );
    assert_eq!(log.high_water("objects").unwrap(), 5);
    assert_eq!(log.append("objects", &[record("d", "d1")]).unwrap(), 5..6);
    // Another topic is its own log.
    assert_eq!(log.read("other", 0, 10).unwrap().len(), 2);
    assert_eq!(
        log.compact("objects").unwrap(),
        Compaction {
            removed: 0,
            kept: 4
        }
    );
}

#[test]
fn subscribers_see_each_append() {
    let (_dir, log) = fresh();
    let mut appends = log.subscribe();
    assert!(!appends.has_changed().unwrap());
    log.append("objects", &[record("a", "1")]).unwrap();
    assert!(appends.has_changed().unwrap());
    appends.mark_unchanged();
    let clone = log.clone();
    clone.append("objects", &[record("b", "2")]).unwrap();
    assert!(appends.has_changed().unwrap());
}

#[test]
fn a_file_that_is_not_a_log_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-log.sqlite");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let error = EmbeddedLog::open(&path).unwrap_err().to_string();
    assert!(error.contains("not-a-log.sqlite"), "{error}");
    assert!(error.contains("not a database"), "{error}");
}

/// Run by [`a_killed_appender_loses_no_acknowledged_record`] in a child process: appends
/// batches forever and prints the range of each one that returned.
#[test]
#[ignore = "a child process of a_killed_appender_loses_no_acknowledged_record"]
fn appender_child() {
    let Ok(path) = std::env::var("TAXIWAY_EVENTLOG_CHILD") else {
        return;
    };
    let log = EmbeddedLog::open(Path::new(&path)).unwrap();
    for batch in 0u64.. {
        let records: Vec<Record> = (0..50)
            .map(|i| {
                record(
                    &format!("k{}", (batch * 50 + i) % 997),
                    &format!("{batch}/{i}"),
                )
            })
            .collect();
        let range = log.append("objects", &records).unwrap();
        println!("acked {} {}", range.start, range.end);
    }
}

#[test]
fn a_killed_appender_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sqlite");
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "embedded::tests::appender_child",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TAXIWAY_EVENTLOG_CHILD", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it at a different moment each round: after 5, 25 and 60 acknowledged batches.
        let wanted = [5, 25, 60][round];
        let mut acked = 0..0;
        let mut count = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while count < wanted && Instant::now() < deadline {
            let Some(line) = lines.next() else { break };
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("acked ") {
                let (start, end) = rest.split_once(' ').unwrap();
                acked = start.parse::<i64>().unwrap()..end.parse::<i64>().unwrap();
                count += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_eq!(
            count, wanted,
            "round {round}: the child stopped acknowledging"
        );

        let log = EmbeddedLog::open(&path).unwrap();
        let high = log.high_water("objects").unwrap();
        assert!(high >= acked.end, "round {round}: {high} < {}", acked.end);
        // Whole batches only, and every offset below the high-water mark present once.
        assert_eq!(high % 50, 0, "round {round}: a torn batch");
        let all = log.read("objects", 0, usize::MAX).unwrap();
        let offsets: Vec<i64> = all.iter().map(|s| s.offset).collect();
        assert_eq!(offsets, (0..high).collect::<Vec<_>>(), "round {round}");
    }
}

#[test]
fn a_read_only_log_reads_what_the_writer_appended_and_cannot_append() {
    let (dir, log) = fresh();
    let path = dir.path().join("log.sqlite");
    assert!(
        EmbeddedLog::open_read_only(&dir.path().join("missing.sqlite")).is_err(),
        "no log there"
    );
    let records = [record("a", "1"), record("b", "2"), record("c", "3")];
    log.append("t", &records).unwrap();
    let reader = EmbeddedLog::open_read_only(&path).unwrap();
    assert_eq!(reader.high_water("t").unwrap(), 3);
    assert_eq!(
        payloads(&reader.read("t", 0, 10).unwrap()),
        [(0, "1"), (1, "2"), (2, "3")].map(|(o, p)| (o, p.to_owned()))
    );
    assert!(reader.append("t", &records).is_err());
    // The writer goes on appending while the reader is open.
    log.append("t", &records).unwrap();
    assert_eq!(reader.high_water("t").unwrap(), 6);
}
