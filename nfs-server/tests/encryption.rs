//! Encryption at rest, key management: the data key's envelope with a
//! Secret KEK file and with a KMS v2 plugin (the reference one, in
//! process), first start, fail-closed starts, rotation through the admin
//! API, and the binary's refusal to serve with a wrong KEK. These need no
//! encrypting vfs: they test the keys, not the contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openefs_admin_api::v1 as api;
use openefs_admin_api::v1::admin_client::AdminClient;
use openefs_kms::Plugin;
use openefs_nfsd::admin::serve_admin;
use openefs_nfsd::encryption::{
    DataKeys, EncryptionSettings, KEY_RECORD_FILE, KeyError, KeySource, kek_id,
};
use openefs_nfsd::state::SystemClock;
use openefs_nfsd::{Config, Server};
use openefs_vfs::LocalVfs;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// An export, its state directory and KEK files, in one temporary directory.
struct Fs {
    dir: tempfile::TempDir,
}

impl Fs {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("export")).expect("export");
        Self { dir }
    }

    fn export(&self) -> PathBuf {
        self.dir.path().join("export")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A KEK file of `byte`s named `name`.
    fn kek(&self, name: &str, byte: u8) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, [byte; 32]).expect("kek file");
        path
    }

    fn record(&self) -> serde_json::Value {
        let bytes = std::fs::read(self.state().join(KEY_RECORD_FILE)).expect("record");
        serde_json::from_slice(&bytes).expect("record JSON")
    }

    async fn open(&self, settings: &EncryptionSettings) -> Result<DataKeys, KeyError> {
        DataKeys::open(settings, &self.state(), &self.export()).await
    }
}

fn secret(kek_file: &Path, previous: Option<&Path>) -> EncryptionSettings {
    EncryptionSettings {
        source: KeySource::Secret {
            kek_file: kek_file.to_owned(),
        },
        previous_kek_file: previous.map(Path::to_owned),
    }
}

fn kms(socket: &Path) -> EncryptionSettings {
    EncryptionSettings {
        source: KeySource::Kms {
            socket: socket.to_owned(),
        },
        previous_kek_file: None,
    }
}

#[tokio::test]
async fn a_secret_kek_wraps_the_data_key_and_a_restart_unwraps_it() {
    let fs = Fs::new();
    let kek = fs.kek("kek", 1);
    let first = fs.open(&secret(&kek, None)).await.unwrap();
    let dek = *first.content_key().as_bytes();
    let record = fs.record();
    assert_eq!(record["key_source"], "secret");
    assert_eq!(record["algorithm"], "AES-256-XTS");
    assert_eq!(record["wrapping_key_id"], kek_id(&[1; 32]));
    // No key in the clear: neither the data key nor the KEK is in the file.
    let raw = std::fs::read(fs.state().join(KEY_RECORD_FILE)).unwrap();
    assert!(!raw.windows(16).any(|w| w == &dek[..16] || w == [1; 16]));
    assert!(!fs.state().join(format!("{KEY_RECORD_FILE}.tmp")).exists());
    drop(first);

    let again = fs.open(&secret(&kek, None)).await.unwrap();
    assert_eq!(again.content_key().as_bytes(), &dek);
    // Nothing to re-wrap: the record is as it was.
    assert_eq!(fs.record(), record);

    // Another file system gets another data key.
    let other = Fs::new();
    let other_keys = other.open(&secret(&kek, None)).await.unwrap();
    assert_ne!(other_keys.content_key().as_bytes(), &dek);
}

#[tokio::test]
async fn the_first_start_refuses_an_export_that_holds_data() {
    let fs = Fs::new();
    let kek = fs.kek("kek", 1);
    std::fs::create_dir_all(fs.export().join("lost+found")).unwrap();
    std::fs::create_dir_all(fs.export().join("teams/a")).unwrap();
    std::fs::write(fs.export().join("teams/a/old.txt"), b"plaintext").unwrap();
    let err = fs.open(&secret(&kek, None)).await.unwrap_err();
    assert!(matches!(err, KeyError::ExportHasData { .. }), "{err}");
    assert!(err.to_string().contains("old.txt"), "{err}");
    assert!(!fs.state().join(KEY_RECORD_FILE).exists());
    // Empty directories are no data.
    std::fs::remove_file(fs.export().join("teams/a/old.txt")).unwrap();
    fs.open(&secret(&kek, None)).await.unwrap();
    // Once the record exists, files are the encrypted data it protects.
    std::fs::write(fs.export().join("teams/a/new.txt"), b"ciphertext").unwrap();
    fs.open(&secret(&kek, None)).await.unwrap();
}

