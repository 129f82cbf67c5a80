//! Authorization of bus callers.
//!
//! Owns the decision "may the sender of this message do that?". Root
//! (uid 0, asked of the bus daemon, never of the message) always may,
//! without asking polkit. Everyone else goes to polkit's
//! `CheckAuthorization` with the caller's unique bus name as the subject
//! (`system-bus-name`), interactive only when the message carries
//! ALLOW_INTERACTIVE_AUTHORIZATION. The policy fails closed: polkit absent
//! or failing means "no". Methods call [`Authorizer::check`] before doing
//! anything else; this module never touches the store or the machine.
//!
//! What is asked is a [`Request`]: a [`Verb`] (which names the polkit
//! [`Action`]) and what it is about (pod, container, volume, image, command
//! line). polkit gets those as the details of the check, so rules can scope
//! an action (`action.lookup("pod") == "web"`), as systemd-machined passes
//! `machine`, `verb` and `command_line`. Turning a request into details is
//! plain data ([`Request::details`]); the keys are documented in the README
//! and never start with `polkit.` (polkit reserves those).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;
use zbus::fdo::DBusProxy;
use zbus::message::{Flags, Header};
use zbus::names::BusName;
use zbus::proxy::CacheProperties;
use zbus::Connection;
use zbus_polkit::policykit1::{
    AuthorityProxy, AuthorizationResult, CheckAuthorizationFlags, Subject,
};

use super::error::BusError;

/// How long a check that cannot prompt may take before tankd gives up
/// (the D-Bus default call timeout).
const CHECK_TIMEOUT: Duration = Duration::from_secs(25);
/// How long a person gets to answer an authentication prompt.
const INTERACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// The polkit actions of `polkit/org.tank.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Apply and Delete pods, remove their volumes; read their full specs
    /// (env values).
    ManagePods,
    /// Pull, import, remove and prune images.
    ManageImages,
    /// Exec into and attach to containers.
    ExecPods,
    /// Read the output (logs) of containers.
    ReadLogs,
}

impl Action {
    pub fn id(self) -> &'static str {
        match self {
            Action::ManagePods => "org.tank.pods.manage",
            Action::ManageImages => "org.tank.images.manage",
            Action::ExecPods => "org.tank.pods.exec",
            Action::ReadLogs => "org.tank.pods.logs",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// What a call does: the `verb` detail, one stable word per method (part
/// of the API: rules match on it). Each verb belongs to one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Apply.
    Apply,
    /// Delete.
    Delete,
    /// Get: whether the env values are shown (never prompts).
    Get,
    /// RemoveVolume.
    RemoveVolume,
    /// Exec.
    Exec,
    /// Attach.
    Attach,
    /// Logs.
    Logs,
    /// PullImage.
    Pull,
    /// ImportImage.
    Import,
    /// RemoveImage.
    RemoveImage,
    /// PruneImages.
    Prune,
}

impl Verb {
    /// Every verb, for tests and docs.
    pub const ALL: [Verb; 11] = [
        Verb::Apply,
        Verb::Delete,
        Verb::Get,
        Verb::RemoveVolume,
        Verb::Exec,
        Verb::Attach,
        Verb::Logs,
        Verb::Pull,
        Verb::Import,
        Verb::RemoveImage,
        Verb::Prune,
    ];

    /// The word rules see as `action.lookup("verb")`.
    pub fn word(self) -> &'static str {
        match self {
            Verb::Apply => "apply",
            Verb::Delete => "delete",
            Verb::Get => "get",
            Verb::RemoveVolume => "remove-volume",
            Verb::Exec => "exec",
            Verb::Attach => "attach",
            Verb::Logs => "logs",
            Verb::Pull => "pull",
            Verb::Import => "import",
            Verb::RemoveImage => "remove-image",
            Verb::Prune => "prune",
        }
    }

    /// The polkit action the verb needs.
    pub fn action(self) -> Action {
        match self {
            Verb::Apply | Verb::Delete | Verb::Get | Verb::RemoveVolume => Action::ManagePods,
            Verb::Exec | Verb::Attach => Action::ExecPods,
            Verb::Logs => Action::ReadLogs,
            Verb::Pull | Verb::Import | Verb::RemoveImage | Verb::Prune => Action::ManageImages,
        }
    }
}

