//! tankctl: Tank's command-line client. Thin main; the commands are
//! `tankd::client`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Like any Unix filter: a reader that goes away (`tankctl ps | head`)
    // ends tankctl quietly, instead of a panic in println!.
    // SAFETY: signal(2) with SIG_DFL at the start of main, before any other
    // thread exists; no handler function is involved.
    if let Err(e) = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    } {
        eprintln!("tankctl: cannot reset SIGPIPE: {e}");
    }
    let cli = tankd::client::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tankctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tankd::client::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("tankctl: {e}");
            ExitCode::FAILURE
        }
    }
}
