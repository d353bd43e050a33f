use clap::Parser;

use std::time::Duration;

use super::*;

#[derive(Debug, Parser)]
struct Both {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    cql: CqlArgs,
}

#[test]
fn the_flags_are_consistent_and_default_to_the_dev_services() {
    use clap::CommandFactory;
    Both::command().debug_assert();
    let command = Both::command();
    let default_of = |id: &str| {
        command
            .get_arguments()
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_default_values().first())
            .map(|v| v.to_string_lossy().into_owned())
    };
    for (id, expected) in [
        ("brokers", "127.0.0.1:9092"),
        ("objects_topic", schemas::OBJECTS_TOPIC),
        ("dead_letter_topic", schemas::DEAD_LETTER_TOPIC),
        ("timeout", "30s"),
        ("request_timeout", "10s"),
        ("nodes", "127.0.0.1:9042"),
        ("keyspace", "taxiway"),
    ] {
        assert_eq!(default_of(id).as_deref(), Some(expected), "{id}");
    }
}

#[test]
fn the_defaults_are_those_the_flags_declare() {
    use clap::{CommandFactory, FromArgMatches};
    // No environment: `dev/test` exports the addresses of the services it runs.
    let command = Both::command().mut_args(|a| a.env(None));
    let declared = Both::from_arg_matches(&command.get_matches_from(["x"])).unwrap();
    assert_eq!(
        format!("{:?}", declared.kafka),
        format!("{:?}", KafkaArgs::default())
    );
    assert_eq!(
        format!("{:?}", declared.cql),
        format!("{:?}", CqlArgs::default())
    );
}

#[test]
fn both_spellings_of_the_cql_flags_are_accepted() {
    let projector_style = Both::try_parse_from([
        "x",
        "--keyspace",
        "k1",
        "--request-timeout",
        "3s",
        "--cql-nodes",
        "a:9042,b:9042",
    ])
    .unwrap();
    let api_style =
        Both::try_parse_from(["x", "--cql-keyspace", "k1", "--cql-timeout", "3s"]).unwrap();
    for parsed in [&projector_style, &api_style] {
        assert_eq!(parsed.cql.keyspace, "k1");
        assert_eq!(parsed.cql.request_timeout, Duration::from_secs(3));
    }
    assert_eq!(projector_style.cql.nodes, ["a:9042", "b:9042"]);
}

#[test]
fn credentials_need_both_halves() {
    let user_only = Both::try_parse_from(["x", "--cql-username", "u"]).unwrap();
    assert!(matches!(
        user_only.cql.credentials(),
        Err(Error::MissingPassword)
    ));
    let both = Both::try_parse_from(["x", "--cql-user", "u", "--cql-password", "p"]).unwrap();
    let (user, password) = both.cql.credentials().unwrap().unwrap();
    assert_eq!((user.as_str(), password.0.as_str()), ("u", "p"));
    let neither = Both::try_parse_from(["x"]).unwrap();
    assert!(neither.cql.credentials().unwrap().is_none());
}

#[test]
fn the_password_file_is_read_without_its_trailing_newline_and_excludes_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret\n").unwrap();
    let file_arg = file.to_str().unwrap();
    let parsed =
        Both::try_parse_from(["x", "--cql-username", "u", "--cql-password-file", file_arg])
            .unwrap();
    let (_, password) = parsed.cql.credentials().unwrap().unwrap();
    assert_eq!(password.0, "s3cret");
    assert!(
        Both::try_parse_from(["x", "--cql-password", "p", "--cql-password-file", file_arg])
            .is_err()
    );
    let missing = Both::try_parse_from([
        "x",
        "--cql-username",
        "u",
        "--cql-password-file",
        "/nonexistent/password",
    ])
    .unwrap();
    let error = missing.cql.credentials().unwrap_err().to_string();
    assert!(error.contains("/nonexistent/password"), "{error}");
}

#[test]
fn secrets_never_show_in_the_printed_settings() {
    let parsed = Both::try_parse_from([
        "x",
        "--cql-username",
        "taxiway",
        "--cql-password",
        "hunter2-cql",
    ])
    .unwrap();
    let printed = format!("{:?} {:#?}", parsed.cql, parsed.cql);
    assert!(!printed.contains("hunter2-cql"), "{printed}");
    assert!(printed.contains("<redacted>") && printed.contains("taxiway"));
}

#[test]
fn tls_datacenter_and_consistency_flags_parse() {
    let plain = Both::try_parse_from(["x"]).unwrap();
    assert!(!plain.cql.tls_enabled());
    assert_eq!(plain.cql.read_consistency, ConsistencyLevel::LocalQuorum);
    assert!(
        Both::try_parse_from(["x", "--cql-tls"])
            .unwrap()
            .cql
            .tls_enabled()
    );
    let secured = Both::try_parse_from([
        "x",
        "--cql-tls-ca",
        "/etc/ca.pem",
        "--cql-tls-cert",
        "/etc/client.pem",
        "--cql-tls-key",
        "/etc/client.key",
        "--cql-local-dc",
        "eu-west",
        "--cql-read-consistency",
        "one",
    ])
    .unwrap();
    assert!(secured.cql.tls_enabled(), "a CA file turns TLS on");
    assert_eq!(
        secured.cql.tls_ca.as_deref(),
        Some(Path::new("/etc/ca.pem"))
    );
    assert_eq!(secured.cql.local_dc.as_deref(), Some("eu-west"));
    assert_eq!(secured.cql.read_consistency, ConsistencyLevel::One);
    // A certificate without its key (or the reverse) is a mistake, not a silent no-op.
    assert!(Both::try_parse_from(["x", "--cql-tls-cert", "/etc/client.pem"]).is_err());
    assert!(Both::try_parse_from(["x", "--cql-tls-key", "/etc/client.key"]).is_err());
}

