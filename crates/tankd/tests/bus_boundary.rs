//! The bus boundary: nothing tankd sends can break its bus connection (NUL
//! bytes in specs, in a registry's error texts and in image platforms),
//! input is strict (argument types, extra arguments, image references,
//! objects, document size, a seeded fuzz over the real bus), and tankd
//! exits non-zero, loudly, when its bus goes away.
//!
//! Every test runs the real tankd on a real private dbus-daemon; the
//! registry cases use a real docker-registry and, for a registry's own
//! error text, a minimal hostile HTTP server on 127.0.0.1.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::images::{foreign_layer, host_arch, image, platform, Pushable};
use support::registry::Registry;
use support::{failed, ok, pod_json, SystemBus, Tankd, TankdHome, NO_REGISTRY};
use zbus::zvariant::{self, DynamicType, OwnedObjectPath, StructureBuilder};

const DEST: &str = "org.tank.Manager";
const PATH: &str = "/org/tank/Manager";
const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
const INVALID_SPEC: &str = "org.tank.Error.InvalidSpec";

/// A call's outcome: the reply, or the error's (name, message).
type Answer = Result<zbus::Message, (String, String)>;

async fn call<B>(conn: &zbus::Connection, method: &str, body: &B) -> Answer
where
    B: serde::Serialize + DynamicType,
{
    match conn
        .call_method(Some(DEST), PATH, Some(DEST), method, body)
        .await
    {
        Ok(reply) => Ok(reply),
        Err(zbus::Error::MethodError(name, message, _)) => {
            Err((name.to_string(), message.unwrap_or_default()))
        }
        Err(other) => panic!("{method}: not an answer from tankd: {other:?}"),
    }
}

async fn apply(conn: &zbus::Connection, spec: &str) -> Answer {
    call(conn, "Apply", &(spec,)).await
}

/// The error (name, message) of an answer that must be one.
#[track_caller]
fn error(answer: Answer) -> (String, String) {
    match answer {
        Ok(reply) => panic!("expected an error, got a reply: {reply:?}"),
        Err(e) => e,
    }
}

/// The unique name owning org.tank.Manager (panics if none does).
async fn owner(conn: &zbus::Connection) -> String {
    zbus::fdo::DBusProxy::new(conn)
        .await
        .unwrap()
        .get_name_owner(DEST.try_into().unwrap())
        .await
        .expect("org.tank.Manager has an owner: tankd is still on the bus")
        .to_string()
}

/// tankd still owns its name (the same connection as at `before`) and
/// answers.
async fn still_serving(conn: &zbus::Connection, before: &str) {
    assert_eq!(owner(conn).await, before, "tankd's bus connection changed");
    call(conn, "ListPods", &())
        .await
        .expect("ListPods still answers");
}

/// The declared pods, by name.
async fn pods(conn: &zbus::Connection) -> Vec<String> {
    let reply = call(conn, "ListPods", &()).await.unwrap();
    let rows: Vec<(String, OwnedObjectPath, String)> = reply.body().deserialize().unwrap();
    rows.into_iter().map(|(name, _, _)| name).collect()
}

/// A pod document whose only container is `container` (merged over a
/// valid one whose image is on the unreachable registry).
fn spec_with(container: Value) -> String {
    let mut c = json!({"name": "app", "image": format!("{NO_REGISTRY}/busybox:1")});
    for (k, v) in container.as_object().unwrap() {
        c[k] = v.clone();
    }
    json!({"name": "web", "containers": [c]}).to_string()
}

