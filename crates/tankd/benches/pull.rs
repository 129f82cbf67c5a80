//! Pull + unpack benchmark: a ~100 MB, 5-layer image served by a local
//! `docker-registry`, pulled by Tank, by `podman pull`, and unpacked by
//! plain `tar -xzf` (the floor), side by side in one run. Prints medians
//! and ratios. Run with `bench/run.sh pull` (root).
//!
//! Environment: BENCH_RUNS (default 3), BENCH_FILES per layer (2500),
//! BENCH_FILE_SIZE (10000 bytes), BENCH_DIR (where unpacking happens,
//! default /var/tmp: ext4 here; try a tmpfs too).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

#[path = "common.rs"]
mod common;
use common::{env_usize, median, ms, run};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::images::{five_layer_image, Pushable};
use support::registry::Registry;
use tankd::config::RegistriesConfig;
use tankd::image::Images;

/// Writes podman configuration pointing at private storage and the local
/// registry, so the benchmark changes nothing in /etc or podman's default
/// storage.
fn podman_env(dir: &Path, registry: &str) -> Vec<(String, PathBuf)> {
    let containers = dir.join("containers.conf");
    std::fs::write(
        &containers,
        format!(
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
             events_logfile_path = \"{0}/events.log\"\ntmp_dir = \"{0}/libpod\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let registries = common::podman_registries_conf(dir, registry);
    vec![
        ("CONTAINERS_CONF".into(), containers),
        ("CONTAINERS_REGISTRIES_CONF".into(), registries),
    ]
}

#[tokio::main]
async fn main() {
    let runs = env_usize("BENCH_RUNS", 3);
    let files = env_usize("BENCH_FILES", 2500);
    let file_size = env_usize("BENCH_FILE_SIZE", 10_000);
    let base = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()));

    let image = five_layer_image(files, file_size);
    let total: usize = image.layers.iter().map(|l| l.blob.bytes.len()).sum();
    let registry = Registry::start();
    registry
        .push("bench/five:1", &Pushable::Image(image.clone()))
        .await;
    let reference = registry.reference("bench/five:1");
    println!(
        "image: 5 layers, {} files, {:.1} MB compressed; unpacking under {}",
        4 * files,
        total as f64 / 1e6,
        base.display()
    );

    let scratch = tempfile::tempdir_in(&base).unwrap();
    let blobs: Vec<PathBuf> = image
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let p = scratch.path().join(format!("layer{i}.tar.gz"));
            std::fs::write(&p, &l.blob.bytes).unwrap();
            p
        })
        .collect();
    let podman = common::installed("podman");
    let podman_dir = scratch.path().join("podman");
    std::fs::create_dir_all(&podman_dir).unwrap();
    let podman_vars = podman_env(&podman_dir, &registry.addr);

    let (mut tar_t, mut tank_t, mut podman_t) = (Vec::new(), Vec::new(), Vec::new());
    for run_no in 0..runs {
        // Floor: tar -xzf of every layer, one after the other.
        let dest = scratch.path().join(format!("tar{run_no}"));
        let start = Instant::now();
        for (i, blob) in blobs.iter().enumerate() {
            let d = dest.join(i.to_string());
            std::fs::create_dir_all(&d).unwrap();
            run(Command::new("tar").arg("-xzf").arg(blob).arg("-C").arg(&d));
        }
        tar_t.push(start.elapsed());
        let _ = std::fs::remove_dir_all(&dest);

        // Tank: pull + unpack into a fresh data dir.
        let data = scratch.path().join(format!("tank{run_no}"));
        let images = Images::open(
            &data,
            &RegistriesConfig {
                insecure: vec![registry.addr.clone()],
                auth_file: None,
            },
        )
        .unwrap();
        let start = Instant::now();
        images.pull(&reference).await.unwrap();
        tank_t.push(start.elapsed());
        drop(images);
        let _ = std::fs::remove_dir_all(&data);

        // podman pull into fresh storage.
        if podman {
            let root = podman_dir.join(format!("root{run_no}"));
            let runroot = podman_dir.join(format!("run{run_no}"));
            let mut cmd = Command::new("podman");
            cmd.envs(podman_vars.iter().map(|(k, v)| (k, v)))
                .arg("--root")
                .arg(&root)
                .arg("--runroot")
                .arg(&runroot)
                .args([
                    "--storage-driver",
                    "overlay",
                    "pull",
                    "-q",
                    "--tls-verify=false",
                ])
                .arg(&reference);
            let start = Instant::now();
            run(&mut cmd);
            podman_t.push(start.elapsed());
            let _ = Command::new("podman")
                .envs(podman_vars.iter().map(|(k, v)| (k, v)))
                .arg("--root")
                .arg(&root)
                .arg("--runroot")
                .arg(&runroot)
                .args(["system", "reset", "-f"])
                .output();
            let _ = std::fs::remove_dir_all(&root);
        }
    }

    let tar = median(tar_t);
    let tank = median(tank_t);
    println!("\n{:<28} {:>10}", "pull+unpack (median)", "ms");
    println!("{:<28} {:>10.1}", "tar -xzf (floor)", ms(tar));
    println!("{:<28} {:>10.1}", "tank pull", ms(tank));
    if podman {
        let podman = median(podman_t);
        println!("{:<28} {:>10.1}", "podman pull", ms(podman));
        println!("\ntank / podman = {:.2}", ms(tank) / ms(podman));
    } else {
        println!("(podman not installed: bench/run.sh installs it)");
    }
    println!("tank / tar    = {:.2}  (target <= 1.0)", ms(tank) / ms(tar));
}
