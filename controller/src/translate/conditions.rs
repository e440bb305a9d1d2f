//! Conditions as translate computes them: typed, with the first blocking reason carried into
//! Ready so `kubectl get` shows why in one column.

use serde::Serialize;
use tollhouse_snapshot::{ConditionStatus, ConditionType, Reason};

/// Why a condition is False.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The reason.
    pub reason: Reason,
    /// What is wrong, for people; never key material.
    pub message: String,
}

/// A False condition's cause, as a `Result`.
pub fn fail<T>(reason: Reason, message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        reason,
        message: message.into(),
    })
}

/// One status condition, as in `status.conditions` but without a transition time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// Accepted, ResolvedRefs or Ready (Programmed is the status writer's).
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// True or False.
    pub status: ConditionStatus,
    /// From the fixed list.
    pub reason: Reason,
    /// Human-readable detail.
    pub message: String,
}

/// Status of one object that has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The generation the conditions describe.
    pub observed_generation: i64,
    /// Accepted, ResolvedRefs, Ready, in that order.
    pub conditions: Vec<Condition>,
    /// A UsagePlan's Stages and key count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<super::usage_plan::PlanStatus>,
}

impl Status {
    /// The status of an object of `generation` from its three results. Ready carries the
    /// first blocking reason: Accepted's, else ResolvedRefs', else its own.
    pub fn new(
        generation: i64,
        accepted: Result<(), Failure>,
        refs: Result<(), Failure>,
        ready: Result<String, Failure>,
    ) -> Status {
        let accepted = accepted.map(|()| "the object is valid".to_string());
        let refs = refs.map(|()| "all references are resolved".to_string());
        let ready = match (&accepted, &refs) {
            (Err(f), _) | (Ok(_), Err(f)) => Err(f.clone()),
            _ => ready,
        };
        Status {
            observed_generation: generation,
            conditions: vec![
                condition(ConditionType::Accepted, &accepted),
                condition(ConditionType::ResolvedRefs, &refs),
                condition(ConditionType::Ready, &ready),
            ],
            plan: None,
        }
    }

    /// The condition of this type, if present.
    pub fn condition(&self, kind: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

fn condition(kind: ConditionType, result: &Result<String, Failure>) -> Condition {
    match result {
        Ok(message) => Condition {
            kind,
            status: ConditionStatus::True,
            reason: kind.ok_reason(),
            message: message.clone(),
        },
        Err(f) => Condition {
            kind,
            status: ConditionStatus::False,
            reason: f.reason,
            message: f.message.clone(),
        },
    }
}
