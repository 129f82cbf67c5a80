//! Observed status of pods and containers, kubelet-like: a phase per pod,
//! a state per container, restart counts, recent events. Pure data, shown
//! on the bus as JSON (`org.tank.Pod.Status`) and as the `Phase` property.

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// How many recent events a pod keeps.
pub const MAX_EVENTS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
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

    /// The pod phase from its containers' states (kubelet's rules): all
    /// running → Running; all terminated → Succeeded if every exit was 0,
    /// else Failed; otherwise Pending. Terminating is set by the caller.
    pub fn recompute_phase(&mut self) {
        if self.phase == Phase::Terminating {
            return;
        }
        let states: Vec<&ContainerState> = self.containers.values().map(|c| &c.state).collect();
        self.phase = if states
            .iter()
            .all(|s| matches!(s, ContainerState::Running { .. }))
        {
            Phase::Running
        } else if states
            .iter()
            .all(|s| matches!(s, ContainerState::Terminated { .. }))
        {
            if states.iter().all(|s| {
                matches!(
                    s,
                    ContainerState::Terminated {
                        exit_code: Some(0),
                        ..
                    }
                )
            }) {
                Phase::Succeeded
            } else {
                Phase::Failed
            }
        } else if states
            .iter()
            .any(|s| matches!(s, ContainerState::Running { .. }))
        {
            Phase::Running
        } else {
            Phase::Pending
        };
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a status serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminated(code: i32) -> ContainerState {
        ContainerState::Terminated {
            exit_code: Some(code),
            signal: None,
            reason: "Completed".into(),
            finished_at: String::new(),
        }
    }

    #[test]
    fn phases() {
        let mut s = PodStatus::new(1, ["a".to_owned(), "b".to_owned()]);
        s.recompute_phase();
        assert_eq!(s.phase, Phase::Pending);
        for c in s.containers.values_mut() {
            c.state = terminated(0);
        }
        s.recompute_phase();
        assert_eq!(s.phase, Phase::Succeeded);
        s.containers.get_mut("b").unwrap().state = terminated(3);
        s.recompute_phase();
        assert_eq!(s.phase, Phase::Failed);
        s.containers.get_mut("a").unwrap().state = ContainerState::Running {
            pid: 1,
            started_at: String::new(),
        };
        s.recompute_phase();
        assert_eq!(s.phase, Phase::Running);
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
