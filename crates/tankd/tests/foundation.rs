//! Foundation: tankd on a real (private) system bus with a real RocksDB
//! store, driven through tankctl, busctl and a zbus client.

mod support;

use std::collections::HashMap;

use support::{failed, ok, pod_json, SystemBus, Tankd, TankdHome, NOBODY};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

const SECRET_POD: &str = r#"{"name": "web", "containers": [{"name": "app", "image": "127.0.0.1:9/busybox:1.36",
    "env": {"TOKEN": "s3cret"}}]}"#;

#[test]
fn apply_get_list_delete_through_tankctl() {
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    std::fs::write(
        &file,
        "name: web\nrestart: on_failure\ncontainers:\n  - name: app\n    image: 127.0.0.1:9/busybox:1.36\n    env:\n      A: b\n",
    )
    .unwrap();

    let out = ok(&tankd.tankctl(&["apply", "-f", file.to_str().unwrap()]));
    assert_eq!(out, "pod/web applied (generation 1)\n");
    // JSON from stdin.
    let out = ok(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(&pod_json("api", "busybox"))));
    assert_eq!(out, "pod/api applied (generation 1)\n");

    let json = ok(&tankd.tankctl(&["get", "web", "-o", "json"]));
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["name"], "web");
    assert_eq!(doc["generation"], 1);
    assert_eq!(doc["phase"], "Pending");
    assert_eq!(doc["spec"]["restart"], "on_failure");
    assert_eq!(
        doc["spec"]["containers"][0]["env"]["A"], "b",
        "root sees env values"
    );

    let yaml = ok(&tankd.tankctl(&["get", "web", "-o", "yaml"]));
    assert!(yaml.contains("name: web\n"), "{yaml}");
    let table = ok(&tankd.tankctl(&["get", "web"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME   PHASE "), "{table}");
    assert!(lines[1].starts_with("web    Pending "), "{table}");

    let ps = ok(&tankd.tankctl(&["ps"]));
    let lines: Vec<&str> = ps.lines().collect();
    assert_eq!(lines.len(), 3, "{ps}");
    assert!(lines[0].starts_with("NAME"));
    assert!(
        lines[1].starts_with("api ") && lines[2].starts_with("web "),
        "{ps}"
    );
    assert_eq!(ok(&tankd.tankctl(&["list"])).lines().count(), 3);

    // Re-applying the same spec is a no-op; a change bumps the generation.
    let out = ok(&tankd.tankctl(&["apply", "-f", file.to_str().unwrap()]));
    assert_eq!(out, "pod/web applied (generation 1)\n");
    std::fs::write(
        &file,
        "name: web\ncontainers:\n  - name: app\n    image: 127.0.0.1:9/busybox:1.37\n",
    )
    .unwrap();
    let out = ok(&tankd.tankctl(&["apply", "-f", file.to_str().unwrap()]));
    assert_eq!(out, "pod/web applied (generation 2)\n");

    assert_eq!(
        ok(&tankd.tankctl(&["delete", "--wait", "web"])),
        "pod/web deleted\n"
    );
    let err = failed(&tankd.tankctl(&["get", "web"]));
    assert_eq!(err, "tankctl: pod \"web\" not found\n");
    let err = failed(&tankd.tankctl(&["delete", "web"]));
    assert_eq!(err, "tankctl: pod \"web\" not found\n");
    let ps = ok(&tankd.tankctl(&["ps"]));
    assert_eq!(ps.lines().count(), 2, "{ps}");
}

#[test]
fn apply_through_busctl() {
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    let out = ok(&bus.busctl(&[
        "call",
        "org.tank.Manager",
        "/org/tank/Manager",
        "org.tank.Manager",
        "Apply",
        "s",
        &pod_json("web-1", "busybox"),
    ]));
    assert_eq!(out, "o \"/org/tank/pod/web_2d1\"\n");
    let out = ok(&bus.busctl(&[
        "call",
        "org.tank.Manager",
        "/org/tank/Manager",
        "org.tank.Manager",
        "ListPods",
    ]));
    assert_eq!(
        out,
        "a(sos) 1 \"web-1\" \"/org/tank/pod/web_2d1\" \"Pending\"\n"
    );
    let out = ok(&bus.busctl(&[
        "get-property",
        "org.tank.Manager",
        "/org/tank/pod/web_2d1",
        "org.tank.Pod",
        "Generation",
    ]));
    assert_eq!(out, "t 1\n");
    ok(&bus.busctl(&[
        "call",
        "org.tank.Manager",
        "/org/tank/Manager",
        "org.tank.Manager",
        "Delete",
        "s",
        "web-1",
    ]));
    // Terminating until the loop has torn it down, then gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ok(&tankd.tankctl(&["ps"])).lines().count() != 1 {
        assert!(std::time::Instant::now() < deadline, "web-1 never went");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn invalid_specs_are_rejected_with_the_field_path_and_nothing_is_stored() {
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    let bad = r#"{"name": "web", "volumes": [{"name": "data"}, {"name": "conf"}],
        "containers": [{"name": "a", "image": "127.0.0.1:9/busybox"},
                       {"name": "b", "image": "127.0.0.1:9/busybox", "mounts": [{"volume": "dat", "path": "/d"}]}]}"#;
    let out = bus.busctl(&[
        "call",
        "org.tank.Manager",
        "/org/tank/Manager",
        "org.tank.Manager",
        "Apply",
        "s",
        bad,
    ]);
    let err = failed(&out);
    assert!(
        err.contains(
            r#"containers[1].mounts[0].volume: no volume "dat" (pod defines: data, conf)"#
        ),
        "{err}"
    );
    let err = failed(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(bad)));
    assert_eq!(
        err,
        "tankctl: invalid spec: containers[1].mounts[0].volume: no volume \"dat\" (pod defines: data, conf)\n"
    );
    // Unknown field, bad name, not JSON at all.
    for (doc, expected) in [
        (
            r#"{"name": "web", "containers": [{"name": "a", "image": "127.0.0.1:9/busybox", "imagee": "x"}]}"#,
            "containers[0]",
        ),
        (&pod_json("Web_1", "busybox") as &str, "name:"),
        ("this is not json", "expected a JSON object"),
    ] {
        let err = failed(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(doc)));
        assert!(err.starts_with("tankctl: "), "{err}");
        assert!(err.contains(expected), "{err}");
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    }
    // Nothing was stored, and nothing was exported.
    assert_eq!(ok(&tankd.tankctl(&["ps"])).lines().count(), 1);
}

