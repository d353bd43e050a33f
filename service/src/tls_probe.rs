//! Whether an endpoint answers a TLS handshake: tells a client set up for plaintext that what it reached is a TLS listener.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// TLS record content types a server may answer a ClientHello with: a handshake message
/// (its ServerHello) or an alert (it refuses our hello).
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;

/// Sends a TLS ClientHello to `address` (`host:port`) and says whether the answer starts
/// with a TLS record. A plaintext Kafka broker reads the hello as an oversized request and
/// closes the connection without a byte, so a yes means a TLS listener. Any failure to
/// connect, send or read, within `within` each, is a no.
pub(crate) fn answers_tls(address: &str, within: Duration) -> bool {
    probe(address, within).unwrap_or(false)
}

fn probe(address: &str, within: Duration) -> Option<bool> {
    let addr = address.to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&addr, within).ok()?;
    stream.set_read_timeout(Some(within)).ok()?;
    stream.set_write_timeout(Some(within)).ok()?;
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).ok()?;
    // No roots: the handshake never gets as far as checking a certificate, only its first
    // answer is read.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    while tls.wants_write() {
        tls.write_tls(&mut stream).ok()?;
    }
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).ok()?;
    Some(matches!(header, [ALERT | HANDSHAKE, 3]))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use super::*;

    /// A server on 127.0.0.1 that reads what comes, answers `reply` and closes.
    fn server(reply: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut hello = [0u8; 5];
            stream.read_exact(&mut hello).unwrap();
            assert_eq!(hello[0], HANDSHAKE, "a ClientHello record");
            stream.write_all(reply).unwrap();
        });
        address
    }

    #[test]
    fn a_server_answering_with_a_tls_record_is_a_tls_listener() {
        // A fatal handshake_failure alert, TLS 1.2 record layer.
        let address = server(&[ALERT, 3, 3, 0, 2, 2, 40]);
        assert!(answers_tls(&address, Duration::from_secs(5)));
    }

    #[test]
    fn a_server_closing_without_a_word_or_answering_otherwise_is_not() {
        let address = server(b"");
        assert!(!answers_tls(&address, Duration::from_secs(5)));
        let address = server(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        assert!(!answers_tls(&address, Duration::from_secs(5)));
    }

    #[test]
    fn nothing_listening_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert!(!answers_tls(&address, Duration::from_secs(1)));
    }
}
