//! A configuration value that never shows in logs.

/// An apikey, a password, a signing key: the effective configuration is logged at start, and
/// this prints as `<redacted>` there.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_when_debug_printed() {
        let logged = format!("{:?}", Secret("hunter2".into()));
        assert_eq!(logged, "<redacted>");
    }
}