#[tokio::test]
async fn nul_bytes_in_a_spec_get_named_errors_and_tankd_stays_on_the_bus() {
    let bus = SystemBus::start();
    let _tankd = Tankd::start(&bus);
    let conn = bus.connect().await;
    let me = owner(&conn).await;
    // (spec, the field path the error must name). JSON's \u0000 is a NUL
    // in the parsed document; the D-Bus string itself carries none.
    let image = format!("{NO_REGISTRY}/busybox:1");
    let cases: Vec<(String, &str)> =
        vec![
        (spec_with(json!({"env": {"A\u{0}B": "x"}})), "containers[0].env"),
        (
            spec_with(json!({"env": {"A": "x\u{0}y"}})),
            "containers[0].env.A",
        ),
        (spec_with(json!({"name": "a\u{0}pp"})), "containers[0].name"),
        // serde echoes an unknown key as it is.
        (
            json!({"name": "web", "x\u{0}y": 1, "containers": [{"name": "app", "image": image}]})
                .to_string(),
            "x\\u0000y",
        ),
        (spec_with(json!({"x\u{0}y": 1})), "x\\u0000y"),
        // serde_path_to_error puts the NUL key into the path.
        (
            spec_with(json!({"env": {"K\u{0}": 5}})),
            "containers[0].env.K\\u0000",
        ),
        (
            json!({"name": "we\u{0}b", "containers": [{"name": "app", "image": image}]})
                .to_string(),
            "name",
        ),
        (spec_with(json!({"image": "busy\u{0}box"})), "containers[0].image"),
        (
            spec_with(json!({"command": ["/bin/sh", "-c\u{0}"]})),
            "containers[0].command[1]",
        ),
        (
            spec_with(json!({"working_dir": "/s\u{0}rv"})),
            "containers[0].working_dir",
        ),
    ];
    for (spec, field) in &cases {
        let (name, message) = error(apply(&conn, spec).await);
        assert_eq!(name, INVALID_SPEC, "{spec}: {message}");
        assert!(message.contains(field), "{spec}: {message:?} names {field}");
        assert!(!message.contains('\0'), "{message:?}");
        still_serving(&conn, &me).await;
    }
    assert!(pods(&conn).await.is_empty(), "nothing was stored");
}

/// An HTTP server on 127.0.0.1 that answers `GET /v2/` with 200 and every
/// other request with a 500 whose body, the registry's error text, holds
/// a NUL byte.
struct HostileRegistry {
    addr: String,
    stop: Arc<AtomicBool>,
}

const HOSTILE_TEXT: &[u8] = b"registry says: bad\0news";

