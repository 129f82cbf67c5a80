//! Client-side proxies of tankd's interfaces (the XML in `dbus/` is the
//! contract they follow; tankd's own interfaces are `tankd::bus`). Owns
//! nothing but the method, property and signal signatures as seen from a
//! client: calls that tankd authorizes may need the
//! ALLOW_INTERACTIVE_AUTHORIZATION flag, which a client sets on its own
//! calls through [`ManagerProxy::inner`].

use zbus::zvariant::OwnedObjectPath;

/// One row of `ListImages`: (reference, manifest digest, platform, bytes,
/// stored at µs since the epoch).
pub type ImageRow = (String, String, String, u64, u64);

#[zbus::proxy(
    interface = "org.tank.Manager",
    default_service = "org.tank.Manager",
    default_path = "/org/tank/Manager"
)]
pub trait Manager {
    fn apply(&self, spec: &str) -> zbus::Result<OwnedObjectPath>;
    fn get(&self, name: &str) -> zbus::Result<String>;
    fn list_pods(&self) -> zbus::Result<Vec<(String, OwnedObjectPath, String)>>;
    fn delete(&self, name: &str) -> zbus::Result<()>;
    fn pull_image(&self, reference: &str) -> zbus::Result<(String, String)>;
    fn list_images(&self) -> zbus::Result<Vec<ImageRow>>;
    fn remove_image(&self, reference: &str) -> zbus::Result<()>;
    fn prune_images(&self) -> zbus::Result<(Vec<String>, u64)>;
    fn import_image(&self, archive: zbus::zvariant::Fd<'_>) -> zbus::Result<Vec<String>>;
    fn logs(
        &self,
        pod: &str,
        container: &str,
        follow: bool,
        tail: u32,
    ) -> zbus::Result<zbus::zvariant::OwnedFd>;
    fn exec(
        &self,
        pod: &str,
        container: &str,
        argv: &[String],
        opts: std::collections::HashMap<&str, zbus::zvariant::Value<'_>>,
    ) -> zbus::Result<(zbus::zvariant::OwnedFd, zbus::zvariant::OwnedFd)>;
    fn attach(
        &self,
        pod: &str,
        container: &str,
    ) -> zbus::Result<(zbus::zvariant::OwnedFd, zbus::zvariant::OwnedFd)>;
    fn list_volumes(&self) -> zbus::Result<Vec<(String, String, u64)>>;
    fn remove_volume(&self, pod: &str, volume: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    fn pull_progress(
        &self,
        reference: &str,
        layer: &str,
        done: u64,
        total: u64,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(interface = "org.tank.Pod", default_service = "org.tank.Manager")]
pub trait Pod {
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn generation(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn phase(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn status(&self) -> zbus::Result<String>;
}
