//! The operator kit's compose files and Kubernetes base, checked statically (no container engine
//! or cluster runs here): the compose files keep their data on volumes and pin their images, and
//! the Kubernetes base parses and sets only variables a service reads.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;

use crate::deployment::{
    ParseWithEnv, VERSION, read, repo_path, variables_the_services_read, yaml, yaml_documents,
};

/// The variables the kit uses to reach secured Kafka (README, "Deploy").
const KAFKA_SECURITY_VARIABLES: [&str; 5] = [
    "TAXIWAY_KAFKA_SECURITY_PROTOCOL",
    "TAXIWAY_KAFKA_SASL_MECHANISM",
    "TAXIWAY_KAFKA_SASL_USERNAME",
    "TAXIWAY_KAFKA_SASL_PASSWORD",
    "TAXIWAY_KAFKA_SSL_CA",
];

/// The variables the kit uses to reach a secured ScyllaDB/Cassandra.
const CQL_SECURITY_VARIABLES: [&str; 4] = [
    "TAXIWAY_CQL_USERNAME",
    "TAXIWAY_CQL_PASSWORD",
    "TAXIWAY_CQL_TLS_CA",
    "TAXIWAY_CQL_LOCAL_DC",
];

fn security_variables() -> impl Iterator<Item = &'static str> {
    KAFKA_SECURITY_VARIABLES
        .into_iter()
        .chain(CQL_SECURITY_VARIABLES)
}

/// A `!reset` (Compose's tag to drop a base attribute) read as the value it carries.
fn untagged(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => &tagged.value,
        other => other,
    }
}

fn string(value: &Value) -> Option<&str> {
    value.as_str()
}

