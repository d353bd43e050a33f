//! Comparing the offsets a consumer group committed with the offsets a generation records it applied: where Kafka is ahead, the projections lost data.
//!
//! Pure, so the rules are tested without Kafka or CQL: `feed` reads both sides and acts on the
//! answers (rewinds the group, or stops the feed).

use std::collections::BTreeMap;

/// What Kafka knows of one partition for one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Committed {
    /// The group's committed offset (the next message it will read), if it ever committed.
    pub(crate) offset: Option<i64>,
    /// The partition's low watermark: where a replay of everything starts.
    pub(crate) low: i64,
}

/// A partition whose committed offset is ahead of what the projections hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gap {
    pub(crate) partition: i32,
    pub(crate) committed: i64,
    /// The generation's record, if it has one.
    pub(crate) recorded: Option<i64>,
    /// Where consumption must resume so the projections hold everything again.
    pub(crate) replay_from: i64,
}

/// The partitions where the group committed past what the generation records as applied.
///
/// A partition without a record holds nothing the projections can vouch for, so it replays
/// from its low watermark. A record ahead of the commit is normal (the projector records
/// before it commits) and replaying the difference is harmless, so it is no gap; neither is a
/// partition the group never committed (it starts at the beginning anyway).
pub(crate) fn find(
    committed: &BTreeMap<i32, Committed>,
    recorded: &BTreeMap<i32, i64>,
) -> Vec<Gap> {
    committed
        .iter()
        .filter_map(|(&partition, c)| {
            let offset = c.offset?;
            let held = recorded.get(&partition).copied();
            let replay_from = held.unwrap_or(c.low);
            (offset > replay_from).then_some(Gap {
                partition,
                committed: offset,
                recorded: held,
                replay_from,
            })
        })
        .collect()
}

/// The partitions whose stored record is behind (or has lost) what this process recorded:
/// `(partition, what this process recorded, what the store holds now)`. A store ahead of
/// this process is fine: another member of the group applied more.
pub(crate) fn behind(
    ours: &BTreeMap<i32, i64>,
    stored: &BTreeMap<i32, i64>,
) -> Vec<(i32, i64, Option<i64>)> {
    ours.iter()
        .filter_map(|(&partition, &next)| {
            let now = stored.get(&partition).copied();
            now.is_none_or(|n| n < next)
                .then_some((partition, next, now))
        })
        .collect()
}

/// Gaps as one line for logs and errors: `p0: committed 812, recorded none, replay from 0; …`.
pub(crate) fn describe(gaps: &[Gap]) -> String {
    gaps.iter()
        .map(|g| {
            format!(
                "partition {}: committed {}, recorded {}, replay from {}",
                g.partition,
                g.committed,
                g.recorded.map_or("none".to_owned(), |r| r.to_string()),
                g.replay_from
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(entries: &[(i32, Option<i64>, i64)]) -> BTreeMap<i32, Committed> {
        entries
            .iter()
            .map(|&(p, offset, low)| (p, Committed { offset, low }))
            .collect()
    }

    #[test]
    fn a_lost_keyspace_replays_every_committed_partition_from_its_low_watermark() {
        let kafka = committed(&[(0, Some(812), 0), (1, Some(40), 7), (2, None, 0)]);
        let gaps = find(&kafka, &BTreeMap::new());
        assert_eq!(
            gaps,
            [
                Gap {
                    partition: 0,
                    committed: 812,
                    recorded: None,
                    replay_from: 0
                },
                Gap {
                    partition: 1,
                    committed: 40,
                    recorded: None,
                    replay_from: 7
                },
            ]
        );
    }

    #[test]
    fn a_record_behind_the_commit_replays_from_the_record() {
        let kafka = committed(&[(0, Some(812), 0), (1, Some(40), 0)]);
        let recorded = BTreeMap::from([(0, 500), (1, 40)]);
        assert_eq!(
            find(&kafka, &recorded),
            [Gap {
                partition: 0,
                committed: 812,
                recorded: Some(500),
                replay_from: 500
            }]
        );
    }

    #[test]
    fn records_at_or_ahead_of_the_commit_and_fresh_groups_are_no_gap() {
        let kafka = committed(&[(0, Some(812), 0), (1, None, 0), (2, Some(3), 3)]);
        let recorded = BTreeMap::from([(0, 900)]);
        assert!(find(&kafka, &recorded).is_empty());
    }

    #[test]
    fn a_store_behind_or_missing_what_we_recorded_is_reported() {
        let ours = BTreeMap::from([(0, 100), (1, 50), (2, 10)]);
        let stored = BTreeMap::from([(0, 100), (1, 20), (3, 5)]);
        assert_eq!(behind(&ours, &stored), [(1, 50, Some(20)), (2, 10, None)]);
        let ahead = BTreeMap::from([(0, 120), (1, 50), (2, 11)]);
        assert!(behind(&ours, &ahead).is_empty());
    }

    #[test]
    fn descriptions_name_partitions_and_offsets() {
        let text = describe(&[Gap {
            partition: 2,
            committed: 9,
            recorded: None,
            replay_from: 0,
        }]);
        assert_eq!(
            text,
            "partition 2: committed 9, recorded none, replay from 0"
        );
    }
}
