//! The rules a well-typed spec must also satisfy.
//!
//! Checks run in document order (the order of fields in the canonical form)
//! and stop at the first problem, reported with the JSON path of its field.
//! Type-level problems (unknown field, wrong type, missing field) never get
//! here: deserialization reports them first.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Component, Path};

use super::{Container, Image, Limits, Mount, Network, Nic, Pod, SpecError, Volume, VolumeSource};

pub(super) const BYTES: &str = "bytes";
pub(super) const PROCESSES: &str = "processes";
pub(super) const MICROSECONDS: &str = "microseconds";

const MAX_NAME_LEN: usize = 63;
const MAX_IFNAME_LEN: usize = 15; // IFNAMSIZ - 1
const MAX_STOP_GRACE_PERIOD_S: u32 = 3600;
const MIN_MEMORY: u64 = 4096;
const MIN_CPU_QUOTA_US: u64 = 1000;
const MIN_CPU_PERIOD_US: u64 = 1000;
const MAX_CPU_PERIOD_US: u64 = 1_000_000;

/// The message for a zero (or, from `de`, negative) limit.
pub(super) fn not_positive(unit: &str) -> String {
    format!("must be a positive number of {unit}")
}

type Result<T = ()> = std::result::Result<T, SpecError>;

fn fail<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T> {
    Err(SpecError::new(path, message))
}

pub(super) fn pod(pod: &Pod) -> Result {
    dns_label("name", &pod.name)?;
    network(&pod.network)?;

    let mut volume_names = HashSet::new();
    for (i, v) in pod.volumes.iter().enumerate() {
        volume(&format!("volumes[{i}]"), v, &mut volume_names)?;
    }

    if pod.containers.is_empty() {
        return fail("containers", "a pod needs at least one container");
    }
    let mut container_names = HashSet::new();
    for (i, c) in pod.containers.iter().enumerate() {
        container(
            &format!("containers[{i}]"),
            c,
            &mut container_names,
            &pod.volumes,
        )?;
    }

    if pod.stop_grace_period_s > MAX_STOP_GRACE_PERIOD_S {
        return fail(
            "stop_grace_period_s",
            format!("must be at most {MAX_STOP_GRACE_PERIOD_S} seconds (one hour)"),
        );
    }
    Ok(())
}

fn network(network: &Network) -> Result {
    let Network::Nics(net) = network else {
        return Ok(());
    };
    if net.nics.is_empty() {
        return fail(
            "network.nics",
            r#"must list at least one NIC (use "none" for loopback only)"#,
        );
    }
    let mut names = HashSet::new();
    for (i, n) in net.nics.iter().enumerate() {
        nic(&format!("network.nics[{i}]"), n, &mut names)?;
    }
    // `dns` entries are typed `Ipv4Addr`: deserialization already checked them.
    Ok(())
}

fn nic<'a>(at: &str, nic: &'a Nic, names: &mut HashSet<&'a str>) -> Result {
    let path = format!("{at}.name");
    if !is_interface_name(&nic.name) {
        return fail(
            path,
            format!(
                "{:?} is not a valid interface name: {IFNAME_RULE}",
                nic.name
            ),
        );
    }
    if nic.name == "lo" {
        return fail(path, r#""lo" is the pod's loopback interface"#);
    }
    unique(names, &nic.name, path, "NIC")?;

    if nic.parent != Pod::AUTO_PARENT && !is_interface_name(&nic.parent) {
        return fail(
            format!("{at}.parent"),
            format!(
                r#"{:?} is not a valid parent: "auto" or an interface name ({IFNAME_RULE})"#,
                nic.parent
            ),
        );
    }

    let ip = nic.ip;
    let path = format!("{at}.ip");
    if ip.prefix_len == 0 || ip.prefix_len > 32 {
        return fail(
            path,
            format!("{ip}: a NIC needs a prefix length from 1 to 32"),
        );
    }
    if ip.prefix_len < 31 {
        if ip.addr == ip.network() {
            return fail(
                path,
                format!("{ip} is the network address of its subnet, not a host address"),
            );
        }
        if ip.addr == ip.broadcast() {
            return fail(
                path,
                format!("{ip} is the broadcast address of its subnet, not a host address"),
            );
        }
    }

    if let Some(gateway) = nic.gateway {
        gateway_in_subnet(&format!("{at}.gateway"), gateway, nic)?;
    }
    Ok(())
}

