//! tankctl: Tank's command-line client. Thin main; the commands are
//! `tank::client`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = tank::client::cli::Cli::parse();
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
    match runtime.block_on(tank::client::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("tankctl: {e}");
            ExitCode::FAILURE
        }
    }
}
