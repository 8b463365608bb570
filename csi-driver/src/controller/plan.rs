//! Pure decisions of CreateVolume: names, directory, capacity, gid.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::params::ClaimMetadata;
use crate::handle::{is_clean_relative_path, is_dns_label};

/// Why a volume cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A `${...}` variable this driver does not know.
    #[error(
        "subPathPattern {pattern:?}: unknown variable ${{{var}}}; known: ${{.PVC.namespace}}, ${{.PVC.name}}, ${{.PV.name}}"
    )]
    UnknownVariable {
        /// The pattern.
        pattern: String,
        /// The variable text between the braces.
        var: String,
    },
    /// A `${` without its `}`.
    #[error("subPathPattern {0:?}: unterminated ${{")]
    Unterminated(String),
    /// A variable whose value external-provisioner did not pass (it needs
    /// `--extra-create-metadata`).
    #[error(
        "subPathPattern {pattern:?} uses ${{{var}}}, but CreateVolume carries no {key} (run external-provisioner with --extra-create-metadata)"
    )]
    MissingMetadata {
        /// The pattern.
        pattern: String,
        /// The variable.
        var: &'static str,
        /// The parameter key that would carry its value.
        key: &'static str,
    },
    /// The expansion is absolute, empty, or has `.`/`..`/empty components.
    #[error(
        "subPathPattern {pattern:?} expands to {expanded:?}, which is not a relative path without '.', '..' or empty components"
    )]
    Escapes {
        /// The pattern.
        pattern: String,
        /// What it expanded to.
        expanded: String,
    },
    /// Negative capacity, or a limit below the required size.
    #[error("capacity range: required {required} and limit {limit} bytes cannot be satisfied")]
    Capacity {
        /// required_bytes.
        required: i64,
        /// limit_bytes.
        limit: i64,
    },
    /// Every gid of the range is taken.
    #[error(
        "no free gid in gidRange {start}..={end}: every one is used by an AccessPoint of this FileSystem"
    )]
    GidsExhausted {
        /// gidRangeStart.
        start: u32,
        /// gidRangeEnd.
        end: u32,
    },
    /// reuseAccessPoint without the PVC's name and namespace.
    #[error(
        "reuseAccessPoint needs the PVC's namespace and name (run external-provisioner with --extra-create-metadata)"
    )]
    ReuseWithoutClaim,
}