fn mapping_keys(value: &Value) -> Vec<String> {
    untagged(value)
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A compose service's environment as name → value, from either the map or the list form.
fn compose_environment(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        Some(Value::Mapping(map)) => map
            .iter()
            .filter_map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => String::new(),
                };
                Some((k.as_str()?.to_owned(), value))
            })
            .collect(),
        Some(Value::Sequence(list)) => list
            .iter()
            .filter_map(string)
            .map(|entry| {
                let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The mount targets of a compose service's named volumes (bind mounts and tmpfs excluded: they
/// do not outlive the host directory or the container the way a named volume does).
fn named_volume_targets(service: &Value, declared: &BTreeSet<String>) -> Vec<String> {
    let Some(Value::Sequence(volumes)) = service.get("volumes") else {
        return Vec::new();
    };
    volumes
        .iter()
        .filter_map(|volume| match volume {
            Value::String(short) => {
                let mut parts = short.split(':');
                let source = parts.next()?;
                let target = parts.next()?;
                declared.contains(source).then(|| target.to_owned())
            }
            Value::Mapping(_) => {
                let kind = volume.get("type").and_then(string).unwrap_or("volume");
                let source = volume.get("source").and_then(string)?;
                let target = volume.get("target").and_then(string)?;
                (kind == "volume" && declared.contains(source)).then(|| target.to_owned())
            }
            _ => None,
        })
        .collect()
}

fn is_inside(path: &str, mount: &str) -> bool {
    let mount = mount.trim_end_matches('/');
    path == mount || path.starts_with(&format!("{mount}/"))
}

fn compose_services(compose: &Value) -> BTreeMap<String, Value> {
    compose
        .get("services")
        .and_then(Value::as_mapping)
        .expect("a services map")
        .iter()
        .map(|(k, v)| (k.as_str().expect("service names").to_owned(), v.clone()))
        .collect()
}

/// The value following `flag` in a command list.
fn flag_value(command: &Value, flag: &str) -> Option<String> {
    let words: Vec<&str> = command.as_sequence()?.iter().filter_map(string).collect();
    let at = words.iter().position(|w| *w == flag)?;
    words.get(at + 1).map(|w| (*w).to_owned())
}

/// `<kafka.version>` of dev/kafka/pom.xml: the Kafka the tests run.
fn tested_kafka_version() -> String {
    let pom = read("dev/kafka/pom.xml");
    // The property's definition; the pom's comments name the tag too.
    pom.match_indices("<kafka.version>")
        .map(|(at, tag)| &pom[at + tag.len()..])
        .find(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        .and_then(|rest| rest.split('<').next())
        .expect("<kafka.version>N</kafka.version> in dev/kafka/pom.xml")
        .trim()
        .to_owned()
}

#[test]
fn every_stateful_service_of_the_compose_file_writes_inside_a_named_volume() {
    let compose = yaml("docker-compose.yml");
    let declared: BTreeSet<String> = mapping_keys(compose.get("volumes").expect("volumes"))
        .into_iter()
        .collect();
    let services = compose_services(&compose);

    // Kafka: every log directory (the objects topic, the source of truth) on a volume.
    let kafka = &services["kafka"];
    let environment = compose_environment(kafka);
    let log_dirs = environment
        .get("KAFKA_LOG_DIRS")
        .expect("KAFKA_LOG_DIRS is set: the image's default is under /tmp");
    let mounts = named_volume_targets(kafka, &declared);
    for dir in log_dirs.split(',') {
        assert!(
            mounts.iter().any(|m| is_inside(dir.trim(), m)),
            "Kafka log dir {dir} is not inside a named volume (mounted: {mounts:?})"
        );
    }
    assert!(
        environment.contains_key("CLUSTER_ID"),
        "a fixed cluster id, so a restarted broker reuses its formatted log directory"
    );

    // ScyllaDB: its work directory (data, commit log, hints) on a volume.
    let scylla = &services["scylla"];
    let workdir = scylla
        .get("command")
        .and_then(|c| flag_value(c, "--workdir"))
        .expect("scylla's command names its --workdir");
    let mounts = named_volume_targets(scylla, &declared);
    assert!(
        mounts.iter().any(|m| is_inside(&workdir, m)),
        "ScyllaDB workdir {workdir} is not inside a named volume (mounted: {mounts:?})"
    );

    // No other service keeps state of its own: only the two engines mount volumes.
    let with_volumes: BTreeSet<&str> = services
        .iter()
        .filter(|(_, s)| s.get("volumes").is_some())
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(with_volumes, ["kafka", "scylla"].into_iter().collect());
}

/// `repository:tag` with a real tag (not `latest`), or a digest.
fn assert_pinned(image: &str, whence: &str) {
    if image.contains("@sha256:") {
        return;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = last.split_once(':').map(|(_, tag)| tag);
    assert!(
        tag.is_some_and(|t| !t.is_empty() && t != "latest" && !t.contains('$')),
        "{whence}: image {image} is not pinned to a version"
    );
}

#[test]
fn every_compose_image_is_pinned_and_kafka_is_the_version_the_tests_run() {
    let compose = yaml("docker-compose.yml");
    let services = compose_services(&compose);
    let mut images = BTreeMap::new();
    for (name, service) in &services {
        let image = service
            .get("image")
            .and_then(string)
            .unwrap_or_else(|| panic!("service {name} names no image"));
        assert_pinned(image, &format!("docker-compose.yml, {name}"));
        images.insert(name.clone(), image.to_owned());
    }
    let kafka = format!("apache/kafka:{}", tested_kafka_version());
    assert_eq!(images["kafka"], kafka, "the broker runs the tested Kafka");
    assert_eq!(images["topics"], kafka, "the topic tool is the same image");
    assert!(images["scylla"].starts_with("scylladb/scylla:"));
    assert_eq!(
        images["api"],
        format!("taxiway:{VERSION}"),
        "the Taxiway image is tagged with the workspace version"
    );
    // The overlay changes no image: it only points the services elsewhere.
    let overlay = yaml("docker-compose.secure.yml");
    for (name, service) in compose_services(&overlay) {
        assert!(
            service.get("image").is_none(),
            "overlay sets an image on {name}"
        );
    }
}

#[test]
fn compose_starts_each_service_after_what_it_needs_is_healthy_or_done() {
    let compose = yaml("docker-compose.yml");
    let services = compose_services(&compose);
    for engine in ["kafka", "scylla", "api", "projector"] {
        assert!(
            services[engine].get("healthcheck").is_some(),
            "{engine} has a healthcheck"
        );
    }
    let mut waits = BTreeMap::new();
    for (name, service) in &services {
        let Some(Value::Mapping(depends)) = service.get("depends_on") else {
            continue;
        };
        for (on, how) in depends {
            let on = on.as_str().expect("a service name").to_owned();
            let condition = how
                .get("condition")
                .and_then(string)
                .unwrap_or_else(|| panic!("{name} waits for {on} with no condition"));
            assert!(services.contains_key(&on), "{name} depends on unknown {on}");
            if condition == "service_healthy" {
                assert!(
                    services[&on].get("healthcheck").is_some(),
                    "{name} waits for {on} to be healthy, which has no healthcheck"
                );
            } else {
                assert_eq!(condition, "service_completed_successfully", "{name} → {on}");
                assert_eq!(
                    services[&on].get("restart").and_then(string),
                    Some("no"),
                    "{name} waits for {on} to complete: a one-shot"
                );
            }
            waits.insert((name.clone(), on), condition.to_owned());
        }
    }
    let healthy = |a: &str, b: &str| {
        waits.get(&(a.to_owned(), b.to_owned())).map(String::as_str) == Some("service_healthy")
    };
    assert!(
        healthy("topics", "kafka"),
        "topics wait for a healthy broker"
    );
    assert!(
        healthy("migrate", "scylla"),
        "migrate waits for a healthy ScyllaDB"
    );
    let done = |a: &str, b: &str| waits.contains_key(&(a.to_owned(), b.to_owned()));
    assert!(done("projector", "migrate") && done("projector", "topics"));
    assert!(done("api", "migrate"));
}

/// The security variables the kit names that no binary reads. Each group (Kafka, CQL) is read
/// whole or, in a build without that group's security settings, only checked by name; a group
/// read in part is a misnamed variable.
fn security_variables_unread(read: &BTreeSet<String>) -> BTreeSet<String> {
    let mut allowed = BTreeSet::new();
    for group in [&KAFKA_SECURITY_VARIABLES[..], &CQL_SECURITY_VARIABLES[..]] {
        let unread: BTreeSet<String> = group
            .iter()
            .filter(|name| !read.contains(**name))
            .map(|name| (*name).to_owned())
            .collect();
        // TAXIWAY_CQL_PASSWORD predates the CQL security settings: always read.
        let new_names: BTreeSet<String> = group
            .iter()
            .filter(|n| **n != "TAXIWAY_CQL_PASSWORD")
            .map(|n| (*n).to_owned())
            .collect();
        if unread.is_empty() {
            continue;
        }
        assert!(
            unread == new_names,
            "the binaries read some of {group:?} but not {unread:?}"
        );
        eprintln!("no binary reads these security variables yet; checked by name only: {unread:?}");
        allowed.extend(unread);
    }
    allowed
}

fn assert_all_read(names: &BTreeSet<String>, whence: &str) {
    let read = variables_the_services_read();
    let allowed = security_variables_unread(&read);
    let unknown: Vec<&String> = names
        .iter()
        .filter(|n| !read.contains(*n) && !allowed.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "{whence} sets variables no service reads: {unknown:?}"
    );
}

#[test]
fn the_secure_overlay_reaches_secured_clusters_with_variables_the_services_read() {
    let base = compose_services(&yaml("docker-compose.yml"));
    let overlay = yaml("docker-compose.secure.yml");
    let services = compose_services(&overlay);
    let mut names = BTreeSet::new();
    for (name, service) in &services {
        assert!(
            base.contains_key(name),
            "overlay names unknown service {name}"
        );
        if ["kafka", "scylla", "topics"].contains(&name.as_str()) {
            let profiles = service.get("profiles").and_then(Value::as_sequence);
            assert!(
                profiles.is_some_and(|p| !p.is_empty()),
                "the overlay keeps the local {name} out of the default start"
            );
            continue;
        }
        let environment = compose_environment(service);
        for variable in security_variables() {
            assert!(
                environment.contains_key(variable),
                "overlay service {name} lacks {variable}"
            );
        }
        // Its start order no longer waits for the local engines.
        let depends = service
            .get("depends_on")
            .map(mapping_keys)
            .unwrap_or_default();
        for engine in ["kafka", "scylla", "topics"] {
            assert!(
                !depends.contains(&engine.to_owned()),
                "{name} waits for {engine}"
            );
        }
        names.extend(environment.into_keys());
    }
    for service in ["migrate", "projector", "api", "seed", "workbench-mirror"] {
        assert!(services.contains_key(service), "overlay secures {service}");
    }
    assert_all_read(&names, "docker-compose.secure.yml");
    let secrets = mapping_keys(overlay.get("secrets").expect("top-level secrets"));
    for file in ["kafka-ca.pem", "cql-ca.pem"] {
        assert!(secrets.contains(&file.to_owned()), "secret {file}");
    }
    let ignored = read(".gitignore");
    assert!(
        ignored.lines().any(|l| l.trim() == "/secrets/"),
        "the overlay's ./secrets directory is never committed"
    );
}

#[test]
fn docker_compose_config_accepts_the_secure_overlay_where_docker_compose_exists() {
    let has_compose = std::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_compose {
        eprintln!("docker compose is not installed: the overlay is checked statically only");
        return;
    }
    let output = std::process::Command::new("docker")
        .args([
            "compose",
            "-f",
            "docker-compose.yml",
            "-f",
            "docker-compose.secure.yml",
            "config",
            "--quiet",
        ])
        .current_dir(repo_path(""))
        .envs(security_variables().map(|v| (v, "x")))
        .env("TAXIWAY_KAFKA_BROKERS", "kafka.example:9093")
        .env("TAXIWAY_CQL_NODES", "scylla.example:9042")
        .output()
        .expect("docker compose runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "docker compose config: {stderr}");
}

/// Every manifest of the kustomize base, by kind and name.
fn kubernetes_base() -> (Value, BTreeMap<(String, String), Value>) {
    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    let resources = kustomization
        .get("resources")
        .and_then(Value::as_sequence)
        .expect("resources");
    let mut manifests = BTreeMap::new();
    for resource in resources {
        let file = format!("deploy/kubernetes/{}", string(resource).expect("a file"));
        for document in yaml_documents(&file) {
            let kind = document.get("kind").and_then(string).expect("kind");
            let name = document
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(string)
                .expect("metadata.name");
            assert!(document.get("apiVersion").is_some(), "{file}: apiVersion");
            let key = (kind.to_owned(), name.to_owned());
            assert!(
                manifests.insert(key, document.clone()).is_none(),
                "{file}: {kind}/{name} twice"
            );
        }
    }
    (kustomization, manifests)
}

fn pod_spec(workload: &Value) -> &Value {
    workload
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .expect("spec.template.spec")
}

fn container(workload: &Value) -> &Value {
    let containers = pod_spec(workload)
        .get("containers")
        .and_then(Value::as_sequence)
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container per pod");
    &containers[0]
}

fn args(container: &Value) -> Vec<String> {
    container
        .get("args")
        .and_then(Value::as_sequence)
        .expect("args")
        .iter()
        .map(|a| string(a).expect("string args").to_owned())
        .collect()
}

fn probe_path(container: &Value, probe: &str) -> Option<String> {
    container
        .get(probe)?
        .get("httpGet")?
        .get("path")
        .and_then(string)
        .map(str::to_owned)
}

#[test]
fn the_kubernetes_base_parses_and_runs_what_the_binaries_accept() {
    let (kustomization, manifests) = kubernetes_base();
    let get = |kind: &str, name: &str| {
        manifests
            .get(&(kind.to_owned(), name.to_owned()))
            .unwrap_or_else(|| panic!("no {kind}/{name} in the base"))
    };

    // The image is pinned once, in the kustomization, to the workspace version.
    let images = kustomization
        .get("images")
        .and_then(Value::as_sequence)
        .expect("images");
    let taxiway = images
        .iter()
        .find(|i| i.get("name").and_then(string) == Some("taxiway"))
        .expect("the taxiway image");
    let tag = taxiway.get("newTag").and_then(string).expect("newTag");
    assert_pinned(&format!("taxiway:{tag}"), "kustomization.yaml");
    assert_eq!(tag, VERSION);

    let config = get("ConfigMap", "taxiway");
    let secret = get("Secret", "taxiway");
    let tls = get("Secret", "taxiway-tls");
    let config_keys: BTreeSet<String> = mapping_keys(config.get("data").expect("data"))
        .into_iter()
        .collect();
    let secret_keys: BTreeSet<String> = mapping_keys(secret.get("stringData").expect("stringData"))
        .into_iter()
        .collect();
    let tls_keys: BTreeSet<String> = mapping_keys(tls.get("stringData").expect("stringData"))
        .into_iter()
        .collect();

    let mut names: BTreeSet<String> = config_keys.iter().chain(&secret_keys).cloned().collect();
    let workloads = [
        ("Job", "taxiway-migrate"),
        ("Deployment", "taxiway-api"),
        ("StatefulSet", "taxiway-projector"),
        ("Deployment", "taxiway-workbench-mirror"),
    ];
    for (kind, name) in workloads {
        let workload = get(kind, name);
        let container = container(workload);
        let image = container.get("image").and_then(string).expect("image");
        assert_eq!(image, "taxiway", "{name}: the image the kustomization pins");
        assert_eq!(
            pod_spec(workload)
                .get("securityContext")
                .and_then(|s| s.get("runAsNonRoot"))
                .and_then(Value::as_bool),
            Some(true),
            "{name} runs as non-root"
        );
        // The command parses as the binary would parse it (the first pod's name, as a
        // StatefulSet names it, stands in for $(…)).
        let words: Vec<String> = args(container)
            .into_iter()
            .map(|w| w.replace("$(POD_NAME)", &format!("{name}-0")))
            .collect();
        let parsed = match words[0].as_str() {
            "ingest" => ingest::Settings::try_parse_from_with_env(&words).map(|_| ()),
            "projector" => projector::config::Settings::try_parse_from_with_env(&words).map(|_| ()),
            "api" => api::config::Config::try_parse_from_with_env(&words).map(|_| ()),
            other => panic!("{name} runs unknown program {other}"),
        };
        assert!(parsed.is_ok(), "{name}: {words:?}: {:?}", parsed.err());
        // Its variables: from the ConfigMap, or each one given, from the Secret by a key it has.
        let from = container
            .get("envFrom")
            .and_then(Value::as_sequence)
            .expect("envFrom");
        assert!(from.iter().any(|f| {
            f.get("configMapRef")
                .and_then(|r| r.get("name"))
                .and_then(string)
                == Some("taxiway")
        }));
        for variable in container
            .get("env")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let variable_name = variable.get("name").and_then(string).expect("env name");
            if let Some(key) = variable
                .get("valueFrom")
                .and_then(|v| v.get("secretKeyRef"))
                .and_then(|r| r.get("key"))
                .and_then(string)
            {
                assert!(
                    secret_keys.contains(key),
                    "{name}: secret key {key} is not in the Secret"
                );
            }
            if variable_name.starts_with("TAXIWAY_") {
                names.insert(variable_name.to_owned());
            }
        }
        // The CA files the ConfigMap names are where the TLS Secret is mounted.
        let mount = container
            .get("volumeMounts")
            .and_then(Value::as_sequence)
            .and_then(|m| m.first())
            .and_then(|m| m.get("mountPath"))
            .and_then(string)
            .expect("the TLS mount");
        for variable in ["TAXIWAY_KAFKA_SSL_CA", "TAXIWAY_CQL_TLS_CA"] {
            let path = config
                .get("data")
                .and_then(|d| d.get(variable))
                .and_then(string)
                .expect("a CA path");
            let (dir, file) = path.rsplit_once('/').expect("a path");
            assert_eq!(dir, mount, "{name}: {variable} is under the mounted Secret");
            assert!(tls_keys.contains(file), "{variable}: {file} in taxiway-tls");
        }
    }
    assert_all_read(&names, "deploy/kubernetes");

    // api: replicas behind a Service, ready once loaded, alive while serving.
    let api = get("Deployment", "taxiway-api");
    let replicas = api
        .get("spec")
        .and_then(|s| s.get("replicas"))
        .and_then(Value::as_u64);
    assert!(
        replicas.is_some_and(|r| r >= 2),
        "api replicas: {replicas:?}"
    );
    let api_container = container(api);
    assert_eq!(
        probe_path(api_container, "readinessProbe").as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        probe_path(api_container, "livenessProbe").as_deref(),
        Some("/healthz")
    );
    let pod_labels = api
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .expect("pod labels");
    let service = get("Service", "taxiway-api");
    let selector = service
        .get("spec")
        .and_then(|s| s.get("selector"))
        .expect("selector");
    for key in mapping_keys(selector) {
        assert_eq!(
            selector.get(&key),
            pod_labels.get(&key),
            "the Service selects the api pods by {key}"
        );
    }

    // projector: one replica of a StatefulSet (stable pod names), a static member named after
    // its pod.
    let projector = get("StatefulSet", "taxiway-projector");
    let spec = projector.get("spec").expect("spec");
    assert_eq!(spec.get("replicas").and_then(Value::as_u64), Some(1));
    let projector_container = container(projector);
    let words = args(projector_container);
    let at = words
        .iter()
        .position(|w| w == "--instance-id")
        .expect("--instance-id");
    assert_eq!(words[at + 1], "$(POD_NAME)");
    // Each pod runs `projector run` as the static member named after it.
    for ordinal in 0..2 {
        let pod = format!("taxiway-projector-{ordinal}");
        let words: Vec<String> = words
            .iter()
            .map(|w| w.replace("$(POD_NAME)", &pod))
            .collect();
        let settings = projector::config::Settings::try_parse_from_with_env(&words)
            .unwrap_or_else(|e| panic!("{words:?}: {e}"));
        assert!(matches!(settings.command, projector::config::Command::Run));
        assert_eq!(
            settings.membership.instance_id.as_deref(),
            Some(pod.as_str())
        );
    }
    // The StatefulSet's governing Service exists, is headless, and selects its pods.
    let governing = spec
        .get("serviceName")
        .and_then(string)
        .expect("serviceName");
    let service = get("Service", governing);
    let service_spec = service.get("spec").expect("spec");
    assert_eq!(
        service_spec.get("clusterIP").and_then(string),
        Some("None"),
        "{governing} is headless"
    );
    let pod_labels = spec
        .get("template")
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .expect("pod labels");
    let selector = service_spec.get("selector").expect("selector");
    assert!(!mapping_keys(selector).is_empty());
    for key in mapping_keys(selector) {
        assert_eq!(
            selector.get(&key),
            pod_labels.get(&key),
            "{governing} selects the projector pods by {key}"
        );
    }
    let selected = spec
        .get("selector")
        .and_then(|s| s.get("matchLabels"))
        .expect("matchLabels");
    for key in mapping_keys(selected) {
        assert_eq!(
            selected.get(&key),
            pod_labels.get(&key),
            "matchLabels {key}"
        );
    }
    let pod_name = projector_container
        .get("env")
        .and_then(Value::as_sequence)
        .and_then(|env| {
            env.iter()
                .find(|v| v.get("name").and_then(string) == Some("POD_NAME"))
        })
        .and_then(|v| v.get("valueFrom"))
        .and_then(|v| v.get("fieldRef"))
        .and_then(|f| f.get("fieldPath"))
        .and_then(string);
    assert_eq!(pod_name, Some("metadata.name"));

    let mirror = args(container(get("Deployment", "taxiway-workbench-mirror")));
    assert_eq!(mirror[..2], ["ingest".to_owned(), "workbench".to_owned()]);
}