fn gateway_in_subnet(path: &str, gateway: Ipv4Addr, nic: &Nic) -> Result {
    let ip = nic.ip;
    if !ip.contains(gateway) {
        return fail(
            path,
            format!(
                "{gateway} is outside the NIC's subnet {}/{}",
                ip.network(),
                ip.prefix_len
            ),
        );
    }
    if gateway == ip.addr {
        return fail(path, format!("{gateway} is the NIC's own address"));
    }
    Ok(())
}

fn volume<'a>(at: &str, volume: &'a Volume, names: &mut HashSet<&'a str>) -> Result {
    let path = format!("{at}.name");
    dns_label(&path, &volume.name)?;
    unique(names, &volume.name, path, "volume")?;
    match &volume.source {
        None => Ok(()),
        Some(VolumeSource::Host(host)) => absolute_path(&format!("{at}.source.host"), host),
    }
}

fn container<'a>(
    at: &str,
    c: &'a Container,
    names: &mut HashSet<&'a str>,
    volumes: &[Volume],
) -> Result {
    let path = format!("{at}.name");
    dns_label(&path, &c.name)?;
    unique(names, &c.name, path, "container")?;

    match &c.image {
        Image::Reference(reference) => image_reference(&format!("{at}.image"), reference)?,
        Image::Rootfs(rootfs) => absolute_path(&format!("{at}.image.rootfs"), rootfs)?,
    }

    if let Some(command) = &c.command {
        let path = format!("{at}.command");
        if command.is_empty() {
            return fail(
                path,
                "must not be empty (omit it to use the image's entrypoint)",
            );
        }
        no_nul_items(&path, command)?;
    }
    if let Some(args) = &c.args {
        no_nul_items(&format!("{at}.args"), args)?;
    }

    for (key, value) in &c.env {
        if key.is_empty() {
            return fail(format!("{at}.env"), "variable names must not be empty");
        }
        if key.contains(['=', '\0']) {
            return fail(
                format!("{at}.env"),
                format!("{key:?} is not a valid variable name: it must not contain '=' or NUL"),
            );
        }
        no_nul(&format!("{at}.env.{key}"), value)?;
    }

    if let Some(dir) = &c.working_dir {
        absolute_path(&format!("{at}.working_dir"), dir)?;
    }

    let mut mount_paths = HashSet::new();
    for (i, m) in c.mounts.iter().enumerate() {
        mount(&format!("{at}.mounts[{i}]"), m, &mut mount_paths, volumes)?;
    }

    limits(&format!("{at}.limits"), &c.limits)
}

fn mount<'a>(at: &str, m: &'a Mount, paths: &mut HashSet<&'a Path>, volumes: &[Volume]) -> Result {
    if !volumes.iter().any(|v| v.name == m.volume) {
        let defined = if volumes.is_empty() {
            "pod defines none".to_owned()
        } else {
            let names: Vec<_> = volumes.iter().map(|v| v.name.as_str()).collect();
            format!("pod defines: {}", names.join(", "))
        };
        return fail(
            format!("{at}.volume"),
            format!("no volume {:?} ({defined})", m.volume),
        );
    }

    let path = format!("{at}.path");
    absolute_path(&path, &m.path)?;
    if m.path.parent().is_none() {
        return fail(
            path,
            r#""/" is not a valid mount path: the container's root comes from its image"#,
        );
    }
    // `Path` equality compares components: "/data" and "/data/" are one path.
    if !paths.insert(&m.path) {
        return fail(
            path,
            format!("{:?} is already mounted in this container", m.path),
        );
    }
    Ok(())
}

