//! Plain HTTP GETs of the index and the release files it lists (no authentication: MITRE
//! publishes them openly), with the same HTTP client as the Workbench mirror.

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::workbench::{Fetched, snippet};

/// A client for the index and the files it points to. Cheap to share.
pub struct IndexClient {
    http: reqwest::Client,
}

impl IndexClient {
    pub fn new(request_timeout: Duration) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("taxiway-ingest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::AttackIndex {
                url: String::new(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(IndexClient { http })
    }

    /// The body of `url`, as sent (a gzip `Content-Encoding` is undone by the client; a
    /// compressed file is decompressed when read as a bundle). Anything but a 2xx is an error.
    pub async fn get(&self, url: &str) -> Result<Fetched<Vec<u8>>, Error> {
        let started = Instant::now();
        let error = |reason: String| Error::AttackIndex {
            url: url.to_owned(),
            reason,
        };
        let transport = |e: reqwest::Error| {
            error(if e.is_timeout() {
                format!("timed out: {e}")
            } else {
                e.to_string()
            })
        };
        let response = self.http.get(url).send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(error(format!("HTTP {status}: {}", snippet(&body))));
        }
        Ok(Fetched {
            bytes: body.len(),
            value: body.to_vec(),
            elapsed: started.elapsed(),
        })
    }
}
