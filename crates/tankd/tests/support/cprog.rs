//! Small C test programs, compiled at test time with the host's `gcc`
//! (Debian packages `gcc`, `libc6-dev`) as static binaries, so that they
//! run in any test image (busybox-static has no libc to link against).

use std::path::Path;
use std::process::Command;

/// `source` compiled with `gcc -static -O2`: the binary's bytes.
pub fn compile_static(name: &str, source: &str) -> Vec<u8> {
    let dir = tempfile::Builder::new()
        .prefix("tank-cprog-")
        .tempdir()
        .expect("tempdir");
    let src = dir.path().join(format!("{name}.c"));
    let out = dir.path().join(name);
    std::fs::write(&src, source).unwrap();
    let result = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run gcc (Debian packages gcc, libc6-dev): {e}"));
    assert!(
        result.status.success(),
        "gcc {}: {}",
        src.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    read(&out)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
