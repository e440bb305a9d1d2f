//! What a dataplane tells the controller about the snapshot it applied: the parts it left out
//! and why, so status never says more than the data path does.

use crate::{Reason, SourceRef};
use serde::{Deserialize, Serialize};

/// Most entries a report carries; a dataplane that leaves out more says how many it dropped.
pub const MAX_LEFT_OUT: usize = 32;
/// Longest message of one entry, in bytes.
pub const MAX_MESSAGE: usize = 300;

/// One object a dataplane did not serve as the snapshot says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeftOut {
    /// The object (at the generation the snapshot carried).
    pub source: SourceRef,
    /// Why, in the conditions' vocabulary.
    pub reason: Reason,
    /// What the dataplane said; never key material.
    pub message: String,
}

/// The report sent with every poll: what the dataplane left out of the snapshot it serves.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// At most [`MAX_LEFT_OUT`] entries, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
    /// Entries dropped to keep the report small.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Report {
    /// A report of `left_out`, sorted, capped, with messages shortened on a char boundary.
    pub fn new(mut left_out: Vec<LeftOut>) -> Report {
        left_out.sort();
        left_out.dedup();
        let more = left_out.len().saturating_sub(MAX_LEFT_OUT);
        left_out.truncate(MAX_LEFT_OUT);
        for entry in &mut left_out {
            if entry.message.len() > MAX_MESSAGE {
                let mut end = MAX_MESSAGE;
                while !entry.message.is_char_boundary(end) {
                    end -= 1;
                }
                entry.message.truncate(end);
            }
        }
        Report { left_out, more }
    }

    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.left_out.is_empty() && self.more == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, message: &str) -> LeftOut {
        LeftOut {
            source: SourceRef {
                kind: "ApiRoute".into(),
                namespace: "ns".into(),
                name: name.into(),
                generation: 1,
            },
            reason: Reason::InvalidIntegration,
            message: message.into(),
        }
    }

    #[test]
    fn reports_are_sorted_capped_and_short() {
        let many: Vec<LeftOut> = (0..40)
            .rev()
            .map(|i| entry(&format!("r{i:02}"), "x"))
            .collect();
        let r = Report::new(many);
        assert_eq!(r.left_out.len(), MAX_LEFT_OUT);
        assert_eq!(r.more, 8);
        assert_eq!(r.left_out[0].source.name, "r00");
        let long = Report::new(vec![entry("r", &"é".repeat(400))]);
        assert!(long.left_out[0].message.len() <= MAX_MESSAGE);
        assert!(Report::new(Vec::new()).is_empty());
    }
}
