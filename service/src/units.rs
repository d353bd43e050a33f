//! Durations and byte sizes as flags and environment variables write them.

use std::time::Duration;

/// `500ms`, `30s`, `10m`, `1h`, `1h 30m` (humantime's units), or bare seconds such as `2`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    // Bare numbers are seconds, which humantime would reject for want of a unit.
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 500ms, 30s, 10m or 1h: {e}"))
}

/// `4GiB`, `4 GiB`, `256MiB`, `1GB` (powers of 1000), or plain bytes, as a `u64` or `usize`.
pub fn parse_bytes<T: TryFrom<u64>>(text: &str) -> Result<T, String> {
    let bytes = text
        .trim()
        .parse::<bytesize::ByteSize>()
        .map_err(|e| format!("{text:?} is not a size like 4GiB, 256MiB or 1000000: {e}"))?
        .as_u64();
    T::try_from(bytes).map_err(|_| format!("{text:?} is too large for this machine"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_common_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn byte_sizes_accept_what_the_readme_writes() {
        assert_eq!(parse_bytes::<u64>("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes::<u64>("4 GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes::<u64>("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes::<u64>("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes::<usize>("1073741824"), Ok(1 << 30));
        assert_eq!(parse_bytes::<u64>("0"), Ok(0));
        assert!(parse_bytes::<u64>("lots").is_err());
        assert!(parse_bytes::<u64>("-1").is_err());
        assert!(parse_bytes::<u8>("1KiB").is_err());
    }
}
