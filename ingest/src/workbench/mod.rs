//! The ATT&CK Workbench side of ingest: its REST client, collection versions mirrored as
//! releases, and object edits between releases.

mod client;
mod edits;
mod releases;

pub use client::{Auth, Versions, WorkbenchClient};
pub(crate) use client::{Fetched, snippet};
pub(crate) use edits::Schedule;
pub(crate) use releases::{SyncSummary, Workbench};
