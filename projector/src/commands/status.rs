//! The `status` command: generations, the active one, and its collections with their revisions.

use crate::error::Result;
use crate::store::Store;

/// The text `projector status` prints.
pub(crate) async fn status(store: &Store) -> Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    let active = store.active().await?;
    // Writing into a String cannot fail.
    let _ = writeln!(out, "control keyspace: {}", store.control_keyspace());
    let _ = writeln!(out, "generations:");
    for g in store.generations().await? {
        let marker = if active
            .as_ref()
            .is_some_and(|a| a.generation == g.generation)
        {
            "*"
        } else {
            " "
        };
        let _ = writeln!(
            out,
            " {marker} {:>3}  {:<10}  {}  created_at={:?} caught_up_at={:?}",
            g.generation, g.state, g.keyspace, g.created_at, g.caught_up_at
        );
    }
    match &active {
        None => {
            let _ = writeln!(out, "no active generation (run `projector migrate`)");
        }
        Some(a) => {
            let _ = writeln!(out, "active: generation {} ({})", a.generation, a.keyspace);
            for c in store.collections(&a.keyspace).await? {
                let _ = writeln!(
                    out,
                    "  {}  revision={}  {}",
                    c.collection_id,
                    c.revision.map_or("-".to_owned(), |r| r.to_string()),
                    c.title.unwrap_or_default()
                );
            }
        }
    }
    Ok(out)
}
