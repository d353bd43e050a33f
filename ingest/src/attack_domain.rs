//! MITRE's ATT&CK domains and their TAXII collections: how a bundle without an
//! `x-mitre-collection` object (the STIX 2.0 files of mitre/cti) is named after the one domain
//! its objects carry (`ingest import --attack-domain`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use crate::check::CheckedBundle;
use crate::error::Error;
use crate::origin::Origin;
use crate::plan::CollectionInfo;

/// One ATT&CK domain and the collection MITRE publishes it as.
#[derive(Debug, PartialEq, Eq)]
pub struct AttackDomain {
    /// The `x_mitre_domains` value, also the start of MITRE's file names (`ics-attack-18.1.json`).
    pub domain: &'static str,
    /// The `x-mitre-collection` id of MITRE's STIX 2.1 files and TAXII server.
    pub collection_id: &'static str,
    pub title: &'static str,
    pub description: &'static str,
}

/// MITRE's public collection ids, names and descriptions, as in the `x-mitre-collection`
/// objects of attack-stix-data and its `index.json` (a test in the tests crate checks them
/// against those files). Shipped as data so that serving MITRE's own STIX 2.0 files needs no
/// copy of them on the command line.
pub const ATTACK_DOMAINS: [AttackDomain; 3] = [
    AttackDomain {
        domain: "enterprise-attack",
        collection_id: "x-mitre-collection--1f5f1533-f617-4ca8-9ab4-6a02367fa019",
        title: "Enterprise ATT&CK",
        description: "ATT&CK for Enterprise provides a knowledge base of real-world adversary \
            behavior targeting traditional enterprise networks. ATT&CK for Enterprise covers the \
            following platforms: Windows, macOS, Linux, PRE, Office 365, Google Workspace, IaaS, \
            Network, and Containers.",
    },
    AttackDomain {
        domain: "mobile-attack",
        collection_id: "x-mitre-collection--dac0d2d7-8653-445c-9bff-82f934c1e858",
        title: "Mobile ATT&CK",
        description: "ATT&CK for Mobile is a matrix of adversary behavior against mobile devices \
            (smartphones and tablets running the Android or iOS/iPadOS operating systems). ATT&CK \
            for Mobile builds upon NIST's Mobile Threat Catalogue and also contains a separate \
            matrix of network-based effects, which are techniques that an adversary can employ \
            without access to the mobile device itself.",
    },
    AttackDomain {
        domain: "ics-attack",
        collection_id: "x-mitre-collection--90c00720-636b-4485-b342-8751d232bf09",
        title: "ICS ATT&CK",
        description: "The ATT&CK for Industrial Control Systems (ICS) knowledge base categorizes \
            the unique set of tactics, techniques, and procedures (TTPs) used by threat actors in \
            the ICS technology domain. ATT&CK for ICS outlines the portions of an ICS attack that \
            are out of scope of Enterprise and reflects the various phases of an adversary\u{2019}s \
            attack life cycle and the assets and systems they are known to target.",
    },
];

impl AttackDomain {
    /// The domain named `domain` (`enterprise-attack`, `mobile-attack`, `ics-attack`).
    pub fn named(domain: &str) -> Option<&'static AttackDomain> {
        ATTACK_DOMAINS.iter().find(|d| d.domain == domain)
    }

    pub fn collection(&self) -> CollectionInfo {
        CollectionInfo {
            id: self.collection_id.to_owned(),
            title: self.title.to_owned(),
            description: Some(self.description.to_owned()),
        }
    }
}

/// `--attack-domain`: the domain a bundle must carry, or whichever one it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainChoice {
    Auto,
    Domain(&'static AttackDomain),
}

impl FromStr for DomainChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(DomainChoice::Auto);
        }
        AttackDomain::named(s)
            .map(DomainChoice::Domain)
            .ok_or_else(|| {
                let names: Vec<&str> = ATTACK_DOMAINS.iter().map(|d| d.domain).collect();
                format!("{s:?} is not auto or one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for DomainChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainChoice::Auto => f.write_str("auto"),
            DomainChoice::Domain(d) => f.write_str(d.domain),
        }
    }
}