/// tankctl reads documents with tank-api's one strict reader, the one
/// tankd's Apply uses: a repeated key (which serde alone would resolve
/// silently, the last one winning) is refused by both, with one message,
/// and nothing is stored.
#[tokio::test]
async fn a_repeated_key_is_refused_by_tankctl_exactly_as_by_tankd() {
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    let conn = bus.connect().await;
    for document in [
        r#"{"name": "web", "name": "api", "containers": [{"name": "a", "image": "127.0.0.1:9/busybox"}]}"#,
        r#"{"name": "web", "containers": [{"name": "a", "image": "127.0.0.1:9/busybox",
            "env": {"A": "1", "A": "2"}}]}"#,
    ] {
        let reply = conn
            .call_method(
                Some("org.tank.Manager"),
                "/org/tank/Manager",
                Some("org.tank.Manager"),
                "Apply",
                &(document,),
            )
            .await;
        let tankd_says = match reply {
            Err(zbus::Error::MethodError(name, Some(message), _)) => {
                assert_eq!(name.as_str(), "org.tank.Error.InvalidSpec");
                message
            }
            other => panic!("tankd accepted a repeated key: {other:?}"),
        };
        assert!(tankd_says.contains("duplicate key"), "{tankd_says}");
        let tankctl_says = failed(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(document)));
        assert_eq!(
            tankctl_says,
            format!("tankctl: invalid spec: {tankd_says}\n")
        );
    }
    // YAML (tankctl's other syntax; tankd reads it from pods_dir): refused
    // as well, by the same reader.
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("web.yaml");
    std::fs::write(
        &yaml,
        "name: web\ncontainers:\n  - name: a\n    image: 127.0.0.1:9/busybox\n    image: nginx\n",
    )
    .unwrap();
    let err = failed(&tankd.tankctl(&["apply", "-f", yaml.to_str().unwrap()]));
    assert_eq!(
        err,
        "tankctl: invalid spec: invalid YAML: containers[0]: duplicate key \"image\" at line 3 column 5\n"
    );
    assert_eq!(
        ok(&tankd.tankctl(&["ps"])).lines().count(),
        1,
        "nothing stored"
    );
}

