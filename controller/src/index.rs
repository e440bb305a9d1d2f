//! The current set of objects, built from the files of a source.
//!
//! Nothing is lost on a bad edit: a file with a syntax error (or that cannot be read) keeps the
//! objects it last contributed, and a document that fails to type-check keeps the last good
//! version of its object. Directory objects have no API server, so the index plays its part:
//! it assigns `generation` (bumped on spec changes) and a first-seen order for "oldest wins".

use crate::manifest::{self, Document, Manifest, Object, Problem};
use crate::model::{Input, Meta, ObjectKey, Resource};
use std::collections::{btree_map, BTreeMap};
use std::sync::Arc;

/// What a source read for one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRead {
    /// The file's text.
    Text(String),
    /// The file exists but could not be read; the message says why.
    Unreadable(String),
}

#[derive(Clone, Debug, Default)]
struct FileState {
    /// What was read: the same read again gives the same state, so it is not parsed again
    /// (at 100,000 keys, parsing every file on every change took seconds).
    read: Option<FileRead>,
    /// Shared with `current`: resolving 100,000 objects copies pointers, not objects.
    entries: Vec<Arc<Manifest>>,
    problems: Vec<Problem>,
    ignored: Vec<Problem>,
}

/// An object as currently resolved, with the metadata the index tracks for it.
#[derive(Clone, Debug)]
struct Current {
    manifest: Arc<Manifest>,
    file: Arc<str>,
    generation: i64,
    seen: u64,
}