/// One authorization question about a call: the verb and what it is about.
/// Empty names are left out (they name nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub verb: Verb,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub volume: Option<String>,
    /// A normalized image reference.
    pub image: Option<String>,
    /// The argv of Exec, shell-quoted ([`command_line`]).
    pub command_line: Option<String>,
}

impl Request {
    pub fn new(verb: Verb) -> Request {
        Request {
            verb,
            pod: None,
            container: None,
            volume: None,
            image: None,
            command_line: None,
        }
    }

    pub fn action(&self) -> Action {
        self.verb.action()
    }

    pub fn pod(mut self, name: &str) -> Request {
        self.pod = non_empty(name);
        self
    }

    pub fn container(mut self, name: Option<&str>) -> Request {
        self.container = name.and_then(non_empty);
        self
    }

    pub fn volume(mut self, name: &str) -> Request {
        self.volume = non_empty(name);
        self
    }

    pub fn image(mut self, reference: Option<&str>) -> Request {
        self.image = reference.and_then(non_empty);
        self
    }

    pub fn argv(mut self, argv: &[String]) -> Request {
        self.command_line = command_line(argv);
        self
    }

    /// The details of polkit's CheckAuthorization: `verb` always, the
    /// others when set.
    pub fn details(&self) -> HashMap<&'static str, &str> {
        let mut details = HashMap::from([("verb", self.verb.word())]);
        for (key, value) in [
            ("pod", &self.pod),
            ("container", &self.container),
            ("volume", &self.volume),
            ("image", &self.image),
            ("command_line", &self.command_line),
        ] {
            if let Some(value) = value {
                details.insert(key, value.as_str());
            }
        }
        details
    }
}

/// For logs and messages: `org.tank.pods.exec (exec pod=web container=app)`.
/// The command line is left out (it may carry secrets).
impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.action(), self.verb.word())?;
        for (key, value) in [
            ("pod", &self.pod),
            ("container", &self.container),
            ("volume", &self.volume),
            ("image", &self.image),
        ] {
            if let Some(value) = value {
                write!(f, " {key}={value}")?;
            }
        }
        f.write_str(")")
    }
}

fn non_empty(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| name.to_owned())
}

/// `argv` as one line a POSIX shell would split back into the same words
/// (`["sh", "-c", "echo hi"]` → `sh -c 'echo hi'`), so a rule can compare
/// it with a command line written the way one types it. None for an empty
/// argv, or one with a NUL byte (which no D-Bus string carries).
pub fn command_line(argv: &[String]) -> Option<String> {
    if argv.is_empty() {
        return None;
    }
    shlex::try_join(argv.iter().map(String::as_str)).ok()
}

/// What polkit answered (or that it could not be asked).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Authorized,
    NotAuthorized,
    /// Authentication would authorize the caller; with interaction allowed
    /// this means no agent could ask it.
    Challenge,
    /// The caller dismissed the authentication dialog.
    Dismissed,
    /// polkit is not on the bus, failed, or did not answer in time.
    Unavailable(String),
}

impl Verdict {
    fn of(result: &AuthorizationResult) -> Verdict {
        if result.is_authorized {
            Verdict::Authorized
        } else if result
            .details
            .get("polkit.dismissed")
            .is_some_and(|v| !v.is_empty())
        {
            Verdict::Dismissed
        } else if result.is_challenge {
            Verdict::Challenge
        } else {
            Verdict::NotAuthorized
        }
    }

    /// The answer to the caller: Ok, or the D-Bus error naming `action`.
    fn into_result(self, uid: u32, action: Action, interactive: bool) -> Result<(), BusError> {
        let denied = |why: &str| {
            BusError::access_denied(format!("uid {uid} is not authorized for {action}{why}"))
        };
        match self {
            Verdict::Authorized => Ok(()),
            Verdict::NotAuthorized => Err(denied("")),
            Verdict::Challenge if !interactive => {
                Err(BusError::interactive_authorization_required(format!(
                    "uid {uid} must authenticate for {action}, but the call does not allow \
                     interactive authorization"
                )))
            }
            Verdict::Challenge => Err(denied(
                ": authentication is required and no polkit agent is available",
            )),
            Verdict::Dismissed => Err(denied(": authentication was dismissed")),
            Verdict::Unavailable(reason) => {
                Err(denied(&format!(": polkit is unavailable ({reason})")))
            }
        }
    }
}

