//! A shaped link to a network namespace of its own: a veth pair between the
//! host and a new namespace, each end limited to a rate by `tbf`, so a
//! server placed in the namespace is reached over a wire that bounds
//! throughput the way a real network does, instead of over loopback where
//! only the CPU does. Made and removed with `ip` and `tc` (iproute2); needs
//! root. This kernel has no `netem`, so the link adds no delay.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};

/// The namespace and its link; both are removed on drop (deleting the
/// namespace deletes its veth end, which deletes the pair).
pub struct ShapedLink {
    netns: String,
}

/// The host's end of the link.
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// The namespace's end, where the server listens.
pub const NETNS_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} (iproute2)", args[0]))?;
    ensure!(
        out.status.success(),
        "`{}` failed with {}: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

impl ShapedLink {
    /// A namespace named after this process (so one link per process at a
    /// time: the addresses are fixed), joined to the host by a veth
    /// pair of [`HOST_ADDR`] and [`NETNS_ADDR`], each direction shaped to
    /// `rate_mbit` Mbit/s.
    pub fn create(rate_mbit: u32) -> Result<Self> {
        ensure!(rate_mbit > 0, "the link rate must be positive");
        let netns = format!("openefs-bench-{}", std::process::id());
        run(&["ip", "netns", "add", &netns])
            .context("creating a network namespace (the shaped link needs root)")?;
        // From here on, drop removes what was made, also on a failure below.
        let link = Self { netns };
        let ns = link.netns.as_str();
        let (host_if, ns_if) = (format!("oefs{}h", std::process::id()), "oefs-link");
        let rate = format!("{rate_mbit}mbit");
        // Burst: enough for a 1 MiB call at once (tbf needs at least one
        // packet's worth per timer tick, more at high rates).
        let shape = ["tbf", "rate", &rate, "burst", "4mb", "latency", "10ms"];
        let host_cidr = format!("{HOST_ADDR}/30");
        let ns_cidr = format!("{NETNS_ADDR}/30");
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", ns_if, "netns", ns,
        ])?;
        run(&["ip", "addr", "add", &host_cidr, "dev", &host_if])?;
        run(&["ip", "link", "set", &host_if, "up"])?;
        run(&["ip", "-n", ns, "addr", "add", &ns_cidr, "dev", ns_if])?;
        run(&["ip", "-n", ns, "link", "set", ns_if, "up"])?;
        run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        let mut host_tc = vec!["tc", "qdisc", "replace", "dev", &host_if, "root"];
        host_tc.extend(shape);
        run(&host_tc).context("shaping the link (tc's tbf qdisc)")?;
        let mut ns_tc = vec!["tc", "-n", ns, "qdisc", "replace", "dev", ns_if, "root"];
        ns_tc.extend(shape);
        run(&ns_tc)?;
        Ok(link)
    }

    /// The namespace's name, as `ip netns exec` takes it.
    pub fn netns(&self) -> &str {
        &self.netns
    }
}

impl Drop for ShapedLink {
    fn drop(&mut self) {
        if let Err(e) = run(&["ip", "netns", "delete", &self.netns]) {
            eprintln!("bench: removing network namespace {}: {e:#}", self.netns);
        }
    }
}
