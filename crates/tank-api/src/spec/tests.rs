//! Parsing, serde forms and round trips. The validation rules are tested in
//! `validate.rs`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::*;

/// The example document of DESIGN §3.
const DESIGN_EXAMPLE: &str = r#"
{"name": "api", "restart": "always",
 "network": {"nics": [{"name": "eth0", "parent": "auto", "ip": "10.0.0.20/24",
                       "gateway": "10.0.0.1"}], "dns": ["10.0.0.1"]},
 "volumes": [{"name": "state"}, {"name": "conf", "source": {"host": "/etc/api"}}],
 "containers": [{"name": "app", "image": "ghcr.io/acme/api:1.4.2",
   "command": ["/usr/bin/api"], "args": ["--port", "8080"], "env": {"PORT": "8080"},
   "working_dir": "/srv", "tty": false,
   "mounts": [{"volume": "state", "path": "/var/lib/app"},
              {"volume": "conf", "path": "/etc/api", "read_only": true}],
   "limits": {"memory": 536870912, "pids": 200,
              "cpu": {"quota_us": 100000, "period_us": 100000}}}]}
"#;

fn minimal() -> Value {
    json!({"name": "web", "containers": [{"name": "app", "image": "busybox:1.36"}]})
}

fn error(doc: Value) -> String {
    Pod::new(doc).unwrap_err().to_string()
}

#[test]
fn design_example_parses() {
    let pod = Pod::from_json(DESIGN_EXAMPLE).unwrap();
    assert_eq!(pod.name, "api");
    assert_eq!(pod.restart, RestartPolicy::Always);
    assert_eq!(pod.stop_grace_period_s, 10);
    assert_eq!(
        pod.network,
        Network::Nics(NicNetwork {
            nics: vec![Nic {
                name: "eth0".into(),
                parent: "auto".into(),
                ip: "10.0.0.20/24".parse().unwrap(),
                gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
            }],
            dns: Some(vec![Ipv4Addr::new(10, 0, 0, 1)]),
        })
    );
    assert_eq!(
        pod.volumes,
        [
            Volume {
                name: "state".into(),
                source: None
            },
            Volume {
                name: "conf".into(),
                source: Some(VolumeSource::Host("/etc/api".into())),
            },
        ]
    );
    let app = pod.container("app").unwrap();
    assert_eq!(app.image, Image::Reference("ghcr.io/acme/api:1.4.2".into()));
    assert_eq!(
        app.command.as_deref(),
        Some(&["/usr/bin/api".to_owned()][..])
    );
    assert_eq!(app.args.as_ref().unwrap(), &["--port", "8080"]);
    assert_eq!(app.env, BTreeMap::from([("PORT".into(), "8080".into())]));
    assert_eq!(app.working_dir, Some(PathBuf::from("/srv")));
    assert!(!app.tty);
    assert_eq!(
        app.mounts[1],
        Mount {
            volume: "conf".into(),
            path: "/etc/api".into(),
            read_only: true,
        }
    );
    assert_eq!(
        app.limits,
        Limits {
            memory: Some(536_870_912),
            pids: Some(200),
            cpu: Some(CpuLimit {
                quota_us: 100_000,
                period_us: 100_000,
            }),
        }
    );
    assert!(pod.container("db").is_none());
}

#[test]
fn defaults_are_filled_in() {
    let pod = Pod::new(minimal()).unwrap();
    assert_eq!(pod.restart, RestartPolicy::Always);
    assert_eq!(pod.network, Network::None);
    assert!(pod.volumes.is_empty());
    assert_eq!(pod.stop_grace_period_s, 10);
    let app = &pod.containers[0];
    assert_eq!(app.command, None);
    assert_eq!(app.args, None);
    assert!(app.env.is_empty());
    assert_eq!(app.working_dir, None);
    assert!(!app.tty);
    assert!(app.mounts.is_empty());
    assert_eq!(app.limits, Limits::default());

    let mut doc = minimal();
    doc["network"] = json!({"nics": [{"name": "eth0", "ip": "10.0.0.2/24"}]});
    doc["volumes"] = json!([{"name": "data"}]);
    doc["containers"][0]["mounts"] = json!([{"volume": "data", "path": "/data"}]);
    doc["containers"][0]["limits"] = json!({"cpu": {"quota_us": 50000}});
    let pod = Pod::new(doc).unwrap();
    let Network::Nics(net) = &pod.network else {
        panic!("expected NICs, got {:?}", pod.network)
    };
    assert_eq!(net.nics[0].parent, "auto");
    assert_eq!(net.dns, None);
    assert!(!pod.containers[0].mounts[0].read_only);
    assert_eq!(
        pod.containers[0].limits.cpu,
        Some(CpuLimit {
            quota_us: 50_000,
            period_us: 100_000,
        })
    );
}

