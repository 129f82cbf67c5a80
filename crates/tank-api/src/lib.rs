//! What Tank's client (`tankctl`) and daemon (`tankd`) share: the contract
//! between them, and nothing that acts on the machine.
//!
//! - [`spec`]: the desired-state model (pods, containers, volumes, network)
//!   with its one strict reader of JSON and YAML documents (no repeated
//!   key, no unknown field, every rule checked) — tankd's Apply and
//!   `tankctl apply` accept and refuse exactly the same documents, with
//!   the same messages;
//!   [`reference`]: the image-reference grammar the spec checks and the
//!   names tankd gives images.
//! - [`status`]: observed status as types (a pod's phase, its containers'
//!   states, events; the document `Get` returns).
//! - [`bus`]: the D-Bus names (service, paths, interfaces), the error
//!   names of `org.tank.Error.*`, and client proxies of tankd's interfaces
//!   (the XML in `dbus/` is the contract).
//! - [`exit`]: how a process ended, and the status line a session's status
//!   socket carries (`exited 3`, `signaled 9`).
//! - [`log_record`]: the format of a container log record (CRI:
//!   `<time> <stream> <F|P> <text>`).
//! - [`daemon_cli`]: tankd's command line, so tankctl renders tankd's man
//!   page from the definition tankd parses.
//!
//! It must not touch the store, the machine or the system bus: the crate
//! is pure data and formats (the proxies only describe calls), and it
//! links no C++ (no RocksDB), so tankctl stays a small binary.
#![deny(unsafe_code)]

pub mod bus;
pub mod daemon_cli;
pub mod exit;
pub mod log_record;
pub mod reference;
pub mod spec;
pub mod status;
