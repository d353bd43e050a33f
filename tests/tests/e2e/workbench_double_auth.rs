//! Authentication of the Workbench test double (basic, and the apikey challenge with its tokens)
//! against the contract in `shared/design/workbench-api.md`.

use std::time::Duration;

use crate::workbench_double_exports::{basic, double_with, get, status_and_text, taxii_basic};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use taxiway_tests::workbench_double::{
    Fault, ServiceAccount, WorkbenchConfig, WorkbenchDouble, challenge_hash,
};

#[tokio::test]
async fn basic_auth_accepts_the_account_and_refuses_anything_else() {
    let workbench = double_with(&[], WorkbenchConfig::default()).await;
    assert_eq!(
        get(&workbench, "/api/collections", Some(&taxii_basic()))
            .await
            .status(),
        200
    );
    for authorization in [
        basic("taxii-server", "wrong-key"),
        basic("someone-else", "secret-squirrel"),
    ] {
        let response = get(&workbench, "/api/collections", Some(&authorization)).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Basic realm="Users""#
        );
        assert_eq!(response.text().await.unwrap(), "Unauthorized");
    }
    let response = get(&workbench, "/api/collections", None).await;
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(
        status_and_text(response).await,
        (401, "Not authorized".to_owned())
    );
    // Bearer tokens mean nothing when only Basic is enabled: the Basic strategy refuses the scheme.
    let response = get(&workbench, "/api/collections", Some("Bearer abc")).await;
    assert_eq!(response.status(), 401);
    // The challenge routes do not exist without the mechanism.
    let response = get(
        &workbench,
        "/api/authn/service/apikey-challenge?serviceName=taxii-server",
        None,
    )
    .await;
    assert_eq!(
        status_and_text(response).await,
        (404, "Authentication mechanism not found".to_owned())
    );
}

async fn challenge(workbench: &WorkbenchDouble, service: &str) -> String {
    let response = get(
        workbench,
        &format!("/api/authn/service/apikey-challenge?serviceName={service}"),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["challenge"].as_str().unwrap().to_owned()
}

async fn token_request(
    workbench: &WorkbenchDouble,
    service: &str,
    hash: &str,
) -> reqwest::Response {
    get(
        workbench,
        &format!("/api/authn/service/apikey-token?serviceName={service}"),
        Some(&format!("Apikey {hash}")),
    )
    .await
}

#[tokio::test]
async fn challenge_flow_issues_tokens_that_stop_working_when_they_expire() {
    let config = WorkbenchConfig::challenge(vec![ServiceAccount::taxii_server()])
        .with_token_timeout(Duration::from_secs(2));
    let workbench = double_with(&[], config).await;

    let first = challenge(&workbench, "taxii-server").await;
    assert_eq!(first.len(), 64);
    assert_eq!(STANDARD.decode(&first).unwrap().len(), 48);
    let hash = challenge_hash("secret-squirrel", &first);
    let response = token_request(&workbench, "taxii-server", &hash).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 2);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["serviceName"], "taxii-server");
    assert_eq!(
        payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(),
        2
    );

    let bearer = format!("Bearer {token}");
    assert_eq!(
        get(&workbench, "/api/collections", Some(&bearer))
            .await
            .status(),
        200
    );

    // A challenge is good for one attempt.
    assert_eq!(
        status_and_text(token_request(&workbench, "taxii-server", &hash).await).await,
        (400, "Challenge not found".to_owned())
    );
    // A newer challenge replaces the previous one.
    let older = challenge(&workbench, "taxii-server").await;
    let newer = challenge(&workbench, "taxii-server").await;
    assert_ne!(older, newer);
    assert_eq!(
        status_and_text(
            token_request(
                &workbench,
                "taxii-server",
                &challenge_hash("secret-squirrel", &older)
            )
            .await
        )
        .await,
        (400, "Invalid challenge hash".to_owned())
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = get(&workbench, "/api/collections", Some(&bearer)).await;
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("Token expired")
    );
}

#[tokio::test]
async fn challenge_routes_reject_bad_requests() {
    let config = WorkbenchConfig::challenge(vec![ServiceAccount::taxii_server()])
        .with_challenge_validity(Duration::from_millis(100));
    let workbench = double_with(&[], config).await;
    let cases = [
        (
            "/api/authn/service/apikey-challenge",
            None,
            400,
            "Service name is required",
        ),
        (
            "/api/authn/service/apikey-challenge?serviceName=nobody",
            None,
            404,
            "Service not found",
        ),
        (
            "/api/authn/service/apikey-token?serviceName=taxii-server",
            None,
            400,
            "Authorization header is required",
        ),
        (
            "/api/authn/service/apikey-token?serviceName=taxii-server",
            Some("Apikey"),
            400,
            "Badly formatted request",
        ),
        (
            "/api/authn/service/apikey-token?serviceName=taxii-server",
            Some("Basic abc"),
            400,
            "Badly formatted request",
        ),
        (
            "/api/authn/service/apikey-token?serviceName=taxii-server",
            Some("Apikey abc"),
            400,
            "Challenge not found",
        ),
    ];
    for (path, authorization, status, body) in cases {
        assert_eq!(
            status_and_text(get(&workbench, path, authorization).await).await,
            (status, body.to_owned()),
            "{path} {authorization:?}"
        );
    }
    let stale = challenge(&workbench, "taxii-server").await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        status_and_text(
            token_request(
                &workbench,
                "taxii-server",
                &challenge_hash("secret-squirrel", &stale)
            )
            .await
        )
        .await,
        (400, "Challenge not found".to_owned())
    );
    // With challenge enabled every Authorization header goes to the Bearer strategy, Basic included.
    let response = get(&workbench, "/api/collections", Some(&taxii_basic())).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer realm="Users""#
    );
    let response = get(&workbench, "/api/collections", Some("Bearer not.a.jwt")).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn expire_tokens_now_forces_a_new_challenge() {
    let config = WorkbenchConfig::challenge(vec![ServiceAccount::taxii_server()]);
    let workbench = double_with(&[], config).await;
    let login = async || {
        let c = challenge(&workbench, "taxii-server").await;
        let response = token_request(
            &workbench,
            "taxii-server",
            &challenge_hash("secret-squirrel", &c),
        )
        .await;
        let body: Value = response.json().await.unwrap();
        format!("Bearer {}", body["access_token"].as_str().unwrap())
    };
    let bearer = login().await;
    assert_eq!(
        get(&workbench, "/api/collections", Some(&bearer))
            .await
            .status(),
        200
    );
    workbench.set_fault(Fault::ExpireTokensNow);
    assert_eq!(
        get(&workbench, "/api/collections", Some(&bearer))
            .await
            .status(),
        401
    );
    let renewed = login().await;
    assert_eq!(
        get(&workbench, "/api/collections", Some(&renewed))
            .await
            .status(),
        200
    );
}
