//! Schema pieces used by more than one field, so a rule is written once.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A byte count as a Kubernetes quantity string without sign, milli-units or
/// exponent (`"100Gi"`, `"1.5Ti"`, `"500000000"`). Kept as a string (not
/// int-or-string) so that CEL rules can call `quantity()` on it.
pub const BYTE_QUANTITY_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

/// The bytes of a quantity matching [`BYTE_QUANTITY_PATTERN`] (fractions of
/// a byte dropped); `None` when it does not match or exceeds `u64`.
pub fn byte_quantity_bytes(quantity: &str) -> Option<u64> {
    let digits = quantity.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u128 = match &quantity[digits.len()..] {
        "" => 1,
        "k" => 1000,
        "M" => 1000u128.pow(2),
        "G" => 1000u128.pow(3),
        "T" => 1000u128.pow(4),
        "P" => 1000u128.pow(5),
        "E" => 1000u128.pow(6),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    if digits.contains('.') && fraction.is_empty() {
        return None;
    }
    let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    let mantissa: u128 = format!("{whole}{fraction}").parse().ok()?;
    u64::try_from(mantissa.checked_mul(unit)? / scale).ok()
}

/// Longest accepted quantity string; bounds CEL cost estimation.
const BYTE_QUANTITY_MAX_LENGTH: u32 = 32;

/// Highest POSIX uid/gid accepted; `4294967295` is `(uid_t)-1`, which
/// `chown(2)` reads as "leave unchanged".
pub const MAX_POSIX_ID: u32 = 4_294_967_294;

/// Schema of a required byte quantity; see [`BYTE_QUANTITY_PATTERN`].
pub fn byte_quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": BYTE_QUANTITY_PATTERN,
        "maxLength": BYTE_QUANTITY_MAX_LENGTH,
    })
}

/// Schema of an optional byte quantity (absent, or as [`byte_quantity`]).
pub fn optional_byte_quantity(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = byte_quantity(generator);
    schema.insert("nullable".into(), true.into());
    schema
}

/// Schema of a POSIX uid or gid: Kubernetes has no unsigned integer format,
/// so it is an `int64` bounded to the `u32` range the Rust field holds.
pub fn posix_id(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "integer",
        "format": "int64",
        "minimum": 0,
        "maximum": MAX_POSIX_ID,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_quantities_are_read_as_bytes() {
        for (q, bytes) in [
            ("0", Some(0)),
            ("500000000", Some(500_000_000)),
            ("100Gi", Some(100 << 30)),
            ("1.5Ki", Some(1536)),
            ("2k", Some(2000)),
            ("1.0001k", Some(1000)),
            ("16Ei", None),
            ("1.", None),
            (".5Ki", None),
            ("5Xi", None),
            ("-1", None),
            ("", None),
        ] {
            assert_eq!(byte_quantity_bytes(q), bytes, "{q}");
        }
    }
}