#[test]
fn restart_policies() {
    for (text, policy) in [
        ("always", RestartPolicy::Always),
        ("on_failure", RestartPolicy::OnFailure),
        ("never", RestartPolicy::Never),
    ] {
        let mut doc = minimal();
        doc["restart"] = json!(text);
        assert_eq!(Pod::new(doc).unwrap().restart, policy);
    }
    let mut doc = minimal();
    doc["restart"] = json!("sometimes");
    assert_eq!(
        error(doc),
        "restart: unknown variant `sometimes`, expected one of `always`, `on_failure`, `never`"
    );
}

#[test]
fn network_forms() {
    let network = |value: Value| {
        let mut doc = minimal();
        doc["network"] = value;
        Pod::new(doc).map(|pod| pod.network)
    };
    assert_eq!(network(json!("none")).unwrap(), Network::None);
    assert_eq!(network(json!("host")).unwrap(), Network::Host);
    let nics = network(json!({"nics": [{"name": "eth0", "ip": "10.0.0.2/24"}], "dns": []}));
    assert!(matches!(nics.unwrap(), Network::Nics(n) if n.dns == Some(vec![])));

    let message = |value| network(value).unwrap_err().to_string();
    assert_eq!(
        message(json!("bridge")),
        r#"network: invalid value: string "bridge", expected "none", "host" or a {"nics": [...]} object"#
    );
    assert_eq!(
        message(json!(7)),
        r#"network: invalid type: integer `7`, expected "none", "host" or a {"nics": [...]} object"#
    );
    assert_eq!(message(json!({"dns": []})), "network: missing field `nics`");
    assert_eq!(
        message(json!({"nics": [], "mtu": 1500})),
        "network.mtu: unknown field `mtu`, expected `nics` or `dns`"
    );
    assert_eq!(
        message(json!({"nics": [{"name": "eth0", "ip": "10.0.0.2/24", "mac": "x"}]})),
        "network.nics[0].mac: unknown field `mac`, expected one of `name`, `parent`, `ip`, `gateway`"
    );
}

#[test]
fn image_forms() {
    let image = |value: Value| {
        let mut doc = minimal();
        doc["containers"][0]["image"] = value;
        Pod::new(doc).map(|pod| pod.containers[0].image.clone())
    };
    let digest = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(
        image(json!(format!("docker.io/library/busybox@{digest}"))).unwrap(),
        Image::Reference(format!("docker.io/library/busybox@{digest}"))
    );
    assert_eq!(
        image(json!({"rootfs": "/srv/rootfs"})).unwrap(),
        Image::Rootfs("/srv/rootfs".into())
    );

    let message = |value| image(value).unwrap_err().to_string();
    assert_eq!(
        message(json!(["busybox"])),
        r#"containers[0].image: invalid type: sequence, expected an image reference or a {"rootfs": "/abs/path"} object"#
    );
    assert_eq!(
        message(json!({})),
        "containers[0].image: missing field `rootfs`"
    );
    assert_eq!(
        message(json!({"rootfs": "/r", "tag": "x"})),
        "containers[0].image.tag: unknown field `tag`, expected `rootfs`"
    );
}

#[test]
fn volume_source_form() {
    let mut doc = minimal();
    doc["volumes"] = json!([{"name": "conf", "source": {"nfs": "/x"}}]);
    assert_eq!(
        error(doc),
        "volumes[0].source: unknown variant `nfs`, expected `host`"
    );
}

