//! A first contact with the brokers that says why it failed: librdkafka retries a refused login,
//! a failed TLS handshake or a protocol mismatch forever and reports the cause only to its
//! error and log callbacks, so a client would otherwise end on a bare timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaArgs, KafkaSecurityProtocol};

/// How long one metadata request may wait before the reported errors are looked at again.
const ATTEMPT: Duration = Duration::from_millis(500);

/// How long a look at the client's events waits for more: every event already queued is
/// handled, so a cause is never left behind a backlog of others.
const DRAIN: Duration = Duration::from_millis(50);

/// How long the TLS probe of a broker may take (connect, send, first answer).
const PROBE: Duration = Duration::from_secs(3);

/// What librdkafka says when a connection fails in a way no retry cures: a certificate
/// that does not verify, a TLS handshake the two sides cannot agree on, a refused login.
/// Matched case-insensitively; the error codes alone do not tell (a failed verification
/// comes as a transport error as often as an SSL one).
const FINAL_MARKERS: [&str; 6] = [
    "ssl handshake failed",
    "certificate verify failed",
    "authentication failed",
    "sasl authentication error",
    "unsupported sasl mechanism",
    // librdkafka's own hint for a plaintext client on a TLS listener, in the versions that
    // add it (2.12 drops it: the check below finds the same case without it).
    "connecting to a ssl listener?",
];

/// What the client reported since the last look: error events (with their code) and the
/// connection failures it logged (`FAIL`, which it logs even when it raises no error event:
/// a closed connection is only logged). Each reason names the broker.
#[derive(Default)]
struct Reports {
    seen: Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>,
}

impl Reports {
    fn take(&self) -> Vec<(Option<RDKafkaErrorCode>, String)> {
        self.seen
            .lock()
            .map(|mut seen| std::mem::take(&mut *seen))
            .unwrap_or_default()
    }

    fn push(&self, code: Option<RDKafkaErrorCode>, reason: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((code, reason.to_owned()));
        }
    }
}

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if fac == "FAIL" {
            // "[thrd:NAME]: NAME: cause": the thread's name says nothing the rest does not.
            let reason = message
                .strip_prefix("[thrd:")
                .and_then(|rest| rest.split_once("]: "))
                .map_or(message, |(_, reason)| reason);
            self.push(None, reason);
        }
        // As rdkafka's default does; the reason also ends up in the one line the check
        // returns, but the log keeps every attempt.
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}");
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.push(error.rdkafka_error_code(), reason);
    }
}

// A producer, not a consumer: its poll hands error events, with their reason, to the context.
impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Whether a reported failure is one no retry cures.
fn is_final(code: Option<RDKafkaErrorCode>, reason: &str) -> bool {
    if matches!(
        code,
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
    ) {
        return true;
    }
    let reason = reason.to_lowercase();
    FINAL_MARKERS.iter().any(|marker| reason.contains(marker))
}

