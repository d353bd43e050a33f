//! A Server-Sent Events reader for the live-stream tests: the wire format as the HTML standard
//! defines it (`id:`, `event:`, `data:` fields, events ended by a blank line, `:` comments).

use std::time::Duration;

use crate::Deadline;

/// One event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// An open event stream.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines (heartbeats) seen so far.
    pub comments: usize,
}

impl EventStream {
    /// `GET url` with `Accept: text/event-stream` and `headers`; fails unless the answer is 200.
    pub async fn open(
        client: &reqwest::Client,
        url: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<EventStream> {
        let mut request = client.get(url).header("accept", "text/event-stream");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await?;
        anyhow::ensure!(
            response.status() == reqwest::StatusCode::OK,
            "{url}: {}",
            response.status()
        );
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        anyhow::ensure!(
            content_type.starts_with("text/event-stream"),
            "{url}: content-type {content_type:?}"
        );
        Ok(EventStream {
            response,
            buffer: String::new(),
            comments: 0,
        })
    }

    /// The next event, or an error once `deadline` passes or the stream ends.
    pub async fn next(&mut self, deadline: &Deadline) -> anyhow::Result<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = self.parse(&block) {
                    return Ok(event);
                }
                continue;
            }
            let left = deadline.remaining();
            anyhow::ensure!(!left.is_zero(), "no event before the deadline");
            let chunk =
                tokio::time::timeout(left.min(Duration::from_secs(60)), self.response.chunk())
                    .await
                    .map_err(|_| anyhow::anyhow!("no byte within {left:?}"))??
                    .ok_or_else(|| anyhow::anyhow!("the stream ended"))?;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }

    /// Reads `n` events.
    pub async fn take(&mut self, n: usize, deadline: &Deadline) -> anyhow::Result<Vec<SseEvent>> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            events.push(
                self.next(deadline)
                    .await
                    .map_err(|e| anyhow::anyhow!("after {} of {n} events: {e}", events.len()))?,
            );
        }
        Ok(events)
    }

    /// One block's event; `None` for a block of comments only.
    fn parse(&mut self, block: &str) -> Option<SseEvent> {
        let (mut id, mut event, mut data, mut any) = (None, None, Vec::new(), false);
        for line in block.lines() {
            if line.is_empty() {
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            any = true;
            match field {
                "id" => id = Some(value),
                "event" => event = Some(value),
                "data" => data.push(value),
                _ => {}
            }
        }
        any.then(|| SseEvent {
            id,
            event,
            data: data.join("\n"),
        })
    }
}
