//! Letting go of Kafka clients without waiting for them.
//!
//! rust-rdkafka's producer and admin client each run a thread that polls librdkafka in 100 ms
//! steps, and dropping the client joins that thread: every drop waits up to 100 ms, plus
//! librdkafka's own shutdown. On the import path that wait is pure latency (measured: the admin
//! client's drop was 100 of the 110 ms spent making sure the topics exist, and the producer's
//! drop added 30–100 ms after the last acknowledgement), so clients whose work is done are
//! dropped on a thread of their own instead.

/// Drops `client` on a detached thread. Only for clients with nothing left to do: a producer
/// after its flush, an admin client or consumer after its last answer. When the process exits
/// first, the operating system closes the connections, which is all the drop would have done.
pub fn drop_in_background<T: Send + 'static>(client: T, name: &str) {
    let spawned = std::thread::Builder::new()
        .name(format!("drop-{name}"))
        .spawn(move || drop(client));
    if let Err(e) = spawned {
        // The client moved into the closure that failed to start and is dropped with it.
        tracing::debug!(error = %e, client = name, "no thread to drop the client on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Reports, when dropped, the name of the thread that dropped it.
    struct Probe(mpsc::Sender<Option<String>>);

    impl Drop for Probe {
        fn drop(&mut self) {
            let name = std::thread::current().name().map(str::to_owned);
            let _ = self.0.send(name);
        }
    }

    #[test]
    fn the_client_is_dropped_on_a_thread_of_its_own() {
        let (tx, rx) = mpsc::channel();
        drop_in_background(Probe(tx), "probe");
        let dropped_on = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(dropped_on.as_deref(), Some("drop-probe"));
    }
}