impl HostileRegistry {
    fn start() -> HostileRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(client) = client {
                    let _ = HostileRegistry::answer(client);
                }
            }
        });
        HostileRegistry { addr, stop }
    }

    fn answer(mut client: TcpStream) -> std::io::Result<()> {
        client.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
            let n = client.read(&mut buf)?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&request);
        let (status, body): (&str, &[u8]) = if line.starts_with("GET /v2/ ") {
            ("200 OK", b"{}")
        } else {
            ("500 Internal Server Error", HOSTILE_TEXT)
        };
        write!(
            client,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        client.write_all(body)?;
        client.flush()
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

#[tokio::test]
async fn nul_bytes_from_registries_reach_clients_escaped() {
    let registry = Registry::start();
    let hostile = HostileRegistry::start();
    // An image whose config names a platform with NUL bytes (an empty
    // architecture is accepted on any host) and one whose architecture
    // with a NUL matches no host (the error text names it).
    let nul_platform = image(
        vec![foreign_layer("x")],
        json!({}),
        platform("li\u{0}nux", "", Some("v\u{0}1")),
    );
    registry
        .push("nulplatform:1", &Pushable::Image(nul_platform))
        .await;
    let nul_arch = image(
        vec![foreign_layer("y")],
        json!({}),
        platform("linux", &format!("{}\u{0}", host_arch()), None),
    );
    registry.push("nularch:1", &Pushable::Image(nul_arch)).await;

    let bus = SystemBus::start();
    let home = TankdHome::with_config(&format!(
        "[registries]\ninsecure = [\"{}\", \"{}\"]\n",
        registry.addr, hostile.addr
    ));
    let _tankd = Tankd::start_in(&bus, &home);
    let conn = bus.connect().await;
    let me = owner(&conn).await;

    // The platform is stored as the registry wrote it and listed escaped.
    let reference = registry.reference("nulplatform:1");
    call(&conn, "PullImage", &(reference.as_str(),))
        .await
        .expect("the image pulls");
    still_serving(&conn, &me).await;
    let reply = call(&conn, "ListImages", &()).await.unwrap();
    let rows: Vec<(String, String, String, u64, u64)> = reply.body().deserialize().unwrap();
    let row = rows.iter().find(|r| r.0 == reference).expect("listed");
    assert_eq!(row.2, "li\\u0000nux//v\\u00001");
    still_serving(&conn, &me).await;

    // The platform in an error text.
    let (name, message) = error(
        call(
            &conn,
            "PullImage",
            &(registry.reference("nularch:1").as_str(),),
        )
        .await,
    );
    assert_eq!(name, "org.tank.Error.ImagePull", "{message}");
    assert!(
        message.contains(&format!("linux/{}\\u0000", host_arch())),
        "{message:?}"
    );
    still_serving(&conn, &me).await;

    // A registry's own error text.
    let (name, message) = error(
        call(
            &conn,
            "PullImage",
            &(format!("{}/busybox:1", hostile.addr).as_str(),),
        )
        .await,
    );
    assert_eq!(name, "org.tank.Error.ImagePull", "{message}");
    assert!(message.contains("bad\\u0000news"), "{message:?}");
    still_serving(&conn, &me).await;

    // The same text in a pod's observed status (the Status property, its
    // PropertiesChanged, GetManagedObjects, Get).
    let spec = json!({"name": "web", "containers": [
        {"name": "app", "image": format!("{}/busybox:1", hostile.addr)}]});
    apply(&conn, &spec.to_string()).await.expect("applied");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = call(&conn, "Get", &("web",)).await.expect("Get");
        let doc: String = reply.body().deserialize().unwrap();
        // JSON escapes the NUL itself.
        if doc.contains("bad\\u0000news") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no pull error in the status: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let om = zbus::fdo::ObjectManagerProxy::builder(&conn)
        .destination(DEST)
        .unwrap()
        .path("/org/tank")
        .unwrap()
        .build()
        .await
        .unwrap();
    om.get_managed_objects().await.expect("GetManagedObjects");
    still_serving(&conn, &me).await;
}

/// The in-arguments of every method of org.tank.Manager, from the contract.
fn manager_methods() -> Vec<(String, Vec<String>)> {
    let xml = std::fs::read_to_string(support::workspace_root().join("dbus/org.tank.Manager.xml"))
        .unwrap();
    let node = zbus_xml::Node::from_reader(xml.as_bytes()).unwrap();
    let iface = node
        .interfaces()
        .iter()
        .find(|i| i.name().as_str() == DEST)
        .unwrap();
    iface
        .methods()
        .iter()
        .map(|m| {
            let ins = m
                .args()
                .iter()
                .filter(|a| a.direction() != Some(zbus_xml::ArgDirection::Out))
                .map(|a| a.ty().to_string())
                .collect();
            (m.name().to_string(), ins)
        })
        .collect()
}

/// A value of D-Bus type `ty` (the types the API uses).
fn sample<'a>(ty: &str, fd: std::os::fd::BorrowedFd<'a>) -> zvariant::Value<'a> {
    match ty {
        "s" => "x".into(),
        "b" => false.into(),
        "u" => 0u32.into(),
        "as" => Vec::<String>::new().into(),
        "a{sv}" => HashMap::<String, zvariant::Value>::new().into(),
        "h" => zvariant::Value::Fd(zvariant::Fd::from(fd)),
        other => panic!("no sample for D-Bus type {other}"),
    }
}

