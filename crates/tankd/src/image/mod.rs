//! Images: references, registry pulls, the content store, safe layer
//! unpacking into overlay-ready directories, the image index, OCI archive
//! import and the OCI config merge.
//!
//! Owns everything under `<data_dir>/content` (blobs by digest),
//! `<data_dir>/layers` (one unpacked directory per layer chain id) and
//! `<data_dir>/images` (the index). It never mounts anything and never
//! starts processes: the runtime mounts the layers it hands out.
//! [`Images`] is the entry point for the rest of the daemon.

pub mod content;
pub mod digest;
pub mod error;
pub mod import;
pub mod index;
pub mod layers;
pub mod manifest;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod runconfig;
pub mod service;
pub mod unpack;
pub mod user;

pub use error::ImageError;
pub use index::{ImageRecord, LayerRecord};
pub use service::{Images, PruneReport, PullProgress};
