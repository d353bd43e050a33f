//! Workbench's service authentication: Basic apikey (passport-http), the apikey challenge flow issuing HS256
//! JWTs (passport-http-bearer), strategy selection and the service-account check, with their exact failure responses.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::Shared;
use super::reply::Rejection;

type HmacSha256 = Hmac<Sha256>;

/// A challenge handed out and not yet used (NodeCache entry keyed by service name).
pub(crate) struct PendingChallenge {
    pub challenge: String,
    pub apikey: String,
    pub expires: Instant,
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub service_name: String,
}

/// 48 random bytes, base64: 64 characters, as `crypto.randomBytes(48).toString('base64')`.
pub(crate) fn new_challenge() -> String {
    let mut bytes = Vec::with_capacity(48);
    // uuid v4 draws from the OS random source; three of them give the 48 bytes without another dependency.
    for _ in 0..3 {
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    STANDARD.encode(bytes)
}

pub(crate) fn new_secret() -> Vec<u8> {
    let mut bytes = Vec::with_capacity(32);
    for _ in 0..2 {
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    bytes
}

/// Lowercase hex of HMAC-SHA256(key = apikey, message = challenge): what a client sends as `Apikey <hash>`.
pub fn challenge_hash(apikey: &str, challenge: &str) -> String {
    hex::encode(hmac_sha256(apikey.as_bytes(), challenge.as_bytes()))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; an empty MAC would only fail verification.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `jwt.sign({serviceName, exp}, secret)`: HS256, `iat` added by the library.
pub(crate) fn sign_token(secret: &[u8], service_name: &str, iat: u64, exp: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let name = serde_json::Value::String(service_name.to_owned()).to_string();
    let payload = URL_SAFE_NO_PAD
        .encode(format!(r#"{{"serviceName":{name},"exp":{exp},"iat":{iat}}}"#).as_bytes());
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(secret, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    Valid(String),
    /// `done(null, false, {message})`: 401 with an `invalid_token` challenge.
    Rejected(&'static str),
    /// `done(err)`: the error handler answers 500.
    Broken,
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: Option<String>,
}

#[derive(Deserialize)]
struct JwtClaims {
    #[serde(rename = "serviceName")]
    service_name: Option<String>,
    exp: Option<f64>,
}

fn decode_part<T: for<'de> Deserialize<'de>>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// passport-http-bearer's verify callback for Workbench apikey tokens.
pub(crate) fn check_token(
    secret: &[u8],
    token: &str,
    now: u64,
    revoked: bool,
    oidc_enabled: bool,
) -> TokenCheck {
    let parts: Vec<&str> = token.split('.').collect();
    let Some(header) = parts.first().and_then(|p| decode_part::<JwtHeader>(p)) else {
        return TokenCheck::Rejected("Invalid token specified");
    };
    match header.alg.as_deref() {
        Some("HS256") => {}
        Some("RS256") if !oidc_enabled => {
            return TokenCheck::Rejected("Authentication mechanism not found");
        }
        Some("RS256") => return TokenCheck::Rejected("Signing key not found"),
        _ => return TokenCheck::Rejected("Unknown token"),
    }
    let [header_part, payload_part, signature_part] = parts[..] else {
        return TokenCheck::Broken; // jwt malformed
    };
    let Some(claims) = decode_part::<JwtClaims>(payload_part) else {
        return TokenCheck::Broken;
    };
    let expected = hmac_sha256(secret, format!("{header_part}.{payload_part}").as_bytes());
    if URL_SAFE_NO_PAD.decode(signature_part).ok() != Some(expected) {
        return TokenCheck::Rejected("Invalid signature");
    }
    if revoked || claims.exp.is_some_and(|exp| now as f64 >= exp) {
        return TokenCheck::Rejected("Token expired");
    }
    match claims.service_name {
        Some(name) => TokenCheck::Valid(name),
        None => TokenCheck::Rejected("Service not found"),
    }
}

fn bearer_challenge(error: Option<&str>) -> String {
    match error {
        None => r#"Bearer realm="Users""#.to_owned(),
        Some(description) => format!(
            r#"Bearer realm="Users", error="invalid_token", error_description="{description}""#
        ),
    }
}

fn basic_challenge() -> String {
    r#"Basic realm="Users""#.to_owned()
}

/// Node's `Buffer.from(s, 'base64')` is lenient: padding optional, junk ignored.
fn lenient_base64(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/'))
        .collect();
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine
        .decode(cleaned)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// `authn.authenticate` then `authz.requireRole` for a service caller: the account must exist.
pub(crate) fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<Principal, Rejection> {
    let principal = authenticate(shared, headers)?;
    let account = shared
        .config
        .service_accounts
        .iter()
        .find(|a| a.name == principal.service_name);
    match account {
        Some(_) => Ok(principal),
        _ => Err(Rejection::Text(
            StatusCode::UNAUTHORIZED,
            "Not authorized".into(),
        )),
    }
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Principal, Rejection> {
    let config = &shared.config;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .filter(|v| !v.is_empty());
    let Some(authorization) = authorization else {
        return Err(Rejection::Text(
            StatusCode::UNAUTHORIZED,
            "Not authorized".into(),
        ));
    };
    // Workbench hands any Authorization header to the Bearer strategy when challenge (or OIDC) is enabled,
    // and to the Basic strategy only otherwise.
    if config.challenge_apikey {
        let parts: Vec<&str> = authorization.split(' ').collect();
        let [scheme, token] = parts[..] else {
            return Err(Rejection::Passport(StatusCode::BAD_REQUEST, None));
        };
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(Rejection::Passport(
                StatusCode::UNAUTHORIZED,
                Some(bearer_challenge(None)),
            ));
        }
        let revoked = {
            let state = shared.lock();
            match (state.issued_tokens.get(token), state.tokens_expired_at) {
                (Some(issued), Some(cutoff)) => *issued <= cutoff,
                _ => false,
            }
        };
        return match check_token(&shared.jwt_secret, token, unix_now(), revoked, false) {
            TokenCheck::Valid(service_name) => Ok(Principal { service_name }),
            TokenCheck::Rejected(message) => Err(Rejection::Passport(
                StatusCode::UNAUTHORIZED,
                Some(bearer_challenge(Some(message))),
            )),
            TokenCheck::Broken => Err(Rejection::Text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Server error.".into(),
            )),
        };
    }
    if config.basic_apikey {
        let parts: Vec<&str> = authorization.split(' ').collect();
        if parts.len() < 2 {
            return Err(Rejection::Passport(StatusCode::BAD_REQUEST, None));
        }
        let credentials = lenient_base64(parts[1]);
        let fields: Vec<&str> = credentials.split(':').collect();
        if !parts[0].to_ascii_lowercase().contains("basic") {
            return Err(Rejection::Passport(
                StatusCode::UNAUTHORIZED,
                Some(basic_challenge()),
            ));
        }
        if fields.len() < 2 {
            return Err(Rejection::Passport(StatusCode::BAD_REQUEST, None));
        }
        // passport-http splits on every ':' and takes the second field as the password.
        let (name, apikey) = (fields[0], fields[1]);
        let valid = !name.is_empty()
            && !apikey.is_empty()
            && config
                .service_accounts
                .iter()
                .any(|a| a.name == name && a.apikey == apikey);
        if !valid {
            return Err(Rejection::Passport(
                StatusCode::UNAUTHORIZED,
                Some(basic_challenge()),
            ));
        }
        return Ok(Principal {
            service_name: name.to_owned(),
        });
    }
    // No session cookies in the double: nothing else can authenticate.
    Err(Rejection::Text(
        StatusCode::UNAUTHORIZED,
        "Not authorized".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_is_64_base64_characters() {
        let c = new_challenge();
        assert_eq!(c.len(), 64);
        assert_eq!(STANDARD.decode(&c).unwrap().len(), 48);
        assert_ne!(c, new_challenge());
    }

    #[test]
    fn challenge_hash_is_lowercase_hex_hmac() {
        // RFC 4231 test case 2.
        assert_eq!(
            challenge_hash("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn token_round_trip_expiry_and_signature() {
        let secret = new_secret();
        let token = sign_token(&secret, "taxii-server", 1000, 1300);
        assert_eq!(
            check_token(&secret, &token, 1299, false, false),
            TokenCheck::Valid("taxii-server".into())
        );
        assert_eq!(
            check_token(&secret, &token, 1300, false, false),
            TokenCheck::Rejected("Token expired")
        );
        assert_eq!(
            check_token(&secret, &token, 1000, true, false),
            TokenCheck::Rejected("Token expired")
        );
        assert_eq!(
            check_token(&new_secret(), &token, 1000, false, false),
            TokenCheck::Rejected("Invalid signature")
        );
        assert_eq!(
            check_token(&secret, "garbage", 1000, false, false),
            TokenCheck::Rejected("Invalid token specified")
        );
        let payload: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            payload,
            serde_json::json!({"serviceName": "taxii-server", "exp": 1300, "iat": 1000})
        );
    }
}
