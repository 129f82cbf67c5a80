//! Authorization through a real polkitd: tankd asks polkit about every
//! non-root caller of a mutating method (subject: the caller's bus name),
//! fails closed without polkit, and redacts what unauthorized readers see.
//! tankctl allows interactive authorization only from a terminal and runs
//! pkttyagent for such calls.
//!
//! The users and the rules (tests/support/polkit-test.rules): `tankin` is
//! in group `tank` (YES), `tankout` gets NO, `tankpw` AUTH_ADMIN.

mod support;

use support::polkit::{
    gdbus_as, tankctl_as, tankctl_on_terminal_as, Polkit, USER_IN, USER_OUT, USER_PW,
};
use support::{failed, ok, pod_json, SystemBus, Tankd};

const SECRET_POD: &str = r#"{"name": "web", "containers": [{"name": "app", "image": "127.0.0.1:9/busybox:1.36",
    "env": {"TOKEN": "s3cret"}}]}"#;

const DENIED: &str = "GDBus.Error:org.freedesktop.DBus.Error.AccessDenied";
const INTERACTIVE: &str = "GDBus.Error:org.freedesktop.DBus.Error.InteractiveAuthorizationRequired";

fn uid(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap_or_else(|| panic!("no user {user}"))
        .uid
        .as_raw()
}

/// stdout and stderr of a command, together.
fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every mutating method of org.tank.Manager with arguments that an
/// authorized caller gets past authorization with (then succeeds or fails
/// on its own terms), and the action it needs. ImportImage takes an fd:
/// see `tankctl_calls_as_users`.
fn mutating_methods() -> Vec<(&'static str, Vec<String>, &'static str)> {
    let quoted = |s: &str| format!("'{s}'");
    vec![
        (
            "Apply",
            vec![quoted(&pod_json("evil", "busybox:1"))],
            "org.tank.pods.manage",
        ),
        ("Delete", vec![quoted("nosuch")], "org.tank.pods.manage"),
        (
            "RemoveVolume",
            vec![quoted("nosuch"), quoted("data")],
            "org.tank.pods.manage",
        ),
        (
            "PullImage",
            vec![quoted("127.0.0.1:9/busybox:1")],
            "org.tank.images.manage",
        ),
        (
            "RemoveImage",
            vec![quoted("localhost/none:1")],
            "org.tank.images.manage",
        ),
        ("PruneImages", vec![], "org.tank.images.manage"),
        (
            "Logs",
            vec![quoted("nosuch"), quoted(""), "false".into(), "0".into()],
            "org.tank.pods.exec",
        ),
        (
            "Exec",
            vec![quoted("nosuch"), quoted(""), "['true']".into(), "{}".into()],
            "org.tank.pods.exec",
        ),
        (
            "Attach",
            vec![quoted("nosuch"), quoted("")],
            "org.tank.pods.exec",
        ),
    ]
}

#[test]
fn every_mutating_method_asks_polkit_about_non_root_callers() {
    let bus = SystemBus::start();
    let polkit = Polkit::start(&bus);
    let tankd = Tankd::start(&bus);

    for (method, args, action) in mutating_methods() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();

        // Outside the group: denied, naming the action.
        let err = text(&gdbus_as(USER_OUT, &bus, method, &args, false));
        let expected = format!(
            "{DENIED}: uid {} is not authorized for {action}",
            uid(USER_OUT)
        );
        assert!(err.contains(&expected), "{method}: {err}");
        // The same with interaction allowed: polkit said no, not "ask".
        let err = text(&gdbus_as(USER_OUT, &bus, method, &args, true));
        assert!(err.contains(&expected), "{method} interactive: {err}");

        // A password would do, but the call may not ask for one.
        let err = text(&gdbus_as(USER_PW, &bus, method, &args, false));
        assert!(
            err.contains(&format!(
                "{INTERACTIVE}: uid {} must authenticate for {action}",
                uid(USER_PW)
            )),
            "{method}: {err}"
        );
        // It may ask, but nobody can: no agent registered for the caller.
        let err = text(&gdbus_as(USER_PW, &bus, method, &args, true));
        assert!(
            err.contains(DENIED) && err.contains("no polkit agent is available"),
            "{method} interactive: {err}"
        );
    }
    // Nothing was stored.
    let ps = ok(&tankd.tankctl(&["ps"]));
    assert_eq!(ps.lines().count(), 1, "{ps}");

    // In the group: past authorization every time (the method's own
    // result, success or an org.tank.Error).
    for (method, args, _) in mutating_methods() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = gdbus_as(USER_IN, &bus, method, &args, false);
        let all = text(&out);
        assert!(
            !all.contains("org.freedesktop.DBus.Error"),
            "{method}: {all}"
        );
        assert!(
            out.status.success() || all.contains("GDBus.Error:org.tank.Error."),
            "{method}: {all}"
        );
    }
    let ps = ok(&tankd.tankctl(&["ps"]));
    assert!(ps.contains("evil "), "{ps}");
    // polkit was asked with the callers' identities.
    let log = polkit.log_text();
    for user in [USER_IN, USER_OUT, USER_PW] {
        assert!(
            log.contains(&format!("org.tank.pods.manage for {user}")),
            "{log}"
        );
    }
}

