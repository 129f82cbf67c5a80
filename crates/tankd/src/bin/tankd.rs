//! tankd: the Tank daemon. Thin main; the wiring is `tankd::daemon`.

use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    // The init stage of a container: tankd re-executed by itself inside the
    // container's new namespaces. Nothing of the daemon runs in that mode.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(tankd::runtime::channel::INIT_ARG))
    {
        tankd::runtime::init::main();
    }
    // The exec stage: a process joining a running container.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(tankd::runtime::channel::EXEC_ARG))
    {
        tankd::runtime::init::exec::main();
    }
    // The process that keeps the pods' systemd scope alive.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(
            tankd::runtime::cgroup::scope::PAUSE_ARG,
        ))
    {
        tankd::runtime::cgroup::scope::pause();
    }
    let args = tank_api::daemon_cli::Args::parse();
    tankd::daemon::init_logging();
    let config = match tankd::config::Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(tankd::daemon::run(config, shutdown_signal()));
    // A blocking task that does not end (a log copy to a reader that
    // stopped reading) must not keep tankd from exiting: it is crash-only.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        log::error!("cannot install signal handlers; stopping");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