#[tokio::test]
async fn errors_have_precise_dbus_names() {
    let bus = SystemBus::start();
    let _tankd = Tankd::start(&bus);
    let conn = bus.connect().await;
    let call = |method: &'static str, arg: String| {
        let conn = conn.clone();
        async move {
            conn.call_method(
                Some("org.tank.Manager"),
                "/org/tank/Manager",
                Some("org.tank.Manager"),
                method,
                &(arg,),
            )
            .await
        }
    };
    let name_of = |r: zbus::Result<zbus::Message>| match r {
        Err(zbus::Error::MethodError(name, _, _)) => name.to_string(),
        other => panic!("expected a method error, got {other:?}"),
    };
    assert_eq!(
        name_of(call("Apply", "{}".into()).await),
        "org.tank.Error.InvalidSpec"
    );
    assert_eq!(
        name_of(call("Get", "nope".into()).await),
        "org.tank.Error.NotFound"
    );
    assert_eq!(
        name_of(call("Delete", "nope".into()).await),
        "org.tank.Error.NotFound"
    );
}

#[test]
fn state_survives_a_restart() {
    let bus = SystemBus::start();
    let home = TankdHome::new();
    let tankd = Tankd::start_in(&bus, &home);
    ok(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(&pod_json("web", "busybox:1"))));
    ok(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(&pod_json("web", "busybox:2"))));
    ok(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(&pod_json("db", "busybox:1"))));
    // Desired state (not the observed status) is what must survive.
    let desired = |tankd: &Tankd| {
        let mut doc: serde_json::Value =
            serde_json::from_str(&ok(&tankd.tankctl(&["get", "web", "-o", "json"]))).unwrap();
        let map = doc.as_object_mut().unwrap();
        map.remove("status");
        map.remove("phase");
        doc
    };
    let before = desired(&tankd);
    assert_eq!(before["generation"], 2);
    assert!(tankd.stop().success(), "clean stop on SIGTERM");

    let tankd = Tankd::start_in(&bus, &home);
    assert_eq!(desired(&tankd), before);
    assert_eq!(ok(&tankd.tankctl(&["ps"])).lines().count(), 3);
}

#[tokio::test]
async fn kill_9_right_after_apply_loses_nothing() {
    let bus = SystemBus::start();
    let home = TankdHome::new();
    for i in 0..50 {
        let tankd = Tankd::start_in(&bus, &home);
        let conn = bus.connect().await;
        let reply = conn
            .call_method(
                Some("org.tank.Manager"),
                "/org/tank/Manager",
                Some("org.tank.Manager"),
                "Apply",
                &(pod_json(&format!("pod-{i}"), "busybox"),),
            )
            .await
            .expect("apply");
        let _: OwnedObjectPath = reply.body().deserialize().unwrap();
        // The reply is in: tankd dies now, before it could do anything else.
        tankd.kill9();
        drop(conn);
    }
    let tankd = Tankd::start_in(&bus, &home);
    let ps = ok(&tankd.tankctl(&["ps"]));
    for i in 0..50 {
        assert!(ps.contains(&format!("pod-{i} ")), "pod-{i} lost:\n{ps}");
    }
    assert_eq!(ps.lines().count(), 51);
}

