//! `tankctl image …`: pull with progress bars, list, remove, prune, import.

use std::collections::HashMap;
use std::path::Path;

use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::cli::ImageCommand;
use crate::error::ClientError;
use crate::output;
use crate::polkit::Interaction;
use tank_api::bus::proxy::ManagerProxy;

pub async fn run(
    manager: &ManagerProxy<'_>,
    ask: &Interaction,
    command: ImageCommand,
) -> Result<(), ClientError> {
    match command {
        ImageCommand::Pull { reference } => pull(manager, ask, &reference).await,
        ImageCommand::Ls => {
            let rows: Vec<Vec<String>> = manager
                .list_images()
                .await?
                .into_iter()
                .map(|(reference, digest, platform, size, created)| {
                    vec![
                        reference,
                        short_digest(&digest),
                        platform,
                        human_bytes(size),
                        output::age(created),
                    ]
                })
                .collect();
            print!(
                "{}",
                output::table(&["REFERENCE", "DIGEST", "PLATFORM", "SIZE", "AGE"], &rows)
            );
            Ok(())
        }
        ImageCommand::Rm { reference } => {
            ask.call::<_, ()>(manager.inner(), "RemoveImage", &(reference.as_str(),))
                .await?;
            println!("image {reference} removed");
            Ok(())
        }
        ImageCommand::Prune => {
            let (removed, bytes): (Vec<String>, u64) =
                ask.call(manager.inner(), "PruneImages", &()).await?;
            for reference in &removed {
                println!("removed {reference}");
            }
            println!(
                "{} images removed, {} freed",
                removed.len(),
                human_bytes(bytes)
            );
            Ok(())
        }
        ImageCommand::Import { file } => import(manager, ask, &file).await,
    }
}

async fn pull(
    manager: &ManagerProxy<'_>,
    ask: &Interaction,
    reference: &str,
) -> Result<(), ClientError> {
    // Subscribe before calling so no progress signal is missed.
    let mut signals = manager.receive_pull_progress().await?;
    let wanted = tank_api::reference::normalize(reference).ok();
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes}")
        .expect("a valid template")
        .progress_chars("=> ");
    let mut layers: HashMap<String, ProgressBar> = HashMap::new();
    let args = (reference,);
    let call = ask.call::<_, (String, String)>(manager.inner(), "PullImage", &args);
    tokio::pin!(call);
    let result = loop {
        tokio::select! {
            result = &mut call => break result,
            Some(signal) = signals.next() => {
                let Ok(args) = signal.args() else { continue };
                if wanted.as_deref() != Some(args.reference) {
                    continue;
                }
                let bar = layers.entry(args.layer.to_owned()).or_insert_with(|| {
                    let bar = bars.add(ProgressBar::new(args.total));
                    bar.set_style(style.clone());
                    bar.set_prefix(short_digest(args.layer));
                    bar
                });
                bar.set_length(args.total);
                bar.set_position(args.done);
            }
        }
    };
    for bar in layers.values() {
        bar.finish();
    }
    let (normalized, digest) = result?;
    println!("pulled {normalized} ({digest})");
    Ok(())
}

async fn import(
    manager: &ManagerProxy<'_>,
    ask: &Interaction,
    file: &Path,
) -> Result<(), ClientError> {
    use std::os::fd::AsFd;
    let (stdin, opened);
    let archive = if file == Path::new("-") {
        stdin = std::io::stdin();
        stdin.as_fd()
    } else {
        opened = std::fs::File::open(file)
            .map_err(|e| ClientError::Input(format!("cannot open {}: {e}", file.display())))?;
        opened.as_fd()
    };
    let references: Vec<String> = ask
        .call(
            manager.inner(),
            "ImportImage",
            &(zbus::zvariant::Fd::from(archive),),
        )
        .await?;
    for reference in references {
        println!("imported {reference}");
    }
    Ok(())
}

fn short_digest(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}

/// 1.5 MiB style sizes.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_digests() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(100 * 1024 * 1024), "100.0 MiB");
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
    }
}