fn body(values: Vec<zvariant::Value<'_>>) -> zvariant::Structure<'_> {
    values
        .into_iter()
        .fold(StructureBuilder::new(), |b, v| b.append_field(v))
        .build()
        .unwrap()
}

#[tokio::test]
async fn wrong_argument_types_and_extra_arguments_are_invalid_args() {
    use std::os::fd::AsFd;
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    tankd.apply(&serde_json::from_str(&pod_json("web", "busybox")).unwrap());
    let conn = bus.connect().await;
    let me = owner(&conn).await;
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let fd = devnull.as_fd();
    let methods = manager_methods();
    assert!(methods.len() >= 14, "{methods:?}");
    let mut refused = 0;
    for (method, ins) in &methods {
        let valid: Vec<zvariant::Value> = ins.iter().map(|t| sample(t, fd)).collect();
        let mut answers: Vec<(&str, Answer)> = Vec::new();
        // One argument too many.
        let mut extra = valid.clone();
        extra.push(5i64.into());
        answers.push(("an extra x", call(&conn, method, &body(extra)).await));
        if !ins.is_empty() {
            // A wrong type in the first place.
            let mut wrong = valid.clone();
            wrong[0] = if ins[0] == "u" {
                "x".into()
            } else {
                7u32.into()
            };
            answers.push(("a wrong type", call(&conn, method, &body(wrong)).await));
            // None at all.
            answers.push(("no arguments", call(&conn, method, &()).await));
        }
        if ins.len() > 1 {
            // The right fields, but as one struct argument.
            answers.push((
                "one struct",
                call(
                    &conn,
                    method,
                    &body(vec![zvariant::Value::from(body(valid.clone()))]),
                )
                .await,
            ));
        }
        for (what, answer) in answers {
            match answer {
                Err((name, message)) if name == INVALID_ARGS => {
                    assert!(message.contains(method.as_str()), "{message}");
                    refused += 1;
                }
                other => panic!("{method} with {what}: expected {INVALID_ARGS}, got {other:?}"),
            }
        }
        still_serving(&conn, &me).await;
    }
    assert!(refused >= 38, "{refused}");
    // Nothing changed: the wrongly called Delete, RemoveVolume... did nothing.
    assert_eq!(pods(&conn).await, ["web"]);

    // The ObjectManager tankd serves is held to the same rule.
    let answer = conn
        .call_method(
            Some(DEST),
            "/org/tank",
            Some("org.freedesktop.DBus.ObjectManager"),
            "GetManagedObjects",
            &("x",),
        )
        .await;
    match answer {
        Err(zbus::Error::MethodError(name, _, _)) if name.as_str() == INVALID_ARGS => {}
        other => panic!("GetManagedObjects with an argument: {other:?}"),
    }

    // What a shell user sees.
    let out = bus.busctl(&["call", DEST, PATH, DEST, "ListPods", "s", "x"]);
    let err = failed(&out);
    assert!(err.contains("ListPods takes no arguments"), "{err}");
    let out = std::process::Command::new("dbus-send")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .args([
            "--system",
            "--print-reply",
            &format!("--dest={DEST}"),
            PATH,
            "org.tank.Manager.Get",
            "uint32:5",
        ])
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(err.starts_with(&format!("Error {INVALID_ARGS}: ")), "{err}");
    // Correct calls still work.
    let out = ok(&bus.busctl(&["call", DEST, PATH, DEST, "ListPods"]));
    assert!(out.contains("\"web\""), "{out}");
}

#[tokio::test]
async fn image_references_objects_and_size_are_checked_at_apply() {
    let bus = SystemBus::start();
    let _tankd = Tankd::start(&bus);
    let conn = bus.connect().await;

    // Image references: the distribution grammar and its length limits.
    let long_name = "a".repeat(4096);
    let long_tag = format!("busybox:{}", "t".repeat(129));
    let too_long = format!("{NO_REGISTRY}/{}", "a/".repeat(120) + "bbbb");
    let uppercase_digest = format!("busybox@sha256:{}", "A".repeat(64));
    let short_digest = "busybox@sha256:0123abcd".to_owned();
    for bad in [
        "a@@b",
        "a//b",
        long_name.as_str(),
        long_tag.as_str(),
        too_long.as_str(),
        uppercase_digest.as_str(),
        short_digest.as_str(),
        "busybox@md5:0123456789abcdef0123456789abcdef",
        "a/",
        "/a",
        "a:",
        "a:b:c",
        "-a",
        "a..b",
        "a___b",
        "host:port/a",
        ":tag",
        "@sha256:",
        "a@sha256",
    ] {
        let (name, message) = error(apply(&conn, &spec_with(json!({"image": bad}))).await);
        assert_eq!(name, INVALID_SPEC, "{bad}: {message}");
        assert!(
            message.starts_with("containers[0].image: "),
            "{bad}: {message}"
        );
        assert!(message.len() < 600, "a short message: {message}");
    }
    assert_eq!(too_long.len(), 256);
    let longest_ok = format!("{NO_REGISTRY}/{}", "a/".repeat(120) + "bbb");
    assert_eq!(longest_ok.len(), 255);
    for good in [
        format!("{NO_REGISTRY}/busybox"),
        format!("{NO_REGISTRY}/library/busybox:Latest_1.x-y"),
        format!("{NO_REGISTRY}/a.b_c__d---e/f:1"),
        format!("{NO_REGISTRY}/busybox@sha256:{}", "0".repeat(64)),
        format!("{NO_REGISTRY}/busybox:1@sha256:{}", "a".repeat(64)),
        longest_ok,
    ] {
        apply(&conn, &spec_with(json!({ "image": good })))
            .await
            .unwrap_or_else(|e| panic!("{good} refused: {e:?}"));
    }

    // Objects only as JSON objects: a sequence for every object-typed field.
    let base = |f: &dyn Fn(&mut Value)| {
        let mut doc = json!({
            "name": "obj",
            "volumes": [{"name": "data"}, {"name": "conf", "source": {"host": "/etc"}}],
            "network": {"nics": [{"name": "eth0", "ip": "10.0.0.2/24"}]},
            "containers": [{"name": "app", "image": format!("{NO_REGISTRY}/busybox"),
                "mounts": [{"volume": "data", "path": "/data"}],
                "limits": {"memory": 1048576, "cpu": {"quota_us": 50000}}}],
        });
        f(&mut doc);
        doc.to_string()
    };
    apply(&conn, &base(&|_| {}))
        .await
        .expect("the base is valid");
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "containers[0].limits",
            Box::new(|d| d["containers"][0]["limits"] = json!([])),
        ),
        (
            "containers[0].limits.cpu",
            Box::new(|d| d["containers"][0]["limits"]["cpu"] = json!([50000])),
        ),
        (
            "containers[0]",
            Box::new(|d| d["containers"][0] = json!(["app", "busybox"])),
        ),
        (
            "containers[0].mounts[0]",
            Box::new(|d| d["containers"][0]["mounts"][0] = json!(["data", "/data"])),
        ),
        (
            "volumes[0]",
            Box::new(|d| d["volumes"][0] = json!(["data"])),
        ),
        (
            "volumes[1].source",
            Box::new(|d| d["volumes"][1]["source"] = json!(["/etc"])),
        ),
        ("network", Box::new(|d| d["network"] = json!([]))),
        (
            "network.nics[0]",
            Box::new(|d| d["network"]["nics"][0] = json!(["eth0", "auto", "10.0.0.2/24"])),
        ),
        (
            "containers[0].image",
            Box::new(|d| d["containers"][0]["image"] = json!(["x"])),
        ),
        (
            "containers[0].env",
            Box::new(|d| d["containers"][0]["env"] = json!([])),
        ),
    ];
    for (field, edit) in &cases {
        let spec = base(edit.as_ref());
        let (name, message) = error(apply(&conn, &spec).await);
        assert_eq!(name, INVALID_SPEC, "{spec}: {message}");
        assert!(
            message.starts_with(&format!("{field}: invalid type: sequence")),
            "{field}: {message}"
        );
    }
    let (name, message) = error(apply(&conn, &json!(["obj", "always"]).to_string()).await);
    assert_eq!(name, INVALID_SPEC);
    assert!(message.starts_with("invalid type: sequence"), "{message}");

    // Size: refused before parsing above 256 KiB, also as canonical JSON.
    let huge = spec_with(json!({"env": {"BIG": "x".repeat(1 << 20)}}));
    let (name, message) = error(apply(&conn, &huge).await);
    assert_eq!(name, INVALID_SPEC);
    assert!(message.contains("262144"), "{message}");
    assert!(message.len() < 200, "{message}");
    let big = spec_with(json!({"env": {"BIG": "x".repeat(200 * 1024)}}));
    apply(&conn, &big).await.expect("200 KiB are fine");
    // Short in its text, long as canonical JSON (every default written out).
    let containers: Vec<Value> = (0..5000)
        .map(|i| json!({"name": format!("c{i}"), "image": format!("{NO_REGISTRY}/b")}))
        .collect();
    let sneaky = json!({"name": "sneaky", "containers": containers}).to_string();
    assert!(sneaky.len() < 256 * 1024, "{}", sneaky.len());
    let (name, message) = error(apply(&conn, &sneaky).await);
    assert_eq!(name, INVALID_SPEC);
    assert!(message.contains("canonical"), "{message}");

    let mut declared = pods(&conn).await;
    declared.sort();
    assert_eq!(declared, ["obj", "web"], "nothing rejected was stored");
}

