//! STIX timestamps: microseconds since the epoch, read from and written as `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.

use std::fmt;
use std::str::FromStr;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::invalid::shorten;
use crate::{Error, Result};

/// A STIX timestamp: microseconds since the Unix epoch, UTC.
///
/// Microseconds because that is the finest precision TAXII clients and CQL `timestamp`-like columns
/// need; STIX allows more fraction digits, which [`Timestamp::parse`] truncates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

const MICROS_PER_SECOND: i64 = 1_000_000;

impl Timestamp {
    /// `1970-01-01T00:00:00.000Z`, the version of an object that has neither `modified` nor `created`.
    pub const EPOCH: Timestamp = Timestamp(0);

    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 STIX timestamp: `YYYY-MM-DDTHH:MM:SS[.f…]Z` with 0–9 fraction digits.
    ///
    /// Only UTC (`Z`) is accepted, as STIX requires; digits beyond microseconds are truncated.
    pub fn parse(text: &str) -> Result<Self> {
        parse(text).map_err(|reason| Error::Timestamp {
            text: shorten(text).into_owned(),
            reason,
        })
    }

    /// The canonical text: `YYYY-MM-DDTHH:MM:SS.mmmZ` when the value is whole milliseconds (which
    /// keeps ATT&CK's own `modified` values byte-identical), else six fraction digits.
    pub fn to_canonical(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.rem_euclid(MICROS_PER_SECOND);
        // Cannot fail: `time`'s large-dates range (±999,999 years) holds every i64 of microseconds.
        let at = OffsetDateTime::from_unix_timestamp(self.0.div_euclid(MICROS_PER_SECOND))
            .map_err(|_| fmt::Error)?;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        )?;
        if micros % 1000 == 0 {
            write!(f, ".{:03}Z", micros / 1000)
        } else {
            write!(f, ".{micros:06}Z")
        }
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Timestamp::parse(s)
    }
}

/// [`Timestamp::parse`] with the reason alone, for the object check to name the field.
///
/// The shape is checked here, byte by byte, so that every malformed text gets the same reason;
/// the calendar (month lengths, leap years, the epoch offset) is `time`'s.
pub(super) fn parse(text: &str) -> Result<Timestamp, &'static str> {
    const SHAPE: &str = "not of the form YYYY-MM-DDTHH:MM:SS[.fraction]Z";
    const TEMPLATE: &[u8; 19] = b"0000-00-00T00:00:00";
    let b = text.as_bytes();
    if b.len() < 20 {
        return Err(SHAPE);
    }
    if b.last() != Some(&b'Z') {
        return Err("must end in 'Z' (UTC; offsets are not allowed)");
    }
    let shaped = b.iter().zip(TEMPLATE).all(|(c, t)| match t {
        b'0' => c.is_ascii_digit(),
        _ => c == t,
    });
    if !shaped {
        return Err(SHAPE);
    }
    let number = |at: usize, width: usize| {
        b[at..at + width]
            .iter()
            .fold(0u16, |acc, c| acc * 10 + u16::from(c - b'0'))
    };
    let fraction = &b[19..b.len() - 1];
    let mut micros: i64 = 0;
    if let Some((&dot, digits)) = fraction.split_first() {
        if dot != b'.' || digits.is_empty() {
            return Err(SHAPE);
        }
        if digits.len() > 9 {
            return Err("more than 9 fraction digits");
        }
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(SHAPE);
        }
        for i in 0..6 {
            micros = micros * 10 + digits.get(i).map_or(0, |c| i64::from(c - b'0'));
        }
    }
    // Two digits each: the narrowing casts below cannot truncate.
    let month = Month::try_from(number(5, 2) as u8).map_err(|_| "month out of range")?;
    let date = Date::from_calendar_date(i32::from(number(0, 4)), month, number(8, 2) as u8)
        .map_err(|_| "day out of range for the month")?;
    let time = Time::from_hms(
        number(11, 2) as u8,
        number(14, 2) as u8,
        number(17, 2) as u8,
    )
    .map_err(|e| match e.name() {
        "hour" => "hour out of range",
        "minute" => "minute out of range",
        _ => "second out of range (leap seconds cannot be represented)",
    })?;
    let seconds = PrimitiveDateTime::new(date, time)
        .assume_utc()
        .unix_timestamp();
    Ok(Timestamp(seconds * MICROS_PER_SECOND + micros))
}
