//! Observed status of pods and containers, kubelet-like: a phase per pod,
//! a state per container, restart counts, recent events. Pure data, shown
//! on the bus as JSON (`org.tank.Pod.Status`, the `status` of a `Get`
//! document: [`PodDocument`]) and as the `Phase` property. tankd's
//! reconcile machine is the only writer; clients read it as these types.

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// How many recent events a pod keeps.
pub const MAX_EVENTS: usize = 20;

/// Pod phases (kubelet's `getPhase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Accepted, but some container has not run yet.
    Pending,
    /// Every container has run; some runs or will run again.
    Running,
    /// Every container ended for good, all successfully.
    Succeeded,
    /// Every container ended for good, at least one not successfully.
    Failed,
    /// Deleted; its containers are being stopped.
    Terminating,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Terminating => "Terminating",
        }
    }
}

/// Not the name of a [`Phase`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a pod phase")]
pub struct UnknownPhase(pub String);

impl std::str::FromStr for Phase {
    type Err = UnknownPhase;

    /// The phase named `text` (as [`Phase::as_str`] writes it).
    fn from_str(text: &str) -> Result<Phase, UnknownPhase> {
        [
            Phase::Pending,
            Phase::Running,
            Phase::Succeeded,
            Phase::Failed,
            Phase::Terminating,
        ]
        .into_iter()
        .find(|phase| phase.as_str() == text)
        .ok_or_else(|| UnknownPhase(text.to_owned()))
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    Waiting {
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    Running {
        pid: u32,
        started_at: String,
    },
    Terminated {
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
        reason: String,
        finished_at: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub state: ContainerState,
    pub restart_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub time: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    pub phase: Phase,
    pub observed_generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub containers: BTreeMap<String, ContainerStatus>,
    /// The pod's IPv4 addresses (its NICs').
    pub ips: Vec<String>,
    pub events: VecDeque<Event>,
}

pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl PodStatus {
    pub fn new(generation: u64, containers: impl IntoIterator<Item = String>) -> PodStatus {
        PodStatus {
            phase: Phase::Pending,
            observed_generation: generation,
            message: None,
            containers: containers
                .into_iter()
                .map(|name| {
                    (
                        name,
                        ContainerStatus {
                            state: ContainerState::Waiting {
                                reason: "ContainerCreating".to_owned(),
                                message: None,
                            },
                            restart_count: 0,
                        },
                    )
                })
                .collect(),
            ips: Vec::new(),
            events: VecDeque::new(),
        }
    }

    pub fn event(&mut self, reason: &str, message: impl Into<String>) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            time: timestamp(SystemTime::now()),
            reason: reason.to_owned(),
            message: message.into(),
        });
    }

    /// Like [`PodStatus::event`], unless the newest event already says
    /// exactly this (a retry failing the same way again is one event).
    pub fn event_once(&mut self, reason: &str, message: impl Into<String>) {
        let message = message.into();
        if self
            .events
            .back()
            .is_some_and(|e| e.reason == reason && e.message == message)
        {
            return;
        }
        self.event(reason, message);
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a status serializes")
    }

    /// The `Status` property's text: `{}` until tankd first reported on
    /// the pod (`None`), else a status.
    pub fn from_property(text: &str) -> Result<Option<PodStatus>, serde_json::Error> {
        let Observed(status) = serde_json::from_str(text)?;
        Ok(status)
    }
}

/// A status as the bus carries it: `{}` for none yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed(pub Option<PodStatus>);

impl Serialize for Observed {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match &self.0 {
            Some(status) => status.serialize(serializer),
            None => serializer.serialize_map(Some(0))?.end(),
        }
    }
}

impl<'de> Deserialize<'de> for Observed {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// A status, or no field at all.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Status(Box<PodStatus>),
            Empty(Empty),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Empty {}
        Ok(match Form::deserialize(deserializer)? {
            Form::Status(status) => Observed(Some(*status)),
            Form::Empty(Empty {}) => Observed(None),
        })
    }
}

/// What `org.tank.Manager.Get` returns: a pod's desired and observed
/// state in one JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodDocument {
    pub name: String,
    /// Bumped on every effective change of the spec.
    pub generation: u64,
    /// When the pod was first applied (ms since the Unix epoch).
    pub created_ms: u64,
    /// When the spec last changed (ms since the Unix epoch).
    pub updated_ms: u64,
    pub phase: Phase,
    /// `{}` until tankd first reported on the pod.
    pub status: Observed,
    /// Env values redacted unless the caller may manage pods.
    pub spec: crate::spec::Pod,
}

impl PodDocument {
    /// Reads a `Get` reply.
    pub fn from_json(text: &str) -> Result<PodDocument, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// # Panics
    /// Never for a document made of a valid spec (see
    /// [`crate::spec::Pod::to_canonical_json`]).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a pod document serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_once_skips_a_repeat_of_the_newest_event() {
        let mut s = PodStatus::new(1, []);
        s.event_once("Failed", "no parent eth9");
        s.event_once("Failed", "no parent eth9");
        s.event_once("Failed", "address in use");
        s.event_once("Failed", "no parent eth9");
        let messages: Vec<&str> = s.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            ["no parent eth9", "address in use", "no parent eth9"]
        );
    }

    #[test]
    fn phases_by_name() {
        for phase in [Phase::Pending, Phase::Running, Phase::Terminating] {
            assert_eq!(phase.as_str().parse::<Phase>(), Ok(phase));
            assert_eq!(
                serde_json::to_string(&phase).unwrap(),
                format!("\"{phase}\"")
            );
        }
        assert!("pending".parse::<Phase>().is_err());
    }

    #[test]
    fn the_property_reads_as_types() {
        assert_eq!(PodStatus::from_property("{}").unwrap(), None);
        let mut status = PodStatus::new(2, ["app".to_owned()]);
        status.event("Started", "started app");
        assert_eq!(
            PodStatus::from_property(&status.to_json()).unwrap(),
            Some(status.clone())
        );
        assert!(PodStatus::from_property(r#"{"phase": "Sleeping"}"#).is_err());
        assert!(PodStatus::from_property(r#"{"x": 1}"#).is_err());
        assert_eq!(serde_json::to_string(&Observed(None)).unwrap(), "{}");
        assert_eq!(
            serde_json::to_string(&Observed(Some(status.clone()))).unwrap(),
            status.to_json()
        );
    }

    #[test]
    fn events_are_bounded() {
        let mut s = PodStatus::new(1, []);
        for i in 0..(MAX_EVENTS + 5) {
            s.event("Started", format!("{i}"));
        }
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(s.events.front().unwrap().message, "5");
    }
}
