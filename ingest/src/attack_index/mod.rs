//! Mirroring MITRE's published ATT&CK data without a Workbench: the collection index
//! (`index.json`), the plain HTTP client that reads it and its files, and the poll.

mod client;
mod index;
mod poll;

pub(crate) use client::IndexClient;
pub(crate) use poll::AttackIndex;
pub use poll::{IndexPass, IndexSummary};

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::config::{Command, Settings};

    fn config(args: &[&str]) -> crate::config::AttackIndexConfig {
        let settings =
            Settings::try_parse_from(["ingest", "attack-index"].iter().chain(args)).unwrap();
        let Command::AttackIndex(config) = settings.command else {
            panic!("attack-index expected")
        };
        config
    }

    #[test]
    fn the_index_is_polled_hourly_unless_told_and_a_bad_url_is_refused_at_start() {
        let index = config(&["https://example.org/index.json"]).build().unwrap();
        assert_eq!(index.poll_interval, std::time::Duration::from_secs(3600));
        assert!(!index.once);
        let once = config(&["http://x/i.json", "--once", "--poll-interval", "5m"]);
        assert!(once.once);
        assert_eq!(once.poll_interval, std::time::Duration::from_secs(300));
        let error = config(&["not a url"]).build().err().unwrap().to_string();
        assert!(error.contains("not a url"), "{error}");
    }
}
