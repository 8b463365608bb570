//! The one place the custom-resource side writes: status subresources, by
//! server-side apply under the openefs field manager. Core kinds (issue 8)
//! get their own module; this one never touches them.

use kube::{
    Api, Resource,
    api::{Patch, PatchParams},
};
use openefs_crds::names;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::Error;

/// Writes `owned` (the fields this side owns) as the status of `name`, unless
/// `current` already equals `desired`. Returns whether it wrote.
///
/// Server-side apply with `force`: the operator is the authority for the
/// fields it owns, and fields owned by other managers (conditions of other
/// types, metering) are neither sent nor removed.
pub async fn status_if_changed<K, S>(
    api: &Api<K>,
    (namespace, name): (&str, &str),
    current: Option<&S>,
    desired: &S,
    owned: &S,
) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(desired) {
        return Ok(false);
    }
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": owned,
    });
    api.patch_status(
        name,
        &PatchParams::apply(names::FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(|source| Error::WriteStatus {
        kind: K::kind(&()).into_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: Box::new(source),
    })?;
    Ok(true)
}