/// No polkitd on this bus: tankd fails closed for everyone but root
/// (tests/polkit.rs has the cases with a real polkitd).
#[test]
fn without_polkit_non_root_callers_cannot_mutate_and_reads_are_redacted() {
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    ok(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(SECRET_POD)));

    let evil = format!("'{}'", pod_json("evil", "busybox"));
    for (method, arg) in [("Apply", evil.as_str()), ("Delete", "'web'")] {
        // gdbus shows the error's name (busctl only "Access denied").
        let out = support::polkit::gdbus_as(NOBODY, &bus, method, &[arg], false);
        let err = failed(&out);
        assert!(
            err.contains(
                "GDBus.Error:org.freedesktop.DBus.Error.AccessDenied: uid 65534 is not \
                 authorized for org.tank.pods.manage: polkit is unavailable"
            ),
            "{err}"
        );
    }
    // Nothing changed.
    let ps = ok(&tankd.tankctl(&["ps"]));
    assert_eq!(ps.lines().count(), 2, "{ps}");

    // Reads are open, but never show env values.
    let out = ok(&bus.busctl_as(
        NOBODY,
        &[
            "call",
            "org.tank.Manager",
            "/org/tank/Manager",
            "org.tank.Manager",
            "ListPods",
        ],
    ));
    assert!(out.contains("\"web\""), "{out}");
    let out = ok(&bus.busctl_as(
        NOBODY,
        &[
            "call",
            "org.tank.Manager",
            "/org/tank/Manager",
            "org.tank.Manager",
            "Get",
            "s",
            "web",
        ],
    ));
    assert!(!out.contains("s3cret") && out.contains("redacted"), "{out}");
    let out = ok(&bus.busctl_as(
        NOBODY,
        &[
            "get-property",
            "org.tank.Manager",
            "/org/tank/pod/web",
            "org.tank.Pod",
            "Spec",
        ],
    ));
    assert!(!out.contains("s3cret") && out.contains("redacted"), "{out}");
    // Root sees the value through Get.
    let out = ok(&tankd.tankctl(&["get", "web", "-o", "json"]));
    assert!(out.contains("s3cret"), "{out}");
}

#[tokio::test]
async fn object_manager_and_property_changes() {
    use futures_util::StreamExt;
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    ok(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(&pod_json("web", "busybox:1"))));
    let conn = bus.connect().await;
    let om = zbus::fdo::ObjectManagerProxy::builder(&conn)
        .destination("org.tank.Manager")
        .unwrap()
        .path("/org/tank")
        .unwrap()
        .build()
        .await
        .unwrap();
    let objects = om.get_managed_objects().await.unwrap();
    let pod = objects
        .get(&OwnedObjectPath::try_from("/org/tank/pod/web").unwrap())
        .expect("pod object under the ObjectManager");
    let props: &HashMap<String, OwnedValue> = pod
        .iter()
        .find(|(name, _)| name.as_str() == "org.tank.Pod")
        .map(|(_, p)| p)
        .unwrap();
    assert_eq!(String::try_from(props["Name"].clone()).unwrap(), "web");
    assert_eq!(String::try_from(props["Phase"].clone()).unwrap(), "Pending");
    assert_eq!(u64::try_from(props["Generation"].clone()).unwrap(), 1);

    let properties = zbus::fdo::PropertiesProxy::builder(&conn)
        .destination("org.tank.Manager")
        .unwrap()
        .path("/org/tank/pod/web")
        .unwrap()
        .build()
        .await
        .unwrap();
    let mut changes = properties.receive_properties_changed().await.unwrap();
    let mut added = om.receive_interfaces_added().await.unwrap();
    let mut removed = om.receive_interfaces_removed().await.unwrap();

    ok(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(&pod_json("web", "busybox:2"))));
    let timeout = std::time::Duration::from_secs(10);
    let mut generation = None;
    while generation.is_none() {
        let signal = tokio::time::timeout(timeout, changes.next())
            .await
            .expect("PropertiesChanged within 10 s")
            .unwrap();
        let args = signal.args().unwrap();
        assert_eq!(args.interface_name.as_str(), "org.tank.Pod");
        generation = args
            .changed_properties
            .get("Generation")
            .map(|v| u64::try_from(v).unwrap());
    }
    assert_eq!(generation, Some(2));

    ok(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(&pod_json("db", "busybox"))));
    let signal = tokio::time::timeout(timeout, added.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        signal.args().unwrap().object_path.as_str(),
        "/org/tank/pod/db"
    );
    ok(&tankd.tankctl(&["delete", "db"]));
    let signal = tokio::time::timeout(timeout, removed.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        signal.args().unwrap().object_path.as_str(),
        "/org/tank/pod/db"
    );
}

