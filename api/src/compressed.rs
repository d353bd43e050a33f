//! Whole-collection responses compressed once per (ETag, encoding) and kept.
//!
//! Fetching a whole collection without `limit` is what `stix2`'s `TAXIICollectionSource` and
//! `mitreattack-python` do, and Python's `requests` always asks for gzip: compressed per request,
//! the 33 MB of Enterprise went out at 2 requests/s (13 at the fastest level); kept, at 45. A
//! collection revision never changes, so its compressed body is made once (at a better level than
//! per-request compression can afford), kept in a cache bounded in bytes, and sent as is;
//! concurrent first requests wait for the one compression instead of each doing it. Everything
//! else (pages, manifests, lean collections, `deflate`) keeps the per-response compression layer.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Whole results smaller than this are compressed per response: caching them saves little.
const MIN_CACHED_BODY: usize = 256 * 1024;

/// An encoding whose whole-collection bodies are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Gzip,
    Brotli,
    Zstd,
}

impl Encoding {
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    /// Compresses everything `chunks` yields.
    pub fn compress(
        self,
        chunks: impl Iterator<Item = Bytes>,
        size_hint: usize,
    ) -> std::io::Result<Vec<u8>> {
        let out = Vec::with_capacity(size_hint / 4);
        match self {
            Encoding::Gzip => {
                let mut w = flate2::write::GzEncoder::new(out, flate2::Compression::default());
                for chunk in chunks {
                    w.write_all(&chunk)?;
                }
                w.finish()
            }
            Encoding::Zstd => {
                let mut w = zstd::stream::write::Encoder::new(out, 3)?;
                for chunk in chunks {
                    w.write_all(&chunk)?;
                }
                w.finish()
            }
            Encoding::Brotli => {
                // Quality 5, 4 MiB window: most of brotli's gain on JSON at a fraction of the
                // cost of its top levels.
                let mut w = brotli::CompressorWriter::new(out, 64 * 1024, 5, 22);
                for chunk in chunks {
                    w.write_all(&chunk)?;
                }
                w.flush()?;
                Ok(w.into_inner())
            }
        }
    }
}

/// The encoding the response compression layer would pick for these headers (highest q-value,
/// ties to zstd, then br, then gzip), when it is one this cache serves. `None` for identity,
/// `deflate` or no acceptable encoding: the layer handles those.
pub fn negotiate(headers: &HeaderMap) -> Option<Encoding> {
    // Rank as tower-http orders its encodings, so both pick the same one.
    let rank = |name: &str| -> Option<(u8, Option<Encoding>)> {
        match name.to_ascii_lowercase().as_str() {
            "identity" => Some((0, None)),
            "deflate" => Some((1, None)),
            "gzip" | "x-gzip" => Some((2, Some(Encoding::Gzip))),
            "br" => Some((3, Some(Encoding::Brotli))),
            "zstd" => Some((4, Some(Encoding::Zstd))),
            _ => None,
        }
    };
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            let mut parts = item.splitn(2, ';');
            let (rank, encoding) = rank(parts.next()?.trim())?;
            let q = match parts.next() {
                None => 1000,
                Some(param) => qvalue(param.trim())?,
            };
            (q > 0).then_some(((q, rank), encoding))
        })
        .max_by_key(|(key, _)| *key)
        .and_then(|(_, encoding)| encoding)
}

/// `q=0.5` as thousandths; `None` when malformed (the item is then ignored, as the layer does).
fn qvalue(param: &str) -> Option<u16> {
    let value = param
        .strip_prefix("q=")
        .or_else(|| param.strip_prefix("Q="))?;
    let parsed: f32 = value.parse().ok()?;
    ((0.0..=1.0).contains(&parsed)).then(|| (parsed * 1000.0).round() as u16)
}

type Key = (u64, Encoding);