fn limits(at: &str, limits: &Limits) -> Result {
    if let Some(memory) = limits.memory {
        let path = format!("{at}.memory");
        if memory == 0 {
            return fail(path, not_positive(BYTES));
        }
        if memory < MIN_MEMORY {
            return fail(
                path,
                format!(
                    "must be at least {MIN_MEMORY} bytes (one memory page): \
                     with less the container could not even start"
                ),
            );
        }
    }
    if limits.pids == Some(0) {
        return fail(format!("{at}.pids"), not_positive(PROCESSES));
    }
    if let Some(cpu) = &limits.cpu {
        let path = format!("{at}.cpu.quota_us");
        if cpu.quota_us == 0 {
            return fail(path, not_positive(MICROSECONDS));
        }
        if cpu.quota_us < MIN_CPU_QUOTA_US {
            return fail(
                path,
                format!("must be at least {MIN_CPU_QUOTA_US} microseconds (the kernel's minimum CFS quota)"),
            );
        }
        let path = format!("{at}.cpu.period_us");
        if cpu.period_us == 0 {
            return fail(path, not_positive(MICROSECONDS));
        }
        if !(MIN_CPU_PERIOD_US..=MAX_CPU_PERIOD_US).contains(&cpu.period_us) {
            return fail(
                path,
                format!(
                    "must be from {MIN_CPU_PERIOD_US} to {MAX_CPU_PERIOD_US} microseconds \
                     (the kernel's CFS period range)"
                ),
            );
        }
    }
    Ok(())
}

/// Records `name`, failing if it was already there.
fn unique<'a>(seen: &mut HashSet<&'a str>, name: &'a str, path: String, what: &str) -> Result {
    if seen.insert(name) {
        Ok(())
    } else {
        fail(path, format!("duplicate {what} name {name:?}"))
    }
}

/// Pod, container and volume names: DNS-1123 labels, as in Kubernetes.
fn dns_label(path: &str, name: &str) -> Result {
    let bytes = name.as_bytes();
    let inner_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| *b != b'-' && inner_ok(b));
    let valid = bytes.len() <= MAX_NAME_LEN
        && bytes.iter().all(inner_ok)
        && edge_ok(bytes.first())
        && edge_ok(bytes.last());
    if valid {
        Ok(())
    } else {
        fail(
            path,
            format!(
                "{name:?} is not a valid name: lowercase letters, digits and '-', starting and \
                 ending with a letter or digit, at most {MAX_NAME_LEN} characters"
            ),
        )
    }
}

const IFNAME_RULE: &str = r#"1 to 15 bytes, no '/', ':' or whitespace, not "." or "..""#;

/// What the kernel accepts as a network interface name (`dev_valid_name`).
fn is_interface_name(name: &str) -> bool {
    (1..=MAX_IFNAME_LEN).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
}

/// The distribution grammar and its limits ([`crate::reference`]),
/// so that a reference that could never be pulled is refused at Apply.
fn image_reference(path: &str, reference: &str) -> Result {
    use crate::reference::{check, ReferenceError};
    match check(reference) {
        Ok(()) => Ok(()),
        Err(ReferenceError::Empty) => fail(path, "must not be empty"),
        Err(why) => {
            // A 4096-character name is not repeated whole.
            let shown = match reference.char_indices().nth(128) {
                Some((end, _)) => format!("{:?}…", &reference[..end]),
                None => format!("{reference:?}"),
            };
            fail(
                path,
                format!("{shown} is not a valid image reference: {why}"),
            )
        }
    }
}

