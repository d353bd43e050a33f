//! What a caller may read: every collection, or a set of them.

use std::collections::BTreeSet;
use std::sync::Arc;

/// What a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rights {
    All,
    Some(Arc<BTreeSet<String>>),
}

impl Rights {
    pub fn can_read(&self, collection_id: &str) -> bool {
        match self {
            Rights::All => true,
            Rights::Some(set) => set.contains(collection_id),
        }
    }

    /// The rights a list of collection ids gives; `*` stands for every collection.
    pub(crate) fn from_list(list: &[String]) -> Rights {
        if list.iter().any(|c| c == "*") {
            Rights::All
        } else {
            Rights::Some(Arc::new(list.iter().cloned().collect()))
        }
    }
}
