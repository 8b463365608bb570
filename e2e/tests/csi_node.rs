//! `openefs-csi node` with the real Linux kernel NFS client: the plugin runs
//! in the qemu guest (Debian's kernel), the test drives it over gRPC through
//! a forwarded port (socat bridges it to the plugin's unix socket in the
//! guest; `openefs_e2e::csi_guest`), and the guest mounts `openefs-nfsd`
//! on the host. Between the pauses of `e2e/guest/csi_node.sh` the guest
//! plays the pods: two pods see each other's writes, a read-only pod cannot
//! write. The host checks the export, NodeGetVolumeStats against the
//! export's own statvfs, the repair of a stale mount (the volume's directory
//! replaced on the server), that a server that never answers costs a stage
//! DEADLINE_EXCEEDED, not the plugin, and that unpublish and unstage finish
//! in bounded time when the server of a mounted volume stops answering
//! (nfsd stopped with SIGSTOP). A TLS volume
//! (encryptInTransit) goes through `openefs-csi tls-proxy`, also in the
//! guest, to a second nfsd that accepts nothing but TLS: the plugin writes
//! the tunnel file, mounts the proxy's loopback port, and removes the
//! tunnel at unstage.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use openefs_csi::csi::{
    self, identity_client::IdentityClient, node_client::NodeClient,
    node_service_capability::rpc::Type as NodeRpc, volume_capability::access_mode::Mode,
    volume_usage::Unit,
};
use openefs_e2e::csi_guest::{GuestPlugin, NODE_ID, Volume, cap, context};
use openefs_e2e::nfsd::{Nfsd, TlsFiles};
use openefs_e2e::qemu::{KernelClient, RunOptions};
use tokio::runtime::Runtime;
use tonic::{Code, transport::Channel};

const WORKLOAD: &str = include_str!("../guest/csi_node.sh");
/// The guest's address of the TLS-only nfsd; its certificate names it.
const TLS_SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 102);
/// The plugin's mount timeout in the guest, short so the hung-server step
/// is quick.
const MOUNT_TIMEOUT_S: u64 = 8;
/// A server address in the guest that accepts connections and never answers.
const HUNG_SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 101);
/// The plugin's unmount timeout in the guest.
const UNMOUNT_TIMEOUT_S: u64 = 5;

const STAGE1: &str = "/var/lib/kubelet/plugins/kubernetes.io/csi/csi.openefs.io/vol1/globalmount";
const STAGE2: &str = "/var/lib/kubelet/plugins/kubernetes.io/csi/csi.openefs.io/vol2/globalmount";
const STAGE3: &str = "/var/lib/kubelet/plugins/kubernetes.io/csi/csi.openefs.io/vol3/globalmount";
const STAGE4: &str = "/var/lib/kubelet/plugins/kubernetes.io/csi/csi.openefs.io/vol4/globalmount";
const STAGE5: &str = "/var/lib/kubelet/plugins/kubernetes.io/csi/csi.openefs.io/vol5/globalmount";
const POD_A: &str = "/var/lib/kubelet/pods/a/volumes/kubernetes.io~csi/vol1/mount";
const POD_B: &str = "/var/lib/kubelet/pods/b/volumes/kubernetes.io~csi/vol1/mount";
const POD_C: &str = "/var/lib/kubelet/pods/c/volumes/kubernetes.io~csi/vol1/mount";
const POD_D: &str = "/var/lib/kubelet/pods/d/volumes/kubernetes.io~csi/vol2/mount";
const POD_E: &str = "/var/lib/kubelet/pods/e/volumes/kubernetes.io~csi/vol4/mount";
const POD_F: &str = "/var/lib/kubelet/pods/f/volumes/kubernetes.io~csi/vol5/mount";

/// An access-point volume as CreateVolume describes it.
const VOL1: &str = "storage/shared::pvc-1";
/// A static sub-path volume: the path comes from the handle.
const VOL2: &str = "storage/shared:vol2";
const VOL3: &str = "storage/hung";
const VOL4: &str = "storage/shared:vol4";
/// A sub-path volume of a file system reached through TLS.
const VOL5: &str = "storage/secure:vol5";

/// `kill -SIG pid`.
fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    ensure!(status.success(), "kill -{sig} {pid}: {status}");
    Ok(())
}

/// What the host's `stat -f` says of the export's file system.
struct HostFs {
    total_bytes: i64,
    total_inodes: i64,
}

