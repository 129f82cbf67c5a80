//! The Debian package: `packaging/build-deb.sh` builds it (cargo-deb, the
//! `release` profile's optimized, stripped binaries, generated man pages and completions), and this
//! test reads it back with `dpkg-deb`: every file it must install, the
//! conffile, the dependencies and the maintainer scripts that enable and
//! start tankd.service and create group `tank`. Nothing is skipped: a
//! missing tool or file fails the test. (Installing it on a real systemd
//! host is `tests/vm/guest-package.sh`.)

use std::path::{Path, PathBuf};
use std::process::Command;

/// The checkout under test (the workspace root, two levels above this
/// crate), as cargo says when it runs the test.
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("run the tests with cargo test"),
    );
    let root = manifest.join("../..");
    root.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
}

/// Runs `cmd`, fails loudly unless it succeeds; returns its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Builds the package (a no-op cargo build when the test binaries are
/// fresh) and returns its path.
fn build_deb() -> PathBuf {
    let root = workspace_root();
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("packaging/build-deb.sh"))
        .current_dir(&root);
    // What `cargo test` sets for this test binary (CARGO_MANIFEST_DIR, the
    // package's CARGO_PKG_*, ...) must not reach the release build: ring's
    // build script tracks CARGO_MANIFEST_DIR, and a different value would
    // rebuild the release binaries here and again for the next run.sh.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_") && name != "CARGO_HOME" && name != "CARGO_TARGET_DIR" {
            cmd.env_remove(&*name);
        }
    }
    let stdout = run(&mut cmd);
    let deb = PathBuf::from(stdout.lines().last().expect("build-deb.sh printed nothing"));
    assert!(
        deb.is_file() && deb.extension().is_some_and(|e| e == "deb"),
        "build-deb.sh's last line is not a .deb: {deb:?}"
    );
    deb
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    run(Command::new("dpkg-deb").args(args).arg(deb))
}

/// One control file of the package (`control`, `conffiles`, `postinst`, …).
fn control_file(deb: &Path, name: &str) -> String {
    run(Command::new("dpkg-deb").arg("--info").arg(deb).arg(name))
}

/// The files the package installs, with their modes. (cargo-deb 3 puts
/// units in /usr/lib/systemd/system: the same directory as /lib/... on
/// Debian 12, whose /lib is a symlink to usr/lib.)
const FILES: &[(&str, &str)] = &[
    ("/usr/bin/tankd", "-rwxr-xr-x"),
    ("/usr/bin/tankctl", "-rwxr-xr-x"),
    ("/usr/lib/systemd/system/tankd.service", "-rw-r--r--"),
    (
        "/usr/share/dbus-1/system.d/org.tank.Manager.conf",
        "-rw-r--r--",
    ),
    (
        "/usr/share/dbus-1/system-services/org.tank.Manager.service",
        "-rw-r--r--",
    ),
    ("/usr/share/polkit-1/actions/org.tank.policy", "-rw-r--r--"),
    (
        "/usr/share/doc/tank/examples/50-tank.rules.example",
        "-rw-r--r--",
    ),
    ("/usr/share/doc/tank/copyright", "-rw-r--r--"),
    ("/etc/tank/tankd.toml", "-rw-r--r--"),
    ("/usr/share/man/man1/tankctl.1.gz", "-rw-r--r--"),
    ("/usr/share/man/man1/tankctl-apply.1.gz", "-rw-r--r--"),
    ("/usr/share/man/man1/tankctl-exec.1.gz", "-rw-r--r--"),
    ("/usr/share/man/man1/tankctl-image-pull.1.gz", "-rw-r--r--"),
    ("/usr/share/man/man1/tankctl-completions.1.gz", "-rw-r--r--"),
    ("/usr/share/man/man8/tankd.8.gz", "-rw-r--r--"),
    (
        "/usr/share/bash-completion/completions/tankctl",
        "-rw-r--r--",
    ),
    ("/usr/share/zsh/vendor-completions/_tankctl", "-rw-r--r--"),
    (
        "/usr/share/fish/vendor_completions.d/tankctl.fish",
        "-rw-r--r--",
    ),
];

/// Files shipped verbatim from the repository.
const VERBATIM: &[(&str, &str)] = &[
    (
        "/usr/lib/systemd/system/tankd.service",
        "systemd/tankd.service",
    ),
    (
        "/usr/share/dbus-1/system.d/org.tank.Manager.conf",
        "dbus/org.tank.Manager.conf",
    ),
    (
        "/usr/share/dbus-1/system-services/org.tank.Manager.service",
        "dbus/org.tank.Manager.service",
    ),
    (
        "/usr/share/polkit-1/actions/org.tank.policy",
        "polkit/org.tank.policy",
    ),
    (
        "/usr/share/doc/tank/examples/50-tank.rules.example",
        "polkit/50-tank.rules.example",
    ),
    ("/etc/tank/tankd.toml", "packaging/tankd.toml"),
];

fn gunzip(path: &Path) -> String {
    use std::io::Read;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{} is not gzip text: {e}", path.display()));
    text
}

