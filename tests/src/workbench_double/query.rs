//! Query-string validation as Workbench's OpenAPI validator does it: undocumented parameters and values of the
//! wrong type are rejected with 400 and a plain-text message; documented values are type-coerced.

use std::collections::HashMap;

/// The declared type of a documented query parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Bool,
    Number,
    Str,
    /// A string restricted to these values.
    OneOf(&'static [&'static str]),
}

/// The documented query parameters of one route.
pub(crate) type Spec = &'static [(&'static str, Kind)];

/// A query string that passed validation.
#[derive(Debug, Default)]
pub(crate) struct Query {
    values: HashMap<&'static str, Vec<String>>,
}

impl Query {
    pub(crate) fn flag(&self, name: &str) -> Option<bool> {
        self.first(name).map(|v| v == "true")
    }

    pub(crate) fn flag_or_false(&self, name: &str) -> bool {
        self.flag(name).unwrap_or(false)
    }

    pub(crate) fn number(&self, name: &str) -> Option<f64> {
        self.first(name).and_then(|v| v.parse().ok())
    }

    pub(crate) fn string(&self, name: &str) -> Option<&str> {
        self.first(name)
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// Splits and percent-decodes a raw query string into (name, value) pairs, in order.
pub(crate) fn pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (name, value) = segment.split_once('=').unwrap_or((segment, ""));
            (decode_component(name), decode_component(value))
        })
        .collect()
}

/// Validates a raw query string against a route's documented parameters.
/// The error is the plain-text body of the 400 response.
pub(crate) fn parse(raw: Option<&str>, spec: Spec) -> Result<Query, String> {
    let mut values: HashMap<&'static str, Vec<String>> = HashMap::new();
    for (name, value) in pairs(raw.unwrap_or("")) {
        let Some((declared, _)) = spec.iter().find(|(n, _)| *n == name) else {
            return Err(format!("Unknown query parameter '{name}'"));
        };
        values.entry(declared).or_default().push(value);
    }
    for (name, kind) in spec {
        let Some(given) = values.get(name) else {
            continue;
        };
        let repeated = given.len() > 1;
        let ok = match kind {
            _ if repeated => false,
            Kind::Str => true,
            Kind::Bool => given.iter().all(|v| v == "true" || v == "false"),
            Kind::Number => given
                .iter()
                .all(|v| v.parse::<f64>().is_ok_and(f64::is_finite)),
            Kind::OneOf(allowed) => given.iter().all(|v| allowed.contains(&v.as_str())),
        };
        if !ok {
            return Err(match kind {
                Kind::OneOf(allowed) if !repeated => format!(
                    "request/query/{name} must be equal to one of the allowed values: {}",
                    allowed.join(", ")
                ),
                Kind::Bool => format!("request/query/{name} must be boolean"),
                Kind::Number => format!("request/query/{name} must be number"),
                _ => format!("request/query/{name} must be string"),
            });
        }
    }
    Ok(Query { values })
}

/// `decodeURIComponent` with `+` as space; a malformed escape leaves the text as it was (as Express's `qs` does).
fn decode_component(s: &str) -> String {
    let plus_decoded = s.replace('+', " ");
    let bytes = plus_decoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => return plus_decoded,
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or(plus_decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = &[
        ("versions", Kind::OneOf(&["all", "latest"])),
        ("limit", Kind::Number),
        ("previewOnly", Kind::Bool),
        ("search", Kind::Str),
    ];

    #[test]
    fn documented_parameters_are_coerced() {
        let q = parse(
            Some("versions=all&limit=10&previewOnly=true&search=a%20b+c"),
            SPEC,
        )
        .unwrap();
        assert_eq!(q.string("versions"), Some("all"));
        assert_eq!(q.number("limit"), Some(10.0));
        assert_eq!(q.flag("previewOnly"), Some(true));
        assert_eq!(q.string("search"), Some("a b c"));
        assert_eq!(q.flag("absent"), None);
    }

    #[test]
    fn undocumented_parameter_is_rejected() {
        let err = parse(Some("versions=all&page=2"), SPEC).unwrap_err();
        assert_eq!(err, "Unknown query parameter 'page'");
    }

    #[test]
    fn badly_typed_values_are_rejected() {
        assert!(parse(Some("previewOnly=yes"), SPEC).is_err());
        assert!(parse(Some("previewOnly=1"), SPEC).is_err());
        assert!(parse(Some("limit=ten"), SPEC).is_err());
        assert!(parse(Some("versions=some"), SPEC).is_err());
        assert!(parse(Some("search=a&search=b"), SPEC).is_err());
        assert!(parse(None, SPEC).is_ok());
    }

    #[test]
    fn percent_decoding_handles_utf8_and_malformed_escapes() {
        assert_eq!(decode_component("caf%C3%A9"), "café");
        assert_eq!(decode_component("100%"), "100%");
        assert_eq!(
            decode_component("2025-11-13T14%3A00%3A00.188Z"),
            "2025-11-13T14:00:00.188Z"
        );
    }
}
