//! The local end-to-end demo (`make demo`, `openefs-demo`): the product's
//! data path on one machine, without a cluster. openefs-nfsd serves a
//! directory with TLS required and one access point (POSIX identity,
//! quota); Debian's kernel boots in qemu as a node running `openefs-csi
//! node` and its `tls-proxy` sidecar (`csi_guest`); the host stages the
//! access point's volume with encryptInTransit through the plugin (the
//! kernel mounts the proxy's tunnel) and publishes it to two pods; writers
//! in both pods write files of known content in parallel, each pod checks
//! the other's files against checksums the host computed, the volume is
//! unpublished and unstaged, and the host checks the files on the export
//! under the access point's directory, with its owner. The outcome is a
//! [`Summary`] with timings, throughput and nfsd's and the proxy's metrics.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use openefs_csi::csi::{self, identity_client::IdentityClient, node_client::NodeClient};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;
use tonic::transport::Channel;

use crate::csi_guest::{GuestPlugin, NODE_ID, Volume, context};
use crate::nfsd::{Nfsd, TlsFiles, metric_value};
use crate::progress::{Progress, Step, StepRecord};
use crate::qemu::{GUEST_SERVER_ADDR, GuestOutput, KernelClient, RunOptions, prepare_kernel};

const WORKLOAD: &str = include_str!("../guest/demo.sh");

/// The access point: its id (as the operator derives one), root
/// directory and POSIX identity.
const AP_ID: &str = "fsap-0de30de30de30de30";
const AP_ROOT: &str = "demo/pvc-shared";
const AP_UID: u32 = 1000;
const AP_GID: u32 = 1000;
/// The volume as the CSI controller names an access point volume.
const VOLUME_ID: &str = "demo/shared::pvc-shared";
const STAGE: &str =
    "/var/lib/kubelet/plugins/kubernetes.io/csi/csi.openefs.io/pvc-shared/globalmount";
const POD_A: &str = "/var/lib/kubelet/pods/pod-a/volumes/kubernetes.io~csi/pvc-shared/mount";
const POD_B: &str = "/var/lib/kubelet/pods/pod-b/volumes/kubernetes.io~csi/pvc-shared/mount";
const PODS: [&str; 2] = ["pod-a", "pod-b"];
/// Marks a directory as the demo's own, so a later run may empty its export.
const MARKER: &str = ".openefs-demo";

/// What the demo runs, and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Holds `export/` (emptied at the start), `tls/`, `nfsd.toml` and
    /// `logs/`.
    pub dir: PathBuf,
    /// Parallel writers in each of the two pods.
    pub writers_per_pod: u32,
    /// Files each writer writes.
    pub files_per_writer: u32,
    /// Random bytes per file (after a one-line header naming it).
    pub file_size: u64,
    /// Hard limit for the guest's whole run.
    pub timeout: Duration,
}

impl Options {
    /// The README's demo: 2 pods × 4 writers × 8 files of 1 MiB.
    pub fn standard(dir: PathBuf) -> Self {
        Self {
            dir,
            writers_per_pod: 4,
            files_per_writer: 8,
            file_size: 1 << 20,
            timeout: Duration::from_secs(600),
        }
    }

    fn check(&self) -> Result<()> {
        ensure!(
            (1..=64).contains(&self.writers_per_pod),
            "writers per pod must be 1 to 64"
        );
        ensure!(
            (1..=1000).contains(&self.files_per_writer),
            "files per writer must be 1 to 1000"
        );
        // The sources travel in the guest's initramfs, in its RAM.
        ensure!(
            (1..=64 << 20).contains(&self.file_size),
            "the file size must be 1 byte to 64 MiB"
        );
        Ok(())
    }

    fn files(&self) -> u64 {
        PODS.len() as u64 * u64::from(self.writers_per_pod) * u64::from(self.files_per_writer)
    }
}

