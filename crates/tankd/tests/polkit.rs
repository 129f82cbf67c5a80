//! Authorization through a real polkitd: tankd asks polkit about every
//! non-root caller of a mutating method (subject: the caller's bus name)
//! with details saying what the call is about (verb, pod, container,
//! volume, image, command line), so rules can scope an action to one pod or
//! one command; reading logs is an action of its own. tankd fails closed
//! without polkit and redacts what unauthorized readers see. tankctl allows
//! interactive authorization only from a terminal and runs pkttyagent for
//! such calls.
//!
//! The users and the rules (tests/support/polkit-test.rules): `tankin` is
//! in group `tank` (YES), `tankout` gets NO, `tankpw` AUTH_ADMIN. Tests of
//! scoping rules put a rule file before those that answers YES for
//! `tankout` only for some details.

mod support;

use support::polkit::{
    gdbus_as, tankctl_as, tankctl_on_terminal_as, Polkit, TEST_RULES, USER_IN, USER_OUT, USER_PW,
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

/// A call of an org.tank.Manager method that needs authorization.
struct Call {
    method: &'static str,
    args: Vec<String>,
    /// The polkit action it needs.
    action: &'static str,
    /// The details tankd passes with it, as the test rules log them.
    details: &'static str,
}

/// Every mutating method of org.tank.Manager with arguments that an
/// authorized caller gets past authorization with (then succeeds or fails
/// on its own terms), the action it needs and the details polkit sees.
/// ImportImage takes an fd: see `tankctl_calls_as_users`.
fn mutating_methods() -> Vec<Call> {
    let quoted = |s: &str| format!("'{s}'");
    let call = |method, args, action, details| Call {
        method,
        args,
        action,
        details,
    };
    vec![
        call(
            "Apply",
            vec![quoted(&pod_json("evil", "busybox:1"))],
            "org.tank.pods.manage",
            r#" verb="apply" pod="evil""#,
        ),
        call(
            "Delete",
            vec![quoted("nosuch")],
            "org.tank.pods.manage",
            r#" verb="delete" pod="nosuch""#,
        ),
        call(
            "RemoveVolume",
            vec![quoted("nosuch"), quoted("data")],
            "org.tank.pods.manage",
            r#" verb="remove-volume" pod="nosuch" volume="data""#,
        ),
        call(
            "PullImage",
            vec![quoted("127.0.0.1:9/busybox:1")],
            "org.tank.images.manage",
            r#" verb="pull" image="127.0.0.1:9/busybox:1""#,
        ),
        call(
            "RemoveImage",
            // Normalized: the rules see the canonical reference.
            vec![quoted("busybox")],
            "org.tank.images.manage",
            r#" verb="remove-image" image="docker.io/library/busybox:latest""#,
        ),
        call(
            "PruneImages",
            vec![],
            "org.tank.images.manage",
            r#" verb="prune""#,
        ),
        call(
            "Logs",
            vec![quoted("nosuch"), quoted("app"), "false".into(), "0".into()],
            "org.tank.pods.logs",
            r#" verb="logs" pod="nosuch" container="app""#,
        ),
        call(
            "Exec",
            vec![
                quoted("nosuch"),
                quoted(""),
                r#"['sh', '-c', 'echo "$HOME"']"#.into(),
                "{}".into(),
            ],
            "org.tank.pods.exec",
            r#" verb="exec" pod="nosuch" command_line="sh -c 'echo \"$HOME\"'""#,
        ),
        call(
            "Attach",
            vec![quoted("nosuch"), quoted("")],
            "org.tank.pods.exec",
            r#" verb="attach" pod="nosuch""#,
        ),
    ]
}

/// polkitd's log has the test rules' line for exactly this question.
fn assert_asked(polkit: &Polkit, action: &str, user: &str, details: &str) {
    let line = format!("tank-test: {action} for {user}{details}\n");
    let log = polkit.log_text();
    assert!(log.contains(&line), "no {line:?} in:\n{log}");
}

#[test]
fn every_mutating_method_asks_polkit_about_non_root_callers() {
    let bus = SystemBus::start();
    let polkit = Polkit::start(&bus);
    let tankd = Tankd::start(&bus);

    for Call {
        method,
        args,
        action,
        details,
    } in mutating_methods()
    {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();

        // Outside the group: denied, naming the action.
        let err = text(&gdbus_as(USER_OUT, &bus, method, &args, false));
        let expected = format!(
            "{DENIED}: uid {} is not authorized for {action}",
            uid(USER_OUT)
        );
        assert!(err.contains(&expected), "{method}: {err}");
        // polkit was asked about exactly this call (the details).
        assert_asked(&polkit, action, USER_OUT, details);
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
    for Call {
        method,
        args,
        action,
        details,
    } in mutating_methods()
    {
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
        assert_asked(&polkit, action, USER_IN, details);
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
    let polkit = Polkit::start(&bus);
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
    assert_asked(
        &polkit,
        "org.tank.images.manage",
        USER_OUT,
        r#" verb="import""#,
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

// ---- Rules that scope by the details of a call ----------------------------

/// A pod whose one container `main` says hello and sleeps; its env holds a
/// secret.
fn hello_pod(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "containers": [{
            "name": "main",
            "image": support::BUSYBOX,
            "command": ["/bin/sh", "-c", format!("echo hello-from-{name}; exec sleep 1000000")],
            "env": {"TOKEN": format!("s3cret-{name}")}
        }]
    })
}

/// tankd with pods `web` and `db` running, and polkitd whose rules are
/// `rules` (one file, run first) and then the test rules (which answer NO
/// for [`USER_OUT`]). Fields drop in order: tankd first.
struct Scoped {
    tankd: Tankd,
    polkit: Polkit,
    bus: SystemBus,
}

fn scoped(rules: &str) -> Scoped {
    let bus = SystemBus::start();
    let polkit = Polkit::start_with_rules(&bus, &[("40-tank-scoped.rules", rules), TEST_RULES]);
    let tankd = Tankd::start(&bus);
    tankd.import_busybox();
    for pod in ["web", "db"] {
        tankd.apply(&hello_pod(pod));
    }
    for pod in ["web", "db"] {
        tankd.wait_for(pod, "running", 30, |doc| {
            doc["status"]["containers"]["main"]["state"]
                .get("running")
                .is_some()
        });
    }
    Scoped { tankd, polkit, bus }
}

/// `tankctl ARGS` as `user` must be refused as not authorized for `action`.
fn assert_denied(s: &Scoped, user: &str, args: &[&str], action: &str) {
    let err = failed(&tankctl_as(user, &s.bus, args, None));
    assert_eq!(
        err,
        format!(
            "tankctl: access denied: uid {} is not authorized for {action}\n",
            uid(user)
        ),
        "{args:?}"
    );
}

/// The env value of pod `pod` that `user` sees through Get.
fn token_seen_by(s: &Scoped, user: &str, pod: &str) -> String {
    let out = ok(&tankctl_as(user, &s.bus, &["get", pod, "-o", "json"], None));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    doc["spec"]["containers"][0]["env"]["TOKEN"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_rule_can_let_a_user_exec_into_one_pod_only() {
    let s = scoped(
        r#"// tankout may run commands in and attach to pod "web", and see its
// env values; nothing about any other pod.
polkit.addRule(function(action, subject) {
    if (subject.user == "tankout" && action.id == "org.tank.pods.exec" &&
        action.lookup("pod") == "web") {
        return polkit.Result.YES;
    }
    if (subject.user == "tankout" && action.id == "org.tank.pods.manage" &&
        action.lookup("verb") == "get" && action.lookup("pod") == "web") {
        return polkit.Result.YES;
    }
});
"#,
    );

    // Exec: into web, not into db.
    let out = ok(&tankctl_as(
        USER_OUT,
        &s.bus,
        &["exec", "web", "--", "cat", "/etc/hostname"],
        None,
    ));
    assert_eq!(out, "web\n");
    assert_denied(
        &s,
        USER_OUT,
        &["exec", "db", "--", "cat", "/etc/hostname"],
        "org.tank.pods.exec",
    );
    assert_asked(
        &s.polkit,
        "org.tank.pods.exec",
        USER_OUT,
        r#" verb="exec" pod="db" container="main" command_line="cat /etc/hostname""#,
    );
    // Attach: past authorization for web (main has no terminal), not for db.
    let err = text(&gdbus_as(
        USER_OUT,
        &s.bus,
        "Attach",
        &["'web'", "''"],
        false,
    ));
    assert!(err.contains("GDBus.Error:org.tank.Error.NotATty"), "{err}");
    let err = text(&gdbus_as(
        USER_OUT,
        &s.bus,
        "Attach",
        &["'db'", "''"],
        false,
    ));
    assert!(
        err.contains(&format!(
            "{DENIED}: uid {} is not authorized for org.tank.pods.exec",
            uid(USER_OUT)
        )),
        "{err}"
    );
    // Reading output is another action, not granted by the rule.
    assert_denied(&s, USER_OUT, &["logs", "web"], "org.tank.pods.logs");
    // Get checks org.tank.pods.manage with the pod (verb "get") without
    // prompting: the env values of web only.
    assert_eq!(token_seen_by(&s, USER_OUT, "web"), "s3cret-web");
    assert_eq!(token_seen_by(&s, USER_OUT, "db"), "<redacted>");
    // The rule names the verb: changing web is still refused.
    assert_denied(&s, USER_OUT, &["delete", "web"], "org.tank.pods.manage");
    // Others are unaffected: tankpw still needs a password everywhere.
    let err = failed(&tankctl_as(
        USER_PW,
        &s.bus,
        &["exec", "web", "--", "true"],
        None,
    ));
    assert!(
        err.starts_with("tankctl: interactive authentication required: "),
        "{err}"
    );
    assert_eq!(token_seen_by(&s, USER_PW, "web"), "<redacted>");
    // Both pods still run: nothing was done to them.
    let ps = ok(&s.tankd.tankctl(&["ps"]));
    assert!(ps.contains("web ") && ps.contains("db "), "{ps}");
}

#[test]
fn reading_logs_is_its_own_action() {
    let s = scoped(
        r#"// tankout may read the output of every pod, nothing else.
polkit.addRule(function(action, subject) {
    if (subject.user == "tankout" && action.id == "org.tank.pods.logs") {
        return polkit.Result.YES;
    }
});
"#,
    );
    for pod in ["web", "db"] {
        let out = ok(&tankctl_as(USER_OUT, &s.bus, &["logs", pod], None));
        assert_eq!(out, format!("hello-from-{pod}\n"));
    }
    // ... but not run anything in them.
    assert_denied(
        &s,
        USER_OUT,
        &["exec", "web", "--", "true"],
        "org.tank.pods.exec",
    );
    let err = text(&gdbus_as(
        USER_OUT,
        &s.bus,
        "Attach",
        &["'web'", "''"],
        false,
    ));
    assert!(err.contains(DENIED), "{err}");
    // The test rules logged only what the logs rule did not answer.
    let log = s.polkit.log_text();
    assert!(!log.contains("org.tank.pods.logs for"), "{log}");
    assert_asked(
        &s.polkit,
        "org.tank.pods.exec",
        USER_OUT,
        r#" verb="exec" pod="web" container="main" command_line="true""#,
    );
}

#[test]
fn rules_see_the_verb_the_container_and_the_command_line() {
    let s = scoped(
        r#"// tankout may run exactly `cat /etc/hostname` and `sh -c 'echo "$(hostname)"'`
// in container main of pod web, nothing else (not even attach).
polkit.addRule(function(action, subject) {
    if (subject.user == "tankout" && action.id == "org.tank.pods.exec" &&
        action.lookup("verb") == "exec" && action.lookup("pod") == "web" &&
        action.lookup("container") == "main" &&
        (action.lookup("command_line") == "cat /etc/hostname" ||
         action.lookup("command_line") == "sh -c 'echo \"$(hostname)\"'")) {
        return polkit.Result.YES;
    }
});
"#,
    );
    // The container named or not: the details carry the one it resolves to.
    for args in [
        &["exec", "web", "--", "cat", "/etc/hostname"][..],
        &["exec", "-c", "main", "web", "--", "cat", "/etc/hostname"][..],
    ] {
        assert_eq!(ok(&tankctl_as(USER_OUT, &s.bus, args, None)), "web\n");
    }
    // Arguments are quoted as a shell would need them.
    let out = ok(&tankctl_as(
        USER_OUT,
        &s.bus,
        &["exec", "web", "--", "sh", "-c", "echo \"$(hostname)\""],
        None,
    ));
    assert_eq!(out, "web\n");
    // Any other command line is refused: other arguments, the same words
    // split differently, or more of them.
    for argv in [
        &["cat", "/etc/passwd"][..],
        &["cat /etc/hostname"][..],
        &["cat", "/etc/hostname", "/etc/passwd"][..],
        &["sh", "-c", "echo $(hostname)"][..],
    ] {
        let mut args = vec!["exec", "web", "--"];
        args.extend_from_slice(argv);
        assert_denied(&s, USER_OUT, &args, "org.tank.pods.exec");
    }
    assert_asked(
        &s.polkit,
        "org.tank.pods.exec",
        USER_OUT,
        r#" verb="exec" pod="web" container="main" command_line="'cat /etc/hostname'""#,
    );
    // The same command in another pod, and attach (verb "attach").
    assert_denied(
        &s,
        USER_OUT,
        &["exec", "db", "--", "cat", "/etc/hostname"],
        "org.tank.pods.exec",
    );
    let err = text(&gdbus_as(
        USER_OUT,
        &s.bus,
        "Attach",
        &["'web'", "'main'"],
        false,
    ));
    assert!(err.contains(DENIED), "{err}");
    assert_asked(
        &s.polkit,
        "org.tank.pods.exec",
        USER_OUT,
        r#" verb="attach" pod="web" container="main""#,
    );
}

#[test]
fn the_example_rule_grants_group_tank_every_action() {
    let bus = SystemBus::start();
    let example =
        std::fs::read_to_string(support::workspace_root().join("polkit/50-tank.rules.example"))
            .expect("polkit/50-tank.rules.example");
    let _polkit = Polkit::start_with_rules(&bus, &[("50-tank.rules", &example)]);
    let tankd = Tankd::start(&bus);
    tankd.import_busybox();
    tankd.apply(&hello_pod("web"));
    tankd.wait_for("web", "running", 30, |doc| {
        doc["status"]["containers"]["main"]["state"]
            .get("running")
            .is_some()
    });

    // A member of group tank: logs, exec, manage pods and images.
    let tankctl = |user, args: &[&str]| tankctl_as(user, &bus, args, None);
    assert_eq!(ok(&tankctl(USER_IN, &["logs", "web"])), "hello-from-web\n");
    assert_eq!(
        ok(&tankctl(
            USER_IN,
            &["exec", "web", "--", "cat", "/etc/hostname"]
        )),
        "web\n"
    );
    ok(&tankctl(USER_IN, &["image", "prune"]));
    ok(&tankctl(USER_IN, &["delete", "web"]));
    // Anyone else: the defaults of org.tank.policy (an administrator's
    // password, which a call from a pipe may not ask for).
    for (args, action) in [
        (&["logs", "web"][..], "org.tank.pods.logs"),
        (&["exec", "web", "--", "true"][..], "org.tank.pods.exec"),
        (&["image", "prune"][..], "org.tank.images.manage"),
        (&["delete", "web"][..], "org.tank.pods.manage"),
    ] {
        let err = failed(&tankctl(USER_OUT, args));
        assert!(
            err.starts_with("tankctl: interactive authentication required: ")
                && err.contains(action),
            "{args:?}: {err}"
        );
    }
}
