//! Sorting one message of the objects topic: an event to apply, or why it is a dead letter.
//! Shared by every reader that projects the topic, so they all accept and refuse the same.

use schemas::registry::SchemaIds;
use schemas::{Event, Source};

use crate::check::check;

/// Why a message is a dead letter.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Not an event this build can decode: the reason, starting `undecodable: `.
    Undecodable(String),
    /// An event that breaks the contract: what is wrong, and where the event came from.
    Invalid { reason: String, source: Source },
}

impl Refusal {
    /// The dead-letter kind (the metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Undecodable(_) => "undecodable",
            Refusal::Invalid { .. } => "invalid",
        }
    }
}

/// Decodes `payload` (either framing; registry ids from `ids`) and checks the event.
pub fn triage(payload: &[u8], ids: &SchemaIds) -> Result<Event, Refusal> {
    let event = schemas::decode_event_with(payload, ids)
        .map_err(|e| Refusal::Undecodable(format!("undecodable: {e}")))?;
    match check(&event) {
        Ok(()) => Ok(event),
        Err(reason) => {
            let source = match &event {
                Event::ObjectVersion(v) => v.source.clone(),
                Event::Collection(c) => c.source.clone(),
                Event::Release(r) => r.source.clone(),
            };
            Err(Refusal::Invalid { reason, source })
        }
    }
}