/// Compressed bodies by (response ETag digest, encoding), evicted oldest first beyond
/// `capacity` bytes. A capacity of 0 turns the cache off.
#[derive(Debug)]
pub struct CompressedCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Arc<OnceCell<Bytes>>>,
    /// Keys whose body is in, oldest first, with their sizes.
    order: VecDeque<(Key, usize)>,
    bytes: usize,
}

/// Whether [`CompressedCache::get_or_compress`] found the body or made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Compressed,
}

impl CompressedCache {
    pub fn new(capacity: usize) -> Self {
        CompressedCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The body for `key`, compressing it with `compress` on a blocking thread if nobody has.
    /// Concurrent callers for one key share one compression.
    pub async fn get_or_compress<F>(
        &self,
        key: u64,
        encoding: Encoding,
        compress: F,
    ) -> std::io::Result<(Bytes, Outcome)>
    where
        F: FnOnce() -> std::io::Result<Vec<u8>> + Send + 'static,
    {
        let key = (key, encoding);
        let cell = self.lock().entries.entry(key).or_default().clone();
        let mut outcome = Outcome::Hit;
        let result = cell
            .get_or_try_init(|| async {
                outcome = Outcome::Compressed;
                tokio::task::spawn_blocking(compress)
                    .await
                    .map_err(std::io::Error::other)?
                    .map(Bytes::from)
            })
            .await
            .cloned();
        let mut inner = self.lock();
        match &result {
            // Larger than the whole capacity: served once, not kept (and evicts nothing).
            Ok(body) if outcome == Outcome::Compressed && body.len() > self.capacity => {
                inner.entries.remove(&key);
            }
            Ok(body) if outcome == Outcome::Compressed => {
                inner.order.push_back((key, body.len()));
                inner.bytes += body.len();
                while inner.bytes > self.capacity {
                    let Some((old, size)) = inner.order.pop_front() else {
                        break;
                    };
                    inner.entries.remove(&old);
                    inner.bytes -= size;
                }
            }
            Ok(_) => {}
            // Nothing was stored: let the next request try again.
            Err(_) => {
                inner.entries.remove(&key);
            }
        }
        result.map(|body| (body, outcome))
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The maps hold no invariant a panic elsewhere could break.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CompressedCache {
    /// A whole objects result of a held collection, compressed once per (ETag, encoding) and
    /// kept, with `headers` and the encoding's. `None` when the client takes no cached encoding,
    /// the cache is off or the body (of `size` bytes, made by `body`) is small: the caller
    /// streams it as usual.
    pub(crate) async fn whole_response<I>(
        &self,
        metrics: &Metrics,
        request: &HeaderMap,
        mut headers: HeaderMap,
        tag_digest: u64,
        size: usize,
        body: I,
    ) -> Result<Option<Response>, ApiError>
    where
        I: Iterator<Item = Bytes> + Send + 'static,
    {
        if !self.enabled() {
            return Ok(None);
        }
        let Some(encoding) = negotiate(request) else {
            return Ok(None);
        };
        if size < MIN_CACHED_BODY {
            return Ok(None);
        }
        let (compressed, outcome) = self
            .get_or_compress(tag_digest, encoding, move || encoding.compress(body, size))
            .await
            .map_err(|e| ApiError::Internal(format!("compressing a whole collection: {e}")))?;
        let label = match outcome {
            Outcome::Hit => "hit",
            Outcome::Compressed => "miss",
        };
        metrics
            .compressed_cache
            .with_label_values(&[encoding.as_str(), label])
            .inc();
        metrics
            .compressed_cache_bytes
            .set(i64::try_from(self.bytes()).unwrap_or(i64::MAX));
        headers.insert(header::CONTENT_ENCODING, encoding.header_value());
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        Ok(Some((headers, Body::from(compressed)).into_response()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn negotiation_follows_q_values_then_the_layers_order() {
        assert_eq!(negotiate(&accept("gzip, deflate")), Some(Encoding::Gzip));
        assert_eq!(
            negotiate(&accept("gzip, deflate, br, zstd")),
            Some(Encoding::Zstd)
        );
        assert_eq!(
            negotiate(&accept("zstd;q=0.5, gzip;q=0.9")),
            Some(Encoding::Gzip)
        );
        assert_eq!(negotiate(&accept("gzip;q=0, br")), Some(Encoding::Brotli));
        assert_eq!(negotiate(&accept("deflate")), None);
        assert_eq!(negotiate(&accept("identity")), None);
        assert_eq!(negotiate(&accept("gzip;q=0")), None);
        assert_eq!(negotiate(&accept("compress, *")), None);
        assert_eq!(negotiate(&HeaderMap::new()), None);
    }

    fn decompress(encoding: Encoding, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            Encoding::Gzip => {
                flate2::read::GzDecoder::new(body)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Zstd => out = zstd::decode_all(body).unwrap(),
            Encoding::Brotli => {
                brotli::Decompressor::new(body, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
        }
        out
    }

    #[test]
    fn every_encoding_round_trips_the_chunks() {
        let chunks: Vec<Bytes> = (0..500)
            .map(|i| Bytes::from(format!("{{\"n\":{i},\"pad\":\"{}\"}},", "x".repeat(i % 37))))
            .collect();
        let plain: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        for encoding in [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd] {
            let body = encoding
                .compress(chunks.iter().cloned(), plain.len())
                .unwrap();
            assert!(body.len() < plain.len(), "{encoding:?}");
            assert_eq!(decompress(encoding, &body), plain, "{encoding:?}");
        }
    }

    #[tokio::test]
    async fn one_compression_per_key_and_oldest_evicted_beyond_capacity() {
        let cache = CompressedCache::new(25);
        let body = |n: usize| move || Ok(vec![7u8; n]);
        let (a, outcome) = cache
            .get_or_compress(1, Encoding::Gzip, body(10))
            .await
            .unwrap();
        assert_eq!((a.len(), outcome), (10, Outcome::Compressed));
        let (_, outcome) = cache
            .get_or_compress(1, Encoding::Gzip, body(99))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Hit);
        // Another encoding is another entry.
        let (_, outcome) = cache
            .get_or_compress(1, Encoding::Zstd, body(10))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Compressed);
        assert_eq!(cache.bytes(), 20);
        // 30 bytes over 25: the oldest (1, gzip) goes.
        cache
            .get_or_compress(2, Encoding::Gzip, body(10))
            .await
            .unwrap();
        assert_eq!(cache.bytes(), 20);
        let (_, outcome) = cache
            .get_or_compress(1, Encoding::Gzip, body(10))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Compressed);
        // Larger than the capacity: served, not kept, and nothing else evicted for it.
        let (big, outcome) = cache
            .get_or_compress(3, Encoding::Gzip, body(40))
            .await
            .unwrap();
        assert_eq!((big.len(), outcome), (40, Outcome::Compressed));
        assert_eq!(cache.bytes(), 20);
        let (_, outcome) = cache
            .get_or_compress(3, Encoding::Gzip, body(40))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Compressed);
    }

    #[tokio::test]
    async fn concurrent_first_requests_share_one_compression() {
        let cache = Arc::new(CompressedCache::new(1 << 20));
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, runs) = (cache.clone(), runs.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_compress(9, Encoding::Brotli, move || {
                            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok(vec![1, 2, 3])
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().0.as_ref(), [1, 2, 3]);
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_compression_is_not_kept() {
        let cache = CompressedCache::new(1 << 20);
        let failed = cache
            .get_or_compress(5, Encoding::Gzip, || Err(std::io::Error::other("boom")))
            .await;
        assert!(failed.is_err());
        let (_, outcome) = cache
            .get_or_compress(5, Encoding::Gzip, || Ok(vec![1]))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Compressed);
    }
}
