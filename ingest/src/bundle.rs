//! Reading STIX bundle files: plain, gzip or zstd JSON, one bundle parsed at a time.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::error::Error;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// One bundle read into memory, decompressed, its envelope parsed.
///
/// The text is kept whole because every object is published exactly as received: `objects`
/// says where each object's JSON is in it.
#[derive(Debug)]
pub struct Bundle {
    pub path: PathBuf,
    pub text: String,
    /// SHA-256 (hex) of the uncompressed JSON, so the same bundle has the same digest whether
    /// it was shipped plain, gzip- or zstd-compressed.
    pub sha256: String,
    /// The bundle-level `spec_version` (STIX 2.0 bundles carry one, 2.1 bundles should not).
    pub spec_version: Option<String>,
    /// Where each object's JSON text is in `text`, in bundle order.
    pub objects: Vec<Range<usize>>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    spec_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    objects: Option<Vec<&'a RawValue>>,
}

/// Where a bundle comes from.
#[derive(Debug)]
pub enum Input {
    /// A file, plain or compressed.
    File { path: PathBuf, max_bytes: u64 },
    /// A bundle received over the network (a Workbench export): `name` is what messages call it.
    Received {
        name: String,
        bytes: Vec<u8>,
        max_bytes: u64,
    },
}

impl Bundle {
    /// Reads the bundle and parses its envelope, refusing one whose JSON is larger than its
    /// `max_bytes`.
    pub fn load(input: Input) -> Result<Self, Error> {
        match input {
            Input::File { path, max_bytes } => Self::read(&path, max_bytes),
            Input::Received {
                name,
                bytes,
                max_bytes,
            } => Self::from_bytes(&name, bytes, max_bytes),
        }
    }

