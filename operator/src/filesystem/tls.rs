//! A file system's TLS material: a CA of its own and a server certificate
//! for its Service's DNS names, signed by that CA.
//!
//! Two Secrets, so that the CA key never leaves the operator:
//! `<fs-id>-ca` (`ca.crt`, `ca.key`; read only by the operator) and
//! `<fs-id>-tls` (`kubernetes.io/tls`: `tls.crt`, `tls.key`, and `ca.crt`
//! for clients that verify the server). The server certificate is renewed
//! [`RENEW_BEFORE`] ahead of its expiry and whenever its names no longer
//! match; the CA is kept while it is valid, so clients' trust carries over.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::desired::MetaFactory;
use crate::{apply, error::Error};

/// Key of the CA certificate (in both Secrets).
pub const CA_CERT: &str = "ca.crt";
/// Key of the CA's private key (CA Secret only).
pub const CA_KEY: &str = "ca.key";
/// Key of the server certificate (`kubernetes.io/tls`).
pub const TLS_CERT: &str = "tls.crt";
/// Key of the server's private key (`kubernetes.io/tls`).
pub const TLS_KEY: &str = "tls.key";

/// Lifetime of a CA.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Lifetime of a server certificate: short, since renewal is automatic.
pub const SERVER_VALIDITY: Duration = Duration::days(90);
/// Renewal margin: a third of the server certificate's lifetime, so a
/// stopped operator has a month to come back before anything expires.
pub const RENEW_BEFORE: Duration = Duration::days(30);

/// Name of the Secret with the CA and its key.
pub fn ca_secret_name(id: &openefs_crds::FileSystemId) -> String {
    format!("{}-ca", id.as_str())
}

/// Name of the Secret nfsd mounts.
pub fn tls_secret_name(id: &openefs_crds::FileSystemId) -> String {
    format!("{}-tls", id.as_str())
}

/// Why TLS material could not be made.
#[derive(Debug, thiserror::Error)]
#[error("generating TLS material: {0}")]
pub struct TlsError(#[from] rcgen::Error);

/// PEM texts of a file system's TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// What to do with the stored material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Keep,
    /// A new server certificate from the stored CA.
    RenewServer,
    /// A new CA and a new server certificate.
    NewCa,
}

/// The names the server certificate must carry: every way the Service is
/// reached from inside the cluster.
pub fn dns_names(service: &str, namespace: &str, cluster_domain: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{cluster_domain}"),
    ]
}

/// Parsed facts of one PEM certificate.
struct CertFacts {
    not_after: i64,
    subject: Vec<u8>,
    issuer: Vec<u8>,
    dns_names: Vec<String>,
}

fn facts(pem: &str) -> Option<CertFacts> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let mut dns_names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    dns_names.sort();
    Some(CertFacts {
        not_after: cert.validity().not_after.timestamp(),
        subject: cert.subject().as_raw().to_vec(),
        issuer: cert.issuer().as_raw().to_vec(),
        dns_names,
    })
}

/// Whether `current` can stay as it is for a server reached as
/// `dns_names` at `now`. Pure: the caller reads the Secrets and the clock.
pub fn decide(current: Option<&Material>, dns_names: &[String], now: OffsetDateTime) -> Decision {
    let renew_at = (now + RENEW_BEFORE).unix_timestamp();
    let Some(current) = current else {
        return Decision::NewCa;
    };
    let ca = match facts(&current.ca_cert) {
        Some(ca) if ca.not_after > renew_at && KeyPair::from_pem(&current.ca_key).is_ok() => ca,
        _ => return Decision::NewCa,
    };
    let mut wanted = dns_names.to_vec();
    wanted.sort();
    match facts(&current.cert) {
        Some(cert)
            if cert.not_after > renew_at
                && cert.issuer == ca.subject
                && cert.dns_names == wanted
                && KeyPair::from_pem(&current.key).is_ok() =>
        {
            Decision::Keep
        }
        _ => Decision::RenewServer,
    }
}