/// The current objects of one source.
#[derive(Debug, Default)]
pub struct Index {
    files: BTreeMap<String, FileState>,
    current: BTreeMap<ObjectKey, Current>,
    duplicates: Vec<Problem>,
    next_seen: u64,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Index::default()
    }

    /// Replaces the set of files with `files` (every file of the source; absent files are gone).
    /// Returns whether anything changed: a file read as it was last time is not parsed again,
    /// and when no file changed the objects are left as they are.
    pub fn update(&mut self, files: Vec<(String, FileRead)>) -> bool {
        let mut next_files = BTreeMap::new();
        let mut changed = files.len() != self.files.len();
        for (file, read) in files {
            let previous = match self.files.remove(&file) {
                Some(same) if same.read.as_ref() == Some(&read) => {
                    next_files.insert(file, same);
                    continue;
                }
                previous => previous,
            };
            changed = true;
            let previous = previous.as_ref();
            let kept = || FileState {
                entries: previous.map(|p| p.entries.clone()).unwrap_or_default(),
                ignored: previous.map(|p| p.ignored.clone()).unwrap_or_default(),
                ..FileState::default()
            };
            let state = match &read {
                FileRead::Unreadable(why) => FileState {
                    problems: vec![Problem {
                        file: file.clone(),
                        line: None,
                        column: None,
                        message: why.clone(),
                    }],
                    ..kept()
                },
                FileRead::Text(text) => match manifest::parse_file(&file, text) {
                    Err(problem) => FileState {
                        problems: vec![problem],
                        ..kept()
                    },
                    Ok(documents) => self.file_state(documents),
                },
            };
            let read = Some(read);
            next_files.insert(file, FileState { read, ..state });
        }
        self.files = next_files;
        if changed {
            self.resolve();
        }
        changed
    }

    fn file_state(&self, documents: Vec<Document>) -> FileState {
        let mut state = FileState::default();
        for document in documents {
            match document {
                Document::Object(manifest) => state.entries.push(Arc::from(manifest)),
                Document::Ignored(problem) => state.ignored.push(problem),
                Document::Invalid { key, problem } => {
                    if let Some(last_good) = key.and_then(|k| self.current.get(&k)) {
                        let mut kept = Manifest::clone(&last_good.manifest);
                        kept.line = problem.line.unwrap_or(kept.line);
                        state.entries.push(Arc::new(kept));
                    }
                    state.problems.push(problem);
                }
            }
        }
        state
    }

    /// First definition by (file, position) wins; generations and ages carry over by key.
    fn resolve(&mut self) {
        let mut next: BTreeMap<ObjectKey, Current> = BTreeMap::new();
        let mut duplicates = Vec::new();
        for (file, state) in &self.files {
            let shared: Arc<str> = Arc::from(file.as_str());
            for manifest in &state.entries {
                match next.entry(manifest.key.clone()) {
                    btree_map::Entry::Occupied(first) => {
                        let first = first.get();
                        duplicates.push(Problem {
                            file: file.clone(),
                            line: Some(manifest.line),
                            column: None,
                            message: format!(
                                "duplicate {}: already defined at {}:{}; this definition is ignored",
                                manifest.key, first.file, first.manifest.line
                            ),
                        });
                    }
                    btree_map::Entry::Vacant(slot) => {
                        let (generation, seen) = match self.current.get(&manifest.key) {
                            Some(old)
                                if Arc::ptr_eq(&old.manifest, manifest)
                                    || old.manifest.object == manifest.object =>
                            {
                                (old.generation, old.seen)
                            }
                            Some(old) => (old.generation + 1, old.seen),
                            None => {
                                self.next_seen += 1;
                                (1, self.next_seen)
                            }
                        };
                        let generation = manifest.generation.unwrap_or(generation);
                        slot.insert(Current {
                            manifest: Arc::clone(manifest),
                            file: Arc::clone(&shared),
                            generation,
                            seen,
                        });
                    }
                }
            }
        }
        self.current = next;
        self.duplicates = duplicates;
    }

    /// Current problems: syntax and type errors, unreadable files and duplicates, sorted.
    pub fn problems(&self) -> Vec<Problem> {
        let mut all: Vec<Problem> = self
            .files
            .values()
            .flat_map(|f| f.problems.iter().cloned())
            .chain(self.duplicates.iter().cloned())
            .collect();
        all.sort();
        all
    }

    /// Documents of kinds the controller does not read, sorted.
    pub fn ignored(&self) -> Vec<Problem> {
        let mut all: Vec<Problem> = self
            .files
            .values()
            .flat_map(|f| f.ignored.iter().cloned())
            .collect();
        all.sort();
        all
    }

    /// File and line an object currently comes from.
    pub fn location(&self, key: &ObjectKey) -> Option<(&str, usize)> {
        self.current.get(key).map(|c| (&*c.file, c.manifest.line))
    }

    /// The objects as translate reads them.
    pub fn input(&self) -> Input {
        let mut input = Input::default();
        for (key, current) in &self.current {
            let meta = Meta {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                generation: current.generation,
                created: current.manifest.created.clone(),
                seen: current.seen,
            };
            match &current.manifest.object {
                Object::Stage(spec) => input.stages.push(Resource {
                    meta,
                    spec: spec.clone(),
                }),
                Object::ApiRoute(spec) => input.routes.push(Resource {
                    meta,
                    spec: spec.clone(),
                }),
                Object::Secret(data) => input.secrets.push(Resource {
                    meta,
                    spec: data.clone(),
                }),
                Object::Service(ports) => input.services.push(Resource {
                    meta,
                    spec: ports.clone(),
                }),
                Object::EndpointSlice(slice) => input.endpoint_slices.push(Resource {
                    meta,
                    spec: slice.clone(),
                }),
                Object::UsagePlan(spec) => input.usage_plans.push(Resource {
                    meta,
                    spec: spec.clone(),
                }),
                Object::Authorizer(spec) => input.authorizers.push(Resource {
                    meta,
                    spec: spec.clone(),
                }),
            }
        }
        input
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    fn route(name: &str, path: &str) -> String {
        format!(
            "apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: {name}\nspec:\n  api: pets\n  path: {path}\n  integration:\n    type: MOCK\n"
        )
    }

    fn text(s: String) -> FileRead {
        FileRead::Text(s)
    }

    fn paths(index: &Index) -> Vec<(String, i64, u64, String)> {
        index
            .input()
            .routes
            .into_iter()
            .map(|r| (r.meta.name, r.meta.generation, r.meta.seen, r.spec.path))
            .collect()
    }

    #[test]
    fn generations_start_at_one_and_bump_on_spec_changes() {
        let mut index = Index::new();
        index.update(vec![("a.yaml".into(), text(route("r", "/a")))]);
        index.update(vec![("a.yaml".into(), text(route("r", "/a")))]);
        assert_eq!(paths(&index), vec![("r".into(), 1, 1, "/a".into())]);
        index.update(vec![("a.yaml".into(), text(route("r", "/b")))]);
        assert_eq!(paths(&index), vec![("r".into(), 2, 1, "/b".into())]);
    }

    #[test]
    fn files_read_as_they_were_change_nothing() {
        let mut index = Index::new();
        let files = || {
            vec![
                ("a.yaml".into(), text(route("r", "/a"))),
                (
                    "b.yaml".into(),
                    FileRead::Unreadable("permission denied".into()),
                ),
            ]
        };
        assert!(index.update(files()));
        assert!(!index.update(files()), "nothing changed");
        let mut edited = files();
        edited[0].1 = text(route("r", "/b"));
        assert!(index.update(edited));
        assert_eq!(paths(&index), vec![("r".into(), 2, 1, "/b".into())]);
        assert!(
            index.update(vec![("a.yaml".into(), text(route("r", "/b")))]),
            "b.yaml gone"
        );
        assert!(index.problems().is_empty());
        assert!(!index.update(vec![("a.yaml".into(), text(route("r", "/b")))]));
    }

    #[test]
    fn syntax_errors_keep_the_files_last_good_objects() {
        let mut index = Index::new();
        index.update(vec![("a.yaml".into(), text(route("r", "/a")))]);
        index.update(vec![(
            "a.yaml".into(),
            text(format!("{}  bad: [\n", route("r", "/b"))),
        )]);
        assert_eq!(paths(&index), vec![("r".into(), 1, 1, "/a".into())]);
        let problems = index.problems();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].line.is_some() && problems[0].column.is_some());
        index.update(vec![(
            "a.yaml".into(),
            FileRead::Unreadable("permission denied".into()),
        )]);
        assert_eq!(paths(&index).len(), 1);
        index.update(vec![]);
        assert!(paths(&index).is_empty());
    }

    #[test]
    fn type_errors_keep_the_objects_last_good_version_and_others_update() {
        let mut index = Index::new();
        let two = format!("{}---\n{}", route("r", "/a"), route("s", "/s"));
        index.update(vec![("a.yaml".into(), text(two))]);
        let broken = format!(
            "{}---\n{}",
            route("r", "/a").replace("  path: /a\n", ""),
            route("s", "/t")
        );
        index.update(vec![("a.yaml".into(), text(broken))]);
        assert_eq!(
            paths(&index),
            vec![
                ("r".into(), 1, 1, "/a".into()),
                ("s".into(), 2, 2, "/t".into())
            ]
        );
        let problems = index.problems();
        assert!(
            problems[0].message.contains("missing field `path`"),
            "{problems:?}"
        );
        assert_eq!(problems[0].line, Some(1));
    }

    #[test]
    fn the_first_definition_wins_and_the_duplicate_is_reported() {
        let mut index = Index::new();
        index.update(vec![
            ("b.yaml".into(), text(route("r", "/b"))),
            ("a.yaml".into(), text(format!("# x\n{}", route("r", "/a")))),
        ]);
        assert_eq!(paths(&index), vec![("r".into(), 1, 1, "/a".into())]);
        let problems = index.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(
            (problems[0].file.as_str(), problems[0].line),
            ("b.yaml", Some(1))
        );
        assert!(
            problems[0].message.contains("a.yaml:2"),
            "{}",
            problems[0].message
        );
        let key = ObjectKey::new(Kind::ApiRoute, "default", "r");
        assert_eq!(index.location(&key), Some(("a.yaml", 2)));
    }
}
