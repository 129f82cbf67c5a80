//! tankctl: the command-line client of tankd.
//!
//! Owns the commands a person types and how their results and errors are
//! shown. It talks to tankd only over the system bus (the interfaces of
//! `dbus/`), never to the store or the machine directly.

pub mod cli;
pub mod images;
pub mod input;
pub mod output;
pub mod proxy;

use std::collections::HashMap;

use zbus::fdo::ObjectManagerProxy;
use zbus::zvariant::OwnedValue;
use zbus::Connection;

use crate::bus::{BUS_NAME, ROOT_PATH};
use cli::{Cli, Command, Format};
use proxy::{ManagerProxy, PodProxy};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Reading or converting the user's input failed.
    #[error("{0}")]
    Input(String),
    #[error("cannot connect to the system bus: {0}")]
    Connect(zbus::Error),
    /// A call to tankd failed; the message is already user-facing.
    #[error("{0}")]
    Call(String),
    #[error("unexpected reply from tankd: {0}")]
    Reply(String),
}

impl From<zbus::Error> for ClientError {
    fn from(err: zbus::Error) -> Self {
        ClientError::Call(describe(&err))
    }
}

impl From<zbus::fdo::Error> for ClientError {
    fn from(err: zbus::fdo::Error) -> Self {
        ClientError::Call(describe(&zbus::Error::FDO(Box::new(err))))
    }
}

/// One line for a failed call, by D-Bus error name.
pub fn describe(err: &zbus::Error) -> String {
    let (name, message) = match err {
        zbus::Error::MethodError(name, message, _) => {
            (name.to_string(), message.as_deref().unwrap_or(""))
        }
        zbus::Error::FDO(fdo) => {
            let fdo: &zbus::fdo::Error = fdo;
            (
                zbus::DBusError::name(fdo).to_string(),
                zbus::DBusError::description(fdo).unwrap_or(""),
            )
        }
        other => return other.to_string(),
    };
    match name.as_str() {
        "org.tank.Error.InvalidSpec" => format!("invalid spec: {message}"),
        "org.tank.Error.NotFound"
        | "org.tank.Error.InUse"
        | "org.tank.Error.ImagePull"
        | "org.tank.Error.InvalidArgument" => message.to_owned(),
        "org.tank.Error.ImportFailed" => format!("import failed: {message}"),
        "org.freedesktop.DBus.Error.AccessDenied" => format!("access denied: {message}"),
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            format!("tankd is not running ({BUS_NAME} is not on the system bus)")
        }
        other => format!("{other}: {message}"),
    }
}

/// Runs one tankctl invocation.
pub async fn run(cli: Cli) -> Result<(), ClientError> {
    let conn = Connection::system().await.map_err(ClientError::Connect)?;
    let manager = ManagerProxy::new(&conn).await?;
    match cli.command {
        Command::Apply { file } => {
            let document = input::read_document(&file)?;
            let path = manager.apply(&document).await?;
            let pod = PodProxy::builder(&conn).path(path)?.build().await?;
            println!(
                "pod/{} applied (generation {})",
                pod.name().await?,
                pod.generation().await?
            );
        }
        Command::Get { name, output } => {
            let document = manager.get(&name).await?;
            let value: serde_json::Value =
                serde_json::from_str(&document).map_err(|e| ClientError::Reply(e.to_string()))?;
            match output {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&value).expect("JSON values serialize")
                ),
                Format::Yaml => print!(
                    "{}",
                    serde_norway::to_string(&value).expect("JSON values serialize")
                ),
                Format::Table => {
                    let row = pod_row(
                        &name,
                        value["phase"].as_str().unwrap_or("?"),
                        value["generation"].as_u64().unwrap_or(0),
                        value["created_ms"].as_u64().unwrap_or(0) * 1000,
                    );
                    print!("{}", output::table(POD_COLUMNS, &[row]));
                }
            }
        }
        Command::Ps => {
            let rows = list_rows(&conn).await?;
            print!("{}", output::table(POD_COLUMNS, &rows));
        }
        Command::Delete { name } => {
            manager.delete(&name).await?;
            println!("pod/{name} deleted");
        }
        Command::Image(command) => images::run(&manager, command).await?,
    }
    Ok(())
}

const POD_COLUMNS: &[&str] = &["NAME", "PHASE", "GENERATION", "AGE"];

fn pod_row(name: &str, phase: &str, generation: u64, created_us: u64) -> Vec<String> {
    vec![
        name.to_owned(),
        phase.to_owned(),
        generation.to_string(),
        output::age(created_us),
    ]
}

/// One row per pod, from a single GetManagedObjects round trip.
async fn list_rows(conn: &Connection) -> Result<Vec<Vec<String>>, ClientError> {
    let objects = ObjectManagerProxy::builder(conn)
        .destination(BUS_NAME)?
        .path(ROOT_PATH)?
        .build()
        .await?
        .get_managed_objects()
        .await?;
    let mut rows: Vec<Vec<String>> = objects
        .values()
        .filter_map(|interfaces| {
            interfaces
                .iter()
                .find(|(name, _)| name.as_str() == "org.tank.Pod")
                .map(|(_, props)| props)
        })
        .map(|props| {
            pod_row(
                &prop_string(props, "Name"),
                &prop_string(props, "Phase"),
                prop_u64(props, "Generation"),
                prop_u64(props, "CreatedTimestamp"),
            )
        })
        .collect();
    rows.sort();
    Ok(rows)
}

fn prop_string(props: &HashMap<String, OwnedValue>, name: &str) -> String {
    props
        .get(name)
        .and_then(|v| String::try_from(v.clone()).ok())
        .unwrap_or_default()
}

fn prop_u64(props: &HashMap<String, OwnedValue>, name: &str) -> u64 {
    props
        .get(name)
        .and_then(|v| u64::try_from(v.clone()).ok())
        .unwrap_or(0)
}