/// What nfsd's `/metrics` said with the volume mounted and verified.
#[derive(Debug, Clone, Default)]
pub struct NfsdFigures {
    /// Client connections open (all TLS: the server requires it).
    pub connections: f64,
    pub plaintext_refused: f64,
    pub tls_handshake_failures: f64,
    pub written_bytes: f64,
    pub read_bytes: f64,
    /// WRITE operations that succeeded.
    pub write_ops: f64,
    /// Metered bytes stored through the access point.
    pub access_point_storage_bytes: f64,
    /// Metered bytes stored in the whole file system.
    pub storage_bytes: f64,
}

/// What the guest's tls-proxy's `/metrics` said before unstaging.
#[derive(Debug, Clone, Default)]
pub struct ProxyFigures {
    pub tunnels: f64,
    pub connections: f64,
    pub bytes_to_server: f64,
    pub bytes_to_client: f64,
}

/// A successful run's figures.
#[derive(Debug, Clone)]
pub struct Summary {
    pub options: Options,
    pub kernel: String,
    pub steps: Vec<StepRecord>,
    pub files: u64,
    /// File bytes written, headers included.
    pub bytes: u64,
    /// Guest time from the first write to the end of `sync`.
    pub write_seconds: f64,
    /// Guest time for both pods' checksum runs over the other's files.
    pub verify_seconds: f64,
    /// Files each pod found intact among the other pod's.
    pub verified_by_other_pod: u64,
    /// Files intact on the host's export, owned by the access point's user.
    pub verified_on_host: u64,
    pub nfsd: NfsdFigures,
    pub proxy: ProxyFigures,
    /// The access point's directory on the host.
    pub ap_dir: PathBuf,
    pub nfsd_log: PathBuf,
    pub console_log: PathBuf,
}

fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

fn mbps(bytes: u64, seconds: f64) -> f64 {
    mb(bytes as f64) / seconds.max(0.01)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(f, "\nopenefs demo: every check passed\n")?;
        writeln!(f, "Steps")?;
        for step in &self.steps {
            writeln!(f, "  {:>6.1} s  {}", step.took.as_secs_f64(), step.what)?;
        }
        let total: f64 = self.steps.iter().map(|s| s.took.as_secs_f64()).sum();
        writeln!(f, "  {total:>6.1} s  in all\n")?;
        writeln!(
            f,
            "Workload   2 pods × {} writers × {} files of {} KiB (+ a header line) = {} files, {:.1} MB, \
             on Debian's kernel {} (qemu, software emulation)",
            o.writers_per_pod,
            o.files_per_writer,
            o.file_size / 1024,
            self.files,
            mb(self.bytes as f64),
            self.kernel
        )?;
        writeln!(
            f,
            "Write      {:.1} MB in {:.2} s = {:.1} MB/s, all writers at once, then sync, through the TLS tunnel",
            mb(self.bytes as f64),
            self.write_seconds,
            mbps(self.bytes, self.write_seconds)
        )?;
        writeln!(
            f,
            "Verify     {}/{} files intact as the other pod read them, caches dropped (read + sha256 {:.1} MB/s)",
            self.verified_by_other_pod,
            self.files,
            mbps(self.bytes, self.verify_seconds)
        )?;
        writeln!(
            f,
            "Host       {}/{} files intact in {}, owned by {AP_UID}:{AP_GID} (the access point's POSIX user)",
            self.verified_on_host,
            self.files,
            self.ap_dir.display()
        )?;
        let n = &self.nfsd;
        writeln!(
            f,
            "nfsd       TLS required: {} client connection(s), {} plaintext refused, {} failed handshakes; \
             {:.1} MB written ({} WRITEs), {:.1} MB read",
            n.connections,
            n.plaintext_refused,
            n.tls_handshake_failures,
            mb(n.written_bytes),
            n.write_ops,
            mb(n.read_bytes)
        )?;
        writeln!(
            f,
            "           stored: {:.1} MB through access point {AP_ID}, {:.1} MB in the file system (metered as EFS does)",
            mb(n.access_point_storage_bytes),
            mb(n.storage_bytes)
        )?;
        let p = &self.proxy;
        writeln!(
            f,
            "tls-proxy  {} tunnel(s), {} connection(s): {:.1} MB to the server, {:.1} MB back",
            p.tunnels,
            p.connections,
            mb(p.bytes_to_server),
            mb(p.bytes_to_client)
        )?;
        writeln!(
            f,
            "Logs       {} (nfsd), {} (guest console, with the plugin's and the proxy's logs at its end)",
            self.nfsd_log.display(),
            self.console_log.display()
        )
    }
}

