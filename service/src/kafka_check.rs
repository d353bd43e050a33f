//! A first contact with the brokers that says why it failed: librdkafka retries a refused login
//! or a failed TLS handshake forever and reports the cause only to its error callback, so a
//! client would otherwise end on a bare timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::KafkaArgs;

/// How long one metadata request may wait before the recorded errors are looked at again.
const ATTEMPT: Duration = Duration::from_millis(500);

/// Keeps librdkafka's last reported error; the reason names the broker.
#[derive(Default)]
struct LastError {
    last: Mutex<Option<(Option<RDKafkaErrorCode>, String)>>,
}

impl LastError {
    fn take(&self) -> Option<(Option<RDKafkaErrorCode>, String)> {
        self.last.lock().ok().and_then(|mut last| last.take())
    }
}

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((error.rdkafka_error_code(), reason.to_owned()));
        }
    }
}

impl ConsumerContext for LastError {}

/// Whether no retry can cure the error: a refused login, a failed TLS handshake, or a
/// plaintext client talking to a TLS listener (librdkafka says so in the reason).
fn is_final(code: Option<RDKafkaErrorCode>, reason: &str) -> bool {
    matches!(
        code,
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
    ) || reason.contains("security.protocol")
}

impl KafkaArgs {
    /// Asks the brokers for their metadata with these settings, within the Kafka timeout;
    /// on failure, one line naming the brokers and the cause. Blocking: call it from a
    /// blocking task.
    pub fn check_brokers(&self) -> Result<(), String> {
        let fail = |cause: &str| format!("kafka {}: {cause}", self.brokers);
        self.sasl_password().map_err(|e| fail(&e))?;
        let consumer: BaseConsumer<LastError> = self
            .client_config()
            .create_with_context(LastError::default())
            .map_err(|e| fail(&format!("invalid client settings: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        let mut seen = None;
        loop {
            let attempt = consumer.fetch_metadata(None, ATTEMPT);
            if attempt.is_ok() {
                return Ok(());
            }
            if let Some((code, reason)) = consumer.context().take() {
                if is_final(code, &reason) {
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
