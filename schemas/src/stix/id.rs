//! The STIX rules for an object's `type` (a lower-case name) and `id` (`<type>--<UUID>`).

use super::invalid::quoted;

/// 3–250 characters of `[a-z0-9-]`, not starting or ending with `-`.
pub(super) fn check_type(stix_type: &str) -> Result<(), &'static str> {
    if !(3..=250).contains(&stix_type.len()) {
        return Err("must be 3 to 250 characters long");
    }
    if !stix_type
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return Err("must contain only a-z, 0-9 and '-'");
    }
    if stix_type.starts_with('-') || stix_type.ends_with('-') {
        return Err("must not start or end with '-'");
    }
    Ok(())
}

/// `<type>--<UUID>`, with the object's own type as the prefix.
pub(super) fn check_id(id: &str, stix_type: &str) -> Result<(), String> {
    let Some(uuid) = id
        .strip_prefix(stix_type)
        .and_then(|rest| rest.strip_prefix("--"))
    else {
        return Err(match id.split_once("--") {
            Some((prefix, _)) => format!(
                "prefix {} does not match type {}",
                quoted(prefix),
                quoted(stix_type)
            ),
            None => "not of the form <type>--<UUID>".to_owned(),
        });
    };
    if is_uuid(uuid) {
        Ok(())
    } else {
        Err("not a UUID".to_owned())
    }
}

/// An id on its own (a release member names objects by id alone): `<type>--<UUID>` with a valid
/// type.
pub fn check_stix_id(id: &str) -> Result<(), String> {
    let Some((stix_type, _)) = id.rsplit_once("--") else {
        return Err(format!("{}: not of the form <type>--<UUID>", quoted(id)));
    };
    check_type(stix_type).map_err(|why| format!("{}: type {why}", quoted(id)))?;
    check_id(id, stix_type).map_err(|why| format!("{}: {why}", quoted(id)))
}

/// RFC 4122 textual form: 8-4-4-4-12 hex digits (either case). The version and variant nibbles
/// are not checked: STIX producers do not all use v4/v5 and the id only needs to be well-formed.
fn is_uuid(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_alone_is_checked_by_its_own_type() {
        assert_eq!(
            check_stix_id("x-mitre-tactic--00000000-0000-4000-8000-000000000001"),
            Ok(())
        );
        for bad in [
            "nope",
            "AP--00000000-0000-4000-8000-000000000001",
            "attack-pattern--not-a-uuid",
            "--00000000-0000-4000-8000-000000000001",
        ] {
            assert!(check_stix_id(bad).is_err(), "{bad}");
        }
    }
}