fn host_statfs(dir: &Path) -> Result<HostFs> {
    let out = Command::new("stat")
        .args(["-f", "-c", "%S %b %c"])
        .arg(dir)
        .output()
        .context("running stat -f")?;
    ensure!(
        out.status.success(),
        "stat -f {}: {}",
        dir.display(),
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let n: Vec<i64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("stat -f printed {text:?}"))?;
    let [block, blocks, inodes] = n[..] else {
        bail!("stat -f printed {text:?}");
    };
    Ok(HostFs {
        total_bytes: block * blocks,
        total_inodes: inodes,
    })
}

fn within(a: i64, b: i64, fraction: f64) -> bool {
    (a - b).abs() as f64 <= b.abs() as f64 * fraction
}

/// The host's side of the run: a client to the plugin in the guest.
struct Host {
    rt: Runtime,
    plugin: GuestPlugin,
    export: PathBuf,
    channel: Option<Channel>,
    vol1: Volume,
    vol2: Volume,
    vol3: Volume,
    vol4: Volume,
    vol5: Volume,
    nfsd_pid: u32,
    figures: Vec<String>,
}

impl Host {
    fn node(&self) -> Result<NodeClient<Channel>> {
        Ok(NodeClient::new(
            self.channel.clone().context("not connected")?,
        ))
    }

    fn connect(&mut self) -> Result<()> {
        self.channel = Some(self.plugin.connect(&self.rt)?);
        Ok(())
    }

    fn code<T>(&self, call: impl std::future::Future<Output = Result<T, tonic::Status>>) -> Code {
        match self.rt.block_on(call) {
            Ok(_) => Code::Ok,
            Err(s) => {
                println!("  -> {:?}: {}", s.code(), s.message());
                s.code()
            }
        }
    }