/// New material as `decision` says (never called with `Keep`): a CA
/// labelled with `id` and its creation time, or the stored one; a server
/// certificate for `dns_names` valid from `now`.
pub fn issue(
    current: Option<&Material>,
    decision: Decision,
    id: &str,
    dns_names: &[String],
    now: OffsetDateTime,
) -> Result<Material, TlsError> {
    let (ca_cert, ca_key, issuer) = match (decision, current) {
        (Decision::RenewServer, Some(current)) => {
            let key = KeyPair::from_pem(&current.ca_key)?;
            let issuer = Issuer::from_ca_cert_pem(&current.ca_cert, key)?;
            (current.ca_cert.clone(), current.ca_key.clone(), issuer)
        }
        _ => {
            let mut params = CertificateParams::default();
            let mut name = DistinguishedName::new();
            name.push(DnType::OrganizationName, "openefs");
            // The creation time makes every CA's name unique, so a
            // certificate of an earlier CA never looks issued by this one.
            name.push(
                DnType::CommonName,
                format!("openefs {id} CA {}", now.unix_timestamp()),
            );
            params.distinguished_name = name;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = now - Duration::minutes(5);
            params.not_after = now + CA_VALIDITY;
            let key = KeyPair::generate()?;
            let cert = params.self_signed(&key)?;
            let key_pem = key.serialize_pem();
            (cert.pem(), key_pem, Issuer::new(params, key))
        }
    };
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "openefs");
    name.push(
        DnType::CommonName,
        dns_names.last().cloned().unwrap_or_default(),
    );
    params.distinguished_name = name;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Five minutes back: nodes' clocks are not exactly in step.
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + SERVER_VALIDITY;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Material {
        ca_cert,
        ca_key,
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The material stored in the two Secrets, if both are there and readable.
pub fn stored(ca: Option<&Secret>, tls: Option<&Secret>) -> Option<Material> {
    let (ca, tls) = (ca?, tls?);
    Some(Material {
        ca_cert: text(ca, CA_CERT)?,
        ca_key: text(ca, CA_KEY)?,
        cert: text(tls, TLS_CERT)?,
        key: text(tls, TLS_KEY)?,
    })
}

/// The two Secrets holding `material`.
pub fn secrets(factory: &MetaFactory, material: &Material) -> [Secret; 2] {
    let data = |entries: &[(&str, &String)]| {
        Some(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    [
        Secret {
            metadata: factory.meta(&ca_secret_name(factory.id()), true),
            type_: Some("Opaque".to_owned()),
            data: data(&[(CA_CERT, &material.ca_cert), (CA_KEY, &material.ca_key)]),
            ..Secret::default()
        },
        Secret {
            metadata: factory.meta(&tls_secret_name(factory.id()), true),
            type_: Some("kubernetes.io/tls".to_owned()),
            data: data(&[
                (TLS_CERT, &material.cert),
                (TLS_KEY, &material.key),
                (CA_CERT, &material.ca_cert),
            ]),
            ..Secret::default()
        },
    ]
}

/// Reads the stored material, and issues and applies new material when it
/// is missing, expiring, or no longer names the Service. Returns the CA
/// certificate (PEM) in force, for the status.
pub async fn reconcile(
    client: &Client,
    factory: &MetaFactory,
    dns_names: &[String],
) -> Result<String, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), factory.namespace());
    let read = |name: String| {
        let api = api.clone();
        let namespace = factory.namespace().to_owned();
        async move {
            api.get_opt(&name).await.map_err(|source| Error::Read {
                what: format!("Secret {namespace}/{name}"),
                source: Box::new(source),
            })
        }
    };
    let ca = read(ca_secret_name(factory.id())).await?;
    let tls = read(tls_secret_name(factory.id())).await?;
    let current = stored(ca.as_ref(), tls.as_ref());
    let now = OffsetDateTime::now_utc();
    let decision = decide(current.as_ref(), dns_names, now);
    if let (Decision::Keep, Some(material)) = (decision, current.as_ref()) {
        Ok(material.ca_cert.clone())
    } else {
        let material = issue(
            current.as_ref(),
            decision,
            factory.id().as_str(),
            dns_names,
            now,
        )
        .map_err(Error::Tls)?;
        for secret in secrets(factory, &material) {
            apply::object(client, &secret).await?;
        }
        tracing::info!(?decision, "TLS material issued");
        Ok(material.ca_cert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        dns_names("fs-0123456789abcdef0", "team", "cluster.local")
    }

    fn at(days: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap() + Duration::days(days)
    }

    #[test]
    fn nothing_stored_means_a_new_ca() {
        assert_eq!(decide(None, &names(), at(0)), Decision::NewCa);
    }

    #[test]
    fn fresh_material_is_kept_until_the_renewal_margin() {
        let m = issue(
            None,
            Decision::NewCa,
            "fs-0123456789abcdef0",
            &names(),
            at(0),
        )
        .unwrap();
        assert_eq!(decide(Some(&m), &names(), at(0)), Decision::Keep);
        assert_eq!(decide(Some(&m), &names(), at(59)), Decision::Keep);
        assert_eq!(decide(Some(&m), &names(), at(61)), Decision::RenewServer);
        assert_eq!(decide(Some(&m), &names(), at(3650 - 29)), Decision::NewCa);
    }

    #[test]
    fn renewal_keeps_the_ca_and_signs_with_it() {
        let first = issue(None, Decision::NewCa, "fs-x", &names(), at(0)).unwrap();
        let renewed = issue(
            Some(&first),
            Decision::RenewServer,
            "fs-x",
            &names(),
            at(61),
        )
        .unwrap();
        assert_eq!(renewed.ca_cert, first.ca_cert);
        assert_eq!(renewed.ca_key, first.ca_key);
        assert_ne!(renewed.cert, first.cert);
        assert_eq!(decide(Some(&renewed), &names(), at(61)), Decision::Keep);
        let (ca, cert) = (
            facts(&renewed.ca_cert).unwrap(),
            facts(&renewed.cert).unwrap(),
        );
        assert_eq!(cert.issuer, ca.subject);
        let mut wanted = names();
        wanted.sort();
        assert_eq!(cert.dns_names, wanted);
    }

    #[test]
    fn other_names_a_foreign_ca_or_garbage_force_a_new_certificate() {
        let m = issue(None, Decision::NewCa, "fs-x", &names(), at(0)).unwrap();
        let moved = dns_names("fs-0123456789abcdef0", "other", "cluster.local");
        assert_eq!(decide(Some(&m), &moved, at(0)), Decision::RenewServer);

        let other = issue(None, Decision::NewCa, "fs-x", &names(), at(1)).unwrap();
        let mixed = Material {
            cert: other.cert.clone(),
            key: other.key.clone(),
            ..m.clone()
        };
        assert_eq!(decide(Some(&mixed), &names(), at(1)), Decision::RenewServer);

        let garbage_key = Material {
            key: "not a key".into(),
            ..m.clone()
        };
        assert_eq!(
            decide(Some(&garbage_key), &names(), at(0)),
            Decision::RenewServer
        );
        let garbage_ca = Material {
            ca_cert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            ..m
        };
        assert_eq!(decide(Some(&garbage_ca), &names(), at(0)), Decision::NewCa);
    }

    #[test]
    fn stored_needs_every_key() {
        let m = issue(None, Decision::NewCa, "fs-x", &names(), at(0)).unwrap();
        let fs: openefs_crds::FileSystem = serde_json::from_value(serde_json::json!({
            "apiVersion": "openefs.io/v1alpha1", "kind": "FileSystem",
            "metadata": {"name": "shared", "namespace": "team", "uid": "6f3a1c2e-9b7d-4e21-8c55-0a1b2c3d4e5f"},
            "spec": {}
        }))
        .unwrap();
        let factory = MetaFactory::new(&fs).unwrap();
        let [ca, tls] = secrets(&factory, &m);
        assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
        assert!(
            !tls.data.as_ref().unwrap().contains_key(CA_KEY),
            "CA key leaked into the TLS Secret"
        );
        assert_eq!(stored(Some(&ca), Some(&tls)), Some(m));
        assert_eq!(stored(None, Some(&tls)), None);
        let mut partial = tls.clone();
        partial.data.as_mut().unwrap().remove(TLS_KEY);
        assert_eq!(stored(Some(&ca), Some(&partial)), None);
    }
}