#[test]
fn serde_errors_carry_the_path() {
    let mut doc = minimal();
    doc["containers"][0]["imag"] = json!("x");
    assert_eq!(
        error(doc),
        "containers[0].imag: unknown field `imag`, expected one of `name`, `image`, `command`, \
         `args`, `env`, `working_dir`, `tty`, `mounts`, `limits`, `seccomp`, `stop_signal`"
    );

    let mut doc = minimal();
    doc["labels"] = json!({});
    assert_eq!(
        error(doc),
        "labels: unknown field `labels`, expected one of `name`, `restart`, `network`, \
         `volumes`, `containers`, `stop_grace_period_s`"
    );

    let mut doc = minimal();
    doc["containers"][0]["tty"] = json!("yes");
    assert_eq!(
        error(doc),
        r#"containers[0].tty: invalid type: string "yes", expected a boolean"#
    );

    let mut doc = minimal();
    doc["containers"][0]["env"] = json!({"PORT": 8080});
    assert_eq!(
        error(doc),
        "containers[0].env.PORT: invalid type: integer `8080`, expected a string"
    );

    let mut doc = minimal();
    doc["stop_grace_period_s"] = json!(-1);
    assert_eq!(
        error(doc),
        "stop_grace_period_s: invalid value: integer `-1`, expected u32"
    );

    assert_eq!(
        error(json!("web")),
        r#"invalid type: string "web", expected a JSON object"#
    );
}

#[test]
fn missing_required_fields() {
    assert_eq!(error(json!({"containers": []})), "missing field `name`");
    assert_eq!(error(json!({"name": "web"})), "missing field `containers`");
    assert_eq!(
        error(json!({"name": "web", "containers": [{"image": "busybox"}]})),
        "containers[0]: missing field `name`"
    );
    assert_eq!(
        error(json!({"name": "web", "containers": [{"name": "app"}]})),
        "containers[0]: missing field `image`"
    );
}

#[test]
fn bad_addresses_carry_the_path() {
    let mut doc = minimal();
    doc["network"] = json!({"nics": [{"name": "eth0", "ip": "10.0.0.300/24"}]});
    assert_eq!(
        error(doc),
        r#"network.nics[0].ip: "10.0.0.300/24" is not an IPv4 CIDR: "10.0.0.300" is not an IPv4 address"#
    );

    let mut doc = minimal();
    doc["network"] = json!({"nics": [{"name": "eth0", "ip": "10.0.0.2"}]});
    assert_eq!(
        error(doc),
        r#"network.nics[0].ip: "10.0.0.2" is not an IPv4 CIDR: missing the "/prefix" part (e.g. "10.0.0.20/24")"#
    );

    let mut doc = minimal();
    doc["network"] = json!({"nics": [{"name": "eth0", "ip": "10.0.0.2/24", "gateway": "10.0.0"}]});
    assert_eq!(
        error(doc),
        "network.nics[0].gateway: invalid IPv4 address syntax"
    );

    let mut doc = minimal();
    doc["network"] =
        json!({"nics": [{"name": "eth0", "ip": "10.0.0.2/24"}], "dns": ["1.1.1.1", "dns.google"]});
    assert_eq!(error(doc), "network.dns[1]: invalid IPv4 address syntax");
}

