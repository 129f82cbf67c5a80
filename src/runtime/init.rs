//! (being written)

/// argv[1] that makes tankd run the init stage instead of the daemon.
pub const INIT_ARG: &str = "--tank-init";

/// The init stage (being written).
pub fn main() -> ! {
    std::process::exit(1)
}
