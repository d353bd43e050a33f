//! The TAXII filter language (§3.4): a listing's query string parsed into a [`Query`].
//!
//! What the filters select is [`crate::selection`]'s job; this module only reads and checks them,
//! naming the offending parameter in every error.

use schemas::{SpecVersion, Timestamp};

use crate::error::ApiError;

/// Which listing a query is for: it decides the default of `match[version]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listing {
    Objects,
    Object,
    Versions,
    Manifest,
}

impl Listing {
    pub fn as_str(self) -> &'static str {
        match self {
            Listing::Objects => "objects",
            Listing::Object => "object",
            Listing::Versions => "versions",
            Listing::Manifest => "manifest",
        }
    }
}

/// `match[version]`: a union of selectors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionMatch {
    pub all: bool,
    pub first: bool,
    pub last: bool,
    /// Exact versions, microseconds, sorted and deduplicated.
    pub at: Vec<i64>,
}

impl VersionMatch {
    pub fn last() -> Self {
        VersionMatch {
            last: true,
            ..Default::default()
        }
    }
    pub fn all() -> Self {
        VersionMatch {
            all: true,
            ..Default::default()
        }
    }
}

/// The selection part of a query (everything but `limit` and `next`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Microseconds; only versions with a strictly later date_added.
    pub added_after: Option<i64>,
    /// Sorted, deduplicated.
    pub ids: Option<Vec<String>>,
    /// Sorted, deduplicated.
    pub types: Option<Vec<String>>,
    pub versions: VersionMatch,
    /// Sorted, deduplicated; `None` = the newest spec_version of each object.
    pub spec_versions: Option<Vec<SpecVersion>>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            added_after: None,
            ids: None,
            types: None,
            versions: VersionMatch::last(),
            spec_versions: None,
        }
    }
}

/// A parsed query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub filter: Filter,
    /// Already capped at the server maximum; `None` = everything in one response.
    pub limit: Option<usize>,
    pub next: Option<String>,
}

impl Filter {
    /// A stable digest of the filter, for cursors and ETags: equal across replicas and builds.
    pub fn canonical(&self) -> String {
        let mut text = String::new();
        if let Some(t) = self.added_after {
            text.push_str(&format!("added_after={t};"));
        }
        if let Some(ids) = &self.ids {
            text.push_str(&format!("id={};", ids.join(",")));
        }
        if let Some(types) = &self.types {
            text.push_str(&format!("type={};", types.join(",")));
        }
        let v = &self.versions;
        text.push_str(&format!(
            "version={}{}{}{:?};",
            u8::from(v.all),
            u8::from(v.first),
            u8::from(v.last),
            v.at
        ));
        if let Some(specs) = &self.spec_versions {
            let specs: Vec<&str> = specs.iter().map(|s| s.as_str()).collect();
            text.push_str(&format!("spec={};", specs.join(",")));
        }
        text
    }
}

/// A TAXII timestamp parameter in microseconds; the error names `parameter`.
pub(crate) fn timestamp(parameter: &str, text: &str) -> Result<i64, ApiError> {
    Timestamp::parse(text)
        .map(Timestamp::as_micros)
        .map_err(|e| {
            ApiError::bad_parameter(
                parameter,
                format!("{e}; expected e.g. 2025-01-31T12:00:00.000Z"),
            )
        })
}

fn list(parameter: &str, value: &str) -> Result<Vec<String>, ApiError> {
    value
        .split(',')
        .map(|item| {
            let item = item.trim();
            if item.is_empty() {
                Err(ApiError::bad_parameter(
                    parameter,
                    "empty item in a comma-separated list",
                ))
            } else {
                Ok(item.to_owned())
            }
        })
        .collect()
}

fn merge(target: &mut Option<Vec<String>>, items: Vec<String>) {
    let list = target.get_or_insert_with(Vec::new);
    list.extend(items);
    list.sort();
    list.dedup();
}

