//! The `openefs-kms-plugin` binary over its unix socket, through the client
//! nfsd uses: Status, Encrypt/Decrypt, rotation by SIGHUP, shutdown.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use openefs_kms::{KmsClient, KmsError};

/// The plugin as a child process; killed on drop if still running.
struct PluginProcess(Child);

impl PluginProcess {
    fn start(socket: &Path, keys: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_openefs-kms-plugin"))
            .arg("--listen")
            .arg(format!("unix://{}", socket.display()))
            .arg("--key-dir")
            .arg(keys)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("start openefs-kms-plugin");
        Self(child)
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.0.id()).expect("pid");
        kill(Pid::from_raw(pid), signal).expect("signal the plugin");
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls until `f` is true; generous, the machine may be loaded.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn serves_kms_v2_and_rotates_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("k1"), [1u8; 32]).unwrap();
    std::fs::write(keys.join("current"), "k1\n").unwrap();
    let socket = dir.path().join("kms.sock");
    let mut plugin = PluginProcess::start(&socket, &keys);
    let client = KmsClient::new(socket.clone());
    eventually("the plugin to serve", async || {
        client.current_key_id().await.is_ok()
    })
    .await;
    assert_eq!(client.current_key_id().await.unwrap(), "k1");

    let sealed = client.encrypt(b"a data key").await.unwrap();
    assert_eq!(sealed.key_id, "k1");
    let opened = client
        .decrypt(
            &sealed.ciphertext,
            &sealed.key_id,
            sealed.annotations.clone(),
        )
        .await
        .unwrap();
    assert_eq!(opened.as_slice(), b"a data key");

    // A new current key, then SIGHUP: a rotation. The old key still opens
    // what it sealed.
    std::fs::write(keys.join("k2"), [2u8; 32]).unwrap();
    std::fs::write(keys.join("current"), "k2").unwrap();
    plugin.signal(Signal::SIGHUP);
    eventually("the rotation", async || {
        client.current_key_id().await.ok().as_deref() == Some("k2")
    })
    .await;
    assert_eq!(client.encrypt(b"x").await.unwrap().key_id, "k2");
    let opened = client
        .decrypt(&sealed.ciphertext, "k1", sealed.annotations.clone())
        .await
        .unwrap();
    assert_eq!(opened.as_slice(), b"a data key");
    let err = client
        .decrypt(&sealed.ciphertext, "k2", sealed.annotations)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            KmsError::Call {
                code: tonic::Code::InvalidArgument,
                ..
            }
        ),
        "{err}"
    );

    // A broken directory on SIGHUP keeps the keys in use.
    std::fs::write(keys.join("current"), "k9").unwrap();
    plugin.signal(Signal::SIGHUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.current_key_id().await.unwrap(), "k2");

    plugin.signal(Signal::SIGTERM);
    let status = tokio::task::spawn_blocking(move || plugin.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
    assert!(matches!(
        client.current_key_id().await,
        Err(KmsError::Connect { .. })
    ));
}

#[tokio::test]
async fn refuses_to_start_without_a_current_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k1"), [1u8; 32]).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_openefs-kms-plugin"))
        .arg("--listen")
        .arg(dir.path().join("kms.sock"))
        .arg("--key-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no current key"), "{stderr}");
}
