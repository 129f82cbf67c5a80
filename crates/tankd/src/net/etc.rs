//! The files that describe a pod's network to its containers:
//! `resolv.conf`, `hosts` and `hostname`, written into the pod's scratch
//! directory and bind-mounted into each container's `/etc`.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Loopback stub resolvers (systemd-resolved, dnsmasq…) cannot work from
/// inside a pod's own network namespace.
fn is_stub(server: &str) -> bool {
    server
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// DNS servers, search domains and options of a resolv.conf text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolv {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Resolv {
    pub fn parse(text: &str) -> Resolv {
        let mut resolv = Resolv::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => resolv.nameservers.extend(words.next().map(str::to_owned)),
                Some("search") | Some("domain") => {
                    resolv.search = words.map(str::to_owned).collect()
                }
                Some("options") => resolv.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        resolv
    }

    /// The host's resolvers as a pod can use them: loopback stubs are
    /// replaced by systemd-resolved's upstream list when there is one.
    pub fn for_pods_from_host() -> Resolv {
        Resolv::for_pods_from(
            Path::new("/etc/resolv.conf"),
            Path::new("/run/systemd/resolve/resolv.conf"),
        )
    }

    /// [`Resolv::for_pods_from_host`] with the two files named: the host's
    /// resolv.conf and systemd-resolved's upstream one.
    pub fn for_pods_from(resolv_conf: &Path, upstream: &Path) -> Resolv {
        let host = std::fs::read_to_string(resolv_conf)
            .map(|t| Resolv::parse(&t))
            .unwrap_or_default();
        let mut resolv = host.clone();
        resolv.nameservers.retain(|s| !is_stub(s));
        if resolv.nameservers.is_empty() {
            if let Ok(text) = std::fs::read_to_string(upstream) {
                let upstream = Resolv::parse(&text);
                resolv.nameservers = upstream
                    .nameservers
                    .into_iter()
                    .filter(|s| !is_stub(s))
                    .collect();
                if resolv.search.is_empty() {
                    resolv.search = upstream.search;
                }
            }
        }
        resolv
    }

    pub fn render(&self) -> String {
        let mut out = String::from("# written by tank\n");
        for server in &self.nameservers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        let options: Vec<&String> = self
            .options
            .iter()
            .filter(|o| !o.starts_with("trust-ad") || !self.nameservers.is_empty())
            .collect();
        if !options.is_empty() {
            out.push_str(&format!(
                "options {}\n",
                options
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        out
    }
}

/// `/etc/hosts` of a pod: localhost, and the pod's name on its addresses
/// (on 127.0.1.1 when it has none, as Debian does for the host name).
pub fn hosts(pod: &str, addresses: &[Ipv4Addr]) -> String {
    let mut out = String::from(
        "# written by tank\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    if addresses.is_empty() {
        out.push_str(&format!("127.0.1.1\t{pod}\n"));
    }
    for address in addresses {
        out.push_str(&format!("{address}\t{pod}\n"));
    }
    out
}

/// Paths of the three files of a pod.
#[derive(Debug, Clone)]
pub struct PodEtc {
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    pub hostname: PathBuf,
}

/// Writes the three files into `dir` (atomically each).
pub fn write_pod_etc(
    dir: &Path,
    pod: &str,
    resolv: &Resolv,
    addresses: &[Ipv4Addr],
) -> std::io::Result<PodEtc> {
    std::fs::create_dir_all(dir)?;
    let files = PodEtc {
        resolv_conf: dir.join("resolv.conf"),
        hosts: dir.join("hosts"),
        hostname: dir.join("hostname"),
    };
    for (path, text) in [
        (&files.resolv_conf, resolv.render()),
        (&files.hosts, hosts(pod, addresses)),
        (&files.hostname, format!("{pod}\n")),
    ] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        // Bind-mounted into the containers: readable by their users
        // whatever tankd's umask.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_are_dropped() {
        let r = Resolv::parse(
            "nameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch lan example\noptions edns0 trust-ad\n",
        );
        assert_eq!(r.nameservers, ["127.0.0.53", "10.0.0.1"]);
        let mut pod = r.clone();
        pod.nameservers.retain(|s| !is_stub(s));
        assert_eq!(
            pod.render(),
            "# written by tank\nnameserver 10.0.0.1\nsearch lan example\noptions edns0 trust-ad\n"
        );
    }

    #[test]
    fn hosts_file() {
        assert!(hosts("web", &[]).contains("127.0.1.1\tweb\n"));
        let h = hosts("web", &["10.0.0.20".parse().unwrap()]);
        assert!(h.contains("10.0.0.20\tweb\n") && !h.contains("127.0.1.1"));
    }

    #[test]
    fn writes_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pod_etc(dir.path(), "web", &Resolv::default(), &[]).unwrap();
        assert_eq!(std::fs::read_to_string(files.hostname).unwrap(), "web\n");
    }
}