/// Parses a raw query string. Repeated `match[…]` parameters add to the list; unknown
/// parameters are ignored, as the specification allows.
pub fn parse_query(
    raw: Option<&str>,
    listing: Listing,
    max_limit: usize,
) -> Result<Query, ApiError> {
    let mut filter = Filter::default();
    let mut versions: Option<VersionMatch> = None;
    let mut limit = None;
    let mut next = None;
    for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let value = value.trim();
        match name.as_ref() {
            "added_after" => filter.added_after = Some(timestamp("added_after", value)?),
            "match[id]" => merge(&mut filter.ids, list("match[id]", value)?),
            "match[type]" => merge(&mut filter.types, list("match[type]", value)?),
            "match[version]" => {
                let m = versions.get_or_insert_with(VersionMatch::default);
                for item in list("match[version]", value)? {
                    match item.as_str() {
                        "all" => m.all = true,
                        "first" => m.first = true,
                        "last" => m.last = true,
                        other => m.at.push(timestamp("match[version]", other)?),
                    }
                }
                m.at.sort_unstable();
                m.at.dedup();
            }
            "match[spec_version]" => {
                let specs = filter.spec_versions.get_or_insert_with(Vec::new);
                for item in list("match[spec_version]", value)? {
                    specs.push(SpecVersion::parse(&item).ok_or_else(|| {
                        ApiError::bad_parameter(
                            "match[spec_version]",
                            format!("{item:?} is not 2.0 or 2.1"),
                        )
                    })?);
                }
                specs.sort_unstable();
                specs.dedup();
            }
            "limit" => {
                let n: i64 = value.parse().map_err(|_| {
                    ApiError::bad_parameter("limit", format!("{value:?} is not a positive integer"))
                })?;
                if n <= 0 {
                    return Err(ApiError::bad_parameter(
                        "limit",
                        format!("{n} is not a positive integer"),
                    ));
                }
                limit = Some(
                    usize::try_from(n)
                        .unwrap_or(usize::MAX)
                        .min(max_limit.max(1)),
                );
            }
            "next" => {
                if value.is_empty() {
                    return Err(ApiError::bad_parameter("next", "empty cursor"));
                }
                next = Some(value.to_owned());
            }
            _ => {}
        }
    }
    filter.versions = versions.unwrap_or(match listing {
        Listing::Versions => VersionMatch::all(),
        _ => VersionMatch::last(),
    });
    Ok(Query {
        filter,
        limit,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<Query, ApiError> {
        parse_query(Some(q), Listing::Objects, 1000)
    }

    fn parameter_of(e: ApiError) -> String {
        match e {
            ApiError::BadParameter { parameter, .. } => parameter,
            other => panic!("expected a bad parameter, got {other:?}"),
        }
    }

    #[test]
    fn limit_must_be_a_positive_integer_and_is_capped() {
        for bad in ["limit=0", "limit=-3", "limit=NaN", "limit=", "limit=1.5"] {
            assert_eq!(parameter_of(parse(bad).unwrap_err()), "limit", "{bad}");
        }
        assert_eq!(parse("limit=5").unwrap().limit, Some(5));
        assert_eq!(parse("limit=5000000").unwrap().limit, Some(1000));
    }

    #[test]
    fn timestamps_take_three_or_six_fraction_digits() {
        let q = parse(
            "added_after=2025-01-01T00:00:00.123456Z&match[version]=2025-01-01T00:00:00.123Z,first",
        )
        .unwrap();
        assert_eq!(q.filter.added_after, Some(1_735_689_600_123_456));
        assert_eq!(q.filter.versions.at, vec![1_735_689_600_123_000]);
        assert!(q.filter.versions.first && !q.filter.versions.last);
        assert_eq!(
            parameter_of(parse("added_after=yesterday").unwrap_err()),
            "added_after"
        );
        assert_eq!(
            parameter_of(parse("match[version]=newest").unwrap_err()),
            "match[version]"
        );
        assert_eq!(
            parameter_of(parse("match[spec_version]=3.0").unwrap_err()),
            "match[spec_version]"
        );
        assert_eq!(
            parameter_of(parse("match[type]=a,,b").unwrap_err()),
            "match[type]"
        );
    }

    #[test]
    fn version_default_depends_on_the_endpoint() {
        assert_eq!(parse("").unwrap().filter.versions, VersionMatch::last());
        let q = parse_query(None, Listing::Versions, 10).unwrap();
        assert_eq!(q.filter.versions, VersionMatch::all());
    }

    #[test]
    fn repeated_match_parameters_add_up() {
        let q = parse("match[type]=b,a&match[type]=c&match%5Bid%5D=x").unwrap();
        assert_eq!(q.filter.types.unwrap(), ["a", "b", "c"]);
        assert_eq!(q.filter.ids.unwrap(), ["x"]);
    }
}