/// A seeded generator of hostile spec documents: valid specs mutated with
/// NUL bytes, huge strings, deep nesting, wrong types, random keys, and
/// broken text.
struct Fuzz {
    rng: fastrand::Rng,
}

const NAMES: [&str; 6] = ["fz-a", "fz-b", "fz-c", "fz-d", "fz-e", "fz-f"];
const FIELDS: [&str; 23] = [
    "name",
    "restart",
    "network",
    "volumes",
    "containers",
    "stop_grace_period_s",
    "image",
    "command",
    "args",
    "env",
    "working_dir",
    "tty",
    "mounts",
    "limits",
    "memory",
    "pids",
    "cpu",
    "quota_us",
    "period_us",
    "nics",
    "dns",
    "source",
    "host",
];

impl Fuzz {
    fn base(&mut self) -> Value {
        let name = NAMES[self.rng.usize(..NAMES.len())];
        let image = format!("{NO_REGISTRY}/busybox:{}", self.rng.u8(..));
        if self.rng.bool() {
            return json!({"name": name, "containers": [{"name": "app", "image": image}]});
        }
        json!({
            "name": name, "restart": "on_failure", "stop_grace_period_s": 3,
            "network": {"nics": [{"name": "eth0", "parent": "auto", "ip": "10.1.0.2/24",
                                   "gateway": "10.1.0.1"}], "dns": ["10.1.0.1"]},
            "volumes": [{"name": "data"}, {"name": "conf", "source": {"host": "/etc"}}],
            "containers": [
                {"name": "app", "image": image, "command": ["/bin/sh"], "args": ["-c", "true"],
                 "env": {"A": "1", "B": "two"}, "working_dir": "/srv", "tty": false,
                 "mounts": [{"volume": "data", "path": "/data", "read_only": true}],
                 "limits": {"memory": 1048576, "pids": 10, "cpu": {"quota_us": 5000, "period_us": 10000}}},
                {"name": "side", "image": format!("{NO_REGISTRY}/side@sha256:{}", "0".repeat(64))},
            ],
        })
    }

