//! One record of the log, and the byte layout its headers are stored in.

/// A record as a Kafka message carries it: key, payload (`None`: a tombstone) and headers in
/// their order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Vec<u8>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A record read back, with its offset in the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub offset: i64,
    pub record: Record,
}

/// Headers as one blob: per header, the name's length (u32, little-endian), the name, the
/// value's length, the value. SQLite has no list type, and a side table would cost a row per
/// header for four headers that are always read with their record.
pub(crate) fn encode_headers(headers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size = headers.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (name, value) in headers {
        put(&mut out, name.as_bytes());
        put(&mut out, value);
    }
    out
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    // A header longer than 4 GiB cannot reach here: Kafka messages are far smaller.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The headers [`encode_headers`] wrote, or what is wrong with the blob.
pub(crate) fn decode_headers(mut blob: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut headers = Vec::new();
    while !blob.is_empty() {
        let name = take(&mut blob)?;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| format!("header {} has a name that is not UTF-8", headers.len()))?;
        let value = take(&mut blob)?.to_vec();
        headers.push((name, value));
    }
    Ok(headers)
}

fn take<'a>(blob: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let (len, rest) = blob
        .split_first_chunk::<4>()
        .ok_or("headers end inside a length")?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(format!(
            "a header field of {len} bytes with {} left",
            rest.len()
        ));
    }
    let (field, rest) = rest.split_at(len);
    *blob = rest;
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_in_order_with_empty_and_binary_values() {
        let headers = vec![
            (
                "taxiway-event-type".to_owned(),
                b"io.taxiway.events.X".to_vec(),
            ),
            ("empty".to_owned(), Vec::new()),
            ("binary".to_owned(), vec![0, 255, 1]),
            ("taxiway-event-type".to_owned(), b"repeated".to_vec()),
        ];
        assert_eq!(decode_headers(&encode_headers(&headers)), Ok(headers));
        assert_eq!(decode_headers(&encode_headers(&[])), Ok(Vec::new()));
    }

    #[test]
    fn a_cut_blob_is_an_error_not_a_shorter_list() {
        let blob = encode_headers(&[("name".to_owned(), b"value".to_vec())]);
        for cut in 1..blob.len() {
            assert!(decode_headers(&blob[..cut]).is_err(), "cut at {cut}");
        }
    }
}
