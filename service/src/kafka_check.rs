//! A first contact with the brokers that says why it failed: librdkafka retries a refused login
//! or a failed TLS handshake forever and reports the cause only to its error callback, so a
//! client would otherwise end on a bare timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::KafkaArgs;

/// How long one metadata request may wait before the recorded errors are looked at again.
const ATTEMPT: Duration = Duration::from_millis(500);

/// librdkafka's reported errors since the last look; each reason names the broker.
#[derive(Default)]
struct LastError {
    seen: Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>,
}

impl LastError {
    fn take(&self) -> Vec<(Option<RDKafkaErrorCode>, String)> {
        self.seen
            .lock()
            .map(|mut seen| std::mem::take(&mut *seen))
            .unwrap_or_default()
    }
}

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((error.rdkafka_error_code(), reason.to_owned()));
        }
    }
}

// A producer, not a consumer: its poll hands error events, with their reason, to the context.
impl ProducerContext for LastError {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Whether no retry can cure the error: a refused login or a failed TLS handshake. (A
/// plaintext client on a TLS listener only sees its connections dropped, as when the broker
/// is down: that one is retried until the timeout.)
fn is_final(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
    )
}

impl KafkaArgs {
    /// Asks the brokers for their metadata with these settings, within the Kafka timeout;
    /// on failure, one line naming the brokers and the cause. Blocking: call it from a
    /// blocking task.
    pub fn check_brokers(&self) -> Result<(), String> {
        let fail = |cause: &str| format!("kafka {}: {cause}", self.brokers);
        self.sasl_password().map_err(|e| fail(&e))?;
        // Sends nothing: it only connects and asks for metadata.
        let client: BaseProducer<LastError> = self
            .client_config()
            .create_with_context(LastError::default())
            .map_err(|e| fail(&format!("invalid client settings: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        let mut seen = None;
        loop {
            let attempt = client.client().fetch_metadata(None, ATTEMPT);
            if attempt.is_ok() {
                return Ok(());
            }
            client.poll(Duration::ZERO);
            for (code, reason) in client.context().take() {
                if is_final(code) {
                    // Dropped on a thread of its own: tearing down a client whose broker
                    // connection keeps failing its handshake can take long, and the caller
                    // needs the answer now.
                    std::thread::spawn(move || drop(client));
                    return Err(fail(&reason));
                }
                seen = Some(reason);
            }
            if Instant::now() >= deadline {
                let cause = match (seen, attempt) {
                    (Some(reason), _) => reason,
                    (None, Err(e)) => e.to_string(),
                    (None, Ok(_)) => "no answer".to_owned(),
                };
                return Err(fail(&format!(
                    "no metadata within {:?}: {cause}",
                    self.timeout
                )));
            }
        }
    }
}
