//! One pass of the pipeline: files → index → translate → publish, logging what changed.
//!
//! Sources call [`Reconciler::apply`] with everything they read; it is level-triggered and
//! idempotent, so a periodic rescan that finds nothing new publishes and logs nothing.

use crate::index::{FileRead, Index};
use crate::manifest::Problem;
use crate::model::{Input, ObjectKey};
use crate::server::{Hub, ObjectReport};
use crate::translate::{self, Status};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tollhouse_snapshot::ConditionStatus;
use tracing::{info, warn};

/// Holds the index and what was last reported, to log only changes.
#[derive(Debug)]
pub struct Reconciler {
    index: Index,
    hub: Arc<Hub>,
    problems: BTreeSet<Problem>,
    ignored: BTreeSet<Problem>,
    statuses: Arc<BTreeMap<ObjectKey, Status>>,
    /// Whether files were applied once: a rescan that finds the files as they were does
    /// nothing after that.
    applied: bool,
    /// The UTC day of the last translate: a new day translates again (SigV4 signing keys are
    /// per day) even when nothing else changed.
    day: i64,
}

/// How long until the next UTC day starts (plus a second, to be past it).
pub fn until_next_day() -> std::time::Duration {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    std::time::Duration::from_secs(86_400 - secs % 86_400 + 1)
}

impl Reconciler {
    /// A reconciler publishing into `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Reconciler {
            index: Index::new(),
            hub,
            problems: BTreeSet::new(),
            ignored: BTreeSet::new(),
            statuses: Arc::default(),
            applied: false,
            day: 0,
        }
    }

    /// Takes the full current set of files, translates and publishes if the content changed;
    /// files read as they were last time are neither parsed nor translated again.
    pub fn apply(&mut self, files: Vec<(String, FileRead)>) {
        if !self.index.update(files) && self.applied && self.day == translate::today() {
            return;
        }
        self.applied = true;
        let input = self.index.input();
        let output = self.translate(&input);
        self.finish(output, true);
        // Freed after publishing, off the path of the change.
        drop(input);
    }

    /// Translates objects from another source (the Kubernetes API), publishes if the content
    /// changed, and returns the status of every Stage and ApiRoute.
    /// The map is shared: it is the same `Arc` as long as no status changed.
    pub fn apply_input(&mut self, input: &Input) -> Arc<BTreeMap<ObjectKey, Status>> {
        let output = self.translate(input);
        // Objects from the API server have no file, so an unchanged set of statuses means an
        // unchanged report.
        self.finish(output, false);
        self.statuses.clone()
    }

    fn translate(&mut self, input: &Input) -> translate::Output {
        let start = std::time::Instant::now();
        self.day = translate::today();
        let output = translate::translate_on(input, self.day);
        let metrics = &self.hub.metrics;
        metrics.reconciles.inc();
        metrics
            .translate_seconds
            .observe(start.elapsed().as_secs_f64());
        output
    }

    fn finish(&mut self, output: translate::Output, files: bool) {
        let problems: BTreeSet<Problem> = self.index.problems().into_iter().collect();
        for p in problems.difference(&self.problems) {
            warn!(file = %p.file, line = p.line, column = p.column, message = %p.message, "manifest problem");
        }
        for p in self.problems.difference(&problems) {
            info!(file = %p.file, line = p.line, message = %p.message, "manifest problem resolved");
        }
        let ignored: BTreeSet<Problem> = self.index.ignored().into_iter().collect();
        for p in ignored.difference(&self.ignored) {
            warn!(file = %p.file, line = p.line, message = %p.message, "document ignored");
        }
        self.log_status_changes(&output.statuses);

        let unchanged = *self.statuses == output.statuses && problems == self.problems;
        if files || !unchanged {
            let objects = output
                .statuses
                .iter()
                .map(|(key, status)| ObjectReport {
                    kind: key.kind.as_str(),
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    generation: status.observed_generation,
                    file: self.index.location(key).map(|(file, _)| file.to_string()),
                    conditions: status.conditions.clone(),
                })
                .collect();
            self.hub
                .set_report(problems.iter().cloned().collect(), objects);
        }
        self.problems = problems;
        self.ignored = ignored;
        if !unchanged {
            self.statuses = Arc::new(output.statuses);
        }

        let stages = output.snapshot.stages.len();
        let routes = output.snapshot.route_count();
        match self.hub.publish(output.snapshot) {
            Ok(Some(version)) => info!(
                snapshot.version = version,
                stages, routes, "snapshot published"
            ),
            Ok(None) => {}
            Err(error) => {
                self.hub.metrics.error("publish");
                warn!(%error, "snapshot could not be serialised; keeping the previous one")
            }
        }
    }

    fn log_status_changes(&self, statuses: &BTreeMap<ObjectKey, Status>) {
        for (key, status) in statuses {
            if self.statuses.get(key) == Some(status) {
                continue;
            }
            let (file, line) = self.index.location(key).unwrap_or(("", 0));
            let blocking = status
                .conditions
                .iter()
                .find(|c| c.status != ConditionStatus::True);
            match blocking {
                None => info!(
                    object.kind = %key.kind, object.namespace = %key.namespace, object.name = %key.name,
                    object.generation = status.observed_generation, file, line, "object ready"
                ),
                Some(c) => warn!(
                    object.kind = %key.kind, object.namespace = %key.namespace, object.name = %key.name,
                    object.generation = status.observed_generation, file, line,
                    condition = %c.kind, reason = %c.reason, message = %c.message, "object not ready"
                ),
            }
        }
        for key in self.statuses.keys().filter(|k| !statuses.contains_key(*k)) {
            info!(object.kind = %key.kind, object.namespace = %key.namespace, object.name = %key.name, "object removed");
        }
    }
}
