//! Schema pieces used by more than one field, so a rule is written once.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A byte count as a Kubernetes quantity string without sign, milli-units or
/// exponent (`"100Gi"`, `"1.5Ti"`, `"500000000"`). Kept as a string (not
/// int-or-string) so that CEL rules can call `quantity()` on it.
pub const BYTE_QUANTITY_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

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
