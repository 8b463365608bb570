//! Encryption in transit with the real Linux kernel NFS client (Debian's
//! kernel under qemu): the guest mounts `openefs-csi tls-proxy`'s loopback
//! port (a hard NFSv4.1 mount, the default), the proxy carries the traffic
//! inside TLS 1.3 to `openefs-nfsd --require-tls`, verifying its
//! certificate against the file system's CA and name and presenting the
//! node's client certificate (mTLS). nfsd squashes root except for a client
//! rule naming that certificate, so the guest's root can write into the
//! root-owned export only if nfsd matched the rule to the certificate the
//! proxy presented. Files written by the guest must arrive intact, owned by
//! root; then, during a stream of fsynced appends, the
//! host SIGKILLs the proxy and starts it again from its state directory:
//! the stream carries on with no failed write and the file holds exactly
//! what was acknowledged. The workload is `e2e/guest/tls.sh`.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use openefs_csi::tls_proxy::spec::{ClientCertificate, TunnelSpec, write as write_tunnel};
use openefs_e2e::nfsd::{Nfsd, TlsFiles};
use openefs_e2e::pki;
use openefs_e2e::qemu::{KernelClient, RunOptions, free_loopback_port};
use openefs_e2e::tls_proxy::TlsProxy;
use sha2::{Digest, Sha256};

const WORKLOAD: &str = include_str!("../guest/tls.sh");
const SERVER_NAME: &str = "fs-tls.openefs.test";
const TUNNEL: &str = "vol-tls";
/// The common name of the node's client certificate.
const NODE_NAME: &str = "node-e2e";
/// The longest wait for one acknowledged append across the proxy restart;
/// the kernel's reconnect backoff dominates (the figure is printed).
const MAX_PAUSE_S: f64 = 30.0;

fn records(n: usize) -> String {
    (1..=n)
        .map(|i| format!("record {i:06} of the tls stream\n"))
        .collect()
}

#[test]
fn kernel_client_through_tls_proxy_survives_proxy_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let export = dir.path().join("export");
    std::fs::create_dir(&export)?;
    // What the operator mounts from the FileSystem's Secret at
    // /etc/openefs/tls.
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls)?;
    let tls = TlsFiles::write(&tls, "openefs e2e CA", &[SERVER_NAME]);
    let ca_path = tls.ca_cert.clone();
    // The node's identity, from the same CA for brevity (what the chart's
    // node certificate Secret holds).
    let node = tls.ca.client(NODE_NAME);
    let client_certificate = ClientCertificate {
        cert: pki::write(dir.path(), "node.crt", &node.cert),
        key: pki::write(dir.path(), "node.key", &node.key),
    };
    let config = dir.path().join("nfsd.toml");
    std::fs::write(
        &config,
        format!("[[client-rule]]\nclient = \"{NODE_NAME}\"\nroot-squash = false\n"),
    )?;
    let nfsd = Nfsd::start_with_tls(
        &export,
        dir.path().join("nfsd.log"),
        &tls,
        &[
            "--require-tls",
            "--root-squash",
            "--tls-client-ca",
            &ca_path.to_string_lossy(),
            "--config",
            &config.to_string_lossy(),
        ],
    )?;
    let state = dir.path().join("tunnels");
    std::fs::create_dir(&state)?;
    let port = free_loopback_port()?;
    write_tunnel(
        &state,
        TUNNEL,
        &TunnelSpec {
            local_port: port,
            server: format!("127.0.0.1:{}", nfsd.port()),
            server_name: SERVER_NAME.into(),
            ca: ca_path,
            client_certificate: Some(client_certificate),
        },
    )?;
    let mut proxy = TlsProxy::start(&state, dir.path().join("proxy.log"))?;
    proxy.wait_for_tunnel(port)?;
    let started = Instant::now();

    let mut restarted = false;
    let mut restart_s = 0.0;
    let mut on_pause = |name: &str| -> Result<()> {
        ensure!(name == "proxy-restart", "unexpected pause {name}");
        let t = Instant::now();
        proxy.kill()?;
        proxy.start_again()?;
        proxy.wait_for_tunnel(port)?;
        restart_s = t.elapsed().as_secs_f64();
        restarted = true;
        Ok(())
    };
    let opts = RunOptions {
        timeout: Duration::from_secs(240),
        on_pause: Some(&mut on_pause),
        ..Default::default()
    };
    let out = KernelClient::run(port, WORKLOAD, opts)
        .with_context(|| format!("{}\n{}", nfsd.log_tail(), proxy.log_tail()))?;
    let pause = out.metric("io_pause_s")?;
    println!(
        "tls: {} records acknowledged; I/O pause across the proxy restart {pause:.2} s \
         (proxy back in {restart_s:.2} s); guest ran {:.1} s, whole test {:.1} s",
        out.metrics.get("acked").map_or("?", String::as_str),
        out.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    ensure!(restarted, "the guest never paused for the proxy restart");
    let sizes = [0, 1, 4096, 1048576, 4194304];
    let mut expected: Vec<String> = Vec::new();
    for size in sizes {
        expected.push(format!("write-{size}"));
        expected.push(format!("read-{size}"));
    }
    expected.extend(["stream-continued", "no-failed-appends", "stream-content"].map(String::from));
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    out.ensure_ok(&expected)
        .with_context(|| format!("{}\n{}", nfsd.log_tail(), proxy.log_tail()))?;
    for size in sizes {
        let path = export.join(format!("f{size}"));
        let owner = std::fs::metadata(&path)?.uid();
        ensure!(
            owner == 0,
            "f{size} is owned by uid {owner}: the client rule for {NODE_NAME} did not apply\n{}",
            nfsd.log_tail()
        );
        let data = std::fs::read(&path)?;
        ensure!(
            data.len() == size,
            "f{size} is {} bytes on the host",
            data.len()
        );
        let host = format!("{:x}", Sha256::digest(&data));
        let guest = out.metrics.get(&format!("sha-f{size}")).map(String::as_str);
        ensure!(
            guest == Some(host.as_str()),
            "f{size}: host {host}, guest {guest:?}"
        );
    }
    let acked = out.metric("acked")? as usize;
    ensure!(
        std::fs::read_to_string(export.join("stream"))? == records(acked),
        "host: the stream differs from the {acked} acknowledged records"
    );
    ensure!(
        pause < MAX_PAUSE_S,
        "I/O pause of {pause} s across the proxy restart (limit {MAX_PAUSE_S} s)"
    );
    // The kernel reached the restarted proxy, which reached nfsd inside
    // TLS; nothing ever came in the clear.
    let series = format!(r#"openefs_tls_proxy_connections_total{{tunnel="{TUNNEL}"}}"#);
    ensure!(
        proxy.metric(&series)? >= Some(1.0),
        "no connection through the restarted proxy\n{}",
        proxy.log_tail()
    );
    ensure!(
        nfsd.metric("openefs_nfsd_plaintext_refused_total")? == Some(0.0),
        "nfsd refused plaintext connections\n{}",
        nfsd.log_tail()
    );
    Ok(())
}
