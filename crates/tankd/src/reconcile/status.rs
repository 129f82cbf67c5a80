//! Observed status of pods and containers, kubelet-like: a phase per pod,
//! a state per container, restart counts, recent events. Pure data, shown
//! on the bus as JSON (`org.tank.Pod.Status`) and as the `Phase` property;
//! the reconcile machine ([`super::machine`]) is the only writer.

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// How many recent events a pod keeps.
pub const MAX_EVENTS: usize = 20;

pub use super::policy::Phase;

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
    fn events_are_bounded() {
        let mut s = PodStatus::new(1, []);
        for i in 0..(MAX_EVENTS + 5) {
            s.event("Started", format!("{i}"));
        }
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(s.events.front().unwrap().message, "5");
    }
}
