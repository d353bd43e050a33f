//! The CQL of the projections (`schemas/cql/*.cql`), as numbered migrations with placeholders.
//!
//! The files use two placeholders, substituted by [`Migration::statements`]: `{keyspace}` and
//! `{replication}` (a CQL map such as `{'class': 'NetworkTopologyStrategy', 'datacenter1': 1}`).
//! Every statement is `IF NOT EXISTS`, so applying a migration twice is a no-op. No driver here:
//! the projector executes the statements.

/// One numbered CQL file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The number in the file name: migrations apply in this order.
    pub number: u32,
    /// The file name under `schemas/cql/`.
    pub name: &'static str,
    /// The file's text, with placeholders.
    pub text: &'static str,
}

/// The control keyspace: `generations` and `active_generation`.
pub const CONTROL: &[Migration] = &[Migration {
    number: 1,
    name: "001_control.cql",
    text: include_str!("../cql/001_control.cql"),
}];

/// The tables of one generation, applied to each generation's own keyspace.
pub const GENERATION: &[Migration] = &[
    Migration {
        number: 2,
        name: "002_generation.cql",
        text: include_str!("../cql/002_generation.cql"),
    },
    Migration {
        number: 3,
        name: "003_applied_offsets.cql",
        text: include_str!("../cql/003_applied_offsets.cql"),
    },
    Migration {
        number: 4,
        name: "004_release_contents.cql",
        text: include_str!("../cql/004_release_contents.cql"),
    },
];

/// The tables every generation keyspace holds once migrated: the projector checks them in
/// `system_schema` when a write fails, to tell a lost keyspace from a transient failure.
pub const GENERATION_TABLES: &[&str] = &[
    "collections",
    "object_versions",
    "manifest",
    "manifest_buckets",
    "releases",
    "release_chunks",
    "release_members",
    "applied_offsets",
    "object_contents",
    "content_index",
    "release_member_contents",
    "collection_delivery",
];

/// The replication the migrations use unless configured otherwise; valid on ScyllaDB (which
/// rejects `SimpleStrategy` with tablets) and Cassandra.
pub const DEFAULT_REPLICATION: &str = "{'class': 'NetworkTopologyStrategy', 'datacenter1': 1}";

/// Manifest bucket width: one UTC day of `date_added`, in microseconds.
pub const MANIFEST_BUCKET_MICROS: i64 = 86_400_000_000;

/// The manifest bucket of a `date_added`.
pub fn manifest_bucket(date_added: i64) -> i64 {
    date_added.div_euclid(MANIFEST_BUCKET_MICROS)
}

/// The keyspace of generation `generation` under the control keyspace `control`.
pub fn generation_keyspace(control: &str, generation: i32) -> String {
    format!("{control}_g{generation}")
}

impl Migration {
    /// The migration's statements, in file order, with the placeholders substituted.
    pub fn statements(&self, keyspace: &str, replication: &str) -> Vec<String> {
        split_statements(self.text)
            .into_iter()
            .map(|s| {
                s.replace("{keyspace}", keyspace)
                    .replace("{replication}", replication)
            })
            .collect()
    }
}

/// Splits CQL text into statements: `--` and `//` line comments dropped, `;` outside string
/// literals ends a statement, blank statements skipped. Enough for our own files, which hold
/// no block comments.
pub fn split_statements(text: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let mut in_string = false;
        for (i, c) in line.char_indices() {
            if in_string {
                current.push(c);
                if c == '\'' {
                    in_string = false;
                }
                continue;
            }
            match c {
                '\'' => {
                    in_string = true;
                    current.push(c);
                }
                '-' | '/' if line[i + 1..].starts_with(c) => break,
                ';' => {
                    let statement = current.trim();
                    if !statement.is_empty() {
                        statements.push(statement.to_owned());
                    }
                    current.clear();
                }
                _ => current.push(c),
            }
        }
        current.push('\n');
    }
    let rest = current.trim();
    if !rest.is_empty() {
        statements.push(rest.to_owned());
    }
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_split_and_comments_dropped() {
        let text = "-- head\nCREATE X (a text); -- tail\n\nINSERT 'a;b--c' ;\n// x\n";
        assert_eq!(
            split_statements(text),
            ["CREATE X (a text)", "INSERT 'a;b--c'"]
        );
    }

    #[test]
    fn every_migration_substitutes_its_placeholders() {
        for m in CONTROL.iter().chain(GENERATION) {
            let statements = m.statements("ks_g7", DEFAULT_REPLICATION);
            assert!(!statements.is_empty(), "{}", m.name);
            for s in &statements {
                assert!(
                    !s.contains("{keyspace}") && !s.contains("{replication}"),
                    "{s}"
                );
                assert!(s.contains("IF NOT EXISTS"), "idempotent: {s}");
                assert!(!s.to_uppercase().contains("ALLOW FILTERING"), "{s}");
            }
        }
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        let numbers: Vec<u32> = CONTROL.iter().chain(GENERATION).map(|m| m.number).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]));
        for m in CONTROL.iter().chain(GENERATION) {
            assert!(m.name.starts_with(&format!("{:03}_", m.number)));
        }
    }

    #[test]
    fn the_table_list_names_every_table_the_migrations_create() {
        let created: Vec<String> = GENERATION
            .iter()
            .flat_map(|m| m.statements("ks", DEFAULT_REPLICATION))
            .filter_map(|s| {
                s.strip_prefix("CREATE TABLE IF NOT EXISTS ks.")
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned)
            })
            .collect();
        let mut listed: Vec<&str> = GENERATION_TABLES.to_vec();
        let mut created: Vec<&str> = created.iter().map(String::as_str).collect();
        listed.sort_unstable();
        created.sort_unstable();
        assert_eq!(listed, created);
    }

    #[test]
    fn buckets_are_days() {
        assert_eq!(manifest_bucket(0), 0);
        assert_eq!(manifest_bucket(MANIFEST_BUCKET_MICROS - 1), 0);
        assert_eq!(manifest_bucket(MANIFEST_BUCKET_MICROS), 1);
    }
}
