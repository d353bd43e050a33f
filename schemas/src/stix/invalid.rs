//! Why a STIX object was rejected, with the offending values quoted short.

use std::borrow::Cow;

/// Which rule an invalid object broke; [`InvalidKind::as_str`] is a stable metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidKind {
    NotJson,
    NotAnObject,
    DuplicateField,
    Type,
    Id,
    Created,
    Modified,
    SpecVersion,
}

impl InvalidKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidKind::NotJson => "not_json",
            InvalidKind::NotAnObject => "not_an_object",
            InvalidKind::DuplicateField => "duplicate_field",
            InvalidKind::Type => "bad_type",
            InvalidKind::Id => "bad_id",
            InvalidKind::Created => "bad_created",
            InvalidKind::Modified => "bad_modified",
            InvalidKind::SpecVersion => "bad_spec_version",
        }
    }
}

/// Why a STIX object was rejected: a machine-friendly kind and a reason naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Invalid {
    pub kind: InvalidKind,
    pub reason: String,
}

impl Invalid {
    pub fn new(kind: InvalidKind, reason: impl Into<String>) -> Self {
        Invalid {
            kind,
            reason: reason.into(),
        }
    }
}

/// A value quoted for an error message, cut short so a huge field cannot bloat a dead letter.
pub(super) fn quoted(value: &str) -> String {
    format!("{:?}", shorten(value))
}

/// The first 100 bytes of `value` (at a character boundary), marked with `…` when cut.
pub(super) fn shorten(value: &str) -> Cow<'_, str> {
    const MAX: usize = 100;
    if value.len() <= MAX {
        return Cow::Borrowed(value);
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &value[..end]))
}