#[test]
fn text_errors() {
    let err = Pod::from_json("{\"name\": ").unwrap_err();
    assert_eq!(err.path, "");
    assert!(err.message.starts_with("invalid JSON: "), "{err}");

    assert_eq!(
        Pod::from_json(r#"{"name": "a", "name": "b", "containers": []}"#)
            .unwrap_err()
            .to_string(),
        r#"invalid JSON: duplicate key "name" at line 1 column 20"#
    );

    let err = Pod::from_yaml("name: [web").unwrap_err();
    assert_eq!(err.path, "");
    assert!(err.message.starts_with("invalid YAML: "), "{err}");

    assert_eq!(
        Pod::from_yaml("name: web\ncontainers:\n- name: app\n  image: busybox\n  tty: 1\n")
            .unwrap_err()
            .to_string(),
        "containers[0].tty: invalid type: integer `1`, expected a boolean"
    );
}

#[test]
fn yaml_parses_like_json() {
    let yaml = r#"
name: api
network:
  nics:
  - name: eth0
    ip: 10.0.0.20/24
    gateway: 10.0.0.1
  dns: [10.0.0.1]
volumes:
- name: state
- name: conf
  source: {host: /etc/api}
containers:
- name: app
  image: ghcr.io/acme/api:1.4.2
  command: [/usr/bin/api]
  args: ["--port", "8080"]
  env: {PORT: "8080"}
  working_dir: /srv
  mounts:
  - {volume: state, path: /var/lib/app}
  - {volume: conf, path: /etc/api, read_only: true}
  limits:
    memory: 536870912
    pids: 200
    cpu: {quota_us: 100000, period_us: 100000}
"#;
    assert_eq!(
        Pod::from_yaml(yaml).unwrap(),
        Pod::from_json(DESIGN_EXAMPLE).unwrap()
    );
}

/// A pod using every field, with values that tempt a YAML emitter to
/// change their type ("8080", "yes", "1.36", "null").
fn everything() -> Pod {
    let mut doc: Value = serde_json::from_str(DESIGN_EXAMPLE).unwrap();
    doc["restart"] = json!("on_failure");
    doc["stop_grace_period_s"] = json!(30);
    doc["containers"][0]["env"] =
        json!({"PORT": "8080", "DEBUG": "yes", "EMPTY": "", "VERSION": "1.36", "NIL": "null"});
    doc["containers"][0]["tty"] = json!(true);
    doc["containers"].as_array_mut().unwrap().push(
        json!({"name": "sidecar", "image": {"rootfs": "/srv/rootfs"}, "args": [],
                     "seccomp": "unconfined"}),
    );
    Pod::new(doc).unwrap()
}

#[test]
fn json_round_trip() {
    for pod in [Pod::new(minimal()).unwrap(), everything()] {
        let json = pod.to_canonical_json();
        assert_eq!(Pod::from_json(&json).unwrap(), pod, "{json}");
    }
    let host = {
        let mut doc = minimal();
        doc["network"] = json!("host");
        Pod::new(doc).unwrap()
    };
    assert_eq!(Pod::from_json(&host.to_canonical_json()).unwrap(), host);
}

#[test]
fn yaml_round_trip() {
    for pod in [Pod::new(minimal()).unwrap(), everything()] {
        let yaml = pod.to_yaml();
        assert_eq!(Pod::from_yaml(&yaml).unwrap(), pod, "{yaml}");
    }
}

#[test]
fn canonical_json_ignores_key_order_and_explicit_defaults() {
    let terse = r#"{"containers": [{"image": "busybox:1.36", "name": "app",
        "env": {"B": "2", "A": "1"}}], "name": "web"}"#;
    let explicit = r#"{"name": "web", "restart": "always", "network": "none", "volumes": [],
        "stop_grace_period_s": 10,
        "containers": [{"name": "app", "image": "busybox:1.36", "env": {"A": "1", "B": "2"},
                        "tty": false, "mounts": [], "limits": {}}]}"#;
    let terse = Pod::from_json(terse).unwrap().to_canonical_json();
    assert_eq!(terse, Pod::from_json(explicit).unwrap().to_canonical_json());
    assert_eq!(
        terse,
        r#"{"name":"web","restart":"always","network":"none","volumes":[],"containers":[{"name":"app","image":"busybox:1.36","env":{"A":"1","B":"2"},"tty":false,"mounts":[],"limits":{}}],"stop_grace_period_s":10}"#
    );
}

