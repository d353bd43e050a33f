//! The wall clock as the events and the projections record it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now in microseconds since the Unix epoch (0 for a clock set before 1970, saturating far
/// in the future): the unit of every `*_at` field of the contract and of CQL write timestamps.
pub fn now_micros() -> i64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros();
    i64::try_from(micros).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2024_and_moves_forward() {
        let first = now_micros();
        // 2024-01-01T00:00:00Z in microseconds.
        assert!(first > 1_704_067_200_000_000, "{first}");
        assert!(now_micros() >= first);
    }
}