/// The broker a reason names, as `host:port`: reasons start with librdkafka's broker name,
/// `[proto://]host:port/id: …`.
fn broker_of(reason: &str) -> Option<&str> {
    let name = reason.split(": ").next()?;
    let name = name.split_once("://").map_or(name, |(_, rest)| rest);
    let (address, id) = name.rsplit_once('/')?;
    let id_ok = id == "bootstrap" || (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    (id_ok && address.contains(':')).then_some(address)
}

/// Whether a plaintext client's failure looks like a TLS listener's: the broker closed the
/// connection while it was asked for its API versions, the first request a client sends
/// (a TLS listener reads it as a malformed handshake).
fn closed_at_first_request(protocol: KafkaSecurityProtocol, reason: &str) -> bool {
    matches!(
        protocol,
        KafkaSecurityProtocol::Plaintext | KafkaSecurityProtocol::SaslPlaintext
    ) && reason.contains("Disconnected")
        && reason.contains("in state APIVERSION_QUERY")
}

impl KafkaArgs {
    /// Asks the brokers for their metadata with these settings, within the Kafka timeout;
    /// on failure, one line naming the brokers and the cause. Blocking: call it from a
    /// blocking task.
    pub fn check_brokers(&self) -> Result<(), String> {
        let fail = |cause: &str| format!("kafka {}: {cause}", self.brokers);
        self.sasl_password().map_err(|e| fail(&e))?;
        // Sends nothing: it only connects and asks for metadata.
        let mut config = self.client_config();
        // A closed connection is logged at info level, which librdkafka leaves out unless
        // the process logs that much (its level follows the subscriber's at creation).
        if !matches!(config.log_level, RDKafkaLogLevel::Debug) {
            config.set_log_level(RDKafkaLogLevel::Info);
        }
        let client: BaseProducer<Reports> = config
            .create_with_context(Reports::default())
            .map_err(|e| fail(&format!("invalid client settings: {e}")))?;
        let outcome = self
            .wait_for_metadata(&client)
            .map_err(|cause| fail(&cause));
        // Dropped on a thread of its own, whichever way the check ended: tearing down a
        // client whose broker connections keep failing can block for long, and the caller
        // needs the answer now.
        std::thread::spawn(move || drop(client));
        outcome
    }

    /// Asks for metadata until it comes, a final failure is reported, or the timeout.
    fn wait_for_metadata(&self, client: &BaseProducer<Reports>) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        // Each broker is probed for TLS at most once.
        let mut probed = Vec::new();
        let mut seen = None;
        loop {
            let attempt = client.client().fetch_metadata(None, ATTEMPT);
            if attempt.is_ok() {
                return Ok(());
            }
            client.poll(DRAIN);
            for (code, reason) in client.context().take() {
                if is_final(code, &reason) {
                    return Err(reason);
                }
                if closed_at_first_request(self.security_protocol, &reason)
                    && let Some(broker) = broker_of(&reason)
                    && !probed.contains(&broker.to_owned())
                {
                    probed.push(broker.to_owned());
                    if crate::tls_probe::answers_tls(broker, PROBE) {
                        return Err(format!(
                            "{broker} is a TLS listener: it \
                             closed the connection at the first request and answers a TLS \
                             handshake; set the security protocol to ssl or sasl_ssl"
                        ));
                    }
                }
                seen = Some(reason);
            }
            if Instant::now() >= deadline {
                let cause = match (seen, attempt) {
                    (Some(reason), _) => reason,
                    (None, Err(e)) => e.to_string(),
                    (None, Ok(_)) => "no answer".to_owned(),
                };
                return Err(format!("no metadata within {:?}: {cause}", self.timeout));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reasons as librdkafka 2.12 reports them.
    const UNTRUSTED: &str = "sasl_ssl://127.0.0.1:19094/bootstrap: SSL handshake failed: \
        error:0A000086:SSL routines::certificate verify failed: broker certificate could not be \
        verified, verify that ssl.ca.location is correctly configured or root CA certificates \
        are installed (install ca-certificates package) (after 155ms in state SSL_HANDSHAKE)";
    const UNTRUSTED_SHORT: &str = "sasl_ssl://127.0.0.1:19094/bootstrap: error:0A000086:SSL \
        routines::certificate verify failed (after 8ms in state SSL_HANDSHAKE)";
    const PLAINTEXT_ON_TLS: &str = "127.0.0.1:19094/bootstrap: Disconnected: connection closed \
        by peer: receive 0 after POLLIN (after 1ms in state APIVERSION_QUERY)";
    const DOWN: &str = "1/1 brokers are down";
    const REFUSED: &str = "127.0.0.1:19092/bootstrap: Connect to ipv4#127.0.0.1:19092 failed: \
        Connection refused (after 0ms in state CONNECT)";

    #[test]
    fn an_untrusted_certificate_is_final_whatever_code_it_comes_with() {
        for code in [
            Some(RDKafkaErrorCode::SSL),
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            None,
        ] {
            assert!(is_final(code, UNTRUSTED), "{code:?}");
            assert!(is_final(code, UNTRUSTED_SHORT), "{code:?}");
        }
    }

    #[test]
    fn a_refused_login_is_final() {
        assert!(is_final(
            Some(RDKafkaErrorCode::Authentication),
            "sasl_ssl://127.0.0.1:19094/bootstrap: SASL authentication error: Authentication \
             failed during authentication due to invalid credentials with SASL mechanism \
             SCRAM-SHA-512"
        ));
    }

    #[test]
    fn a_broker_down_or_a_dropped_connection_is_retried() {
        for reason in [DOWN, REFUSED, PLAINTEXT_ON_TLS] {
            assert!(!is_final(Some(RDKafkaErrorCode::AllBrokersDown), reason));
            assert!(!is_final(None, reason));
        }
    }

    #[test]
    fn a_plaintext_client_closed_at_its_first_request_is_probed_for_tls() {
        assert!(closed_at_first_request(
            KafkaSecurityProtocol::Plaintext,
            PLAINTEXT_ON_TLS
        ));
        assert!(closed_at_first_request(
            KafkaSecurityProtocol::SaslPlaintext,
            PLAINTEXT_ON_TLS
        ));
        // A TLS client closed there is another story (a broker that is not TLS is a
        // handshake failure, reported as such).
        assert!(!closed_at_first_request(
            KafkaSecurityProtocol::SaslSsl,
            PLAINTEXT_ON_TLS
        ));
        assert!(!closed_at_first_request(
            KafkaSecurityProtocol::Plaintext,
            REFUSED
        ));
    }

    #[test]
    fn the_broker_is_read_from_the_reason() {
        assert_eq!(broker_of(PLAINTEXT_ON_TLS), Some("127.0.0.1:19094"));
        assert_eq!(broker_of(UNTRUSTED), Some("127.0.0.1:19094"));
        assert_eq!(
            broker_of("ssl://kafka-0.kafka:9093/0: Disconnected"),
            Some("kafka-0.kafka:9093")
        );
        assert_eq!(broker_of(DOWN), None);
    }
}
