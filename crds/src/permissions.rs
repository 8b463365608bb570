//! POSIX permission bits written as an octal string (`"0755"`, `"750"`,
//! `"2775"`), as EFS access points take them.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The grammar, shared by the CRD schema (enforced by the API server) and
/// [`Permissions::from_str`], so both accept exactly the same strings: an
/// optional leading `0`, then three or four octal digits (the fourth, leading
/// one carries the setuid, setgid and sticky bits).
pub const PERMISSIONS_PATTERN: &str = "^0?[0-7]{3,4}$";

/// A permission string that does not match [`PERMISSIONS_PATTERN`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "permissions {0:?} must be three or four octal digits with an optional leading 0, e.g. \"0755\""
)]
pub struct PermissionsError(pub String);

/// Validated octal permission bits; keeps the text as written so that what
/// the user applied round-trips unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Permissions(String);

impl Permissions {
    /// The mode bits (at most `0o7777`), for `mkdir`/`chmod`.
    pub fn mode(&self) -> u32 {
        // Validated on construction: only octal digits, at most five of them.
        self.0
            .bytes()
            .fold(0, |mode, digit| (mode << 3) | u32::from(digit - b'0'))
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn matches_pattern(s: &str) -> bool {
    let digits = s
        .strip_prefix('0')
        .filter(|rest| rest.len() >= 3)
        .unwrap_or(s);
    (3..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
}

impl FromStr for Permissions {
    type Err = PermissionsError;

    fn from_str(s: &str) -> Result<Self, PermissionsError> {
        Self::try_from(s.to_owned())
    }
}

impl TryFrom<String> for Permissions {
    type Error = PermissionsError;

    fn try_from(s: String) -> Result<Self, PermissionsError> {
        if matches_pattern(&s) {
            Ok(Self(s))
        } else {
            Err(PermissionsError(s))
        }
    }
}

impl From<Permissions> for String {
    fn from(p: Permissions) -> String {
        p.0
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Permissions {
    fn schema_name() -> Cow<'static, str> {
        "Permissions".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": PERMISSIONS_PATTERN })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_octal_modes() {
        for (text, mode) in [
            ("755", 0o755),
            ("0755", 0o755),
            ("000", 0),
            ("0000", 0),
            ("700", 0o700),
            ("1777", 0o1777),
            ("02775", 0o2775),
            ("00755", 0o755),
            ("7777", 0o7777),
        ] {
            let p: Permissions = text.parse().unwrap();
            assert_eq!(p.mode(), mode, "{text}");
            assert_eq!(p.as_str(), text);
        }
    }

    #[test]
    fn rejects_what_the_schema_pattern_rejects() {
        for bad in [
            "", "7", "77", "999", "0999", "778", "000755", "12345", "0o755", "+755", " 755",
            "755 ", "-755", "٧٥٥",
        ] {
            assert!(bad.parse::<Permissions>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<Permissions>("\"0750\"").is_ok());
        assert!(serde_json::from_str::<Permissions>("\"999\"").is_err());
    }
}