/// Answers authorization questions about the senders of messages.
#[derive(Clone)]
pub struct Authorizer {
    conn: Connection,
    dbus: DBusProxy<'static>,
    /// Made on first use: tankd starts (and serves root) without polkit.
    polkit: Arc<OnceCell<AuthorityProxy<'static>>>,
}

impl Authorizer {
    pub async fn new(conn: &Connection) -> zbus::Result<Authorizer> {
        Ok(Authorizer {
            conn: conn.clone(),
            dbus: DBusProxy::new(conn).await?,
            polkit: Arc::new(OnceCell::new()),
        })
    }

    /// Ok when the sender of `header` may do what `request` says;
    /// otherwise `org.freedesktop.DBus.Error.AccessDenied`, or
    /// `org.freedesktop.DBus.Error.InteractiveAuthorizationRequired` when
    /// authenticating would help but the message does not allow asking.
    pub async fn check(&self, header: &Header<'_>, request: &Request) -> Result<(), BusError> {
        let uid = self.sender_uid(header).await?;
        if uid == 0 {
            return Ok(());
        }
        let interactive = header
            .primary()
            .flags()
            .contains(Flags::AllowInteractiveAuth);
        let verdict = self.ask_polkit(header, request, interactive).await;
        match &verdict {
            Verdict::Authorized => log::debug!("uid {uid}: authorized for {request}"),
            Verdict::Unavailable(reason) => {
                log::warn!("uid {uid}: denied {request}: polkit is unavailable ({reason})")
            }
            other => log::info!("uid {uid}: denied {request} ({other:?})"),
        }
        verdict.into_result(uid, request.action(), interactive)
    }

    /// Like [`Authorizer::check`], as a yes/no for reads that only redact.
    /// Never prompts, whatever the message allows. The details go to
    /// polkit all the same, so a rule scoped to a pod answers here too.
    pub async fn allows(&self, header: &Header<'_>, request: &Request) -> bool {
        match self.sender_uid(header).await {
            Ok(0) => true,
            Ok(_) => self.ask_polkit(header, request, false).await == Verdict::Authorized,
            Err(_) => false,
        }
    }

    async fn ask_polkit(
        &self,
        header: &Header<'_>,
        request: &Request,
        interactive: bool,
    ) -> Verdict {
        let subject = match Subject::new_for_message_header(header) {
            Ok(subject) => subject,
            Err(e) => return Verdict::Unavailable(format!("no subject: {e}")),
        };
        let authority = match self.authority().await {
            Ok(authority) => authority,
            Err(e) => return Verdict::Unavailable(e.to_string()),
        };
        let (flags, timeout) = if interactive {
            (
                CheckAuthorizationFlags::AllowUserInteraction.into(),
                INTERACTIVE_TIMEOUT,
            )
        } else {
            (Default::default(), CHECK_TIMEOUT)
        };
        let details = request.details();
        let call =
            authority.check_authorization(&subject, request.action().id(), &details, flags, "");
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(result)) => Verdict::of(&result),
            Ok(Err(e)) => Verdict::Unavailable(e.to_string()),
            Err(_) => Verdict::Unavailable(format!("no answer within {}s", timeout.as_secs())),
        }
    }

    /// The proxy of polkit's Authority. Building it does not talk to
    /// polkit (no property cache), so it succeeds whether polkitd runs or
    /// not; calls go to the well-known name and so reach a restarted polkitd.
    async fn authority(&self) -> zbus::Result<&AuthorityProxy<'static>> {
        self.polkit
            .get_or_try_init(|| async {
                AuthorityProxy::builder(&self.conn)
                    .cache_properties(CacheProperties::No)
                    .build()
                    .await
            })
            .await
    }

    /// The uid of the sender of `header`, as the bus daemon knows it.
    pub async fn caller_uid(&self, header: &Header<'_>) -> Result<u32, BusError> {
        self.sender_uid(header).await
    }

    async fn sender_uid(&self, header: &Header<'_>) -> Result<u32, BusError> {
        let sender = header
            .sender()
            .ok_or_else(|| BusError::access_denied("message has no sender"))?;
        self.dbus
            .get_connection_unix_user(BusName::Unique(sender.to_owned()))
            .await
            .map_err(|e| BusError::access_denied(format!("cannot identify caller: {e}")))
    }
}

