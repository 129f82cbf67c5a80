//! tankd's wiring: configuration → store → bus → adoption and the reconcile loop,
//! readiness to systemd, and logging.
//!
//! Owns the order in which the daemon comes up and goes down. It holds no
//! logic of its own: every capability lives in its module and is only
//! connected here. `READY=1` is sent once the store is open, the objects are
//! exported and the bus name is owned. Losing the bus connection or the
//! name ends [`run`] with an error: tankd exits non-zero and is restarted.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use zbus::fdo::{ObjectManager, RequestNameFlags, RequestNameReply};

use crate::bus::auth::Authorizer;
use crate::bus::manager::Manager;
use crate::bus::pod::PodObjects;
use crate::bus::strict::Strict;
use crate::bus::watch::{BusLost, BusWatch};
use crate::bus::{BusError, BUS_NAME, MANAGER_PATH, ROOT_PATH};
use crate::config::Config;
use crate::image::{ImageError, Images};
use crate::reconcile::effects::TankEffects;
use crate::reconcile::Reconciler;
use crate::runtime::manager::{Runtime, RuntimeConfig};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("system bus: {0}")]
    Bus(#[from] zbus::Error),
    #[error("system bus: {0}")]
    Export(#[from] BusError),
    #[error("{BUS_NAME} is already owned on the system bus: is another tankd running?")]
    NameTaken,
    #[error("lost the system bus: {0}")]
    BusLost(#[from] BusLost),
    #[error("images: {0}")]
    Images(#[from] ImageError),
    #[error("runtime: {0}")]
    Runtime(#[from] crate::runtime::manager::RuntimeError),
    #[error("the reconcile loop ended: {0}")]
    LoopEnded(String),
    #[error("state directory: {0}")]
    StateDir(#[from] crate::state_dir::StateDirError),
}

/// Sends journal-bound logs to the journal when stderr is connected to it
/// (as under systemd), to stderr otherwise. `TANK_LOG` sets the filter
/// (env_logger syntax, default `info`).
pub fn init_logging() {
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(logger) = systemd_journal_logger::JournalLog::new() {
            if logger.install().is_ok() {
                log::set_max_level(log_level_from_env());
                return;
            }
        }
    }
    env_logger::Builder::new()
        // zbus logs every dispatched call at info.
        .parse_filters("info,zbus=warn,tracing=warn")
        .parse_filters(&std::env::var("TANK_LOG").unwrap_or_default())
        .format_target(false)
        .init();
}

fn log_level_from_env() -> log::LevelFilter {
    std::env::var("TANK_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(log::LevelFilter::Info)
}

/// Runs tankd until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    raise_nofile();
    let (data_dir, run_dir) = (config.data_dir.clone(), config.run_dir.clone());
    tokio::task::spawn_blocking(move || secure_state(&data_dir, &run_dir))
        .await
        .expect("state directory task panicked")?;
    let store_dir = config.store_dir();
    let store = tokio::task::spawn_blocking(move || Store::open(&store_dir))
        .await
        .expect("store open task panicked")?;
    let store = Arc::new(store);
    log::info!("store open at {}", config.store_dir().display());

    let report = store.seed_from_dir(&config.pods_dir)?;
    if report.ran {
        log::info!(
            "seeded from {}: created {:?}, kept {:?}",
            config.pods_dir.display(),
            report.created,
            report.kept
        );
        for (path, reason) in &report.rejected {
            log::error!("seed {} rejected: {reason}", path.display());
        }
    }

    let data_dir = config.data_dir.clone();
    let registries = config.registries.clone();
    let images = tokio::task::spawn_blocking(move || Images::open(&data_dir, &registries))
        .await
        .expect("image store open task panicked")?;

    let host: Arc<dyn crate::net::host::Host> = Arc::from(config.host.build(None));
    let mut cgroups = config.cgroups.clone();
    cgroups.v2_base = match crate::runtime::cgroup::scope::prepare().await {
        Ok(scope) => scope,
        Err(e) => {
            log::warn!("pods stay in tankd's own cgroup (a restart of tankd may fail): {e}");
            None
        }
    };
    let runtime = Runtime::new(
        RuntimeConfig {
            data_dir: config.data_dir.clone(),
            run_dir: config.run_dir.clone(),
            cgroups,
            log_max_bytes: config.logs.max_bytes,
        },
        host,
    )?;
    log::info!("cgroups: {}", runtime.cgroups().describe());

    let conn = zbus::connection::Builder::system()?
        .serve_at(ROOT_PATH, Strict::new(ObjectManager))?
        .build()
        .await?;
    let watch = BusWatch::start(&conn).await?;
    let objects = Arc::new(PodObjects::new(conn.clone()));
    objects.sync(&store).await?;
    let auth = Authorizer::new(&conn).await?;
    conn.object_server()
        .at(
            MANAGER_PATH,
            Strict::new(Manager::new(
                Arc::clone(&store),
                Arc::clone(&objects),
                Arc::clone(&images),
                Arc::clone(&runtime),
                auth,
            )),
        )
        .await?;
    match conn
        .request_name_with_flags(BUS_NAME, RequestNameFlags::DoNotQueue.into())
        .await?
    {
        RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner => {}
        RequestNameReply::InQueue | RequestNameReply::Exists => return Err(DaemonError::NameTaken),
    }
    tokio::spawn(keep_objects_in_sync(
        Arc::clone(&store),
        Arc::clone(&objects),
    ));
    tokio::spawn(relay_pull_progress(conn.clone(), Arc::clone(&images)));
    let effects = Arc::new(TankEffects::new(
        Arc::clone(&store),
        Arc::clone(&images),
        Arc::clone(&runtime),
        Arc::clone(&objects),
    ));
    let mut reconciler = Reconciler::new(
        Arc::clone(&store),
        effects,
        runtime.subscribe(),
        config.reconcile,
    )
    .with_watchdog(sd_notify::watchdog_enabled().map(|interval| interval / 2));
    // Before READY=1: running containers are adopted, leftovers removed.
    reconciler.adopt().await;
    let mut reconcile_loop = tokio::spawn(reconciler.run());

    let pods = store.list()?.len();
    log::info!("serving {BUS_NAME} with {pods} pods");
    notify(format!("READY=1\nSTATUS={pods} pods declared")).await;

    tokio::select! {
        _ = shutdown => {}
        lost = watch.lost() => return Err(DaemonError::BusLost(lost)),
        // The loop never ends while tankd works: if it does, or panics,
        // tankd exits non-zero and systemd starts a new one, which adopts
        // the running containers.
        ended = &mut reconcile_loop => {
            let why = match ended {
                Ok(error) => error.to_string(),
                Err(e) if e.is_panic() => format!("it panicked: {e}"),
                Err(e) => e.to_string(),
            };
            return Err(DaemonError::LoopEnded(why));
        }
    }
    log::info!("stopping");
    notify("STOPPING=1".to_owned()).await;
    Ok(())
}

/// Makes tankd's state private before anything is written to it: umask
/// 077 from now on, `data_dir` and `run_dir` 0700, and what an older tankd
/// left open there tightened.
fn secure_state(data_dir: &Path, run_dir: &Path) -> Result<(), DaemonError> {
    use crate::state_dir::{
        prepare_root, tighten, use_private_umask, DATA_DIR_TREES, RUN_DIR_TREES,
    };
    use_private_umask();
    for (root, trees) in [(data_dir, DATA_DIR_TREES), (run_dir, RUN_DIR_TREES)] {
        prepare_root(root)?;
        let changed = tighten(root, trees);
        if changed > 0 {
            log::info!(
                "{}: {changed} paths made private (left open by an older tankd)",
                root.display()
            );
        }
    }
    Ok(())
}

/// Re-exports pod objects whenever desired state changes (level-triggered).
async fn keep_objects_in_sync(store: Arc<Store>, objects: Arc<PodObjects>) {
    let mut changes = store.watch();
    while changes.changed().await.is_ok() {
        if let Err(e) = objects.sync(&store).await {
            log::error!("cannot update pod objects: {e}");
        }
    }
}

/// Emits a PullProgress signal for each progress report of any pull.
async fn relay_pull_progress(conn: zbus::Connection, images: Arc<Images>) {
    let mut progress = images.subscribe_progress();
    let Ok(emitter) = zbus::object_server::SignalEmitter::new(&conn, MANAGER_PATH) else {
        return;
    };
    loop {
        match progress.recv().await {
            Ok(p) => {
                if let Err(e) = Manager::pull_progress(
                    &emitter,
                    p.reference.into(),
                    p.layer.into(),
                    p.done,
                    p.total,
                )
                .await
                {
                    log::warn!("cannot emit PullProgress: {e}");
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// sd_notify of a message that matters (READY=1, STOPPING=1); a no-op
/// without `NOTIFY_SOCKET`. Never hangs on a receiver that does not read.
async fn notify(message: String) {
    let shown = message.replace('\n', " ");
    let sent = tokio::task::spawn_blocking(move || {
        crate::notify::send_and_wait(message, std::time::Duration::from_secs(5))
    })
    .await
    .unwrap_or(false);
    if !sent {
        log::warn!("sd_notify: {shown} not delivered within 5 s");
    }
}

/// Each container costs tankd a handful of fds (pidfd, output FIFOs, log
/// file): raise the soft RLIMIT_NOFILE to the hard one (systemd's 1024 soft
/// limit would cap tankd at a few hundred containers). Never above the hard
/// limit: that would need CAP_SYS_RESOURCE.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                log::warn!("cannot raise RLIMIT_NOFILE from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => log::warn!("getrlimit(RLIMIT_NOFILE): {e}"),
    }
}
