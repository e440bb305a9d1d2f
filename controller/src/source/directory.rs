//! A directory of manifests, watched with inotify (via `notify`) and rescanned periodically.
//!
//! Events only say "something changed": every change triggers a full rescan, which keeps the
//! logic level-triggered and makes missed or coalesced events harmless. The periodic rescan
//! covers filesystems where events do not arrive (network mounts, some container volumes).

use crate::index::FileRead;
use crate::reconcile::Reconciler;
use notify::{EventKind, RecursiveMode, Watcher};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// Quiet time after an event before rescanning, so an editor's burst of writes is one rescan.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Safety-net rescan period.
const RESCAN: Duration = Duration::from_secs(5);

/// Why the directory source stopped.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The directory cannot be listed at start.
    #[error("cannot read manifest directory {dir}: {error}")]
    Unreadable {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The watch could not be set up.
    #[error("cannot watch {dir}: {error}")]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// The notify error.
        error: notify::Error,
    },
    /// The blocking rescan task died.
    #[error("rescan task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Reads every `*.yaml` / `*.yml` file under `root`, sorted by relative path.
///
/// Hidden entries are skipped: Kubernetes ConfigMap volumes keep a second copy of every file
/// under `..data/`, which would otherwise show up as duplicates. Symlinked files are followed;
/// symlinked directories are not, so a link loop cannot make a scan endless.
pub fn scan(root: &Path) -> io::Result<Vec<(String, FileRead)>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(root)?;
    walk(root, entries, &mut files);
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

fn walk(root: &Path, entries: std::fs::ReadDir, files: &mut Vec<(String, FileRead)>) {
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                files.push((
                    relative(root, root),
                    FileRead::Unreadable(format!("cannot list: {error}")),
                ));
                continue;
            }
        };
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(inner) => walk(root, inner, files),
                Err(error) => files.push((
                    relative(root, &path),
                    FileRead::Unreadable(format!("cannot list: {error}")),
                )),
            }
            continue;
        }
        let is_manifest = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        let is_file = file_type.is_file() || (file_type.is_symlink() && path.is_file());
        if !is_manifest || !is_file {
            continue;
        }
        let read = match std::fs::read_to_string(&path) {
            Ok(text) => FileRead::Text(text),
            Err(error) => FileRead::Unreadable(format!("cannot read: {error}")),
        };
        files.push((relative(root, &path), read));
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across the caller's await.
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

fn relative(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    let text = relative.to_string_lossy().replace('\\', "/");
    if text.is_empty() {
        ".".to_string()
    } else {
        text
    }
}

/// Fails unless `dir` can be listed: a bad `--dir` must stop the controller at start.
pub fn check(dir: &Path) -> Result<(), DirectoryError> {
    std::fs::read_dir(dir)
        .map(drop)
        .map_err(|error| DirectoryError::Unreadable {
            dir: dir.to_path_buf(),
            error,
        })
}

/// Watches `dir` until `shutdown` turns true, feeding every rescan to `reconciler`.
pub async fn run(
    dir: PathBuf,
    mut reconciler: Reconciler,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DirectoryError> {
    check(&dir)?;

    let (events_tx, mut events) = mpsc::channel::<()>(1);
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            // Our own rescans open and read files; reacting to those would rescan forever.
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            // A full channel already holds a pending rescan, which will see this change too.
            Ok(_) => {
                let _ = events_tx.try_send(());
            }
            Err(error) => warn!(%error, "directory watch error; the periodic rescan still runs"),
        })
        .map_err(|error| DirectoryError::Watch {
            dir: dir.clone(),
            error,
        })?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|error| DirectoryError::Watch {
            dir: dir.clone(),
            error,
        })?;
    info!(dir = %dir.display(), "watching manifest directory");

    let mut rescan = tokio::time::interval(RESCAN);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = rescan.tick() => {}
            Some(()) = events.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while events.try_recv().is_ok() {}
            }
            () = stopping(&mut shutdown) => break,
        }
        let root = dir.clone();
        reconciler = tokio::task::spawn_blocking(move || {
            match scan(&root) {
                Ok(files) => reconciler.apply(files),
                // Keep every object: a directory that vanished for a moment (a remount, a
                // `git checkout`) must not take the whole configuration down with it.
                Err(error) => warn!(dir = %root.display(), %error, "cannot read manifest directory; keeping the last objects"),
            }
            reconciler
        })
        .await?;
        // The interval restarts after a rescan so that an event burst does not also trigger
        // an immediate periodic one.
        rescan.reset();
    }
    drop(watcher);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Hub;
    use std::sync::Arc;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tollhouse-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn scans_yaml_recursively_and_skips_hidden_and_other_files() {
        let dir = temp_dir("scan");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::create_dir_all(dir.join("..data")).unwrap();
        std::fs::write(dir.join("b.yml"), "b").unwrap();
        std::fs::write(dir.join("sub/a.yaml"), "a").unwrap();
        std::fs::write(dir.join("..data/c.yaml"), "c").unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        let names: Vec<String> = scan(&dir).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["b.yml", "sub/a.yaml"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_missing_directory_is_an_error() {
        let hub = Arc::new(Hub::new());
        let (_tx, rx) = watch::channel(false);
        let result = run(
            PathBuf::from("/nonexistent/tollhouse"),
            Reconciler::new(hub),
            rx,
        )
        .await;
        assert!(matches!(result, Err(DirectoryError::Unreadable { .. })));
    }

    #[tokio::test]
    async fn a_file_change_reaches_the_hub_quickly() {
        let dir = temp_dir("watch");
        let stage = "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata: {name: prod}\nspec: {api: pets}\n";
        std::fs::write(dir.join("stage.yaml"), stage).unwrap();
        let hub = Arc::new(Hub::new());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run(dir.clone(), Reconciler::new(hub.clone()), rx));
        let first = wait_for(&hub, |p| p.stages == 1).await;
        std::fs::write(dir.join("stage.yaml"), stage.replace("prod", "beta")).unwrap();
        let started = std::time::Instant::now();
        let second = wait_for(&hub, |p| p.version > first).await;
        // Well under the 5 s periodic rescan: the watch, not the safety net, delivered it.
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "took {:?}",
            started.elapsed()
        );
        assert!(second > first);
        stop.send_replace(true);
        task.await.unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    async fn wait_for(hub: &Hub, ok: impl Fn(&crate::server::Published) -> bool) -> u64 {
        for _ in 0..200 {
            if let Some(p) = hub.current().filter(|p| ok(p)) {
                return p.version;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no matching snapshot published");
    }
}