/// Whether `uid` may declare `pod`: a container without a seccomp filter
/// (`"seccomp": "unconfined"`) weakens the host's protection against its
/// workload, so only root may ask for one; polkit's answer for
/// `org.tank.pods.manage` does not extend to it.
pub fn may_declare(uid: u32, pod: &tank_api::spec::Pod) -> Result<(), BusError> {
    let unconfined = pod.unconfined_containers();
    if uid == 0 || unconfined.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = unconfined.iter().map(|c| format!("{c:?}")).collect();
    Err(BusError::access_denied(format!(
        "uid {uid} may not apply pod {:?}: container {} asks for \"seccomp\": \"unconfined\", \
         which only root may declare",
        pod.name,
        names.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(authorized: bool, challenge: bool, details: &[(&str, &str)]) -> AuthorizationResult {
        AuthorizationResult {
            is_authorized: authorized,
            is_challenge: challenge,
            details: details
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The D-Bus error name and message a denial is sent with.
    fn error_name(r: Result<(), BusError>) -> (String, String) {
        match r {
            Err(BusError::ZBus(zbus::Error::FDO(e))) => (
                zbus::DBusError::name(e.as_ref()).to_string(),
                zbus::DBusError::description(e.as_ref())
                    .unwrap_or_default()
                    .to_owned(),
            ),
            other => panic!("not a standard D-Bus error: {other:?}"),
        }
    }

    const DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";

    fn details(request: &Request) -> Vec<(&'static str, &str)> {
        let mut details: Vec<_> = request.details().into_iter().collect();
        details.sort();
        details
    }

    #[test]
    fn every_verb_has_a_distinct_word_and_its_action() {
        let table: Vec<(&str, &str)> = Verb::ALL
            .iter()
            .map(|v| (v.word(), v.action().id()))
            .collect();
        assert_eq!(
            table,
            [
                ("apply", "org.tank.pods.manage"),
                ("delete", "org.tank.pods.manage"),
                ("get", "org.tank.pods.manage"),
                ("remove-volume", "org.tank.pods.manage"),
                ("exec", "org.tank.pods.exec"),
                ("attach", "org.tank.pods.exec"),
                ("logs", "org.tank.pods.logs"),
                ("pull", "org.tank.images.manage"),
                ("import", "org.tank.images.manage"),
                ("remove-image", "org.tank.images.manage"),
                ("prune", "org.tank.images.manage"),
            ]
        );
    }

    #[test]
    fn exec_details_name_pod_container_and_command_line() {
        let argv = ["cat", "/etc/hostname"].map(String::from);
        let request = Request::new(Verb::Exec)
            .pod("web")
            .container(Some("app"))
            .argv(&argv);
        assert_eq!(request.action(), Action::ExecPods);
        assert_eq!(
            details(&request),
            [
                ("command_line", "cat /etc/hostname"),
                ("container", "app"),
                ("pod", "web"),
                ("verb", "exec"),
            ]
        );
        // Logged without the command line.
        assert_eq!(
            request.to_string(),
            "org.tank.pods.exec (exec pod=web container=app)"
        );
    }

    #[test]
    fn empty_names_are_left_out() {
        let request = Request::new(Verb::Attach)
            .pod("")
            .container(Some(""))
            .volume("")
            .image(Some(""))
            .argv(&[]);
        assert_eq!(details(&request), [("verb", "attach")]);
        let request = Request::new(Verb::Logs).pod("db").container(None);
        assert_eq!(details(&request), [("pod", "db"), ("verb", "logs")]);
        assert_eq!(request.to_string(), "org.tank.pods.logs (logs pod=db)");
    }

    #[test]
    fn volume_and_image_details() {
        let request = Request::new(Verb::RemoveVolume).pod("web").volume("data");
        assert_eq!(
            details(&request),
            [
                ("pod", "web"),
                ("verb", "remove-volume"),
                ("volume", "data")
            ]
        );
        let request = Request::new(Verb::Pull).image(Some("docker.io/library/busybox:1"));
        assert_eq!(
            details(&request),
            [("image", "docker.io/library/busybox:1"), ("verb", "pull")]
        );
    }

    #[test]
    fn no_detail_is_one_polkit_reserves() {
        // polkit.message, polkit.gettext_domain, polkit.icon_name … change
        // what polkit shows; tank never sets them.
        let argv = ["true".to_owned()];
        for verb in Verb::ALL {
            let request = Request::new(verb)
                .pod("p")
                .container(Some("c"))
                .volume("v")
                .image(Some("i"))
                .argv(&argv);
            for key in request.details().keys() {
                assert!(!key.starts_with("polkit."), "{verb:?}: {key}");
            }
        }
    }

    #[test]
    fn command_lines_split_back_into_the_same_words() {
        let line =
            |argv: &[&str]| command_line(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            line(&["cat", "/etc/hostname"]).unwrap(),
            "cat /etc/hostname"
        );
        assert_eq!(line(&["sh", "-c", "echo hi"]).unwrap(), "sh -c 'echo hi'");
        assert_eq!(
            line(&["sh", "-c", r#"echo "$HOME""#]).unwrap(),
            r#"sh -c 'echo "$HOME"'"#
        );
        // One word with a space is not two words.
        assert_eq!(line(&["cat /etc/hostname"]).unwrap(), "'cat /etc/hostname'");
        assert_eq!(line(&["printf", ""]).unwrap(), "printf ''");
        assert_eq!(line(&[]), None);
        for argv in [
            &["sh", "-c", "echo 'it''s' \\ \"$x\" `id` $(id); rm -rf *"][..],
            &["a\nb", "tab\there", "ünïcödé", "!", "~", "--x=y"][..],
        ] {
            let joined = line(argv).unwrap();
            assert_eq!(
                shlex::split(&joined).unwrap(),
                argv.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{joined}"
            );
        }
        assert_eq!(line(&["nul\0byte"]), None);
    }

    #[test]
    fn authorized_passes() {
        let v = Verdict::of(&result(true, false, &[]));
        assert_eq!(v, Verdict::Authorized);
        assert!(v.into_result(1000, Action::ManagePods, false).is_ok());
    }

    #[test]
    fn not_authorized_is_access_denied_naming_the_action() {
        let v = Verdict::of(&result(false, false, &[]));
        let (name, msg) = error_name(v.into_result(1000, Action::ManageImages, true));
        assert_eq!(name, DENIED);
        assert_eq!(msg, "uid 1000 is not authorized for org.tank.images.manage");
    }

    #[test]
    fn challenge_without_interaction_asks_for_it() {
        let v = Verdict::of(&result(false, true, &[]));
        assert_eq!(v, Verdict::Challenge);
        let (name, msg) = error_name(v.clone().into_result(7, Action::ExecPods, false));
        assert_eq!(
            name,
            "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
        );
        assert!(msg.contains("org.tank.pods.exec"), "{msg}");
        // Interaction was allowed and polkit still challenges: no agent.
        let (name, msg) = error_name(v.into_result(7, Action::ExecPods, true));
        assert_eq!(name, DENIED);
        assert!(msg.contains("no polkit agent"), "{msg}");
    }

    #[test]
    fn dismissed_is_denied() {
        let v = Verdict::of(&result(false, true, &[("polkit.dismissed", "true")]));
        let (name, msg) = error_name(v.into_result(7, Action::ManagePods, true));
        assert_eq!(name, DENIED);
        assert!(msg.ends_with("authentication was dismissed"), "{msg}");
    }

    #[test]
    fn only_root_declares_unconfined_containers() {
        let pod = |seccomp: &str| {
            tank_api::spec::Pod::from_json(&format!(
                r#"{{"name": "web", "containers": [
                    {{"name": "a", "image": "busybox", "seccomp": "{seccomp}"}},
                    {{"name": "b", "image": "busybox"}}]}}"#
            ))
            .unwrap()
        };
        assert!(may_declare(0, &pod("unconfined")).is_ok());
        assert!(may_declare(1000, &pod("runtime/default")).is_ok());
        let (name, msg) = error_name(may_declare(1000, &pod("unconfined")));
        assert_eq!(name, DENIED);
        assert_eq!(
            msg,
            r#"uid 1000 may not apply pod "web": container "a" asks for "seccomp": "unconfined", which only root may declare"#
        );
    }

    #[test]
    fn unavailable_fails_closed() {
        let v = Verdict::Unavailable("ServiceUnknown".into());
        let (name, msg) = error_name(v.into_result(7, Action::ManagePods, false));
        assert_eq!(name, DENIED);
        assert_eq!(
            msg,
            "uid 7 is not authorized for org.tank.pods.manage: polkit is unavailable (ServiceUnknown)"
        );
    }
}