#[test]
fn seccomp_defaults_to_the_runtime_profile_and_keeps_old_specs_bytes() {
    let pod = Pod::new(minimal()).unwrap();
    assert_eq!(pod.containers[0].seccomp, Seccomp::RuntimeDefault);
    assert!(pod.unconfined_containers().is_empty());
    // Explicit default = omitted: the canonical form of a spec written
    // before the field existed does not change (no generation bump, no
    // restart after an upgrade).
    let mut explicit = minimal();
    explicit["containers"][0]["seccomp"] = json!("runtime/default");
    let explicit = Pod::new(explicit).unwrap();
    assert_eq!(explicit, pod);
    assert_eq!(explicit.to_canonical_json(), pod.to_canonical_json());
    assert!(!pod.to_canonical_json().contains("seccomp"));
}

#[test]
fn seccomp_unconfined_is_written_out() {
    let mut doc = minimal();
    doc["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "free", "image": "busybox:1.36", "seccomp": "unconfined"}));
    let pod = Pod::new(doc).unwrap();
    assert_eq!(pod.containers[1].seccomp, Seccomp::Unconfined);
    assert_eq!(pod.unconfined_containers(), ["free"]);
    let json = pod.to_canonical_json();
    let free = r#"{"name":"free","image":"busybox:1.36","env":{},"tty":false,"mounts":[],"limits":{},"seccomp":"unconfined"}"#;
    assert!(json.contains(free), "{json}");
    let yaml = pod.to_yaml();
    assert!(yaml.contains("seccomp: unconfined"), "{yaml}");
    assert_eq!(Pod::from_yaml(&yaml).unwrap(), pod);
}

#[test]
fn seccomp_rejects_anything_else_naming_the_field() {
    let with = |value: Value| {
        let mut doc = minimal();
        doc["containers"][0]["seccomp"] = value;
        error(doc)
    };
    let expected = r#"expected "runtime/default" or "unconfined""#;
    for (value, got) in [
        (json!("bogus"), r#"invalid value: string "bogus""#),
        (json!("Unconfined"), r#"invalid value: string "Unconfined""#),
        (
            json!("runtime/default "),
            r#"invalid value: string "runtime/default ""#,
        ),
        (json!(""), r#"invalid value: string """#),
        (json!(3), "invalid type: integer `3`"),
        (json!(null), "invalid type: null"),
        (json!({"profile": "x"}), "invalid type: map"),
        (json!(["unconfined"]), "invalid type: sequence"),
    ] {
        assert_eq!(
            with(value.clone()),
            format!("containers[0].seccomp: {got}, {expected}"),
            "{value}"
        );
    }
    // The same from YAML.
    let yaml = "name: web\ncontainers:\n- name: app\n  image: busybox\n  seccomp: none\n";
    assert_eq!(
        Pod::from_yaml(yaml).unwrap_err().to_string(),
        format!(r#"containers[0].seccomp: invalid value: string "none", {expected}"#)
    );
}

#[test]
fn stop_signal_spellings_share_one_canonical_form() {
    let canonical = |signal: serde_json::Value| {
        let mut doc = minimal();
        doc["containers"][0]["stop_signal"] = signal;
        Pod::new(doc).map(|pod| pod.to_canonical_json())
    };
    let quit = canonical(json!("SIGQUIT")).unwrap();
    assert!(quit.contains(r#""stop_signal":"SIGQUIT""#), "{quit}");
    for spelling in [json!("QUIT"), json!("quit"), json!("3"), json!(3)] {
        assert_eq!(canonical(spelling.clone()).unwrap(), quit, "{spelling}");
    }
    // Without it the canonical form is what it always was.
    assert!(!Pod::new(minimal())
        .unwrap()
        .to_canonical_json()
        .contains("stop_signal"));
    for (bad, message) in [
        (
            json!("SIGNOPE"),
            r#"containers[0].stop_signal: "SIGNOPE" is not a signal"#,
        ),
        (json!(0), "containers[0].stop_signal: 0 is not a signal"),
        (
            json!("SIGRTMIN+3"),
            "containers[0].stop_signal: \"SIGRTMIN+3\": real-time",
        ),
        (
            json!(["TERM"]),
            "containers[0].stop_signal: invalid type: sequence",
        ),
    ] {
        let err = canonical(bad.clone()).unwrap_err().to_string();
        assert!(err.starts_with(message), "{bad}: {err}");
    }
}

#[test]
fn spec_error_display() {
    assert_eq!(SpecError::new("", "bad").to_string(), "bad");
    assert_eq!(SpecError::new("name", "bad").to_string(), "name: bad");
}

#[test]
fn structs_are_json_objects_only() {
    // serde's derive would take a sequence of the fields' values for a
    // struct: `"limits": []` as the default limits.
    let doc = Pod::from_json(DESIGN_EXAMPLE)
        .map(|p| serde_json::to_value(p).unwrap())
        .unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut d = doc.clone();
        f(&mut d);
        error(d)
    };
    type Edit<'a> = &'a dyn Fn(&mut Value);
    let cases: [(&str, Edit, &str); 10] = [
        ("", &|d| *d = json!(["api", "always"]), "a JSON object"),
        (
            "containers[0]",
            &|d| d["containers"][0] = json!(["app", "busybox"]),
            "a JSON object",
        ),
        (
            "containers[0].limits",
            &|d| d["containers"][0]["limits"] = json!([]),
            "a JSON object",
        ),
        (
            "containers[0].limits.cpu",
            &|d| d["containers"][0]["limits"]["cpu"] = json!([100000]),
            "a JSON object",
        ),
        (
            "containers[0].mounts[1]",
            &|d| d["containers"][0]["mounts"][1] = json!(["conf", "/etc/api", true]),
            "a JSON object",
        ),
        (
            "volumes[0]",
            &|d| d["volumes"][0] = json!(["state"]),
            "a JSON object",
        ),
        (
            "network.nics[0]",
            &|d| d["network"]["nics"][0] = json!(["eth0", "auto", "10.0.0.20/24"]),
            "a JSON object",
        ),
        (
            "volumes[1].source",
            &|d| d["volumes"][1]["source"] = json!(["/etc/api"]),
            "string or map",
        ),
        (
            "containers[0].env",
            &|d| d["containers"][0]["env"] = json!([]),
            "a map",
        ),
        (
            "network",
            &|d| d["network"] = json!([]),
            r#""none", "host" or a {"nics": [...]} object"#,
        ),
    ];
    for (path, f, expected) in cases {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}: ")
        };
        assert_eq!(
            edit(f),
            format!("{prefix}invalid type: sequence, expected {expected}"),
            "{path}"
        );
    }
    // Objects still work everywhere, and an explicit null cpu is none.
    assert!(Pod::new(doc.clone()).is_ok());
    let mut d = doc;
    d["containers"][0]["limits"]["cpu"] = Value::Null;
    assert_eq!(Pod::new(d).unwrap().containers[0].limits.cpu, None);
}

#[test]
fn documents_are_at_most_256_kib_as_text_and_as_canonical_json() {
    let with_env = |bytes: usize| {
        let mut d = minimal();
        d["containers"][0]["env"] = json!({"BIG": "x".repeat(bytes)});
        d.to_string()
    };
    let overhead = with_env(0).len();
    // The canonical form adds the defaults (about 130 bytes here).
    assert!(Pod::from_json(&with_env(MAX_SPEC_BYTES - overhead - 200)).is_ok());
    let text = with_env(MAX_SPEC_BYTES - overhead + 1);
    assert_eq!(
        Pod::from_json(&text).unwrap_err().to_string(),
        "the spec is 262145 bytes: at most 262144 (256 KiB)"
    );
    let yaml = format!("name: web\n{}", " ".repeat(MAX_SPEC_BYTES));
    assert!(Pod::from_yaml(&yaml)
        .unwrap_err()
        .to_string()
        .starts_with("the spec is 262154 bytes: "));
    // Small as text, big once every default is written out.
    let containers: Vec<Value> = (0..4000)
        .map(|i| json!({"name": format!("c{i}"), "image": "b"}))
        .collect();
    let text = json!({"name": "web", "containers": containers}).to_string();
    assert!(text.len() < MAX_SPEC_BYTES);
    let err = Pod::from_json(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("the spec is ") && err.contains(" bytes as canonical JSON"),
        "{err}"
    );
}