/// Names a bundle that has no `x-mitre-collection` object after its ATT&CK domain: MITRE's
/// collection, and a release labelled `--release` or else by the file name
/// (`enterprise-attack-18.1.json.zst` → `18.1`). A bundle with a collection object names
/// itself, so a directory mixing STIX 2.1 and 2.0 files imports as one would expect.
pub(crate) fn name_origin(
    choice: DomainChoice,
    checked: &CheckedBundle,
    origin: Origin,
) -> Result<Origin, Error> {
    if checked.collection.is_some() {
        return Ok(origin);
    }
    let path = &checked.bundle.path;
    let content_error = |reason: String| Error::BundleContent {
        path: path.clone(),
        reason,
    };
    let domain = domain_of(checked).map_err(content_error)?;
    if let DomainChoice::Domain(wanted) = choice
        && wanted != domain
    {
        return Err(content_error(format!(
            "its objects are of ATT&CK domain {}, not {} (--attack-domain)",
            domain.domain, wanted.domain
        )));
    }
    let label = match origin.release_label.clone() {
        Some(label) => label,
        None => release_from_name(path, domain.domain).ok_or_else(|| {
            content_error(format!(
                "cannot tell the {} release from the file name (expected {}-<version>.json…): \
                 pass --release LABEL",
                domain.domain, domain.domain
            ))
        })?,
    };
    tracing::info!(file = %path.display(), domain = domain.domain, release = %label,
        "bundle without x-mitre-collection named after its ATT&CK domain");
    Ok(Origin {
        collection: Some(domain.collection()),
        release_label: Some(label),
        ..origin
    })
}