/// The sum of a metric's series whose labels include all of `labels`
/// (`name{...} value` or `name value` lines).
fn sum_series(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels_text, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let matches = labels
                .iter()
                .all(|(k, v)| labels_text.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The files each pod writes, with their contents: a header line naming
/// the file, then the random source of its writer.
struct Files {
    sources: Vec<Vec<u8>>,
    options: Options,
}

impl Files {
    fn new(options: &Options) -> Self {
        let mut rng = rand::rng();
        let sources = (0..options.writers_per_pod)
            .map(|_| {
                let mut data = vec![0; options.file_size as usize];
                rng.fill_bytes(&mut data);
                data
            })
            .collect();
        Self {
            sources,
            options: options.clone(),
        }
    }

    fn header(pod: &str, writer: u32, file: u32) -> String {
        format!("openefs demo {pod} writer {writer} file {file}\n")
    }

    /// `(name, sha256 hex, length)` of every file of `pod`.
    fn of_pod(&self, pod: &str) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for (writer, source) in (1..).zip(&self.sources) {
            for file in 1..=self.options.files_per_writer {
                let header = Self::header(pod, writer, file);
                let mut hash = Sha256::new();
                hash.update(header.as_bytes());
                hash.update(source);
                out.push((
                    format!("{pod}-w{writer}-f{file}"),
                    format!("{:x}", hash.finalize()),
                    (header.len() + source.len()) as u64,
                ));
            }
        }
        out
    }

    /// The guest's files: the sources and a `sha256sum -c` manifest per pod.
    fn guest_files(&self) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = (1..)
            .zip(&self.sources)
            .map(|(w, s): (u32, _)| (format!("src-{w}"), s.clone()))
            .collect();
        for pod in PODS {
            let manifest: String = self
                .of_pod(pod)
                .iter()
                .map(|(name, sum, _)| format!("{sum}  {name}\n"))
                .collect();
            files.push((format!("manifest-{pod}"), manifest.into_bytes()));
        }
        files
    }

    fn bytes(&self) -> u64 {
        PODS.iter()
            .flat_map(|pod| self.of_pod(pod))
            .map(|(_, _, len)| len)
            .sum()
    }
}

/// The host's side of the guest's pauses: the CO (kubelet) calling the
/// plugin, and the metrics scrapes.
struct Driver<'a> {
    rt: Runtime,
    plugin: &'a GuestPlugin,
    channel: Option<Channel>,
    volume: Volume,
    nfsd: &'a Nfsd,
    progress: &'a Progress,
    /// The step the guest is working on while the host waits.
    current: Option<Step<'a>>,
    options: &'a Options,
    payload: u64,
    nfsd_figures: NfsdFigures,
    proxy_figures: ProxyFigures,
}

impl<'a> Driver<'a> {
    fn node(&self) -> Result<NodeClient<Channel>> {
        Ok(NodeClient::new(
            self.channel
                .clone()
                .context("not connected to the plugin")?,
        ))
    }

    fn finish_current(&mut self, detail: &str) {
        if let Some(step) = self.current.take() {
            step.done(detail);
        }
    }

    fn on_pause(&mut self, name: &str) -> Result<()> {
        match name {
            "node-ready" => self.node_ready(),
            "written" => {
                self.finish_current(&format!(
                    "{} files, {:.1} MB, synced",
                    self.options.files(),
                    mb(self.payload as f64)
                ));
                self.current = Some(self.progress.start(
                    "Each pod reads the other pod's files with caches dropped and checks their sha256",
                ));
                Ok(())
            }
            "verified" => {
                self.finish_current("");
                self.scrape()?;
                self.teardown()?;
                self.current = Some(
                    self.progress
                        .start("Guest checks that no mount and no tunnel is left, powers off"),
                );
                Ok(())
            }
            other => bail!("unexpected pause {other}"),
        }
    }