    fn string(&mut self) -> String {
        const PALETTE: [char; 18] = [
            'a', 'z', 'Z', '0', '9', '-', '.', '/', ':', '@', '_', '\0', '\u{1}', '\n', 'é',
            '\u{202e}', '\u{feff}', '😀',
        ];
        let len = match self.rng.u8(..) {
            0..=199 => self.rng.usize(..24),
            200..=249 => self.rng.usize(..4096),
            // Huge: around and above the 256 KiB limit.
            _ => self.rng.usize(100_000..400_000),
        };
        if len > 4096 {
            return "x".repeat(len);
        }
        (0..len)
            .map(|_| PALETTE[self.rng.usize(..PALETTE.len())])
            .collect()
    }

    fn key(&mut self) -> String {
        if self.rng.bool() {
            FIELDS[self.rng.usize(..FIELDS.len())].to_owned()
        } else {
            self.string()
        }
    }

    fn value(&mut self, depth: u32) -> Value {
        match self.rng.u8(..10) {
            0 => Value::Null,
            1 => json!(self.rng.bool()),
            2 => json!(self.rng.i64(..)),
            3 => json!(self.rng.f64() * 1e9),
            4 | 5 => json!(self.string()),
            6 if depth < 4 => Value::Array(
                (0..self.rng.usize(..4))
                    .map(|_| self.value(depth + 1))
                    .collect(),
            ),
            7 if depth < 4 => Value::Object(
                (0..self.rng.usize(..4))
                    .map(|_| (self.key(), self.value(depth + 1)))
                    .collect(),
            ),
            8 => self.deep(),
            _ => json!(self.rng.u32(..)),
        }
    }

    /// Arrays or objects nested up to 300 deep (serde_json stops at 128).
    fn deep(&mut self) -> Value {
        let depth = self.rng.usize(1..300);
        let mut v = json!("bottom");
        for i in 0..depth {
            v = if i % 2 == 0 {
                json!([v])
            } else {
                json!({ "k": v })
            };
        }
        v
    }

    /// Every place in `doc` (object keys and array indices from the root).
    fn places(doc: &Value, at: &mut Vec<Vec<Place>>, path: Vec<Place>) {
        at.push(path.clone());
        match doc {
            Value::Object(map) => {
                for (k, v) in map {
                    let mut p = path.clone();
                    p.push(Place::Key(k.clone()));
                    Fuzz::places(v, at, p);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let mut p = path.clone();
                    p.push(Place::Index(i));
                    Fuzz::places(v, at, p);
                }
            }
            _ => {}
        }
    }