#[test]
fn a_bad_ca_file_fails_the_session_settings_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for ca in [empty, dir.path().join("absent.pem")] {
        let args = CqlArgs {
            tls_ca: Some(ca.clone()),
            ..CqlArgs::default()
        };
        let error = args
            .session_builder(ConsistencyLevel::One)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains(&ca.display().to_string()), "{error}");
    }
}

#[test]
fn the_kafka_security_flags_reach_librdkafka_and_options_come_last() {
    let parsed = Both::try_parse_from([
        "x",
        "--kafka-security-protocol",
        "sasl_ssl",
        "--kafka-sasl-mechanism",
        "SCRAM-SHA-512",
        "--kafka-sasl-username",
        "taxiway",
        "--kafka-sasl-password",
        "hunter2",
        "--kafka-ssl-ca",
        "/etc/ca.pem",
        "--kafka-option",
        "client.rack=eu-1a",
        "--kafka-option",
        "sasl.mechanism=PLAIN",
    ])
    .unwrap();
    let config = parsed.kafka.client_config();
    for (key, expected) in [
        ("security.protocol", "sasl_ssl"),
        ("sasl.username", "taxiway"),
        ("sasl.password", "hunter2"),
        ("ssl.ca.location", "/etc/ca.pem"),
        ("client.rack", "eu-1a"),
        // The pass-through overrides the flag: it is the escape hatch.
        ("sasl.mechanism", "PLAIN"),
    ] {
        assert_eq!(config.get(key), Some(expected), "{key}");
    }
    assert_eq!(config.get("ssl.certificate.location"), None);
    let plain = KafkaArgs::default().client_config();
    assert_eq!(plain.get("security.protocol"), Some("plaintext"));
    assert_eq!(plain.get("sasl.username"), None);
}

#[test]
fn bad_kafka_security_values_are_refused() {
    for args in [
        &["x", "--kafka-security-protocol", "tls"][..],
        &["x", "--kafka-sasl-mechanism", "GSSAPI"],
        &["x", "--kafka-option", "no-equals-sign"],
        &["x", "--kafka-option", "=value"],
        // A certificate without its key, or the reverse, cannot work.
        &["x", "--kafka-ssl-cert", "c.pem"],
        &["x", "--kafka-ssl-key", "k.pem"],
        &[
            "x",
            "--kafka-sasl-password",
            "a",
            "--kafka-sasl-password-file",
            "f",
        ],
    ] {
        assert!(Both::try_parse_from(args).is_err(), "{args:?}");
    }
}

#[test]
fn the_kafka_password_comes_from_a_file_without_its_newline() {
    let file = std::env::temp_dir().join(format!("taxiway-kafka-pw-{}", std::process::id()));
    std::fs::write(&file, "s3cret\n").unwrap();
    let parsed =
        Both::try_parse_from(["x", "--kafka-sasl-password-file", file.to_str().unwrap()]).unwrap();
    assert_eq!(
        parsed.kafka.sasl_password().unwrap(),
        Some(Secret("s3cret".to_owned()))
    );
    assert_eq!(
        parsed.kafka.client_config().get("sasl.password"),
        Some("s3cret")
    );
    std::fs::remove_file(&file).unwrap();
    let missing = parsed.kafka.sasl_password().unwrap_err();
    assert!(missing.contains(file.to_str().unwrap()), "{missing}");
}

#[test]
fn kafka_secrets_are_redacted_from_the_printed_settings() {
    let parsed = Both::try_parse_from([
        "x",
        "--kafka-sasl-password",
        "hunter2",
        "--kafka-option",
        "ssl.key.password=k3ypass",
        "--kafka-option",
        "sasl.oauthbearer.client.secret=0auth",
        "--kafka-option",
        "sasl.jaas.config=user=u password=jaaspw",
        "--kafka-option",
        "client.id=visible",
    ])
    .unwrap();
    let printed = format!("{:?}", parsed.kafka);
    for secret in ["hunter2", "k3ypass", "0auth", "jaaspw"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(printed.contains("client.id=visible"), "{printed}");
    assert!(printed.contains("ssl.key.password=<redacted>"), "{printed}");
}

#[test]
fn kafka_options_from_the_environment_are_comma_separated() {
    use clap::{CommandFactory, FromArgMatches};
    // The variable's value, as clap would read it, without touching the process environment.
    let command = Both::command();
    let matches = command
        .try_get_matches_from(["x", "--kafka-option", "a=1,b=2"])
        .unwrap();
    let parsed = Both::from_arg_matches(&matches).unwrap();
    let pairs: Vec<(&str, &str)> = parsed
        .kafka
        .options
        .iter()
        .map(|o| (o.key.as_str(), o.value.as_str()))
        .collect();
    assert_eq!(pairs, [("a", "1"), ("b", "2")]);
    let env_of = |id: &str| {
        Both::command()
            .get_arguments()
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
    };
    assert_eq!(env_of("options").as_deref(), Some("TAXIWAY_KAFKA_OPTIONS"));
    assert_eq!(
        env_of("sasl_password").as_deref(),
        Some("TAXIWAY_KAFKA_SASL_PASSWORD")
    );
}
