//! The one place the operator writes objects: status subresources and the
//! file systems' core objects, by server-side apply under the openefs field
//! manager.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
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
    apply_status(api, (namespace, name), names::FIELD_MANAGER, owned).await?;
    Ok(true)
}

/// Server-side applies `status` as `name`'s status under `manager`, with
/// `force`.
async fn apply_status<K, S>(
    api: &Api<K>,
    (namespace, name): (&str, &str),
    manager: &str,
    status: &S,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(body),
    )
    .await
    .map_err(|source| Error::WriteStatus {
        kind: K::kind(&()).into_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: Box::new(source),
    })?;
    Ok(())
}

/// Field manager of metered sizes: a status field the reconciler of the
/// object does not own, so its applies (which omit it) never remove it.
pub const USAGE_FIELD_MANAGER: &str = "openefs-usage";

/// Writes `size` as `status.sizeInBytes` of `name`, under
/// [`USAGE_FIELD_MANAGER`].
pub async fn metered_size<K>(
    api: &Api<K>,
    (namespace, name): (&str, &str),
    size: &openefs_crds::SizeInBytes,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let status = serde_json::json!({ "sizeInBytes": size });
    apply_status(api, (namespace, name), USAGE_FIELD_MANAGER, &status).await
}

/// Applies `object` (server-side apply, `force`) and returns it as stored,
/// status included. `force`: the operator is the authority for every field
/// it sends, so a conflicting manager (someone who edited the Service by
/// hand) is overridden, which is how drift is repaired; fields it does not
/// send stay with their managers.
pub async fn object<K>(client: &Client, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    object_as(client, object, names::FIELD_MANAGER).await
}

/// [`object`] under field manager `manager`: for fields of an object that
/// another apply of it (under the operator's manager) leaves out and must
/// not remove.
pub async fn object_as<K>(client: &Client, object: &K, manager: &str) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let (namespace, name) = target(object.meta())?;
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    patch(&api, &K::kind(&()), (namespace, name), manager, object).await
}

/// [`object`] for a kind known only at run time (`resource`, from
/// discovery).
pub async fn dynamic(
    client: &Client,
    resource: &ApiResource,
    object: &DynamicObject,
) -> Result<DynamicObject, Error> {
    let (namespace, name) = target(&object.metadata)?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    patch(
        &api,
        &resource.kind,
        (namespace, name),
        names::FIELD_MANAGER,
        object,
    )
    .await
}

fn target(meta: &ObjectMeta) -> Result<(&str, &str), Error> {
    match (meta.namespace.as_deref(), meta.name.as_deref()) {
        (Some(namespace), Some(name)) => Ok((namespace, name)),
        _ => Err(Error::IncompleteObject {
            kind: "desired object",
            field: "metadata.namespace or metadata.name",
        }),
    }
}

async fn patch<K>(
    api: &Api<K>,
    kind: &str,
    (namespace, name): (&str, &str),
    manager: &str,
    object: &K,
) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: kind.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: Box::new(source),
    })
}