    fn node_ready(&mut self) -> Result<()> {
        let channel = self.plugin.connect(&self.rt)?;
        let info = self
            .rt
            .block_on(
                IdentityClient::new(channel.clone()).get_plugin_info(csi::GetPluginInfoRequest {}),
            )?
            .into_inner();
        self.channel = Some(channel);
        self.finish_current(&format!(
            "{} {} answers on node {NODE_ID}",
            info.name, info.vendor_version
        ));

        let mut node = self.node()?;
        let step = self.progress.start(format!(
            "NodeStageVolume {VOLUME_ID} (encryptInTransit: tunnel through the tls-proxy, kernel NFSv4.1 mount of /ap/{AP_ID})"
        ));
        self.rt
            .block_on(node.node_stage_volume(self.volume.stage()))
            .context("NodeStageVolume")?;
        step.done("mounted");

        let step = self
            .progress
            .start("NodePublishVolume to pod-a and pod-b (bind mounts)");
        for target in [POD_A, POD_B] {
            self.rt
                .block_on(node.node_publish_volume(self.volume.publish(target, false)))
                .with_context(|| format!("NodePublishVolume to {target}"))?;
        }
        step.done("published");

        self.current = Some(self.progress.start(format!(
            "Workload: {} writers in each pod write {} files of {} KiB each, in parallel",
            self.options.writers_per_pod,
            self.options.files_per_writer,
            self.options.file_size / 1024
        )));
        Ok(())
    }

