//! Workbench stores STIX timestamps as dates: millisecond precision, rendered `YYYY-MM-DDTHH:MM:SS.mmmZ`.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Parses a timestamp the way a `Date` cast accepts it (RFC 3339, or without offset = UTC, or date only)
/// and renders it as Workbench returns it: UTC, exactly 3 fraction digits, sub-millisecond digits dropped.
pub(crate) fn normalize(s: &str) -> Option<String> {
    parse(s).map(render)
}

pub(crate) fn parse(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let with_zone = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        format!("{s}Z")
    };
    OffsetDateTime::parse(&with_zone, &Rfc3339).ok()
}

pub(crate) fn render(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let d = PrimitiveDateTime::new(t.date(), t.time());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
        d.millisecond()
    )
}

pub(crate) fn now() -> String {
    render(OffsetDateTime::now_utc())
}

/// A timestamp strictly later than `after` (by at least 1 ms) and not earlier than now.
pub(crate) fn later_than(after: &str) -> String {
    let now = OffsetDateTime::now_utc();
    match parse(after) {
        Some(prev) if prev + Duration::milliseconds(1) > now => {
            render(prev + Duration::milliseconds(1))
        }
        _ => render(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_keeps_milliseconds_and_drops_finer_digits() {
        assert_eq!(
            normalize("2025-11-13T14:00:00.188Z").as_deref(),
            Some("2025-11-13T14:00:00.188Z")
        );
        assert_eq!(
            normalize("2025-11-13T14:00:00.188999Z").as_deref(),
            Some("2025-11-13T14:00:00.188Z")
        );
        assert_eq!(
            normalize("2025-11-13T14:00:00Z").as_deref(),
            Some("2025-11-13T14:00:00.000Z")
        );
        assert_eq!(
            normalize("2025-11-13T16:00:00.5+02:00").as_deref(),
            Some("2025-11-13T14:00:00.500Z")
        );
        assert_eq!(
            normalize("2025-11-13").as_deref(),
            Some("2025-11-13T00:00:00.000Z")
        );
        assert_eq!(normalize("not a date"), None);
    }

    #[test]
    fn later_than_is_strictly_later_even_for_future_inputs() {
        let future = "2999-01-01T00:00:00.000Z";
        assert_eq!(later_than(future), "2999-01-01T00:00:00.001Z");
        let past = "2001-01-01T00:00:00.000Z";
        assert!(later_than(past).as_str() > past);
    }
}