#[tokio::test]
async fn introspection_matches_the_contract() {
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    ok(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(&pod_json("web", "busybox"))));
    let conn = bus.connect().await;
    for (path, interface, file) in [
        (
            "/org/tank/Manager",
            "org.tank.Manager",
            "dbus/org.tank.Manager.xml",
        ),
        ("/org/tank/pod/web", "org.tank.Pod", "dbus/org.tank.Pod.xml"),
    ] {
        let live = zbus::fdo::IntrospectableProxy::builder(&conn)
            .destination("org.tank.Manager")
            .unwrap()
            .path(path)
            .unwrap()
            .build()
            .await
            .unwrap()
            .introspect()
            .await
            .unwrap();
        let contract = std::fs::read_to_string(support::workspace_root().join(file)).unwrap();
        assert_eq!(
            interface_shape(&live, interface),
            interface_shape(&contract, interface),
            "live introspection of {path} differs from {file}"
        );
    }
}

/// The methods, signals and properties of one interface, with argument
/// names, types and directions and property access, in a comparable form.
fn interface_shape(xml: &str, interface: &str) -> Vec<String> {
    let node = zbus_xml::Node::from_reader(xml.as_bytes()).expect("valid introspection XML");
    let iface = node
        .interfaces()
        .iter()
        .find(|i| i.name().as_str() == interface)
        .unwrap_or_else(|| panic!("{interface} missing from:\n{xml}"));
    let args = |args: &[zbus_xml::Arg]| {
        args.iter()
            .map(|a| {
                format!(
                    "{}:{:?}:{:?}",
                    a.name().unwrap_or("-"),
                    a.ty(),
                    a.direction()
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut shape = Vec::new();
    for m in iface.methods() {
        shape.push(format!("method {}({})", m.name(), args(m.args())));
    }
    for s in iface.signals() {
        shape.push(format!("signal {}({})", s.name(), args(s.args())));
    }
    for p in iface.properties() {
        shape.push(format!(
            "property {} {:?} {:?}",
            p.name(),
            p.ty(),
            p.access()
        ));
    }
    shape.sort();
    shape
}

#[test]
fn boot_seeding_on_a_fresh_store_only() {
    let bus = SystemBus::start();
    let home = TankdHome::new();
    std::fs::write(home.pods_dir().join("web.json"), pod_json("web", "busybox")).unwrap();
    std::fs::write(
        home.pods_dir().join("db.yaml"),
        "name: db\ncontainers:\n  - name: main\n    image: 127.0.0.1:9/busybox\n",
    )
    .unwrap();
    std::fs::write(home.pods_dir().join("broken.json"), "{").unwrap();
    let tankd = Tankd::start_in(&bus, &home);
    let ps = ok(&tankd.tankctl(&["ps"]));
    assert_eq!(ps.lines().count(), 3, "{ps}");
    ok(&tankd.tankctl(&["delete", "web"]));
    tankd.stop();

    // The seed is not applied again: the runtime delete stands.
    let tankd = Tankd::start_in(&bus, &home);
    let ps = ok(&tankd.tankctl(&["ps"]));
    assert_eq!(ps.lines().count(), 2, "{ps}");
    assert!(ps.contains("db "), "{ps}");
}

#[test]
fn a_second_tankd_refuses_to_start() {
    let bus = SystemBus::start();
    let home = TankdHome::new();
    let _first = Tankd::start_in(&bus, &home);
    // Same store: RocksDB's lock.
    let mut second = Tankd::spawn(&bus, &home);
    assert!(second.wait_ready().is_err());
    assert!(!second.wait_exit().success());
    // Another store, same bus: the name is taken.
    let mut third = Tankd::spawn(&bus, &TankdHome::new());
    assert!(third.wait_ready().is_err());
    assert!(!third.wait_exit().success());
}

#[test]
fn tankctl_without_tankd_says_so() {
    let bus = SystemBus::start();
    let err = failed(&bus.tankctl(&["ps"]));
    assert_eq!(
        err,
        "tankctl: tankd is not running (org.tank.Manager is not on the system bus)\n"
    );
}

#[test]
fn tankd_raises_its_soft_nofile_limit_to_the_hard_one() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    // As under systemd: a low soft limit (1024) below a higher hard one.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 1024.min(hard), hard).unwrap();
    let bus = SystemBus::start();
    let tankd = Tankd::start(&bus);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", tankd.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], hard.to_string(), "soft limit: {line}");
    assert_eq!(fields[4], hard.to_string(), "hard limit untouched: {line}");
}