    /// Reads and decompresses `path` (compression detected from the content, not the name).
    fn read(path: &Path, max_bytes: u64) -> Result<Self, Error> {
        let io_err = |source| Error::BundleIo {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        // Enough for a zstd frame header, which may state the decompressed size.
        let mut magic = [0u8; 18];
        let mut got = 0;
        while got < magic.len() {
            match file.read(&mut magic[got..]).map_err(io_err)? {
                0 => break,
                n => got += n,
            }
        }
        let magic = &magic[..got];
        // One byte over the limit tells "too large" apart from "exactly at the limit".
        let limit = max_bytes.saturating_add(1);
        let zstd_size = match zstd::zstd_safe::get_frame_content_size(magic) {
            Ok(Some(size)) if magic.starts_with(&ZSTD_MAGIC) => Some(size),
            _ => None,
        };
        let too_large = || Error::BundleTooLarge {
            path: path.to_owned(),
            max_bytes,
        };
        if zstd_size.is_some_and(|size| size > max_bytes) {
            return Err(too_large());
        }
        let plain = !magic.starts_with(&ZSTD_MAGIC) && !magic.starts_with(&GZIP_MAGIC);
        let bytes = if plain && file.rewind().is_ok() {
            // Read whole, from the start, into a buffer of the file's size: through the
            // generic reader below, 45 MB were zero-filled first and grown (copied) repeatedly.
            let size = file.metadata().map(|m| m.len()).unwrap_or(0).min(limit);
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            file.take(limit).read_to_end(&mut bytes).map_err(io_err)?;
            bytes
        } else if let Some(size) = zstd_size {
            // A zstd frame that states its size (what `zstd` writes) is decompressed in one
            // call into a buffer of exactly that size, without the zero-fill and copies of
            // streaming it.
            let mut compressed = magic.to_vec();
            BufReader::new(file)
                .read_to_end(&mut compressed)
                .map_err(io_err)?;
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            let whole = zstd::bulk::Decompressor::new()
                .and_then(|mut d| d.decompress_to_buffer(&compressed, &mut bytes));
            if whole.is_err() {
                // More frames than the first one stated (pzstd writes several), or a corrupt
                // frame: the stream decoder reads them all, or names the error.
                bytes.clear();
                zstd::stream::read::Decoder::new(compressed.as_slice())
                    .map_err(io_err)?
                    .take(limit)
                    .read_to_end(&mut bytes)
                    .map_err(io_err)?;
            }
            bytes
        } else {
            let chained = std::io::Cursor::new(magic.to_vec()).chain(BufReader::new(file));
            let reader: Box<dyn Read> = if magic.starts_with(&ZSTD_MAGIC) {
                Box::new(zstd::stream::read::Decoder::new(chained).map_err(io_err)?)
            } else if magic.starts_with(&GZIP_MAGIC) {
                Box::new(flate2::read::MultiGzDecoder::new(chained))
            } else {
                Box::new(chained)
            };
            let mut bytes = Vec::new();
            reader.take(limit).read_to_end(&mut bytes).map_err(io_err)?;
            bytes
        };
        if bytes.len() as u64 > max_bytes {
            return Err(too_large());
        }
        Self::from_decompressed(path.to_owned(), bytes)
    }

    fn from_bytes(name: &str, bytes: Vec<u8>, max_bytes: u64) -> Result<Self, Error> {
        let path = PathBuf::from(name);
        let bytes = decompress_received(&path, bytes, max_bytes)?;
        if bytes.len() as u64 > max_bytes {
            return Err(Error::BundleTooLarge { path, max_bytes });
        }
        Self::from_decompressed(path, bytes)
    }

    fn from_decompressed(path: PathBuf, bytes: Vec<u8>) -> Result<Self, Error> {
        match String::from_utf8(bytes) {
            Ok(text) => Self::parse(path, text),
            Err(e) => Err(Error::NotABundle {
                path,
                reason: format!("not UTF-8 text ({})", e.utf8_error()),
            }),
        }
    }

    /// Parses the envelope of `text`; objects stay raw JSON text, remembered by their place.
    fn parse(path: PathBuf, text: String) -> Result<Self, Error> {
        let not_a_bundle = |reason: String| Error::NotABundle {
            path: path.clone(),
            reason,
        };
        let envelope: Envelope<'_> = serde_json::from_str(&text)
            .map_err(|e| not_a_bundle(format!("not a JSON object: {e}")))?;
        match envelope.kind.as_deref() {
            Some("bundle") => {}
            Some(other) => {
                return Err(not_a_bundle(format!(
                    "\"type\" is {other:?}, not \"bundle\""
                )));
            }
            None => return Err(not_a_bundle("no \"type\": \"bundle\"".to_owned())),
        }
        // Each object's text is a slice of the bundle's text: remember where, not a copy.
        let base = text.as_ptr() as usize;
        let objects = envelope
            .objects
            .unwrap_or_default()
            .iter()
            .map(|raw| {
                let start = raw.get().as_ptr() as usize - base;
                start..start + raw.get().len()
            })
            .collect();
        let spec_version = envelope.spec_version.map(Cow::into_owned);
        let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        Ok(Bundle {
            path,
            text,
            sha256,
            spec_version,
            objects,
        })
    }
}

/// Received bytes decompressed when they are zstd or gzip (files served over HTTP as they are
/// stored, `.json.zst` or `.json.gz`, read like the same files on disk), at most one byte over
/// `max_bytes` so the caller can tell "too large"; plain JSON as it is.
fn decompress_received(path: &Path, bytes: Vec<u8>, max_bytes: u64) -> Result<Vec<u8>, Error> {
    let io_err = |source| Error::BundleIo {
        path: path.to_owned(),
        source,
    };
    let reader: Box<dyn Read + '_> = if bytes.starts_with(&ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::new(bytes.as_slice()).map_err(io_err)?)
    } else if bytes.starts_with(&GZIP_MAGIC) {
        Box::new(flate2::read::MultiGzDecoder::new(bytes.as_slice()))
    } else {
        return Ok(bytes);
    };
    let mut plain = Vec::new();
    reader
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut plain)
        .map_err(io_err)?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const BUNDLE: &str = r#"{"type":"bundle","id":"bundle--6dfdcb9f-eef2-4d92-b800-a0b918314cb3","spec_version":"2.0",
        "objects":[{"type":"identity","id":"identity--c78cb6e5-0c4b-4611-8297-d1b8b55e40b5", "name":"A \"quoted\" name"},
                   {"type":"x","id":"x--1"}]}"#;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        File::create(&path).unwrap().write_all(bytes).unwrap();
        path
    }

    /// A fresh directory, removed when the guard is dropped.
    fn temp_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("taxiway-bundle-")
            .tempdir()
            .unwrap()
    }

    #[test]
    fn plain_gzip_and_zstd_files_read_the_same_text_and_digest() {
        let tmp = temp_dir();
        let dir = tmp.path();
        let plain = write(dir, "a.json", BUNDLE.as_bytes());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(BUNDLE.as_bytes()).unwrap();
        let gz = write(dir, "b.json.gz", &gz.finish().unwrap());
        let zst = write(
            dir,
            "c.json.zst",
            &zstd::encode_all(BUNDLE.as_bytes(), 3).unwrap(),
        );
        // A frame that states its size (the bulk path), and two such frames one after the
        // other (the first states only its own size: the stream decoder reads both).
        let sized = zstd::bulk::compress(BUNDLE.as_bytes(), 3).unwrap();
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&sized).ok(),
            Some(Some(BUNDLE.len() as u64))
        );
        let sized_zst = write(dir, "d.json.zst", &sized);
        let (head, tail) = BUNDLE.split_at(40);
        let mut frames = zstd::bulk::compress(head.as_bytes(), 3).unwrap();
        frames.extend(zstd::bulk::compress(tail.as_bytes(), 3).unwrap());
        let frames_zst = write(dir, "e.json.zst", &frames);
        let expected = hex::encode(Sha256::digest(BUNDLE.as_bytes()));
        for path in [plain, gz, zst, sized_zst, frames_zst] {
            let bundle = Bundle::read(&path, 1 << 20).unwrap();
            assert_eq!(bundle.text, BUNDLE);
            assert_eq!(bundle.sha256, expected);
        }
    }

    #[test]
    fn received_bytes_are_decompressed_like_files() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(BUNDLE.as_bytes()).unwrap();
        let zst = zstd::encode_all(BUNDLE.as_bytes(), 3).unwrap();
        for bytes in [BUNDLE.as_bytes().to_vec(), gz.finish().unwrap(), zst] {
            let bundle = Bundle::from_bytes("http://x/b.json", bytes.clone(), 1 << 20).unwrap();
            assert_eq!(bundle.text, BUNDLE);
            let err = Bundle::from_bytes("http://x/b.json", bytes, 10).unwrap_err();
            assert!(matches!(err, Error::BundleTooLarge { .. }), "{err}");
        }
    }

    #[test]
    fn objects_are_kept_as_the_exact_source_text() {
        let bundle = Bundle::from_bytes("mem", BUNDLE.into(), 1 << 20).unwrap();
        assert_eq!(bundle.spec_version.as_deref(), Some("2.0"));
        let objects: Vec<&str> = bundle
            .objects
            .iter()
            .map(|range| &bundle.text[range.clone()])
            .collect();
        assert_eq!(objects.len(), 2);
        assert_eq!(
            objects[0],
            r#"{"type":"identity","id":"identity--c78cb6e5-0c4b-4611-8297-d1b8b55e40b5", "name":"A \"quoted\" name"}"#
        );
    }

    #[test]
    fn a_file_that_is_not_a_bundle_is_an_error_naming_the_file() {
        for text in [
            "not json",
            r#"{"type":"identity"}"#,
            "[1,2]",
            r#"{"objects":[]}"#,
        ] {
            let err = Bundle::from_bytes("dir/x.json", text.into(), 1 << 20)
                .unwrap_err()
                .to_string();
            assert!(err.contains("dir/x.json"), "{err}");
        }
    }

    #[test]
    fn files_over_the_limit_are_refused() {
        let tmp = temp_dir();
        let dir = tmp.path();
        let plain = write(dir, "big.json", BUNDLE.as_bytes());
        let sized = write(
            dir,
            "big.json.zst",
            &zstd::bulk::compress(BUNDLE.as_bytes(), 3).unwrap(),
        );
        for path in [plain, sized] {
            let err = Bundle::read(&path, 10).unwrap_err();
            assert!(matches!(err, Error::BundleTooLarge { .. }), "{err}");
            assert!(Bundle::read(&path, BUNDLE.len() as u64).is_ok());
        }
    }

    #[test]
    fn a_corrupt_zstd_frame_is_an_error_naming_the_file() {
        let tmp = temp_dir();
        let dir = tmp.path();
        let mut sized = zstd::bulk::compress(BUNDLE.as_bytes(), 3).unwrap();
        let end = sized.len();
        sized.truncate(end - 8);
        let path = write(dir, "cut.json.zst", &sized);
        let err = Bundle::read(&path, 1 << 20).unwrap_err();
        assert!(matches!(err, Error::BundleIo { .. }), "{err}");
        assert!(err.to_string().contains("cut.json.zst"), "{err}");
    }
}