/// Expand `${.PVC.namespace}`, `${.PVC.name}` and `${.PV.name}` in `pattern`;
/// the result must stay a relative path below basePath.
pub fn expand_sub_path(pattern: &str, claim: &ClaimMetadata) -> Result<String, PlanError> {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| PlanError::Unterminated(pattern.to_owned()))?;
        let var = &after[..end];
        let (name, key, value) = match var {
            ".PVC.namespace" => (
                ".PVC.namespace",
                super::params::PVC_NAMESPACE_KEY,
                &claim.pvc_namespace,
            ),
            ".PVC.name" => (".PVC.name", super::params::PVC_NAME_KEY, &claim.pvc_name),
            ".PV.name" => (".PV.name", super::params::PV_NAME_KEY, &claim.pv_name),
            other => {
                return Err(PlanError::UnknownVariable {
                    pattern: pattern.to_owned(),
                    var: other.to_owned(),
                });
            }
        };
        let value = value.as_deref().ok_or_else(|| PlanError::MissingMetadata {
            pattern: pattern.to_owned(),
            var: name,
            key,
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if !is_clean_relative_path(&out) {
        return Err(PlanError::Escapes {
            pattern: pattern.to_owned(),
            expanded: out,
        });
    }
    Ok(out)
}

/// The access point's root directory: basePath (absolute, validated), the
/// expanded sub-path, and with ensureUniqueDirectory a suffix from the volume
/// name, so two volumes never share a directory and a retry gets the same one.
pub fn root_directory(base_path: &str, sub_path: &str, unique_suffix: Option<&str>) -> String {
    let base = base_path.trim_end_matches('/');
    match unique_suffix {
        Some(suffix) => format!("{base}/{sub_path}-{suffix}"),
        None => format!("{base}/{sub_path}"),
    }
}

/// Stable short digest of a text: 16 hex digits of its SHA-256.
pub fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Name of the object (AccessPoint or FileSystem) that backs a volume: the
/// CSI volume name itself when it is a usable object name (external-provisioner
/// sends `pvc-<uid>`), else a digest of it, so every retry finds the same
/// object. With reuseAccessPoint the name comes from the PVC instead, so a
/// PVC re-created under the same name finds the same AccessPoint.
pub fn object_name(
    volume_name: &str,
    reuse_by_claim: bool,
    claim: &ClaimMetadata,
) -> Result<String, PlanError> {
    if reuse_by_claim {
        let (Some(ns), Some(name)) = (&claim.pvc_namespace, &claim.pvc_name) else {
            return Err(PlanError::ReuseWithoutClaim);
        };
        return Ok(format!("pvc-{}", short_hash(&format!("{ns}/{name}"))));
    }
    if is_dns_label(volume_name) {
        Ok(volume_name.to_owned())
    } else {
        Ok(format!("vol-{}", short_hash(volume_name)))
    }
}

/// The quota for a capacity range (bytes), or `None` when no size was asked.
/// The requested size is the quota; a limit alone caps it.
pub fn quota_bytes(required: i64, limit: i64) -> Result<Option<i64>, PlanError> {
    if required < 0 || limit < 0 || (limit > 0 && required > limit) {
        return Err(PlanError::Capacity { required, limit });
    }
    Ok(match (required, limit) {
        (0, 0) => None,
        (0, l) => Some(l),
        (r, _) => Some(r),
    })
}

/// The smallest gid of `[start, end]` not in `used`.
pub fn pick_gid(start: u32, end: u32, used: &BTreeSet<u32>) -> Result<u32, PlanError> {
    let mut candidate = start;
    for &taken in used.range(start..=end) {
        if taken != candidate {
            break;
        }
        if candidate == end {
            return Err(PlanError::GidsExhausted { start, end });
        }
        candidate += 1;
    }
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> ClaimMetadata {
        ClaimMetadata {
            pvc_namespace: Some("team-a".into()),
            pvc_name: Some("data".into()),
            pv_name: Some("pvc-123".into()),
        }
    }

    #[test]
    fn expands_variables() {
        assert_eq!(
            expand_sub_path("${.PVC.namespace}/${.PVC.name}", &claim()).unwrap(),
            "team-a/data"
        );
        assert_eq!(
            expand_sub_path("vols/${.PV.name}-x", &claim()).unwrap(),
            "vols/pvc-123-x"
        );
        assert_eq!(expand_sub_path("static", &claim()).unwrap(), "static");
    }

    #[test]
    fn refuses_escapes_and_unknowns() {
        let mut evil = claim();
        evil.pvc_name = Some("..".into());
        assert!(matches!(
            expand_sub_path("${.PVC.namespace}/${.PVC.name}", &evil),
            Err(PlanError::Escapes { .. })
        ));
        evil.pvc_name = Some("../../etc".into());
        assert!(expand_sub_path("${.PVC.name}", &evil).is_err());
        for bad in ["/abs", "a/../b", "", "a//b", "${.PVC.name}/", "./x"] {
            assert!(expand_sub_path(bad, &claim()).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            expand_sub_path("${.PVC.labels}", &claim()),
            Err(PlanError::UnknownVariable { .. })
        ));
        assert!(matches!(
            expand_sub_path("${.PV.name", &claim()),
            Err(PlanError::Unterminated(_))
        ));
        assert!(matches!(
            expand_sub_path("${.PV.name}", &ClaimMetadata::default()),
            Err(PlanError::MissingMetadata { .. })
        ));
    }

    #[test]
    fn root_directory_joins() {
        assert_eq!(root_directory("/", "a/b", None), "/a/b");
        assert_eq!(root_directory("/base", "a", Some("x1")), "/base/a-x1");
    }

    #[test]
    fn object_names_are_stable_and_valid() {
        assert_eq!(
            object_name("pvc-0a1b", false, &claim()).unwrap(),
            "pvc-0a1b"
        );
        let odd = object_name("My Volume!", false, &claim()).unwrap();
        assert_eq!(odd, object_name("My Volume!", false, &claim()).unwrap());
        assert!(is_dns_label(&odd), "{odd}");
        let long = "a".repeat(100);
        assert!(is_dns_label(&object_name(&long, false, &claim()).unwrap()));
        let by_claim = object_name("pvc-1", true, &claim()).unwrap();
        assert_eq!(by_claim, object_name("pvc-2", true, &claim()).unwrap());
        assert_eq!(
            object_name("pvc-1", true, &ClaimMetadata::default()),
            Err(PlanError::ReuseWithoutClaim)
        );
    }

    #[test]
    fn quota_follows_capacity() {
        assert_eq!(quota_bytes(0, 0), Ok(None));
        assert_eq!(quota_bytes(5, 0), Ok(Some(5)));
        assert_eq!(quota_bytes(0, 7), Ok(Some(7)));
        assert_eq!(quota_bytes(5, 7), Ok(Some(5)));
        assert!(quota_bytes(8, 7).is_err());
        assert!(quota_bytes(-1, 0).is_err());
        assert!(quota_bytes(0, -1).is_err());
    }

    #[test]
    fn picks_smallest_free_gid() {
        let used: BTreeSet<u32> = [10, 11, 13, 5, 99].into();
        assert_eq!(pick_gid(10, 20, &used), Ok(12));
        assert_eq!(pick_gid(14, 20, &used), Ok(14));
        assert_eq!(pick_gid(1, 3, &used), Ok(1));
        let full: BTreeSet<u32> = (10..=12).collect();
        assert!(pick_gid(10, 12, &full).is_err());
        assert_eq!(pick_gid(u32::MAX, u32::MAX, &BTreeSet::new()), Ok(u32::MAX));
        assert!(pick_gid(u32::MAX, u32::MAX, &[u32::MAX].into()).is_err());
    }
}
