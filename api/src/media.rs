//! TAXII media types: what every response carries and which `Accept` headers we serve.

/// The Content-Type of every TAXII response; taxii2-client rejects responses without `version=2.1`.
pub const TAXII_CONTENT_TYPE: &str = "application/taxii+json;version=2.1";

/// The media type of STIX 2.1 content, listed in collections and manifests.
pub const STIX_21: &str = "application/stix+json;version=2.1";
/// The media type of STIX 2.0 content (manifest records of 2.0 objects).
pub const STIX_20: &str = "application/stix+json;version=2.0";

/// Whether an `Accept` header value admits `application/taxii+json;version=2.1`.
///
/// Accepted: `application/taxii+json` with no version or `version=2.1`, `application/*`, `*/*`
/// (curl, browsers). A range with `q=0` is a refusal, not an acceptance.
pub fn accepts_taxii(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let essence = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut version_ok = true;
        let mut q_zero = false;
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "version" => version_ok = value == "2.1",
                "q" => q_zero = value.parse::<f32>().is_ok_and(|q| q <= 0.0),
                _ => {}
            }
        }
        if q_zero {
            return false;
        }
        match essence.as_str() {
            "*/*" | "application/*" => true,
            "application/taxii+json" => version_ok,
            _ => false,
        }
    })
}

/// Whether an `Accept` header value names HTML (`text/html`, `application/xhtml+xml`), as
/// browsers' do; the `*/*` of curl and TAXII clients does not, so they keep getting TAXII
/// answers at `/`.
pub fn accepts_html(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let essence = parts.next().unwrap_or("").to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            p.split_once('=').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("q")
                    && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
            })
        });
        !q_zero && matches!(essence.as_str(), "text/html" | "application/xhtml+xml")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_ask_for_html_and_curl_and_taxii_clients_do_not() {
        let chromium = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                        image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";
        assert!(accepts_html(chromium));
        assert!(accepts_html("TEXT/HTML"));
        for other in [
            "*/*",
            "application/taxii+json;version=2.1",
            "application/json",
            "text/html;q=0",
            "",
        ] {
            assert!(!accepts_html(other), "{other}");
        }
    }

    #[test]
    fn taxii_media_types_and_wildcards_are_accepted() {
        for ok in [
            "application/taxii+json;version=2.1",
            "application/taxii+json; version=2.1",
            "application/taxii+json",
            "*/*",
            "application/*",
            "text/html, */*;q=0.8",
            "application/stix+json;version=2.1, application/taxii+json;version=2.1",
        ] {
            assert!(accepts_taxii(ok), "{ok}");
        }
    }

    #[test]
    fn other_media_types_and_versions_are_refused() {
        for bad in [
            "application/json",
            "application/taxii+json;version=2.0",
            "application/stix+json;version=2.1",
            "text/html",
            "application/taxii+json;q=0",
            "",
        ] {
            assert!(!accepts_taxii(bad), "{bad}");
        }
    }
}