#[test]
fn tankctl_calls_as_users() {
    let bus = SystemBus::start();
    let _polkit = Polkit::start(&bus);
    let tankd = Tankd::start(&bus);

    let err = failed(&tankctl_as(
        USER_OUT,
        &bus,
        &["apply", "-f", "-"],
        Some(SECRET_POD),
    ));
    assert_eq!(
        err,
        format!(
            "tankctl: access denied: uid {} is not authorized for org.tank.pods.manage\n",
            uid(USER_OUT)
        )
    );
    // stdin is not a terminal: no interaction, whatever the user could do.
    let err = failed(&tankctl_as(
        USER_PW,
        &bus,
        &["apply", "-f", "-"],
        Some(SECRET_POD),
    ));
    assert!(
        err.starts_with("tankctl: interactive authentication required: ")
            && err.contains("org.tank.pods.manage"),
        "{err}"
    );
    let ps = ok(&tankd.tankctl(&["ps"]));
    assert_eq!(ps.lines().count(), 1, "nothing stored: {ps}");

    let out = ok(&tankctl_as(
        USER_IN,
        &bus,
        &["apply", "-f", "-"],
        Some(SECRET_POD),
    ));
    assert_eq!(out, "pod/web applied (generation 1)\n");

    // ImportImage (an fd argument) goes through the same check.
    let err = failed(&tankctl_as(
        USER_OUT,
        &bus,
        &["image", "import", "/etc/hostname"],
        None,
    ));
    assert!(
        err.contains("access denied") && err.contains("org.tank.images.manage"),
        "{err}"
    );
    let err = failed(&tankctl_as(
        USER_IN,
        &bus,
        &["image", "import", "/etc/hostname"],
        None,
    ));
    assert!(err.starts_with("tankctl: import failed: "), "{err}");

    let err = failed(&tankctl_as(USER_OUT, &bus, &["delete", "web"], None));
    assert!(err.contains("access denied"), "{err}");
    // --wait: the object stays (Terminating) until the teardown ends.
    ok(&tankctl_as(
        USER_IN,
        &bus,
        &["delete", "web", "--wait"],
        None,
    ));
    let ps = ok(&tankd.tankctl(&["ps"]));
    assert_eq!(ps.lines().count(), 1, "{ps}");
}

/// A pkttyagent registration line of polkitd's log: (pid of the subject,
/// the agent's command line).
fn agent_registrations(log: &str) -> Vec<(u32, String)> {
    log.lines()
        .filter_map(|line| {
            let rest = line
                .split("Registered Authentication Agent for unix-process:")
                .nth(1)?;
            let pid = rest.split(':').next()?.parse().ok()?;
            let command = rest.split('[').nth(1)?.split(']').next()?.to_owned();
            Some((pid, command))
        })
        .collect()
}

