//! The operator kit's monitoring, checked statically: the alert rules pass `promtool check rules`,
//! the rules and the dashboard name only metrics some service registers, and every `/metrics`
//! carries `taxiway_build_info` and the process metrics.

use std::collections::BTreeSet;
use std::path::Path;

use axum::body::Body;
use axum::http::Request;
use serde_norway::Value;

use crate::deployment::{VERSION, read, repo_path, yaml};
use crate::memory_server;

/// Every metric name the three services register, read from their metrics modules (a vector
/// with no labelled child yet is absent from a registry's output, so the code is the full list),
/// with each module's namespace.
fn metrics_in_code() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (file, namespace) in [
        ("api/src/metrics.rs", "taxiway_api"),
        ("ingest/src/metrics.rs", "taxiway_ingest"),
        ("projector/src/metrics.rs", "taxiway_projector"),
    ] {
        let code = read(file);
        assert!(
            code.contains(&format!("Registry::new_custom(Some(\"{namespace}\"")),
            "{file} registers under {namespace}"
        );
        // A string literal opening a constructor's arguments (`IntGauge::new("…"`,
        // `Opts::new(\n "…"`) is a metric's name.
        const CONSTRUCTOR: &str = "::new(";
        for (at, _) in code.match_indices(CONSTRUCTOR) {
            let rest = &code[at + CONSTRUCTOR.len()..];
            let Some(rest) = rest.trim_start().strip_prefix('"') else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(format!("{namespace}_{name}"));
            }
        }
    }
    names
}

/// The metric families of a Prometheus text exposition (`# TYPE name kind`).
fn families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

async fn api_metrics() -> String {
    let (app, _, _) = memory_server::server().await;
    // One request first, so the per-route families have a child to show.
    memory_server::get(&app, "/taxii2/").await;
    let reply =
        memory_server::send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(reply.status.is_success(), "/metrics: {}", reply.status);
    String::from_utf8(reply.body.to_vec()).expect("UTF-8")
}

/// Every metric any service exports: the code's names plus the shared ones every endpoint adds.
async fn registered_metrics() -> BTreeSet<String> {
    let code = metrics_in_code();
    let api = families(&api_metrics().await);
    let projector = families(
        &String::from_utf8(
            projector::metrics::Metrics::new()
                .expect("projector metrics")
                .render(),
        )
        .expect("UTF-8"),
    );
    let shared =
        families(&String::from_utf8(service::render(&prometheus_registry())).expect("UTF-8"));
    // The code reading misses nothing the running registries show.
    for family in api.iter().chain(&projector) {
        assert!(
            code.contains(family) || shared.contains(family),
            "{family} is exported but not found in the metrics modules"
        );
    }
    assert!(
        code.len() >= 30,
        "found only {} names: {code:?}",
        code.len()
    );
    code.into_iter().chain(shared).collect()
}

fn prometheus_registry() -> prometheus::Registry {
    prometheus::Registry::new()
}

/// The metric names a PromQL text refers to: Taxiway's and the process family (Prometheus'
/// own `up` is not a service's). Histogram series resolve to their family.
fn metrics_named(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in promql.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if word.starts_with("taxiway_") || word.starts_with("process_") {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(&word);
            names.insert(family.to_owned());
        }
        word.clear();
    }
    names
}

fn alert_rules() -> Vec<Value> {
    let rules = yaml("deploy/prometheus/taxiway-alerts.yml");
    rules
        .get("groups")
        .and_then(Value::as_sequence)
        .expect("groups")
        .iter()
        .flat_map(|g| {
            g.get("rules")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/taxiway.json")).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("a query").to_owned())
        .collect()
}

#[tokio::test]
async fn alert_rules_and_dashboard_name_only_metrics_a_service_registers() {
    let registered = registered_metrics().await;
    let rules = alert_rules();
    let mut used = BTreeSet::new();
    for rule in &rules {
        let name = rule
            .get("alert")
            .and_then(Value::as_str)
            .expect("alert name");
        let expr = rule.get("expr").and_then(Value::as_str).expect("expr");
        let named = metrics_named(expr);
        assert!(
            !named.is_empty() || expr.contains("up{"),
            "{name} names no metric"
        );
        for metric in &named {
            assert!(
                registered.contains(metric),
                "alert {name}: {metric} is registered by no service"
            );
        }
        used.extend(named);
    }
    // The alerts the kit promises, each over the metric that shows it.
    for metric in [
        "taxiway_projector_consumer_lag",
        "taxiway_projector_dead_letters_total",
        "taxiway_api_requests_total",
        "taxiway_api_store_errors_total",
    ] {
        assert!(used.contains(metric), "no alert over {metric}");
    }
    let rules_text = read("deploy/prometheus/taxiway-alerts.yml");
    assert!(
        rules_text.contains("status=~\"5..\""),
        "an alert on api 5xx"
    );

    let queries = dashboard_queries();
    for query in &queries {
        for metric in metrics_named(query) {
            assert!(
                registered.contains(&metric),
                "dashboard: {metric} is registered by no service"
            );
        }
    }
    assert!(queries.iter().any(|q| q.contains("taxiway_build_info")));
    assert!(
        queries
            .iter()
            .any(|q| q.contains("process_resident_memory_bytes"))
    );
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let promtool = std::process::Command::new(repo_path("dev/promtool"))
        .arg("path")
        .output()
        .expect("dev/promtool runs");
    let promtool = String::from_utf8_lossy(&promtool.stdout).trim().to_owned();
    assert!(
        Path::new(&promtool).is_file(),
        "{promtool} is missing: run dev/promtool (dev/test does), which installs Debian's prometheus package"
    );
    let rules = repo_path("deploy/prometheus/taxiway-alerts.yml");
    let output = std::process::Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "promtool check rules: {stdout}{stderr}"
    );
    let expected = format!("SUCCESS: {} rules found", alert_rules().len());
    assert!(stdout.contains(&expected), "{stdout}");
}

#[tokio::test]
async fn every_metrics_endpoint_serves_build_info_and_process_metrics() {
    let build_info = format!("version=\"{VERSION}\"");
    let api = api_metrics().await;
    let projector = String::from_utf8(
        projector::metrics::Metrics::new()
            .expect("projector metrics")
            .render(),
    )
    .expect("UTF-8");
    // ingest serves its registry through the same service endpoint (service::serve_metrics).
    let ingest_like = String::from_utf8(service::render(&prometheus_registry())).expect("UTF-8");
    for (who, body) in [
        ("api", &api),
        ("projector", &projector),
        ("ingest", &ingest_like),
    ] {
        let line = body
            .lines()
            .find(|l| l.starts_with("taxiway_build_info{"))
            .unwrap_or_else(|| panic!("{who}: no taxiway_build_info"));
        assert!(
            line.contains(&build_info) && line.contains("git_sha=\""),
            "{who}: {line}"
        );
        assert!(line.ends_with(" 1"), "{who}: {line}");
        let rss = body
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        assert!(
            rss.is_some_and(|b| b > 0.0),
            "{who}: process_resident_memory_bytes {rss:?}"
        );
        assert!(
            body.contains("process_open_fds "),
            "{who}: process_open_fds"
        );
    }
}