#[test]
fn the_debian_package_installs_everything_and_enables_tankd() {
    let deb = build_deb();
    let root = workspace_root();

    // Control: name, architecture, dependencies.
    let control = control_file(&deb, "control");
    assert!(control.contains("Package: tank\n"), "{control}");
    assert!(control.contains("Architecture: amd64\n"), "{control}");
    let depends = control
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends:\n{control}"));
    // librocksdb7.8: tankd links Debian's RocksDB (no C++ build of ours).
    for dep in ["dbus", "polkitd", "adduser", "libc6", "librocksdb7.8"] {
        assert!(
            depends
                .split(',')
                .any(|d| d.trim().split(' ').next() == Some(dep)),
            "Depends lacks {dep}: {depends}"
        );
    }

    // Contents: every file, with its mode.
    let contents = dpkg_deb(&["--contents"], &deb);
    for (path, mode) in FILES {
        let line = contents
            .lines()
            .find(|l| l.ends_with(&format!(" .{path}")))
            .unwrap_or_else(|| panic!("the package lacks {path}:\n{contents}"));
        assert!(
            line.starts_with(mode),
            "{path} has mode {line}, want {mode}"
        );
        assert!(
            line.contains(" 0/0 ") || line.contains(" root/root "),
            "{path} not owned by root: {line}"
        );
    }

    // The conffile.
    let conffiles = control_file(&deb, "conffiles");
    assert!(
        conffiles
            .lines()
            .any(|l| l.trim() == "/etc/tank/tankd.toml"),
        "tankd.toml is not a conffile: {conffiles:?}"
    );

    // Maintainer scripts: group, bus reload, enable + start; stop on removal.
    let postinst = control_file(&deb, "postinst");
    for needle in [
        "addgroup --system tank",
        "org.freedesktop.DBus.ReloadConfig",
        "deb-systemd-helper enable tankd.service",
        "deb-systemd-invoke $_dh_action tankd.service",
    ] {
        assert!(
            postinst.contains(needle),
            "postinst lacks {needle:?}:\n{postinst}"
        );
    }
    assert!(!postinst.contains("#DEBHELPER#"), "{postinst}");
    // Our part of it is valid shell, with cargo-deb's parts after it.
    run(Command::new("sh").arg("-n").arg("-c").arg(&postinst));
    let ours = postinst.find("addgroup").expect("addgroup");
    let enable = postinst.find("deb-systemd-helper enable").expect("enable");
    assert!(ours < enable, "the group must exist before tankd starts");
    let prerm = control_file(&deb, "prerm");
    assert!(
        prerm.contains("deb-systemd-invoke stop tankd.service"),
        "{prerm}"
    );
    let postrm = control_file(&deb, "postrm");
    assert!(
        postrm.contains("deb-systemd-helper purge tankd.service"),
        "{postrm}"
    );

    // The files themselves.
    let tree = tempfile::tempdir().expect("tempdir");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(tree.path()));
    let at = |path: &str| tree.path().join(path.trim_start_matches('/'));
    for (installed, source) in VERBATIM {
        let shipped = std::fs::read(at(installed)).expect("extracted file");
        let repo = std::fs::read(root.join(source)).expect("repo file");
        assert!(shipped == repo, "{installed} differs from {source}");
    }
    let version = run(Command::new(at("/usr/bin/tankctl")).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("tankctl {}", env!("CARGO_PKG_VERSION"))
    );
    // The shipped binaries are the optimized, stripped ones, within their
    // size budgets; tankctl links neither RocksDB nor the C++ runtime.
    for (binary, budget) in [
        ("/usr/bin/tankd", 20_000_000),
        ("/usr/bin/tankctl", 8_000_000),
    ] {
        let path = at(binary);
        let size = std::fs::metadata(&path).expect("binary").len();
        assert!(size <= budget, "{binary} is {size} bytes, budget {budget}");
        let sections = run(Command::new("readelf").arg("--sections").arg(&path));
        assert!(!sections.contains(".symtab"), "{binary} is not stripped");
        assert!(!sections.contains(".debug_"), "{binary} has debug info");
    }
    let needed = run(Command::new("readelf")
        .arg("--dynamic")
        .arg(at("/usr/bin/tankctl")));
    assert!(
        !needed.contains("libstdc++") && !needed.contains("librocksdb"),
        "tankctl links C++: {needed}"
    );
    let needed = run(Command::new("readelf")
        .arg("--dynamic")
        .arg(at("/usr/bin/tankd")));
    assert!(needed.contains("[librocksdb.so.7.8]"), "tankd: {needed}");
    let man = gunzip(&at("/usr/share/man/man1/tankctl.1.gz"));
    assert!(man.contains(".TH tankctl 1 "), "{man}");
    for sub in ["apply", "ps", "logs", "exec", "attach", "completions"] {
        assert!(
            man.contains(&format!("tankctl\\-{sub}(1)")),
            "tankctl.1 lacks {sub}"
        );
    }
    let tankd_man = gunzip(&at("/usr/share/man/man8/tankd.8.gz"));
    assert!(tankd_man.contains(".TH tankd 8 "), "{tankd_man}");
    let bash = std::fs::read_to_string(at("/usr/share/bash-completion/completions/tankctl"))
        .expect("bash completion");
    assert!(bash.contains("complete -F _tankctl"), "{bash}");
    assert!(bash.contains("apply") && bash.contains("exec"));
    let zsh = std::fs::read_to_string(at("/usr/share/zsh/vendor-completions/_tankctl"))
        .expect("zsh completion");
    assert!(zsh.starts_with("#compdef tankctl"), "{zsh}");
    let fish = std::fs::read_to_string(at("/usr/share/fish/vendor_completions.d/tankctl.fish"))
        .expect("fish completion");
    assert!(fish.contains("complete -c tankctl"), "{fish}");
}