#[test]
fn a_terminal_allows_interaction_and_runs_pkttyagent() {
    let bus = SystemBus::start();
    let polkit = Polkit::start(&bus);
    let tankd = Tankd::start(&bus);
    let file = tankd.data_dir.with_file_name("web.json");
    std::fs::write(&file, SECRET_POD).unwrap();
    let file = file.to_str().unwrap();
    // The users read it.
    std::fs::set_permissions(
        tankd.data_dir.parent().unwrap(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    // --no-ask-password: no agent, and the call does not allow asking.
    let out = tankctl_on_terminal_as(USER_PW, &bus, &["--no-ask-password", "apply", "-f", file]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("tankctl: interactive authentication required: "),
        "{all}"
    );
    assert!(agent_registrations(&polkit.log_text()).is_empty());

    // From a terminal: the call allows interaction, and a pkttyagent was
    // registered for tankctl itself before it. (Without logind there is no
    // session, and polkit 122 never uses a --fallback agent for a subject
    // without one, so here it still ends in "no agent"; on a systemd host
    // the agent asks for the password.)
    let out = tankctl_on_terminal_as(USER_PW, &bus, &["apply", "-f", file]);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("tankctl: access denied: ") && all.contains("no polkit agent is available"),
        "{all}"
    );
    let log = polkit.log_text();
    let agents = agent_registrations(&log);
    assert_eq!(agents.len(), 1, "{log}");
    let (pid, command) = &agents[0];
    let argv: Vec<&str> = command.split(' ').collect();
    assert_eq!(argv[0], "pkttyagent", "{command}");
    assert_eq!(argv[1], "--notify-fd", "{command}");
    assert_eq!(
        argv[3..],
        ["--fallback", "--process", &pid.to_string()],
        "{command}"
    );
    // Registered before tankd asked polkit about the call, gone after.
    let registered = log.find("Registered Authentication Agent").unwrap();
    let asked = log[registered..]
        .find(&format!("org.tank.pods.manage for {USER_PW}"))
        .expect("the check came after the registration");
    assert!(
        log[registered + asked..].contains("Unregistered Authentication Agent"),
        "{log}"
    );

    // Allowed users are not held up by the terminal.
    let out = tankctl_on_terminal_as(USER_IN, &bus, &["apply", "-f", file]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pod/web applied"));
}

#[test]
fn without_polkitd_only_root_may_mutate() {
    let bus = SystemBus::start();
    let mut polkit = Polkit::start(&bus);
    let tankd = Tankd::start(&bus);
    ok(&tankctl_as(
        USER_IN,
        &bus,
        &["apply", "-f", "-"],
        Some(&pod_json("one", "busybox:1")),
    ));

    polkit.stop();
    let err = failed(&tankctl_as(
        USER_IN,
        &bus,
        &["apply", "-f", "-"],
        Some(&pod_json("two", "busybox:1")),
    ));
    assert!(
        err.starts_with(&format!(
            "tankctl: access denied: uid {} is not authorized for org.tank.pods.manage: \
             polkit is unavailable (",
            uid(USER_IN)
        )),
        "{err}"
    );
    let err = text(&gdbus_as(USER_IN, &bus, "Delete", &["'one'"], true));
    assert!(
        err.contains(DENIED) && err.contains("polkit is unavailable"),
        "{err}"
    );
    // Root never needed polkit.
    tankd.apply(&serde_json::from_str(&pod_json("three", "busybox:1")).unwrap());
    // Reads stay open.
    let ps = ok(&tankctl_as(USER_OUT, &bus, &["ps"], None));
    assert!(
        ps.contains("one ") && ps.contains("three ") && !ps.contains("two "),
        "{ps}"
    );

    // polkitd back: tankd asks it again (no restart of tankd needed).
    let _polkit = Polkit::start(&bus);
    ok(&tankctl_as(
        USER_IN,
        &bus,
        &["apply", "-f", "-"],
        Some(&pod_json("two", "busybox:1")),
    ));
}

#[test]
fn reads_are_open_and_env_values_only_for_the_authorized() {
    let bus = SystemBus::start();
    let _polkit = Polkit::start(&bus);
    let tankd = Tankd::start(&bus);
    ok(&tankd.tankctl_stdin(&["apply", "-f", "-"], Some(SECRET_POD)));

    // Root and the group see the value.
    let doc = tankd.get("web");
    assert_eq!(doc["spec"]["containers"][0]["env"]["TOKEN"], "s3cret");
    let out = ok(&tankctl_as(
        USER_IN,
        &bus,
        &["get", "web", "-o", "json"],
        None,
    ));
    assert!(out.contains("s3cret"), "{out}");
    // Denied, or would need a password: redacted, and Get never prompts.
    for user in [USER_OUT, USER_PW] {
        let out = ok(&tankctl_as(user, &bus, &["get", "web", "-o", "json"], None));
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            doc["spec"]["containers"][0]["env"]["TOKEN"], "<redacted>",
            "{user}: {out}"
        );
        let out = text(&gdbus_as(user, &bus, "Get", &["'web'"], true));
        assert!(
            !out.contains("s3cret") && out.contains("redacted"),
            "{user}: {out}"
        );
    }
    // Listing is open to anyone.
    for user in [USER_OUT, USER_PW] {
        let ps = ok(&tankctl_as(user, &bus, &["ps"], None));
        assert!(ps.contains("web "), "{ps}");
        let out = ok(&gdbus_as(user, &bus, "ListPods", &[], false));
        assert!(out.contains("'web'"), "{out}");
    }
}