/// The one ATT&CK domain every object of the bundle carries in `x_mitre_domains`; objects
/// without that property (relationships, the identity, marking definitions) say nothing.
/// An object of several domains counts for each of them, so the answer is the domain all
/// objects share; none or several is an error that says what was found.
fn domain_of(checked: &CheckedBundle) -> Result<&'static AttackDomain, String> {
    #[derive(Deserialize)]
    struct Domains {
        #[serde(default)]
        x_mitre_domains: Option<Vec<String>>,
    }
    let text = &checked.bundle.text;
    let mut shared: Option<Vec<String>> = None;
    // Objects per domain, for the message when they share none.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for object in &checked.objects {
        let Ok(Domains {
            x_mitre_domains: Some(domains),
        }) = serde_json::from_str::<Domains>(&text[object.range.clone()])
        else {
            continue;
        };
        for d in &domains {
            *seen.entry(d.clone()).or_default() += 1;
        }
        shared = Some(match shared {
            None => domains,
            Some(mut kept) => {
                kept.retain(|d| domains.contains(d));
                kept
            }
        });
    }
    let found = || {
        seen.iter()
            .map(|(d, n)| format!("{d} on {n} object(s)"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match shared.as_deref() {
        None => Err(
            "no object carries x_mitre_domains: not an ATT&CK bundle, pass \
                     --collection ID --title TITLE instead of --attack-domain"
                .to_owned(),
        ),
        Some([one]) => AttackDomain::named(one).ok_or_else(|| {
            format!("its objects are of ATT&CK domain {one:?}, which Taxiway does not know")
        }),
        Some([]) => Err(format!(
            "its objects are of more than one ATT&CK domain ({}): import each domain from its own file",
            found()
        )),
        Some(several) => Err(format!(
            "every object carries the domains {} alike, so the bundle is of none in particular: \
             pass --attack-domain DOMAIN or --collection",
            several.join(", ")
        )),
    }
}

/// The release in a MITRE file name: `<domain>-<version>.json`, `.json.gz` or `.json.zst`,
/// the version starting with a digit (`18.1`, `11.2-beta`).
fn release_from_name(path: &Path, domain: &str) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = [".json.zst", ".json.gz", ".json"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))?;
    let version = stem.strip_prefix(domain)?.strip_prefix('-')?;
    let sane = version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    sane.then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::bundle::Input;
    use crate::check::check_bundle;

    /// The objects in a bundle named like MITRE's Enterprise 18.1 file, checked as an import
    /// checks it.
    fn checked(objects: &[&str]) -> CheckedBundle {
        let text = format!(
            r#"{{"type":"bundle","id":"bundle--1","spec_version":"2.0","objects":[{}]}}"#,
            objects.join(",")
        );
        let input = Input::Received {
            name: "dir/enterprise-attack-18.1.json".to_owned(),
            bytes: text.into_bytes(),
            max_bytes: 1 << 20,
        };
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(check_bundle(input))
            .unwrap()
    }

    fn pattern(n: u32, domains: &[&str]) -> String {
        format!(
            r#"{{"type":"attack-pattern","id":"attack-pattern--00000000-0000-4000-8000-{n:012}","created":"2020-01-01T00:00:00.000Z","modified":"2020-01-01T00:00:00.000Z","x_mitre_domains":{}}}"#,
            serde_json::to_string(domains).unwrap()
        )
    }

    const RELATIONSHIP: &str = r#"{"type":"relationship","id":"relationship--00000000-0000-4000-8000-000000000009","created":"2020-01-01T00:00:00.000Z","modified":"2020-01-01T00:00:00.000Z","relationship_type":"uses","source_ref":"attack-pattern--00000000-0000-4000-8000-000000000001","target_ref":"attack-pattern--00000000-0000-4000-8000-000000000002"}"#;

    #[test]
    fn the_domain_every_object_shares_names_the_bundle_and_objects_without_domains_do_not_count() {
        let bundle = checked(&[
            &pattern(1, &["enterprise-attack"]),
            &pattern(2, &["mobile-attack", "enterprise-attack"]),
            RELATIONSHIP,
        ]);
        assert_eq!(domain_of(&bundle).unwrap().domain, "enterprise-attack");
    }

    #[test]
    fn mixed_domains_are_an_error_naming_the_file_and_what_was_found() {
        let bundle = checked(&[
            &pattern(1, &["enterprise-attack"]),
            &pattern(2, &["ics-attack"]),
        ]);
        let origin = Origin {
            kind: schemas::SourceKind::Bundle,
            uri: "dir/enterprise-attack-18.1.json".to_owned(),
            collection: None,
            release_label: None,
            release_timestamp: None,
            expect_version: None,
        };
        let error = name_origin(DomainChoice::Auto, &bundle, origin)
            .unwrap_err()
            .to_string();
        assert!(error.contains("dir/enterprise-attack-18.1.json"), "{error}");
        assert!(error.contains("more than one ATT&CK domain"), "{error}");
        assert!(error.contains("ics-attack on 1 object(s)"), "{error}");
    }

    #[test]
    fn a_bundle_without_domains_or_with_several_shared_ones_is_refused() {
        assert!(domain_of(&checked(&[RELATIONSHIP])).is_err());
        let both = checked(&[&pattern(1, &["enterprise-attack", "mobile-attack"])]);
        let error = domain_of(&both).unwrap_err();
        assert!(
            error.contains("enterprise-attack, mobile-attack"),
            "{error}"
        );
    }

    #[test]
    fn the_release_and_collection_come_from_the_domain_and_the_file_name_unless_given() {
        let bundle = checked(&[&pattern(1, &["enterprise-attack"])]);
        let origin = |release: Option<&str>| Origin {
            kind: schemas::SourceKind::Bundle,
            uri: "u".to_owned(),
            collection: None,
            release_label: release.map(str::to_owned),
            release_timestamp: None,
            expect_version: None,
        };
        let named = name_origin(DomainChoice::Auto, &bundle, origin(None)).unwrap();
        assert_eq!(
            named.collection.as_ref().map(|c| c.id.as_str()),
            Some(ATTACK_DOMAINS[0].collection_id)
        );
        assert_eq!(named.release_label.as_deref(), Some("18.1"));
        let given = name_origin(DomainChoice::Auto, &bundle, origin(Some("7.0"))).unwrap();
        assert_eq!(given.release_label.as_deref(), Some("7.0"));
        let mobile = AttackDomain::named("mobile-attack").unwrap();
        let error = name_origin(DomainChoice::Domain(mobile), &bundle, origin(None))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not mobile-attack"), "{error}");
    }

    #[test]
    fn release_labels_are_read_from_mitre_file_names_only() {
        let label = |name: &str| release_from_name(&PathBuf::from(name), "mobile-attack");
        assert_eq!(
            label("x/mobile-attack-18.1.json.zst").as_deref(),
            Some("18.1")
        );
        assert_eq!(
            label("mobile-attack-11.2-beta.json").as_deref(),
            Some("11.2-beta")
        );
        assert_eq!(label("mobile-attack-9.0.json.gz").as_deref(), Some("9.0"));
        assert_eq!(label("mobile-attack.json"), None);
        assert_eq!(label("ics-attack-18.1.json"), None);
        assert_eq!(label("mobile-attack-latest.json"), None);
        assert_eq!(label("mobile-attack-18.1.txt"), None);
    }

    #[test]
    fn the_import_command_takes_a_domain_instead_of_a_collection_not_beside_it() {
        use crate::config::{Command, Settings};
        use clap::Parser;
        let parse = |args: &[&str]| {
            Settings::try_parse_from(["ingest", "import", "x.json"].iter().chain(args))
        };
        let settings = parse(&["--attack-domain", "auto", "--release", "18.1"]).unwrap();
        let Command::Import(import) = settings.command else {
            panic!("import expected")
        };
        let import = import.build().unwrap();
        assert_eq!(import.attack_domain, Some(DomainChoice::Auto));
        assert_eq!(import.release_label.as_deref(), Some("18.1"));
        assert!(parse(&["--attack-domain", "auto", "--collection", "c"]).is_err());
        assert!(parse(&["--attack-domain", "pre-attack"]).is_err());
        assert!(
            parse(&["--release", "18.1"]).is_err(),
            "a release needs naming"
        );
    }

    #[test]
    fn domain_choices_parse_auto_and_the_three_domains() {
        assert_eq!("auto".parse::<DomainChoice>(), Ok(DomainChoice::Auto));
        for d in &ATTACK_DOMAINS {
            assert_eq!(
                d.domain.parse::<DomainChoice>(),
                Ok(DomainChoice::Domain(d))
            );
        }
        let error = "pre-attack".parse::<DomainChoice>().unwrap_err();
        assert!(error.contains("ics-attack"), "{error}");
    }
}