#[tokio::test]
async fn a_wrong_or_missing_kek_fails_closed_naming_both_keys() {
    let fs = Fs::new();
    let right = fs.kek("kek", 1);
    fs.open(&secret(&right, None)).await.unwrap();
    let record = fs.record();
    let (right_id, wrong_id) = (kek_id(&[1; 32]), kek_id(&[2; 32]));

    let wrong = fs.kek("wrong", 2);
    let err = fs.open(&secret(&wrong, None)).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, KeyError::Unwrap { .. }), "{message}");
    assert!(
        message.contains(&right_id) && message.contains(&wrong_id),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");

    let missing = fs.dir.path().join("missing");
    let message = fs
        .open(&secret(&missing, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains(&right_id), "{message}");
    assert!(
        message.contains("missing") && message.contains("unavailable"),
        "{message}"
    );

    let short = fs.dir.path().join("short");
    std::fs::write(&short, b"not 32 bytes\n").unwrap();
    let message = fs
        .open(&secret(&short, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("13 bytes"), "{message}");

    // A damaged record does not open with the right KEK either.
    let path = fs.state().join(KEY_RECORD_FILE);
    let mut damaged = record.clone();
    let wrapped = damaged["wrapped"].as_str().unwrap().to_owned();
    let flipped = if wrapped.starts_with('A') { "B" } else { "A" };
    damaged["wrapped"] = format!("{flipped}{}", &wrapped[1..]).into();
    std::fs::write(&path, serde_json::to_vec(&damaged).unwrap()).unwrap();
    let message = fs
        .open(&secret(&right, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("damaged"), "{message}");

    // The failures left the record alone.
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    fs.open(&secret(&right, None)).await.unwrap();
    assert_eq!(fs.record(), record);
}

#[tokio::test]
async fn a_previous_kek_unwraps_and_the_start_rewraps_with_the_current_one() {
    let fs = Fs::new();
    let old = fs.kek("old", 1);
    let dek = *fs
        .open(&secret(&old, None))
        .await
        .unwrap()
        .content_key()
        .as_bytes();
    let new = fs.kek("new", 2);
    assert!(fs.open(&secret(&new, None)).await.is_err());
    let keys = fs.open(&secret(&new, Some(&old))).await.unwrap();
    assert_eq!(keys.content_key().as_bytes(), &dek);
    assert_eq!(fs.record()["wrapping_key_id"], kek_id(&[2; 32]));
    // The old KEK is no longer needed.
    std::fs::remove_file(&old).unwrap();
    let keys = fs.open(&secret(&new, None)).await.unwrap();
    assert_eq!(keys.content_key().as_bytes(), &dek);
}

/// The reference KMS plugin, in process, on a socket in `dir`, with keys
/// `k1` and `k2` and `k1` current (the `current` file).
struct KmsPlugin {
    socket: PathBuf,
    keys: PathBuf,
    plugin: Arc<Plugin>,
    stop: CancellationToken,
}

impl KmsPlugin {
    fn start(dir: &Path) -> Self {
        let keys = dir.join("kms-keys");
        std::fs::create_dir(&keys).unwrap();
        std::fs::write(keys.join("k1"), [11; 32]).unwrap();
        std::fs::write(keys.join("k2"), [12; 32]).unwrap();
        std::fs::write(keys.join("current"), "k1\n").unwrap();
        let plugin = Arc::new(Plugin::open(keys.clone(), None).unwrap());
        let socket = dir.join("kms.sock");
        let listener = openefs_kms::bind(&socket).unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(openefs_kms::serve(
            listener,
            plugin.clone(),
            stop.clone().cancelled_owned(),
        ));
        Self {
            socket,
            keys,
            plugin,
            stop,
        }
    }
}

#[tokio::test]
async fn a_kms_plugin_wraps_unwraps_and_rotates_the_data_key() {
    let fs = Fs::new();
    let plugin = KmsPlugin::start(fs.dir.path());
    let settings = kms(&plugin.socket);
    let keys = fs.open(&settings).await.unwrap();
    let dek = *keys.content_key().as_bytes();
    assert_eq!(fs.record()["key_source"], "kms");
    assert_eq!(fs.record()["wrapping_key_id"], "k1");
    drop(keys);
    let keys = fs.open(&settings).await.unwrap();
    assert_eq!(keys.content_key().as_bytes(), &dek);

    // Rotation at the KMS: a new current key. The record says k1 until
    // the re-wrap; the data key stays the same.
    std::fs::write(plugin.keys.join("current"), "k2").unwrap();
    assert_eq!(plugin.plugin.reload().unwrap(), "k2");
    assert_eq!(keys.source().current_key_id().await.unwrap(), "k2");
    assert_eq!(keys.record().await.wrapping_key_id, "k1");
    let record = keys.rewrap().await.unwrap();
    assert_eq!(record.wrapping_key_id, "k2");
    assert_eq!(fs.record()["wrapping_key_id"], "k2");
    drop(keys);
    // k1 may go now.
    std::fs::remove_file(plugin.keys.join("k1")).unwrap();
    plugin.plugin.reload().unwrap();
    let keys = fs.open(&settings).await.unwrap();
    assert_eq!(keys.content_key().as_bytes(), &dek);

    // A start rewraps by itself when the KMS moved on while nfsd was down.
    std::fs::write(plugin.keys.join("k3"), [13; 32]).unwrap();
    std::fs::write(plugin.keys.join("current"), "k3").unwrap();
    plugin.plugin.reload().unwrap();
    fs.open(&settings).await.unwrap();
    assert_eq!(fs.record()["wrapping_key_id"], "k3");

    // The plugin gone: the start fails, naming the record's key and the socket.
    plugin.stop.cancel();
    let absent = fs.dir.path().join("no-such.sock");
    let message = fs.open(&kms(&absent)).await.unwrap_err().to_string();
    assert!(
        message.contains("k3") && message.contains("no-such.sock"),
        "{message}"
    );
    // And a KEK file cannot open a KMS-wrapped key.
    let kek = fs.kek("kek", 1);
    let message = fs.open(&secret(&kek, None)).await.unwrap_err().to_string();
    assert!(message.contains("kms-endpoint"), "{message}");
}

#[tokio::test]
async fn a_kms_plugin_that_lost_the_key_fails_closed() {
    let fs = Fs::new();
    let plugin = KmsPlugin::start(fs.dir.path());
    fs.open(&kms(&plugin.socket)).await.unwrap();
    std::fs::write(plugin.keys.join("current"), "k2").unwrap();
    std::fs::remove_file(plugin.keys.join("k1")).unwrap();
    plugin.plugin.reload().unwrap();
    let message = fs.open(&kms(&plugin.socket)).await.unwrap_err().to_string();
    assert!(
        message.contains("k1") && message.contains("k2"),
        "{message}"
    );
    assert!(message.contains("NotFound"), "{message}");
    assert_eq!(fs.record()["wrapping_key_id"], "k1");
}

#[tokio::test]
async fn a_secret_wrapped_key_moves_to_a_kms_with_the_previous_kek() {
    let fs = Fs::new();
    let kek = fs.kek("kek", 1);
    let dek = *fs
        .open(&secret(&kek, None))
        .await
        .unwrap()
        .content_key()
        .as_bytes();
    let plugin = KmsPlugin::start(fs.dir.path());
    let mut settings = kms(&plugin.socket);
    let message = fs.open(&settings).await.unwrap_err().to_string();
    assert!(message.contains(&kek_id(&[1; 32])), "{message}");
    settings.previous_kek_file = Some(kek.clone());
    let keys = fs.open(&settings).await.unwrap();
    assert_eq!(keys.content_key().as_bytes(), &dek);
    assert_eq!(fs.record()["key_source"], "kms");
    assert_eq!(fs.record()["wrapping_key_id"], "k1");
    settings.previous_kek_file = None;
    let keys = fs.open(&settings).await.unwrap();
    assert_eq!(keys.content_key().as_bytes(), &dek);
}

fn with_token<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", "Bearer t".parse().expect("ascii"));
    r
}

/// Serves the admin API of a server over `fs` with `keys` (no NFS: the
/// keys do not need it); a client for it.
async fn admin(
    fs: &Fs,
    keys: Option<Arc<DataKeys>>,
    stop: &CancellationToken,
) -> AdminClient<tonic::transport::Channel> {
    let token = fs.dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let vfs = Arc::new(LocalVfs::new(fs.export()).expect("LocalVfs (run as root)"));
    let config = Config::new(fs.export(), "127.0.0.1:1".parse().unwrap());
    let server = Server::new(config, vfs, Arc::new(SystemClock::default()));
    let server = Arc::new(match keys {
        Some(keys) => server.with_encryption(keys),
        None => server,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_admin(listener, server, token, stop.clone()));
    AdminClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

#[tokio::test]
async fn rotation_of_a_secret_kek_through_the_admin_api() {
    let fs = Fs::new();
    let kek = fs.kek("kek", 1);
    let keys = Arc::new(fs.open(&secret(&kek, None)).await.unwrap());
    let dek = *keys.content_key().as_bytes();
    let stop = CancellationToken::new();
    let mut a = admin(&fs, Some(keys), &stop).await;
    let (first, second) = (kek_id(&[1; 32]), kek_id(&[2; 32]));

    let e = a
        .get_encryption(with_token(api::GetEncryptionRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(e.enabled);
    assert_eq!(
        (e.algorithm.as_str(), e.key_source.as_str()),
        ("AES-256-XTS", "secret")
    );
    assert_eq!((&e.wrapping_key_id, &e.current_key_id), (&first, &first));
    let stored: serde_json::Value = serde_json::from_slice(&e.wrapped_data_key).unwrap();
    assert_eq!(stored, fs.record());
    assert!(!e.wrapped_at.is_empty());

    // The Secret's value changes (the mounted file with it).
    std::fs::write(&kek, [2; 32]).unwrap();
    let e = a
        .get_encryption(with_token(api::GetEncryptionRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((&e.wrapping_key_id, &e.current_key_id), (&first, &second));
    let e = a
        .rewrap_data_key(with_token(api::RewrapDataKeyRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((&e.wrapping_key_id, &e.current_key_id), (&second, &second));
    let e = a
        .get_encryption(with_token(api::GetEncryptionRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((&e.wrapping_key_id, &e.current_key_id), (&second, &second));
    assert_eq!(fs.record()["wrapping_key_id"], second.as_str());

    // An unreadable KEK: reported, and a re-wrap is UNAVAILABLE with the
    // stored record unchanged.
    std::fs::write(&kek, b"short").unwrap();
    let e = a
        .get_encryption(with_token(api::GetEncryptionRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(e.current_key_id.is_empty());
    assert!(
        e.current_key_error.contains("5 bytes"),
        "{}",
        e.current_key_error
    );
    let err = a
        .rewrap_data_key(with_token(api::RewrapDataKeyRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(fs.record()["wrapping_key_id"], second.as_str());
    stop.cancel();

    // A restart unwraps with the new KEK alone.
    std::fs::write(&kek, [2; 32]).unwrap();
    let keys = fs.open(&secret(&kek, None)).await.unwrap();
    assert_eq!(keys.content_key().as_bytes(), &dek);
}

#[tokio::test]
async fn an_unencrypted_server_says_so() {
    let fs = Fs::new();
    let stop = CancellationToken::new();
    let mut a = admin(&fs, None, &stop).await;
    let e = a
        .get_encryption(with_token(api::GetEncryptionRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e, api::Encryption::default());
    let err = a
        .rewrap_data_key(with_token(api::RewrapDataKeyRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    stop.cancel();
}

#[tokio::test]
async fn the_binary_refuses_to_serve_with_a_wrong_kek() {
    let fs = Fs::new();
    fs.open(&secret(&fs.kek("kek", 1), None)).await.unwrap();
    let wrong = fs.kek("wrong", 2);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_openefs-nfsd"))
        .arg("serve")
        .arg("--export")
        .arg(fs.export())
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(fs.state())
        .arg("--kek-file")
        .arg(&wrong)
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    assert!(
        lines[0].contains(&kek_id(&[1; 32])) && lines[0].contains(&kek_id(&[2; 32])),
        "{stderr}"
    );
}