/// Host and container paths: absolute, without "..", representable as text.
fn absolute_path(path: &str, p: &Path) -> Result {
    let Some(text) = p.to_str() else {
        return fail(path, format!("{p:?} is not valid UTF-8"));
    };
    if text.contains('\0') {
        return fail(path, format!("{text:?} must not contain NUL bytes"));
    }
    if !p.is_absolute() {
        return fail(path, format!("{text:?} must be an absolute path"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return fail(path, format!("{text:?} must not contain \"..\" components"));
    }
    Ok(())
}

fn no_nul(path: &str, s: &str) -> Result {
    if s.contains('\0') {
        fail(path, "must not contain NUL bytes")
    } else {
        Ok(())
    }
}

fn no_nul_items(path: &str, items: &[String]) -> Result {
    items
        .iter()
        .enumerate()
        .try_for_each(|(i, s)| no_nul(&format!("{path}[{i}]"), s))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    const NAME_RULE: &str = "lowercase letters, digits and '-', starting and ending with a \
                             letter or digit, at most 63 characters";

    /// A valid pod with two volumes and two containers, edited by `f`.
    fn doc(f: impl FnOnce(&mut Value)) -> Value {
        let mut doc = json!({
            "name": "web",
            "volumes": [{"name": "data"}, {"name": "conf", "source": {"host": "/etc/web"}}],
            "containers": [
                {"name": "app", "image": "busybox:1.36",
                 "mounts": [{"volume": "data", "path": "/data"}]},
                {"name": "side", "image": "busybox:1.36"},
            ],
        });
        f(&mut doc);
        doc
    }

    /// The base pod with one NIC.
    fn nic(nic: Value) -> Value {
        doc(|d| d["network"] = json!({ "nics": [nic] }))
    }

    #[track_caller]
    fn rejects(doc: Value, expected: &str) {
        match Pod::new(doc) {
            Ok(pod) => panic!("accepted {pod:?}; expected: {expected}"),
            Err(err) => assert_eq!(err.to_string(), expected),
        }
    }

    #[track_caller]
    fn accepts(doc: Value) {
        if let Err(err) = Pod::new(doc) {
            panic!("rejected: {err}");
        }
    }

    #[test]
    fn base_document_is_valid() {
        accepts(doc(|_| {}));
    }

    #[test]
    fn containers_must_not_be_empty() {
        rejects(
            doc(|d| d["containers"] = json!([])),
            "containers: a pod needs at least one container",
        );
    }

    #[test]
    fn names_are_dns_labels() {
        rejects(
            doc(|d| d["name"] = json!("Web_1")),
            &format!(r#"name: "Web_1" is not a valid name: {NAME_RULE}"#),
        );
        rejects(
            doc(|d| d["containers"][1]["name"] = json!("-side")),
            &format!(r#"containers[1].name: "-side" is not a valid name: {NAME_RULE}"#),
        );
        rejects(
            doc(|d| d["volumes"][0]["name"] = json!("data-")),
            &format!(r#"volumes[0].name: "data-" is not a valid name: {NAME_RULE}"#),
        );
        rejects(
            doc(|d| d["name"] = json!("")),
            &format!(r#"name: "" is not a valid name: {NAME_RULE}"#),
        );
        rejects(
            doc(|d| d["name"] = json!("a".repeat(64))),
            &format!(
                r#"name: "{}" is not a valid name: {NAME_RULE}"#,
                "a".repeat(64)
            ),
        );
        accepts(doc(|d| d["name"] = json!("a".repeat(63))));
        accepts(doc(|d| d["name"] = json!("0-web-1")));
        accepts(doc(|d| d["name"] = json!("x")));
    }

    #[test]
    fn duplicate_names() {
        rejects(
            doc(|d| d["containers"][1]["name"] = json!("app")),
            r#"containers[1].name: duplicate container name "app""#,
        );
        rejects(
            doc(|d| d["volumes"][1]["name"] = json!("data")),
            r#"volumes[1].name: duplicate volume name "data""#,
        );
        rejects(
            doc(|d| {
                d["network"] = json!({"nics": [
                    {"name": "eth0", "ip": "10.0.0.2/24"},
                    {"name": "eth0", "ip": "10.0.1.2/24"},
                ]});
            }),
            r#"network.nics[1].name: duplicate NIC name "eth0""#,
        );
    }

    #[test]
    fn duplicate_mount_paths() {
        rejects(
            doc(|d| {
                d["containers"][0]["mounts"] = json!([
                    {"volume": "data", "path": "/data"},
                    {"volume": "conf", "path": "/data/"},
                ]);
            }),
            r#"containers[0].mounts[1].path: "/data/" is already mounted in this container"#,
        );
        // The same path in two containers is fine.
        accepts(doc(|d| {
            d["containers"][1]["mounts"] = json!([{"volume": "data", "path": "/data"}]);
        }));
    }

    #[test]
    fn mounts_need_a_defined_volume() {
        rejects(
            doc(|d| {
                d["containers"][1]["mounts"] = json!([{"volume": "dat", "path": "/data"}]);
            }),
            r#"containers[1].mounts[0].volume: no volume "dat" (pod defines: data, conf)"#,
        );
        rejects(
            doc(|d| {
                d.as_object_mut().unwrap().remove("volumes");
            }),
            r#"containers[0].mounts[0].volume: no volume "data" (pod defines none)"#,
        );
    }

    #[test]
    fn paths_are_absolute_without_dot_dot_or_nul() {
        let mount_path =
            |path: &str| doc(|d| d["containers"][0]["mounts"][0]["path"] = json!(path));
        rejects(
            mount_path("data"),
            r#"containers[0].mounts[0].path: "data" must be an absolute path"#,
        );
        rejects(
            mount_path("/data/../etc"),
            r#"containers[0].mounts[0].path: "/data/../etc" must not contain ".." components"#,
        );
        rejects(
            mount_path("/da\0ta"),
            r#"containers[0].mounts[0].path: "/da\0ta" must not contain NUL bytes"#,
        );
        rejects(
            mount_path("/"),
            r#"containers[0].mounts[0].path: "/" is not a valid mount path: the container's root comes from its image"#,
        );
        accepts(mount_path("/data/./x/"));

        rejects(
            doc(|d| d["volumes"][1]["source"]["host"] = json!("etc/web")),
            r#"volumes[1].source.host: "etc/web" must be an absolute path"#,
        );
        rejects(
            doc(|d| d["containers"][1]["image"] = json!({"rootfs": "/srv/../rootfs"})),
            r#"containers[1].image.rootfs: "/srv/../rootfs" must not contain ".." components"#,
        );
        rejects(
            doc(|d| d["containers"][1]["working_dir"] = json!("")),
            r#"containers[1].working_dir: "" must be an absolute path"#,
        );
    }

    #[test]
    fn paths_must_be_utf8() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;

        let mut pod = Pod::new(doc(|_| {})).unwrap();
        pod.containers[0].working_dir = Some(OsStr::from_bytes(b"/\xff").into());
        assert_eq!(
            pod.validate().unwrap_err().to_string(),
            r#"containers[0].working_dir: "/\xFF" is not valid UTF-8"#
        );
    }

    #[test]
    fn nic_names_are_interface_names() {
        let rule = r#"1 to 15 bytes, no '/', ':' or whitespace, not "." or "..""#;
        for name in ["", "0123456789abcdef", "eth/0", "eth:0", "eth 0", ".", ".."] {
            rejects(
                nic(json!({"name": name, "ip": "10.0.0.2/24"})),
                &format!("network.nics[0].name: {name:?} is not a valid interface name: {rule}"),
            );
        }
        rejects(
            nic(json!({"name": "lo", "ip": "10.0.0.2/24"})),
            r#"network.nics[0].name: "lo" is the pod's loopback interface"#,
        );
        accepts(nic(json!({"name": "0123456789abcde", "ip": "10.0.0.2/24"})));
        accepts(nic(json!({"name": "Eth-0.100", "ip": "10.0.0.2/24"})));
    }

    #[test]
    fn nic_parent_is_auto_or_an_interface_name() {
        rejects(
            nic(json!({"name": "eth0", "parent": "", "ip": "10.0.0.2/24"})),
            r#"network.nics[0].parent: "" is not a valid parent: "auto" or an interface name (1 to 15 bytes, no '/', ':' or whitespace, not "." or "..")"#,
        );
        accepts(nic(
            json!({"name": "eth0", "parent": "enp3s0", "ip": "10.0.0.2/24"}),
        ));
        accepts(nic(
            json!({"name": "eth0", "parent": "auto", "ip": "10.0.0.2/24"}),
        ));
    }

    #[test]
    fn nics_must_not_be_empty() {
        rejects(
            doc(|d| d["network"] = json!({"nics": []})),
            r#"network.nics: must list at least one NIC (use "none" for loopback only)"#,
        );
    }

    #[test]
    fn nic_ip_is_a_host_address_with_a_prefix() {
        rejects(
            nic(json!({"name": "eth0", "ip": "10.0.0.2/0"})),
            "network.nics[0].ip: 10.0.0.2/0: a NIC needs a prefix length from 1 to 32",
        );
        rejects(
            nic(json!({"name": "eth0", "ip": "10.0.0.0/24"})),
            "network.nics[0].ip: 10.0.0.0/24 is the network address of its subnet, not a host address",
        );
        rejects(
            nic(json!({"name": "eth0", "ip": "10.0.0.255/24"})),
            "network.nics[0].ip: 10.0.0.255/24 is the broadcast address of its subnet, not a host address",
        );
        // Point-to-point (/31) and host (/32) subnets have no network or broadcast address.
        accepts(nic(json!({"name": "eth0", "ip": "10.0.0.0/31"})));
        accepts(nic(json!({"name": "eth0", "ip": "10.0.0.1/31"})));
        accepts(nic(json!({"name": "eth0", "ip": "10.0.0.7/32"})));
    }

    #[test]
    fn gateway_is_another_address_in_the_subnet() {
        rejects(
            nic(json!({"name": "eth0", "ip": "10.0.0.20/24", "gateway": "10.0.1.1"})),
            "network.nics[0].gateway: 10.0.1.1 is outside the NIC's subnet 10.0.0.0/24",
        );
        rejects(
            nic(json!({"name": "eth0", "ip": "10.0.0.20/24", "gateway": "10.0.0.20"})),
            "network.nics[0].gateway: 10.0.0.20 is the NIC's own address",
        );
        accepts(nic(
            json!({"name": "eth0", "ip": "10.0.0.20/24", "gateway": "10.0.0.1"}),
        ));
    }

    #[test]
    fn limits_are_positive() {
        let limits = |limits: Value| doc(|d| d["containers"][0]["limits"] = limits);
        for memory in [json!(0), json!(-1)] {
            rejects(
                limits(json!({ "memory": memory })),
                "containers[0].limits.memory: must be a positive number of bytes",
            );
        }
        for pids in [json!(0), json!(-5)] {
            rejects(
                limits(json!({ "pids": pids })),
                "containers[0].limits.pids: must be a positive number of processes",
            );
        }
        for quota in [json!(0), json!(-100_000)] {
            rejects(
                limits(json!({"cpu": {"quota_us": quota}})),
                "containers[0].limits.cpu.quota_us: must be a positive number of microseconds",
            );
        }
        for period in [json!(0), json!(-1)] {
            rejects(
                limits(json!({"cpu": {"quota_us": 50_000, "period_us": period}})),
                "containers[0].limits.cpu.period_us: must be a positive number of microseconds",
            );
        }
        rejects(
            limits(json!({"memory": 1.5e9})),
            "containers[0].limits.memory: invalid type: floating point `1500000000.0`, \
             expected a positive number of bytes",
        );
        rejects(
            limits(json!({"memory": "1G"})),
            r#"containers[0].limits.memory: invalid type: string "1G", expected a positive number of bytes"#,
        );
        rejects(
            limits(json!({"cpu": {"period_us": 100_000}})),
            "containers[0].limits.cpu: missing field `quota_us`",
        );
    }

    #[test]
    fn limits_respect_kernel_bounds() {
        let limits = |limits: Value| doc(|d| d["containers"][0]["limits"] = limits);
        rejects(
            limits(json!({"memory": 4095})),
            "containers[0].limits.memory: must be at least 4096 bytes (one memory page): \
             with less the container could not even start",
        );
        rejects(
            limits(json!({"cpu": {"quota_us": 999}})),
            "containers[0].limits.cpu.quota_us: must be at least 1000 microseconds \
             (the kernel's minimum CFS quota)",
        );
        for period in [999, 1_000_001] {
            rejects(
                limits(json!({"cpu": {"quota_us": 1000, "period_us": period}})),
                "containers[0].limits.cpu.period_us: must be from 1000 to 1000000 microseconds \
                 (the kernel's CFS period range)",
            );
        }
        accepts(limits(json!({
            "memory": 4096, "pids": 1,
            "cpu": {"quota_us": 1000, "period_us": 1000},
        })));
        accepts(limits(
            json!({"cpu": {"quota_us": 4_000_000, "period_us": 1_000_000}}),
        ));
    }

    #[test]
    fn env_names_and_values() {
        let env = |env: Value| doc(|d| d["containers"][0]["env"] = env);
        rejects(
            env(json!({"": "x"})),
            "containers[0].env: variable names must not be empty",
        );
        rejects(
            env(json!({"A=B": "x"})),
            r#"containers[0].env: "A=B" is not a valid variable name: it must not contain '=' or NUL"#,
        );
        rejects(
            env(json!({"A\u{0}": "x"})),
            r#"containers[0].env: "A\0" is not a valid variable name: it must not contain '=' or NUL"#,
        );
        rejects(
            env(json!({"PORT": "80\u{0}80"})),
            "containers[0].env.PORT: must not contain NUL bytes",
        );
        accepts(env(json!({"lower.case-ok": "", "X": "a=b c"})));
    }

    #[test]
    fn command_and_args() {
        rejects(
            doc(|d| d["containers"][1]["command"] = json!([])),
            "containers[1].command: must not be empty (omit it to use the image's entrypoint)",
        );
        rejects(
            doc(|d| d["containers"][1]["command"] = json!(["/bin/sh", "-c\u{0}"])),
            "containers[1].command[1]: must not contain NUL bytes",
        );
        rejects(
            doc(|d| d["containers"][1]["args"] = json!(["\u{0}"])),
            "containers[1].args[0]: must not contain NUL bytes",
        );
        // Empty args override the image's cmd with nothing.
        accepts(doc(|d| d["containers"][1]["args"] = json!([])));
    }

    #[test]
    fn image_references() {
        let image = |image: &str| doc(|d| d["containers"][1]["image"] = json!(image));
        rejects(image(""), "containers[1].image: must not be empty");
        rejects(
            image("busy box"),
            r#"containers[1].image: "busy box" is not a valid image reference: it contains whitespace or control characters"#,
        );
        rejects(
            image("ghcr.io/Acme/api:1.4"),
            r#"containers[1].image: "ghcr.io/Acme/api:1.4" is not a valid image reference: the repository name must be lowercase"#,
        );
        rejects(
            image("Busybox"),
            r#"containers[1].image: "Busybox" is not a valid image reference: the repository name must be lowercase"#,
        );
        rejects(
            image(":latest"),
            r#"containers[1].image: ":latest" is not a valid image reference: no repository name"#,
        );
        for ok in [
            "busybox",
            "busybox:Latest-RC1",
            "Registry.Example:5000/team/app:v1",
            "localhost:5000/app",
            "docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            accepts(image(ok));
        }
        // The grammar's own cases, and its limits.
        rejects(
            image("a@@b"),
            r#"containers[1].image: "a@@b" is not a valid image reference: digest "@b" is not valid: sha256: and 64 lowercase hex digits (sha384: 96, sha512: 128)"#,
        );
        rejects(
            image("a//b"),
            r#"containers[1].image: "a//b" is not a valid image reference: path component "" is not valid: lowercase letters and digits, separated by one '.', '_' or '__', or by dashes"#,
        );
        rejects(
            image(&"a".repeat(4096)),
            &format!(
                r#"containers[1].image: "{}"… is not a valid image reference: the repository name is 4114 characters long with its registry: at most 255"#,
                "a".repeat(128)
            ),
        );
        rejects(
            image("busybox@sha256:0123abcd"),
            r#"containers[1].image: "busybox@sha256:0123abcd" is not a valid image reference: digest "sha256:0123abcd" is not valid: sha256: and 64 lowercase hex digits (sha384: 96, sha512: 128)"#,
        );
    }

    #[test]
    fn stop_grace_period_is_at_most_an_hour() {
        rejects(
            doc(|d| d["stop_grace_period_s"] = json!(3601)),
            "stop_grace_period_s: must be at most 3600 seconds (one hour)",
        );
        accepts(doc(|d| d["stop_grace_period_s"] = json!(3600)));
        accepts(doc(|d| d["stop_grace_period_s"] = json!(0)));
    }

    #[test]
    fn first_error_in_document_order_wins() {
        rejects(
            doc(|d| {
                d["stop_grace_period_s"] = json!(9999);
                d["containers"][1]["name"] = json!("Side");
                d["containers"][0]["limits"] = json!({"pids": 0});
                d["containers"][0]["image"] = json!("");
            }),
            "containers[0].image: must not be empty",
        );
        rejects(
            doc(|d| {
                d["containers"][0]["name"] = json!("App");
                d["volumes"][1]["name"] = json!("data");
            }),
            r#"volumes[1].name: duplicate volume name "data""#,
        );
    }
}