    /// nfsd's and the proxy's figures while the volume is still mounted.
    fn scrape(&mut self) -> Result<()> {
        let step = self
            .progress
            .start("Scrape nfsd's and the tls-proxy's /metrics");
        let ap_series = format!(r#"openefs_nfsd_storage_bytes{{access_point="{AP_ID}"}}"#);
        // Stored bytes are published once a second: wait for the workload's.
        let deadline = Instant::now() + Duration::from_secs(30);
        let page = loop {
            let page = self.nfsd.metrics()?;
            let stored = metric_value(&page, &ap_series)?.unwrap_or(0.0);
            if stored >= self.payload as f64 || Instant::now() > deadline {
                break page;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let value =
            |series: &str| -> Result<f64> { Ok(metric_value(&page, series)?.unwrap_or(0.0)) };
        self.nfsd_figures = NfsdFigures {
            connections: value("openefs_nfsd_connections")?,
            plaintext_refused: value("openefs_nfsd_plaintext_refused_total")?,
            tls_handshake_failures: value("openefs_nfsd_tls_handshake_failures_total")?,
            written_bytes: value("openefs_nfsd_written_bytes_total")?,
            read_bytes: value("openefs_nfsd_read_bytes_total")?,
            write_ops: sum_series(
                &page,
                "openefs_nfsd_operations_total",
                &[("op", "WRITE"), ("status", "NFS4_OK")],
            ),
            access_point_storage_bytes: value(&ap_series)?,
            storage_bytes: value("openefs_nfsd_storage_bytes")?,
        };
        let proxy = self.plugin.proxy_metrics()?;
        self.proxy_figures = ProxyFigures {
            tunnels: sum_series(&proxy, "openefs_tls_proxy_tunnels", &[]),
            connections: sum_series(&proxy, "openefs_tls_proxy_connections_total", &[]),
            bytes_to_server: sum_series(
                &proxy,
                "openefs_tls_proxy_bytes_total",
                &[("direction", "to_server")],
            ),
            bytes_to_client: sum_series(
                &proxy,
                "openefs_tls_proxy_bytes_total",
                &[("direction", "to_client")],
            ),
        };
        let n = &self.nfsd_figures;
        let p = &self.proxy_figures;
        let payload = self.payload as f64;
        // What the figures must show if the data went the way it should.
        ensure!(
            n.connections >= 1.0,
            "nfsd counts no client connection: {page}"
        );
        ensure!(
            n.plaintext_refused == 0.0,
            "nfsd refused {} plaintext connections: something bypassed the tunnel",
            n.plaintext_refused
        );
        ensure!(
            n.written_bytes >= payload,
            "nfsd counts {} bytes written of {payload}",
            n.written_bytes
        );
        ensure!(
            n.read_bytes >= payload,
            "nfsd counts {} bytes read of {payload}: the verification read from a cache",
            n.read_bytes
        );
        ensure!(
            n.access_point_storage_bytes >= payload,
            "access point {AP_ID} stores {} bytes of {payload}",
            n.access_point_storage_bytes
        );
        ensure!(
            p.bytes_to_server >= payload && p.bytes_to_client >= payload,
            "the tls-proxy forwarded {} bytes to the server and {} back, of {payload}",
            p.bytes_to_server,
            p.bytes_to_client
        );
        step.done(format!(
            "{} connection(s), {:.1} MB stored through {AP_ID}",
            n.connections,
            mb(n.access_point_storage_bytes)
        ));
        Ok(())
    }

    fn teardown(&mut self) -> Result<()> {
        let step = self.progress.start(
            "NodeUnpublishVolume from both pods, NodeUnstageVolume (unmount, tunnel removed)",
        );
        let mut node = self.node()?;
        for target in [POD_A, POD_B] {
            self.rt
                .block_on(node.node_unpublish_volume(self.volume.unpublish(target)))
                .with_context(|| format!("NodeUnpublishVolume from {target}"))?;
        }
        self.rt
            .block_on(node.node_unstage_volume(self.volume.unstage()))
            .context("NodeUnstageVolume")?;
        step.done("");
        Ok(())
    }
}

/// Empties `dir/export` (only in a directory an earlier run marked as the
/// demo's) and makes the run's directories.
fn fresh_dirs(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let export = dir.join("export");
    let logs = dir.join("logs");
    if export.exists() {
        ensure!(
            dir.join(MARKER).is_file(),
            "{} exists, but {} holds no {MARKER}: not emptying a directory the demo did not make",
            export.display(),
            dir.display()
        );
        std::fs::remove_dir_all(&export)
            .with_context(|| format!("emptying {}", export.display()))?;
    }
    for d in [&export, &logs, &dir.join("tls")] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(
        dir.join(MARKER),
        "made by openefs-demo; its export is emptied on each run\n",
    )?;
    Ok((export, logs))
}

/// Checks every file on the export: content and owner.
fn check_export(ap_dir: &Path, files: &Files) -> Result<u64> {
    let mut intact = 0;
    for pod in PODS {
        for (name, sum, len) in files.of_pod(pod) {
            let path = ap_dir.join(&name);
            let data =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            ensure!(
                data.len() as u64 == len,
                "{} holds {} bytes, {len} were written",
                path.display(),
                data.len()
            );
            let got = format!("{:x}", Sha256::digest(&data));
            ensure!(
                got == sum,
                "{}: sha256 {got}, {sum} was written",
                path.display()
            );
            let meta = std::fs::metadata(&path)?;
            ensure!(
                (meta.uid(), meta.gid()) == (AP_UID, AP_GID),
                "{} belongs to {}:{}, not to the access point's user {AP_UID}:{AP_GID}",
                path.display(),
                meta.uid(),
                meta.gid()
            );
            intact += 1;
        }
    }
    Ok(intact)
}

/// Runs the demo, showing each step on `progress`; any failed check is an
/// error naming it.
pub fn run(options: &Options, progress: &Progress) -> Result<Summary> {
    options.check()?;
    let step = progress
        .start("Prepare the kernel client (Debian's kernel for qemu, cached in .cache/kernel)");
    let kernel = prepare_kernel()?;
    step.done(format!("Linux {kernel}"));

    let step = progress.start("Start openefs-nfsd with TLS required and an access point");
    let (export, logs) = fresh_dirs(&options.dir)?;
    let tls = TlsFiles::write(
        &options.dir.join("tls"),
        "openefs demo CA",
        &[GUEST_SERVER_ADDR],
    );
    let files = Files::new(options);
    let payload = files.bytes();
    // Room for the workload, metered in 4 KiB steps, and more: the quota
    // is part of the demo, not its limit.
    let quota = (2 * payload).max(1 << 30);
    let config = options.dir.join("nfsd.toml");
    std::fs::write(
        &config,
        format!(
            "[[access-point]]\nid = \"{AP_ID}\"\nroot-directory = \"/{AP_ROOT}\"\n\
             posix-user = {{ uid = {AP_UID}, gid = {AP_GID} }}\n\
             creation-info = {{ owner-uid = {AP_UID}, owner-gid = {AP_GID}, permissions = 0o750 }}\n\
             max-bytes = {quota}\n"
        ),
    )?;
    let nfsd_log = logs.join("nfsd.log");
    let config_arg = config.to_string_lossy().into_owned();
    let nfsd = Nfsd::start_with_tls(
        &export,
        nfsd_log.clone(),
        &tls,
        &["--require-tls", "--config", &config_arg],
    )?;
    step.done(format!(
        "127.0.0.1:{}, export {}, access point {AP_ID}: /{AP_ROOT} as {AP_UID}:{AP_GID}, quota {} MiB",
        nfsd.port(),
        export.display(),
        quota >> 20
    ));

    let plugin = GuestPlugin::new()?;
    let mut opts = RunOptions {
        timeout: options.timeout,
        files: files.guest_files(),
        ..Default::default()
    };
    plugin.configure(&mut opts)?;
    for (key, value) in [
        ("SERVER", GUEST_SERVER_ADDR.to_owned()),
        ("AP_PATH", format!("/ap/{AP_ID}")),
        ("STAGE", STAGE.to_owned()),
        ("POD_A", POD_A.to_owned()),
        ("POD_B", POD_B.to_owned()),
        ("WRITERS", options.writers_per_pod.to_string()),
        ("FILES", options.files_per_writer.to_string()),
    ] {
        opts.env.insert(key.into(), value);
    }
    let ap_path = format!("/ap/{AP_ID}");
    let mut driver = Driver {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        plugin: &plugin,
        channel: None,
        // As the CSI controller describes an access point volume of a
        // FileSystem with its CA in the status.
        volume: Volume {
            id: VOLUME_ID,
            staging: STAGE,
            context: context(&[
                ("server", GUEST_SERVER_ADDR),
                ("path", ap_path.as_str()),
                ("fileSystem", "demo/shared"),
                ("accessPointId", AP_ID),
                ("encryptInTransit", "true"),
                ("caBundle", tls.ca.pem.as_str()),
            ]),
            flags: &[],
        },
        nfsd: &nfsd,
        progress,
        current: None,
        options,
        payload,
        nfsd_figures: NfsdFigures::default(),
        proxy_figures: ProxyFigures::default(),
    };
    driver.current =
        Some(progress.start("Boot the kernel in qemu; start openefs-csi node and tls-proxy in it"));
    let mut on_pause = |name: &str| driver.on_pause(name);
    opts.on_pause = Some(&mut on_pause);
    let console_log = logs.join("guest-console.log");
    let outcome = KernelClient::run(nfsd.port(), &GuestPlugin::workload(WORKLOAD), opts);
    let out = match outcome {
        Ok(out) => out,
        Err(e) => return Err(e.context(nfsd.log_tail())),
    };
    std::fs::write(&console_log, &out.console)
        .with_context(|| format!("writing {}", console_log.display()))?;
    let (verified_by_other_pod, write_seconds, verify_seconds) =
        match check_guest(&out, options.files()) {
            Ok(figures) => figures,
            Err(e) => {
                // The step in flight shows as failed.
                driver.current.take();
                return Err(e.context(format!("the guest's console: {}", console_log.display())));
            }
        };
    driver.finish_current("clean");

    let step = progress.start("Check the files on the host's export: content and owner");
    let ap_dir = export.join(AP_ROOT);
    let verified_on_host = check_export(&ap_dir, &files)?;
    step.done(format!(
        "{verified_on_host} files intact, owned by {AP_UID}:{AP_GID}"
    ));

    Ok(Summary {
        options: options.clone(),
        kernel,
        steps: progress.records(),
        files: options.files(),
        bytes: payload,
        write_seconds,
        verify_seconds,
        verified_by_other_pod,
        verified_on_host,
        nfsd: driver.nfsd_figures.clone(),
        proxy: driver.proxy_figures.clone(),
        ap_dir,
        nfsd_log,
        console_log,
    })
}

/// The guest's verdict: every step passed; returns the files verified
/// across pods and the write and verify times.
fn check_guest(out: &GuestOutput, files: u64) -> Result<(u64, f64, f64)> {
    out.ensure_ok(&[
        "node-socket",
        "pause-node-ready",
        "staging-source",
        "staging-vers-4.1",
        "staging-through-proxy",
        "staging-tunnel-port",
        "pod-a-binds-staging",
        "pod-b-binds-staging",
        "writes-succeeded",
        "pause-written",
        "b-verifies-a",
        "a-verifies-b",
        "pause-verified",
        "no-nfs-mounts",
        "targets-removed",
        "tunnel-removed",
    ])?;
    let verified = out.metric("verified_a_by_b")? + out.metric("verified_b_by_a")?;
    ensure!(
        verified as u64 == files,
        "the pods verified {verified} of {files} files"
    );
    Ok((
        verified as u64,
        out.metric("write_seconds")?,
        out.metric("verify_seconds")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_by_label() {
        let page = "# TYPE openefs_tls_proxy_bytes counter\n\
            openefs_tls_proxy_bytes_total{tunnel=\"a\",direction=\"to_server\"} 10\n\
            openefs_tls_proxy_bytes_total{tunnel=\"b\",direction=\"to_server\"} 5\n\
            openefs_tls_proxy_bytes_total{tunnel=\"a\",direction=\"to_client\"} 7\n\
            openefs_tls_proxy_tunnels 2\n\
            openefs_tls_proxy_tunnels_other 9\n";
        assert_eq!(
            sum_series(
                page,
                "openefs_tls_proxy_bytes_total",
                &[("direction", "to_server")]
            ),
            15.0
        );
        assert_eq!(sum_series(page, "openefs_tls_proxy_bytes_total", &[]), 22.0);
        assert_eq!(sum_series(page, "openefs_tls_proxy_tunnels", &[]), 2.0);
        assert_eq!(sum_series(page, "openefs_nfsd_connections", &[]), 0.0);
    }

    #[test]
    fn empties_only_an_export_it_made() {
        let dir = tempfile::tempdir().unwrap();
        let export = dir.path().join("export");
        std::fs::create_dir_all(export.join("keep")).unwrap();
        let err = fresh_dirs(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not emptying"), "{err}");
        assert!(export.join("keep").is_dir());
        std::fs::write(dir.path().join(MARKER), "").unwrap();
        fresh_dirs(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(&export).unwrap().count(), 0);
        assert!(dir.path().join("logs").is_dir());
    }

    #[test]
    fn manifests_match_the_files_the_guest_writes() {
        let options = Options {
            writers_per_pod: 2,
            files_per_writer: 3,
            file_size: 1000,
            ..Options::standard(PathBuf::from("/nonexistent"))
        };
        let files = Files::new(&options);
        let a = files.of_pod("pod-a");
        assert_eq!(a.len(), 6);
        assert_eq!(a[4].0, "pod-a-w2-f2");
        let content = [
            Files::header("pod-a", 2, 2).as_bytes(),
            files.sources[1].as_slice(),
        ]
        .concat();
        assert_eq!(a[4].1, format!("{:x}", Sha256::digest(&content)));
        assert_eq!(a[4].2, content.len() as u64);
        assert_ne!(a[0].1, files.of_pod("pod-b")[0].1, "the header differs");
        let guest = files.guest_files();
        let manifest = &guest.iter().find(|(n, _)| n == "manifest-pod-b").unwrap().1;
        let manifest = String::from_utf8(manifest.clone()).unwrap();
        assert_eq!(manifest.lines().count(), 6);
        assert!(
            manifest
                .lines()
                .all(|l| l.len() == 64 + 2 + "pod-b-w1-f1".len())
        );
        assert_eq!(
            files.bytes(),
            12 * 1000 + 2 * a.iter().map(|f| f.2 - 1000).sum::<u64>()
        );
        assert!(options.check().is_ok());
        assert!(
            Options {
                writers_per_pod: 0,
                ..options
            }
            .check()
            .is_err()
        );
    }
}
