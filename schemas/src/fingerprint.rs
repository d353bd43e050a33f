//! Parsing Canonical Form and CRC-64-AVRO fingerprints of Avro schemas, exactly as the Avro specification defines them.
//!
//! apache-avro 0.22's own `Schema::canonical_form` leaves a logical type as `{"type":"long"}`
//! where the specification (and the Java, Python and fastavro implementations) reduce it to
//! `"long"`, so its fingerprints of our schemas (which use `timestamp-micros`) would not match
//! any other language's. The single-object header therefore uses the fingerprints computed here.

use serde_json::Value;

use crate::{Error, Result};

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of a schema given as `.avsc` text.
pub fn parsing_canonical_form(avsc: &str) -> Result<String> {
    let schema: Value = serde_json::from_str(avsc)?;
    let mut out = String::with_capacity(avsc.len());
    write_form(&schema, None, &mut out)?;
    Ok(out)
}

fn bad(what: impl Into<String>) -> Error {
    Error::Schemas(what.into())
}

fn json_string(s: &str, out: &mut String) -> Result<()> {
    out.push_str(&serde_json::to_string(s)?);
    Ok(())
}

/// A name made full with the enclosing namespace ([FULLNAMES]).
fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() && !name.contains('.') => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

fn write_form(schema: &Value, namespace: Option<&str>, out: &mut String) -> Result<()> {
    match schema {
        Value::String(name) if PRIMITIVES.contains(&name.as_str()) => json_string(name, out),
        // A reference to a named type defined earlier.
        Value::String(name) => json_string(&full_name(name, namespace), out),
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_form(branch, namespace, out)?;
            }
            out.push(']');
            Ok(())
        }
        Value::Object(map) => {
            let ty = map
                .get("type")
                .ok_or_else(|| bad("schema object without \"type\""))?;
            let Some(ty_name) = ty.as_str() else {
                // `{"type": {...}}`: the attributes around the inner schema are all stripped.
                return write_form(ty, namespace, out);
            };
            match ty_name {
                "record" | "error" | "enum" | "fixed" => write_named(map, ty_name, namespace, out),
                "array" | "map" => {
                    let (key, label) = if ty_name == "array" {
                        ("items", "\"items\":")
                    } else {
                        ("values", "\"values\":")
                    };
                    let inner = map
                        .get(key)
                        .ok_or_else(|| bad(format!("{ty_name} without \"{key}\"")))?;
                    out.push_str("{\"type\":");
                    json_string(ty_name, out)?;
                    out.push(',');
                    out.push_str(label);
                    write_form(inner, namespace, out)?;
                    out.push('}');
                    Ok(())
                }
                // A primitive, possibly with a logicalType or other attributes: [STRIP] then
                // [PRIMITIVES] leave just its name. Also a named-type reference in object form.
                other => write_form(&Value::String(other.to_owned()), namespace, out),
            }
        }
        other => Err(bad(format!("not a schema: {other}"))),
    }
}

fn write_named(
    map: &serde_json::Map<String, Value>,
    ty_name: &str,
    enclosing: Option<&str>,
    out: &mut String,
) -> Result<()> {
    let name = map
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("{ty_name} without a \"name\"")))?;
    let namespace = map.get("namespace").and_then(Value::as_str).or(enclosing);
    let full = full_name(name, namespace);
    // Types nested in this one default to its namespace: that of its full name.
    let inner_namespace = full.rsplit_once('.').map(|(ns, _)| ns.to_owned());
    // [ORDER]: name, type, fields, symbols, items, values, size.
    out.push_str("{\"name\":");
    json_string(&full, out)?;
    out.push_str(",\"type\":");
    json_string(if ty_name == "error" { "error" } else { ty_name }, out)?;
    if let Some(fields) = map.get("fields") {
        let fields = fields
            .as_array()
            .ok_or_else(|| bad(format!("{full}: \"fields\" is not an array")))?;
        out.push_str(",\"fields\":[");
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let field_name = field
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{full}: field without a name")))?;
            let field_type = field
                .get("type")
                .ok_or_else(|| bad(format!("{full}.{field_name}: field without a type")))?;
            out.push_str("{\"name\":");
            json_string(field_name, out)?;
            out.push_str(",\"type\":");
            write_form(field_type, inner_namespace.as_deref(), out)?;
            out.push('}');
        }
        out.push(']');
    }
    if let Some(symbols) = map.get("symbols") {
        out.push_str(",\"symbols\":");
        out.push_str(&serde_json::to_string(symbols)?);
    }
    if let Some(size) = map.get("size") {
        let size = size
            .as_u64()
            .ok_or_else(|| bad(format!("{full}: \"size\" is not a non-negative integer")))?;
        out.push_str(&format!(",\"size\":{size}"));
    }
    out.push('}');
    Ok(())
}

/// The CRC-64-AVRO (Rabin) fingerprint of some bytes, per the specification.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    bytes.iter().fold(EMPTY, |fp, &b| {
        (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize]
    })
}

const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// The single-object header fingerprint of an `.avsc` text: CRC-64-AVRO of its Parsing
/// Canonical Form, as the 8 little-endian bytes that follow the `C3 01` marker.
pub fn schema_fingerprint(avsc: &str) -> Result<[u8; 8]> {
    Ok(crc64_avro(parsing_canonical_form(avsc)?.as_bytes()).to_le_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn primitives_and_logical_types_reduce_to_their_name() {
        assert_eq!(parsing_canonical_form(r#""long""#).unwrap(), r#""long""#);
        assert_eq!(
            parsing_canonical_form(r#"{"type":"int"}"#).unwrap(),
            r#""int""#
        );
        assert_eq!(
            parsing_canonical_form(r#"{"type":"long","logicalType":"timestamp-micros"}"#).unwrap(),
            r#""long""#
        );
    }

    #[test]
    fn named_types_get_full_names_ordered_attributes_and_no_extras() {
        let avsc = r#"{"doc":"d","fields":[{"type":{"type":"array","items":{"type":"enum","symbols":["A"],"name":"E"}},"name":"f","default":[]},{"name":"g","type":["null","other.ns.T"]}],"namespace":"n","name":"R","type":"record","aliases":["x"]}"#;
        assert_eq!(
            parsing_canonical_form(avsc).unwrap(),
            r#"{"name":"n.R","type":"record","fields":[{"name":"f","type":{"type":"array","items":{"name":"n.E","type":"enum","symbols":["A"]}}},{"name":"g","type":["null","other.ns.T"]}]}"#
        );
        assert_eq!(
            parsing_canonical_form(r#"{"type":"fixed","name":"F","size":32,"namespace":"a.b"}"#)
                .unwrap(),
            r#"{"name":"a.b.F","type":"fixed","size":32}"#
        );
    }

    #[test]
    fn crc64_avro_matches_the_specification_test_data() {
        // From the Avro project's share/test/data/schema-tests.txt.
        assert_eq!(crc64_avro(br#""null""#) as i64, 7_195_948_357_588_979_594);
        assert_eq!(crc64_avro(br#""int""#) as i64, 8_247_732_601_305_521_295);
        let cases = [
            (
                r#"{"type":"fixed","name":"foo","size":15}"#,
                1_756_455_273_707_447_556,
            ),
            (
                r#"{"type":"record","name":"PigValue","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}"#,
                -1_759_257_747_318_642_341,
            ),
        ];
        for (avsc, expected) in cases {
            let pcf = parsing_canonical_form(avsc).unwrap();
            assert_eq!(crc64_avro(pcf.as_bytes()) as i64, expected, "{pcf}");
        }
    }
}
