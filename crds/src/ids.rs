//! Stable, EFS-shaped identifiers: `fs-` + 17 hex digits for a file system,
//! `fsap-` + 17 hex digits for an access point.
//!
//! The id is derived from the object's `metadata.uid`, so every component
//! (operator, CSI driver, nfsd) computes the same id without coordination, and
//! an object deleted and re-created under the same name gets a new id (its
//! uid changes), so stale mounts and volume handles cannot reach the new data.
//! The uid is hashed with SHA-256 rather than cut down: a v4 UUID has fixed
//! version and variant digits, and 17 hex digits of a hash keep all 68 bits.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Hex digits after the prefix, as in EFS ids (`fs-0123456789abcdef0`).
const ID_HEX_DIGITS: usize = 17;

/// A malformed file system or access point id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text does not start with the kind's prefix.
    #[error("id {id:?} does not start with {prefix:?}")]
    MissingPrefix {
        /// The rejected text.
        id: String,
        /// The prefix the kind requires.
        prefix: &'static str,
    },
    /// The part after the prefix is not exactly 17 lowercase hex digits.
    #[error("id {id:?} must be {prefix:?} followed by exactly 17 lowercase hex digits")]
    BadDigits {
        /// The rejected text.
        id: String,
        /// The prefix the kind requires.
        prefix: &'static str,
    },
    /// The object has no uid yet (it was never stored by the API server).
    #[error("object has no metadata.uid to derive an id from")]
    NoUid,
}

fn derive_digits(uid: &str) -> String {
    let digest = Sha256::digest(uid.as_bytes());
    let mut hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(ID_HEX_DIGITS);
    hex
}

fn check(id: &str, prefix: &'static str) -> Result<(), IdError> {
    let digits = id
        .strip_prefix(prefix)
        .ok_or_else(|| IdError::MissingPrefix {
            id: id.to_owned(),
            prefix,
        })?;
    let well_formed = digits.len() == ID_HEX_DIGITS
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if well_formed {
        Ok(())
    } else {
        Err(IdError::BadDigits {
            id: id.to_owned(),
            prefix,
        })
    }
}

macro_rules! resource_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $pattern:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The fixed prefix of every id of this kind.
            pub const PREFIX: &'static str = $prefix;

            /// The id of the object with this `metadata.uid`.
            pub fn from_uid(uid: &str) -> Self {
                Self(format!("{}{}", Self::PREFIX, derive_digits(uid)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                check(s, Self::PREFIX)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;

            fn try_from(s: String) -> Result<Self, IdError> {
                check(&s, Self::PREFIX)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "pattern": $pattern })
            }
        }
    };
}

resource_id!(
    /// Stable id of a file system (`fs-` + 17 hex digits), derived from the
    /// `FileSystem`'s uid.
    FileSystemId,
    "fs-",
    "^fs-[0-9a-f]{17}$"
);

resource_id!(
    /// Stable id of an access point (`fsap-` + 17 hex digits), derived from
    /// the `AccessPoint`'s uid.
    AccessPointId,
    "fsap-",
    "^fsap-[0-9a-f]{17}$"
);

impl FileSystemId {
    /// The id of a stored `FileSystem` object.
    pub fn of(fs: &crate::FileSystem) -> Result<Self, IdError> {
        fs.metadata
            .uid
            .as_deref()
            .map(Self::from_uid)
            .ok_or(IdError::NoUid)
    }
}

impl AccessPointId {
    /// The id of a stored `AccessPoint` object.
    pub fn of(ap: &crate::AccessPoint) -> Result<Self, IdError> {
        ap.metadata
            .uid
            .as_deref()
            .map(Self::from_uid)
            .ok_or(IdError::NoUid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6f3a1c2e-9b7d-4e21-8c55-0a1b2c3d4e5f";

    #[test]
    fn derivation_is_deterministic_and_well_formed() {
        let a = FileSystemId::from_uid(UID);
        assert_eq!(a, FileSystemId::from_uid(UID));
        assert_eq!(a.as_str().len(), 3 + 17);
        assert_eq!(a.as_str().parse::<FileSystemId>(), Ok(a.clone()));
        let ap = AccessPointId::from_uid(UID);
        assert!(ap.as_str().starts_with("fsap-"));
        assert_eq!(ap.as_str().len(), 5 + 17);
    }

    #[test]
    fn derivation_is_the_documented_hash() {
        // SHA-256("6f3a1c2e-9b7d-4e21-8c55-0a1b2c3d4e5f") computed independently
        // with `printf %s UID | sha256sum`; the id keeps its first 17 hex digits.
        let expected = "85629fff8f20c8a89";
        assert_eq!(
            FileSystemId::from_uid(UID).as_str(),
            format!("fs-{expected}")
        );
        assert_eq!(
            AccessPointId::from_uid(UID).as_str(),
            format!("fsap-{expected}")
        );
    }

    #[test]
    fn different_uids_give_different_ids() {
        assert_ne!(
            FileSystemId::from_uid(UID),
            FileSystemId::from_uid("6f3a1c2e-9b7d-4e21-8c55-0a1b2c3d4e60")
        );
    }

    #[test]
    fn parse_rejects_malformed_ids() {
        for bad in [
            "fs-",
            "fs-0123456789abcdef",
            "fs-0123456789abcdef01",
            "fs-0123456789ABCDEF0",
            "fs-0123456789abcdeg0",
            "fsap-0123456789abcdef0",
            "0123456789abcdef0",
        ] {
            assert!(bad.parse::<FileSystemId>().is_err(), "{bad} accepted");
        }
        assert!("fs-0123456789abcdef0".parse::<AccessPointId>().is_err());
        assert!("fsap-0123456789abcdef0".parse::<AccessPointId>().is_ok());
    }

    #[test]
    fn serde_rejects_malformed_ids() {
        let ok: FileSystemId = serde_json::from_str("\"fs-0123456789abcdef0\"").unwrap();
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            "\"fs-0123456789abcdef0\""
        );
        assert!(serde_json::from_str::<FileSystemId>("\"fs-xyz\"").is_err());
    }
}