    fn node_ready(&mut self) -> Result<()> {
        self.connect()?;
        let channel = self.channel.clone().context("not connected")?;
        let mut id = IdentityClient::new(channel);
        let info = self
            .rt
            .block_on(id.get_plugin_info(csi::GetPluginInfoRequest {}))?
            .into_inner();
        ensure!(info.name == "csi.openefs.io", "plugin name {}", info.name);
        let mut node = self.node()?;
        let got = self
            .rt
            .block_on(node.node_get_info(csi::NodeGetInfoRequest {}))?
            .into_inner();
        ensure!(got.node_id == NODE_ID, "node id {}", got.node_id);
        let caps = self
            .rt
            .block_on(node.node_get_capabilities(csi::NodeGetCapabilitiesRequest {}))?
            .into_inner();
        let rpcs: Vec<i32> = caps
            .capabilities
            .iter()
            .filter_map(|c| c.r#type.as_ref())
            .map(|csi::node_service_capability::Type::Rpc(r)| r.r#type)
            .collect();
        for want in [
            NodeRpc::StageUnstageVolume,
            NodeRpc::GetVolumeStats,
            NodeRpc::VolumeCondition,
        ] {
            ensure!(rpcs.contains(&want.into()), "capabilities lack {want:?}");
        }

        // Refusals before anything is mounted.
        let mut bad = self.vol1.stage();
        bad.volume_capability = Some(cap(Mode::MultiNodeMultiWriter, &["addr=10.0.2.2"]));
        ensure!(self.code(node.node_stage_volume(bad)) == Code::InvalidArgument);
        ensure!(
            self.code(node.node_publish_volume(self.vol1.publish(POD_A, false)))
                == Code::FailedPrecondition,
            "publish before stage"
        );

        let started = Instant::now();
        self.rt
            .block_on(node.node_stage_volume(self.vol1.stage()))?;
        self.figures.push(format!(
            "stage (kernel NFS mount) {:.2} s",
            started.elapsed().as_secs_f64()
        ));
        let started = Instant::now();
        self.rt
            .block_on(node.node_stage_volume(self.vol1.stage()))?;
        self.figures.push(format!(
            "repeated stage {:.2} s",
            started.elapsed().as_secs_f64()
        ));
        let started = Instant::now();
        self.rt
            .block_on(node.node_publish_volume(self.vol1.publish(POD_A, false)))?;
        self.figures.push(format!(
            "publish (bind) {:.2} s",
            started.elapsed().as_secs_f64()
        ));
        self.rt
            .block_on(node.node_publish_volume(self.vol1.publish(POD_A, false)))?;
        self.rt
            .block_on(node.node_publish_volume(self.vol1.publish(POD_B, false)))?;
        self.rt
            .block_on(node.node_publish_volume(self.vol1.publish(POD_C, true)))?;
        ensure!(
            self.code(node.node_publish_volume(self.vol1.publish(POD_C, false)))
                == Code::AlreadyExists,
            "publishing read-write over the read-only bind"
        );
        self.rt
            .block_on(node.node_stage_volume(self.vol2.stage()))?;
        self.rt
            .block_on(node.node_publish_volume(self.vol2.publish(POD_D, false)))?;
        let started = Instant::now();
        self.rt
            .block_on(node.node_stage_volume(self.vol5.stage()))
            .context("staging the TLS volume")?;
        self.figures.push(format!(
            "stage through the tls-proxy (tunnel file, proxy listening, mount) {:.2} s",
            started.elapsed().as_secs_f64()
        ));
        self.rt
            .block_on(node.node_publish_volume(self.vol5.publish(POD_F, false)))?;
        Ok(())
    }

    fn written(&mut self) -> Result<()> {
        let vol = self.export.join("vol1");
        ensure!(std::fs::read_to_string(vol.join("a.txt"))? == "from-a\n");
        ensure!(std::fs::read_to_string(vol.join("b.txt"))? == "from-b\n");
        ensure!(std::fs::metadata(vol.join("big"))?.len() == 8 << 20);
        ensure!(!vol.join("c.txt").exists(), "the read-only pod wrote");

        let mut node = self.node()?;
        let stats = self
            .rt
            .block_on(node.node_get_volume_stats(self.vol1.stats(POD_A)))?
            .into_inner();
        let condition = stats.volume_condition.context("no volume condition")?;
        ensure!(!condition.abnormal, "abnormal: {}", condition.message);
        let unit = |u: Unit| {
            stats
                .usage
                .iter()
                .find(|x| x.unit == i32::from(u))
                .with_context(|| format!("no {u:?} usage"))
        };
        let (bytes, inodes) = (unit(Unit::Bytes)?, unit(Unit::Inodes)?);
        let host = host_statfs(&self.export)?;
        self.figures.push(format!(
            "stats: {} of {} bytes used, {} available; {} of {} inodes used \
             (host statvfs of the export: {} bytes, {} inodes)",
            bytes.used,
            bytes.total,
            bytes.available,
            inodes.used,
            inodes.total,
            host.total_bytes,
            host.total_inodes
        ));
        // The kernel client rounds to its block size: equal within 1%.
        ensure!(
            within(bytes.total, host.total_bytes, 0.01),
            "total bytes {} vs the export's {}",
            bytes.total,
            host.total_bytes
        );
        ensure!(
            within(inodes.total, host.total_inodes, 0.01),
            "total inodes {} vs the export's {}",
            inodes.total,
            host.total_inodes
        );
        ensure!(
            bytes.used >= 8 << 20 && bytes.used <= bytes.total,
            "used bytes {}",
            bytes.used
        );
        ensure!(bytes.available <= bytes.total - bytes.used + (bytes.total / 100));
        ensure!(
            inodes.used >= 3 && inodes.used <= inodes.total,
            "used inodes {}",
            inodes.used
        );
        // The read-only bind reports the same file system.
        let ro = self
            .rt
            .block_on(node.node_get_volume_stats(self.vol1.stats(POD_C)))?
            .into_inner();
        ensure!(ro.usage.first().map(|u| u.total) == Some(bytes.total));
        ensure!(
            self.code(node.node_get_volume_stats(self.vol1.stats("/var/lib/kubelet/pods/none")))
                == Code::NotFound
        );
        Ok(())
    }

    fn stale(&mut self) -> Result<()> {
        // Replace the volume's directory on the server: every handle the
        // guest holds for it is stale now.
        let dir = self.export.join("vol2");
        std::fs::remove_dir_all(&dir)?;
        std::fs::create_dir(&dir)?;
        std::fs::write(dir.join("new.txt"), "fresh\n")?;
        let mut node = self.node()?;
        let stats = self
            .rt
            .block_on(node.node_get_volume_stats(self.vol2.stats(POD_D)))?
            .into_inner();
        let condition = stats.volume_condition.context("no volume condition")?;
        ensure!(condition.abnormal, "a stale volume reported healthy");
        self.figures
            .push(format!("stale volume condition: {}", condition.message));
        self.rt
            .block_on(node.node_publish_volume(self.vol2.publish(POD_D, false)))
            .context("publish repairing the stale mounts")?;
        let stats = self
            .rt
            .block_on(node.node_get_volume_stats(self.vol2.stats(POD_D)))?
            .into_inner();
        let condition = stats.volume_condition.context("no volume condition")?;
        ensure!(!condition.abnormal, "still abnormal: {}", condition.message);
        Ok(())
    }

    fn hung(&mut self) -> Result<()> {
        let mut node = self.node()?;
        let started = Instant::now();
        let first = self.code(node.node_stage_volume(self.vol3.stage()));
        let waited = started.elapsed();
        self.figures.push(format!(
            "stage against a hung server answered {first:?} after {:.1} s",
            waited.as_secs_f64()
        ));
        ensure!(
            first == Code::DeadlineExceeded,
            "stage against a hung server: {first:?}"
        );
        ensure!(
            waited >= Duration::from_secs(MOUNT_TIMEOUT_S - 1)
                && waited < Duration::from_secs(MOUNT_TIMEOUT_S + 20),
            "answered after {waited:?}, the mount timeout is {MOUNT_TIMEOUT_S} s"
        );
        ensure!(
            self.code(node.node_stage_volume(self.vol3.stage())) == Code::Aborted,
            "a retry while the kernel still mounts must not stack a second mount"
        );
        // The plugin still serves the healthy volume.
        let stats = self
            .rt
            .block_on(node.node_get_volume_stats(self.vol1.stats(POD_B)))?
            .into_inner();
        ensure!(stats.volume_condition.is_some_and(|c| !c.abnormal));

        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        let mut node = self.node()?;
        for _ in 0..2 {
            for target in [POD_A, POD_B, POD_C] {
                self.rt
                    .block_on(node.node_unpublish_volume(self.vol1.unpublish(target)))?;
            }
            self.rt
                .block_on(node.node_unpublish_volume(self.vol2.unpublish(POD_D)))?;
        }
        for _ in 0..2 {
            self.rt
                .block_on(node.node_unstage_volume(self.vol1.unstage()))?;
            self.rt
                .block_on(node.node_unstage_volume(self.vol2.unstage()))?;
        }
        self.rt
            .block_on(node.node_unpublish_volume(self.vol5.unpublish(POD_F)))?;
        self.rt
            .block_on(node.node_unstage_volume(self.vol5.unstage()))?;

        // A mounted volume whose server stops answering.
        self.rt
            .block_on(node.node_stage_volume(self.vol4.stage()))?;
        self.rt
            .block_on(node.node_publish_volume(self.vol4.publish(POD_E, false)))?;
        // nfsd stops answering (SIGSTOP): connections stay up, nothing is
        // answered. The kernel shares one NFS client per server, so this
        // comes after the other volumes are gone.
        signal(self.nfsd_pid, "STOP")?;
        let stats = self
            .rt
            .block_on(node.node_get_volume_stats(self.vol4.stats(POD_E)))?
            .into_inner();
        let condition = stats.volume_condition.context("no volume condition")?;
        ensure!(condition.abnormal, "a hung volume reported healthy");
        self.figures
            .push(format!("hung volume condition: {}", condition.message));
        // The statvfs above is still stuck in the kernel and keeps the bind
        // busy: unpublish must detach it rather than fail.
        let limit = Duration::from_secs(2 * UNMOUNT_TIMEOUT_S + 20);
        let started = Instant::now();
        self.rt
            .block_on(node.node_unpublish_volume(self.vol4.unpublish(POD_E)))?;
        let unpublish = started.elapsed();
        let started = Instant::now();
        self.rt
            .block_on(node.node_unstage_volume(self.vol4.unstage()))?;
        let unstage = started.elapsed();
        self.figures.push(format!(
            "with the server hung: unpublish {:.1} s, unstage {:.1} s",
            unpublish.as_secs_f64(),
            unstage.as_secs_f64()
        ));
        ensure!(
            unpublish < limit && unstage < limit,
            "with the server hung, unpublish took {unpublish:?} and unstage {unstage:?}"
        );
        signal(self.nfsd_pid, "CONT")?;
        Ok(())
    }
}

#[test]
fn csi_node_in_the_guest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let export = dir.path().join("export");
    std::fs::create_dir_all(export.join("vol1"))?;
    std::fs::create_dir_all(export.join("vol2"))?;
    std::fs::create_dir_all(export.join("vol4"))?;
    let nfsd = Nfsd::start(&export, dir.path().join("nfsd.log"))?;
    // The TLS-only server, with a certificate for the address the guest
    // reaches it at.
    let secure = dir.path().join("secure");
    std::fs::create_dir_all(secure.join("vol5"))?;
    let tls = TlsFiles::write(dir.path(), "openefs e2e CA", &[&TLS_SERVER.to_string()]);
    let tls_nfsd = Nfsd::start_with_tls(
        &secure,
        dir.path().join("nfsd-tls.log"),
        &tls,
        &["--require-tls"],
    )?;
    let started = Instant::now();

    // A "server" that takes connections and never answers.
    let hung = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    let hung_port = hung.local_addr()?.port();
    thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hung.incoming().flatten() {
            held.push(conn);
        }
    });

    let plain = [("encryptInTransit", "false")];
    let mut host = Host {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        plugin: GuestPlugin {
            mount_timeout: Duration::from_secs(MOUNT_TIMEOUT_S),
            unmount_timeout: Duration::from_secs(UNMOUNT_TIMEOUT_S),
            ..GuestPlugin::new()?
        },
        export: export.clone(),
        channel: None,
        vol1: Volume {
            id: VOL1,
            staging: STAGE1,
            context: context(&[
                ("server", "10.0.2.100"),
                ("path", "/vol1"),
                ("fileSystem", "storage/shared"),
                ("accessPointId", "fsap-0123456789abcdef0"),
                plain[0],
            ]),
            flags: &["nosuid", "actimeo=1"],
        },
        vol2: Volume {
            id: VOL2,
            staging: STAGE2,
            context: context(&[("server", "10.0.2.100:2049"), plain[0]]),
            flags: &[],
        },
        vol3: Volume {
            id: VOL3,
            staging: STAGE3,
            context: context(&[("server", HUNG_SERVER.to_string().as_str()), plain[0]]),
            flags: &[],
        },
        vol4: Volume {
            id: VOL4,
            staging: STAGE4,
            context: context(&[("server", "10.0.2.100"), plain[0]]),
            flags: &[],
        },
        vol5: Volume {
            id: VOL5,
            staging: STAGE5,
            context: context(&[
                ("server", TLS_SERVER.to_string().as_str()),
                ("encryptInTransit", "true"),
            ]),
            flags: &[],
        },
        nfsd_pid: nfsd.pid(),
        figures: Vec::new(),
    };
    let mut opts = RunOptions {
        timeout: Duration::from_secs(300),
        extra_servers: vec![(HUNG_SERVER, hung_port), (TLS_SERVER, tls_nfsd.port())],
        files: vec![("ca.crt".into(), tls.ca.pem.clone().into_bytes())],
        ..Default::default()
    };
    host.plugin.configure(&mut opts)?;
    for (key, value) in [
        ("STAGE1", STAGE1.to_owned()),
        ("STAGE5", STAGE5.to_owned()),
        ("POD_F", POD_F.to_owned()),
        ("TLS_SERVER", TLS_SERVER.to_string()),
        ("POD_A", POD_A.to_owned()),
        ("POD_B", POD_B.to_owned()),
        ("POD_C", POD_C.to_owned()),
        ("POD_D", POD_D.to_owned()),
    ] {
        opts.env.insert(key.into(), value);
    }
    let mut on_pause = |name: &str| -> Result<()> {
        println!("pause {name}");
        match name {
            "node-ready" => host.node_ready(),
            "written" => host.written(),
            "stale" => host.stale(),
            "hung" => host.hung(),
            "teardown" => host.teardown(),
            other => bail!("unexpected pause {other}"),
        }
    };
    opts.on_pause = Some(&mut on_pause);
    let workload = GuestPlugin::workload(WORKLOAD);
    let out = KernelClient::run(nfsd.port(), &workload, opts)
        .with_context(|| format!("{}\n{}", nfsd.log_tail(), tls_nfsd.log_tail()))?;
    for figure in &host.figures {
        println!("{figure}");
    }
    println!(
        "csi node: guest ran {:.1} s, whole test {:.1} s",
        out.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    out.ensure_ok(&[
        "node-socket",
        "pause-node-ready",
        "nfs-mounts",
        "staging-type",
        "staging-source",
        "staging-option-vers=4.1",
        "staging-option-hard",
        "staging-option-noresvport",
        "staging-option-acregmin=1",
        "staging-nosuid",
        "pod-a-binds-staging",
        "pod-b-binds-staging",
        "pod-c-read-only",
        "b-sees-a",
        "a-sees-b",
        "c-sees-a",
        "c-cannot-write",
        "tls-staging-source",
        "tls-mount-addr",
        "tls-mount-port",
        "tls-writes",
        "tls-reads",
        "a-writes-8mib",
        "pause-written",
        "pause-stale",
        "d-sees-new-directory",
        "d-writes",
        "pause-hung",
        "pause-teardown",
        "no-nfs-mounts",
        "targets-removed",
        "tunnels-removed",
    ])
    .with_context(|| nfsd.log_tail())?;
    ensure!(
        std::fs::read_to_string(export.join("vol2/after.txt"))? == "after-repair\n",
        "the write after the repair did not reach the new directory"
    );
    ensure!(
        std::fs::read_to_string(secure.join("vol5/tls.txt"))? == "through-tls\n",
        "the write through the TLS volume did not reach the TLS server's export"
    );
    Ok(())
}
