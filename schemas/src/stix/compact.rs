//! Compact JSON: the text an object is served as, its source bytes without insignificant whitespace.

/// The same JSON text without insignificant whitespace; key order, escapes, number spellings and
/// every other byte are kept, so the result is as close to the source as compact JSON can be.
///
/// A byte scanner, not a re-serialization: it only tracks whether it is inside a string. Meant
/// for JSON already known to be valid; other input is not rejected, just passed through with
/// whitespace outside strings removed.
pub fn compact_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut run_start = 0;
    for (i, &b) in raw.as_bytes().iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else {
            match b {
                b'"' => in_string = true,
                b' ' | b'\t' | b'\n' | b'\r' => {
                    // Whitespace bytes are ASCII, so both ends of the run are char boundaries.
                    out.push_str(&raw[run_start..i]);
                    run_start = i + 1;
                }
                _ => {}
            }
        }
    }
    out.push_str(&raw[run_start..]);
    out
}