    fn at<'v>(doc: &'v mut Value, path: &[Place]) -> &'v mut Value {
        path.iter().fold(doc, |v, p| match p {
            Place::Key(k) => &mut v[k.as_str()],
            Place::Index(i) => &mut v[*i],
        })
    }

    fn mutate(&mut self, doc: &mut Value) {
        let mut places = Vec::new();
        Fuzz::places(doc, &mut places, Vec::new());
        let path = places[self.rng.usize(..places.len())].clone();
        let op = self.rng.u8(..8);
        let target = Fuzz::at(doc, &path);
        match (op, target) {
            (0..=2, target) => *target = self.value(0),
            (3, Value::Object(map)) => {
                let (k, v) = (self.key(), self.value(0));
                map.insert(k, v);
            }
            (4, Value::Object(map)) if !map.is_empty() => {
                let k = map.keys().nth(self.rng.usize(..map.len())).unwrap().clone();
                map.remove(&k);
            }
            (5, Value::Array(items)) => {
                let v = self.value(0);
                items.push(v);
            }
            (6, Value::Array(items)) if !items.is_empty() => {
                let i = self.rng.usize(..items.len());
                let copy = items[i].clone();
                items.push(copy);
            }
            (_, target) => *target = json!(self.string()),
        }
    }

    /// A string without NUL (what a valid spec may hold).
    fn text(&mut self) -> String {
        self.string().replace('\0', "")
    }

    /// Changes that keep the document well-typed, so that many apply: env,
    /// args, image tags, the policy and the grace period, with strange text.
    fn gentle(&mut self, doc: &mut Value) {
        let containers = doc["containers"].as_array().map_or(0, Vec::len);
        let c = &mut doc["containers"][self.rng.usize(..containers)];
        match self.rng.u8(..5) {
            0 => {
                let (k, v) = (self.text().replace('=', ""), self.text());
                if c["env"].is_null() {
                    c["env"] = json!({});
                }
                c["env"][k] = json!(v);
            }
            1 => c["args"] = json!([self.text(), self.text()]),
            2 => c["image"] = json!(format!("{NO_REGISTRY}/busybox:{}", self.rng.u16(..))),
            3 => doc["restart"] = json!(["always", "on_failure", "never"][self.rng.usize(..3)]),
            _ => doc["stop_grace_period_s"] = json!(self.rng.u32(..4000)),
        }
    }

    /// One document as sent: usually a mutated valid spec, sometimes broken
    /// text.
    fn document(&mut self) -> String {
        let mut doc = self.base();
        if self.rng.u8(..4) == 0 {
            for _ in 0..self.rng.usize(1..4) {
                self.gentle(&mut doc);
            }
            return doc.to_string();
        }
        for _ in 0..self.rng.usize(1..5) {
            self.mutate(&mut doc);
        }
        let mut text = doc.to_string();
        match self.rng.u8(..20) {
            0 => {
                // A cut may land inside a multi-byte character.
                let mut end = self.rng.usize(..=text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            1 => text.push_str(" trailing"),
            2 => text = format!("{text}{text}"),
            _ => {}
        }
        text
    }
}

#[derive(Clone, Debug)]
enum Place {
    Key(String),
    Index(usize),
}

#[tokio::test]
async fn fuzzed_specs_always_get_a_named_answer_and_tankd_keeps_its_name() {
    const CASES: usize = 2500;
    const SEED: u64 = 0x7a4b_2026;
    // A mutation may turn an image into any valid reference: this thread,
    // and so the bus and tankd it starts, gets a network namespace of its
    // own (loopback down), so that no pull reaches anywhere and nothing
    // starts.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let bus = SystemBus::start();
    let mut tankd = Tankd::start(&bus);
    let conn = bus.connect().await;
    let me = owner(&conn).await;
    let mut fuzz = Fuzz {
        rng: fastrand::Rng::with_seed(SEED),
    };
    let started = Instant::now();
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    let mut applied = std::collections::HashSet::new();
    for case in 0..CASES {
        let text = fuzz.document();
        assert!(!text.contains('\0'), "a D-Bus string carries no NUL");
        // Now and then the wrong D-Bus types around it.
        let (answer, want_invalid_args) = match fuzz.rng.u8(..40) {
            0 => (call(&conn, "Apply", &(text.as_str(), 1u32)).await, true),
            1 => (call(&conn, "Apply", &(text.len() as u64,)).await, true),
            _ => (apply(&conn, &text).await, false),
        };
        let outcome = match answer {
            Ok(reply) => {
                assert!(!want_invalid_args, "case {case}: accepted wrong types");
                let path: OwnedObjectPath = reply.body().deserialize().unwrap();
                if applied.insert(path.clone()) || case % 50 == 0 {
                    // What was stored comes back, as JSON.
                    let name = path
                        .as_str()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .replace("_2d", "-");
                    let reply = call(&conn, "Get", &(name.as_str(),)).await.unwrap();
                    let doc: String = reply.body().deserialize().unwrap();
                    serde_json::from_str::<Value>(&doc).expect("Get returns JSON");
                }
                "applied".to_owned()
            }
            Err((name, message)) => {
                if want_invalid_args {
                    assert_eq!(name, INVALID_ARGS, "case {case}: {message}");
                } else {
                    assert_eq!(
                        name,
                        INVALID_SPEC,
                        "case {case} (seed {SEED:#x}): {}\n{}",
                        message.chars().take(300).collect::<String>(),
                        text.chars().take(2000).collect::<String>()
                    );
                }
                assert!(
                    !message.is_empty() && message.len() <= 4096,
                    "case {case}: a message of {} bytes: {}…",
                    message.len(),
                    message.chars().take(300).collect::<String>()
                );
                name
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
        if case % 250 == 0 {
            still_serving(&conn, &me).await;
        }
    }
    let elapsed = started.elapsed();
    eprintln!("{CASES} fuzzed Apply calls in {elapsed:?}: {outcomes:?}");
    still_serving(&conn, &me).await;
    assert!(
        tankd.wait_exit_within(Duration::ZERO).is_none(),
        "tankd still runs"
    );
    assert!(
        outcomes.get("applied").copied().unwrap_or(0) >= 50,
        "{outcomes:?}"
    );
    assert!(
        outcomes.get(INVALID_SPEC).copied().unwrap_or(0) >= 1000,
        "{outcomes:?}"
    );
    assert!(
        outcomes.get(INVALID_ARGS).copied().unwrap_or(0) >= 20,
        "{outcomes:?}"
    );
    // What everyone reads stays bounded: one object per pod, of at most
    // 256 KiB each.
    let om = zbus::fdo::ObjectManagerProxy::builder(&conn)
        .destination(DEST)
        .unwrap()
        .path("/org/tank")
        .unwrap()
        .build()
        .await
        .unwrap();
    let objects = om.get_managed_objects().await.expect("GetManagedObjects");
    let pods = objects
        .keys()
        .filter(|p| p.as_str().starts_with("/org/tank/pod/"))
        .count();
    assert_eq!(pods, applied.len());
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
}

#[test]
fn tankd_exits_non_zero_when_its_bus_goes_away() {
    let mut bus = SystemBus::start();
    let home = TankdHome::new();
    let mut tankd = Tankd::start_in(&bus, &home);
    tankd.apply(&serde_json::from_str(&pod_json("web", "busybox")).unwrap());
    let started = Instant::now();
    bus.restart();
    let status = tankd
        .wait_exit_within(Duration::from_secs(2).saturating_sub(started.elapsed()))
        .unwrap_or_else(|| {
            panic!(
                "tankd still runs 2 s after its bus went away; its log:\n{}",
                std::fs::read_to_string(&tankd.log).unwrap_or_default()
            )
        });
    eprintln!(
        "tankd exited ({status}) {:?} after its bus was stopped",
        started.elapsed()
    );
    assert!(!status.success(), "{status}");
    let log = std::fs::read_to_string(&tankd.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("lost the system bus")),
        "{log}"
    );
    // What systemd does next (Restart=on-failure): a new tankd on the new
    // bus serves the same desired state.
    let tankd = Tankd::start_in(&bus, &home);
    let ps = ok(&tankd.tankctl(&["ps"]));
    assert!(ps.contains("web "), "{ps}");
}
