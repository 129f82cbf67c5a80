//! The tankctl binary on its own, without tankd: what it refuses before
//! any call (a document tankd would refuse), what it is made of (no
//! RocksDB, no C++ runtime: it depends on tank-api only), and its local
//! commands. (With tankd: `crates/tankd/tests/`, which run this binary.)

use std::path::Path;
use std::process::{Command, Output};

fn tankctl(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tankctl"))
        .args(args)
        // No bus at all: anything that reaches for one fails.
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            "unix:path=/nonexistent/tank-test-bus",
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tankctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("tankctl ends")
}

fn stderr(out: &Output) -> String {
    assert!(!out.status.success(), "tankctl succeeded: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_repeated_key_is_refused_before_any_call() {
    // The message is tank-api's reader's, the one tankd's Apply gives
    // (crates/tankd/tests/foundation.rs compares the two through tankd).
    let json =
        r#"{"name": "web", "containers": [{"name": "a", "image": "busybox", "image": "nginx"}]}"#;
    assert_eq!(
        stderr(&tankctl(&["apply", "-f", "-"], Some(json))),
        "tankctl: invalid spec: invalid JSON: duplicate key \"image\" at line 1 column 72\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = dir.path().join("web.yaml");
    std::fs::write(
        &yaml,
        "name: web\nname: api\ncontainers:\n  - name: a\n    image: busybox\n",
    )
    .expect("write");
    assert_eq!(
        stderr(&tankctl(
            &["apply", "-f", yaml.to_str().expect("utf-8")],
            None
        )),
        "tankctl: invalid spec: invalid YAML: duplicate key \"name\"\n"
    );
    // A valid document goes on to the bus, which is not there.
    let valid = r#"{"name": "web", "containers": [{"name": "a", "image": "busybox"}]}"#;
    let err = stderr(&tankctl(&["apply", "-f", "-"], Some(valid)));
    assert!(
        err.starts_with("tankctl: cannot connect to the system bus"),
        "{err}"
    );
}

#[test]
fn local_commands_need_no_bus() {
    let out = tankctl(&["completions", "bash"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("complete -F _tankctl"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tankctl(
        &["generate-manpages", dir.path().to_str().expect("utf-8")],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(dir.path().join("tankctl.1").is_file());
    assert!(dir.path().join("tankd.8").is_file());
}

/// Runs a binutils tool on tankctl; fails loudly when it is missing
/// (scripts/deps.sh installs binutils).
fn binutils(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(env!("CARGO_BIN_EXE_tankctl"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (binutils): {e}"));
    assert!(out.status.success(), "{tool}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tankctl_links_neither_rocksdb_nor_the_cxx_runtime() {
    assert!(Path::new(env!("CARGO_BIN_EXE_tankctl")).is_file());
    let dynamic = binutils("readelf", &["--dynamic", "--wide"]);
    assert!(dynamic.contains("(NEEDED)"), "{dynamic}");
    for line in dynamic.lines().filter(|l| l.contains("(NEEDED)")) {
        assert!(!line.contains("libstdc++"), "tankctl needs C++: {line}");
    }
    // This (test-profile) binary keeps its symbols: none is RocksDB's.
    let symbols = binutils("nm", &["--demangle"]);
    assert!(symbols.lines().count() > 1000, "no symbol table: {symbols}");
    let rocksdb: Vec<&str> = symbols
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("rocksdb"))
        .take(5)
        .collect();
    assert!(rocksdb.is_empty(), "RocksDB in tankctl: {rocksdb:?}");
}
