//! Files re-read while the process runs: certificates that kubelet or cert-manager replace are
//! used without a restart.
//!
//! A [`Reloader`] builds a value (a rustls config) from a list of files, and each
//! [`check`](Reloader::check) reads the files again: when their bytes changed, it builds a new
//! value and swaps it into the [`Reloading`] handle its users hold. Files that do not build
//! (half written, a certificate and key from different updates) keep the previous value, and are
//! reported once with the builder's error, which names the files, never their content.

use arc_swap::ArcSwap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A value replaced in place when its files change; clones share it.
#[derive(Debug)]
pub struct Reloading<T>(Arc<ArcSwap<T>>);

impl<T> Reloading<T> {
    /// Always `value` (nothing replaces it unless a [`Reloader`] shares it).
    pub fn fixed(value: T) -> Reloading<T> {
        Reloading(Arc::new(ArcSwap::from_pointee(value)))
    }

    /// The newest value; a new `Arc` after each reload.
    pub fn current(&self) -> Arc<T> {
        self.0.load_full()
    }
}

impl<T> Clone for Reloading<T> {
    fn clone(&self) -> Reloading<T> {
        Reloading(self.0.clone())
    }
}

/// What one look at the files found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// Same bytes as last time.
    Unchanged,
    /// The files changed while they were read: looked at again next time.
    Changing,
    /// New files, now used for new connections.
    Applied,
    /// New files that do not build: the previous value is kept.
    Refused,
}

/// Re-reads a list of files and swaps in a newly built value when their bytes change.
pub struct Reloader<T, E> {
    /// What the files are, for the log ("delivery TLS").
    what: &'static str,
    paths: Vec<PathBuf>,
    build: Box<dyn FnMut() -> Result<T, E> + Send>,
    value: Reloading<T>,
    /// The bytes the current value (or the last refusal) came from; `None`: unreadable.
    seen: Vec<Option<Vec<u8>>>,
}

impl<T, E: fmt::Display> Reloader<T, E> {
    /// Reads `paths` and builds the first value with `build`, which reads them itself. A problem
    /// here is a startup error. `what` names the files in the log: "{what} files reloaded".
    pub fn load(
        what: &'static str,
        paths: Vec<PathBuf>,
        mut build: impl FnMut() -> Result<T, E> + Send + 'static,
    ) -> Result<Reloader<T, E>, E> {
        // Read before building: a change in between is then seen (and applied) at the first look.
        let seen = contents(&paths);
        let value = Reloading::fixed(build()?);
        Ok(Reloader {
            what,
            paths,
            build: Box::new(build),
            value,
            seen,
        })
    }

    /// The value this reloader replaces, for its users.
    pub fn config(&self) -> Reloading<T> {
        self.value.clone()
    }

    /// Looks at the files once. New bytes build a new value; a build that fails is logged (the
    /// error, which must not quote the files) once, and kept out until the bytes change again.
    pub fn check(&mut self) -> Reload {
        let before = contents(&self.paths);
        if before == self.seen {
            return Reload::Unchanged;
        }
        let built = (self.build)();
        // Built from what was read above only if nothing moved meanwhile (kubelet swaps all
        // files at once, but other writers may not).
        if contents(&self.paths) != before {
            tracing::debug!(
                "{} files changed while being read; looking again later",
                self.what
            );
            return Reload::Changing;
        }
        self.seen = before;
        match built {
            Ok(value) => {
                self.value.0.store(Arc::new(value));
                tracing::info!(
                    files = %Paths(&self.paths),
                    "{} files reloaded; new connections use them",
                    self.what
                );
                Reload::Applied
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    "{} files changed but are not usable; keeping the previous certificate",
                    self.what
                );
                Reload::Refused
            }
        }
    }

    /// Looks at the files every `every`, forever, telling `observe` what each look found.
    pub async fn watch(mut self, every: Duration, mut observe: impl FnMut(Reload)) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate, and the files were just read.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            observe(self.check());
        }
    }
}

impl<T, E> fmt::Debug for Reloader<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloader")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// The bytes of each file, `None` for one that cannot be read (building then says why).
fn contents(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    paths.iter().map(|path| std::fs::read(path).ok()).collect()
}

/// File names for the log, comma separated.
struct Paths<'a>(&'a [PathBuf]);

impl fmt::Display for Paths<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, path) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", path.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Dir;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The sum of the numbers in `paths`, one per file; a file that is missing or not a
    /// number does not build.
    fn sum(paths: &[PathBuf]) -> Result<u64, String> {
        paths
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                text.trim()
                    .parse::<u64>()
                    .map_err(|e| format!("{}: {e}", path.display()))
            })
            .sum()
    }

    fn two_files(dir: &Dir, a: &str, b: &str) -> Vec<PathBuf> {
        dir.replace("a", a);
        dir.replace("b", b);
        vec![dir.path("a"), dir.path("b")]
    }

    fn summing(dir: &Dir, a: &str, b: &str) -> Reloader<u64, String> {
        let paths = two_files(dir, a, b);
        Reloader::load("test", paths.clone(), move || sum(&paths)).unwrap()
    }

    #[test]
    fn files_that_do_not_build_at_startup_are_an_error() {
        let dir = Dir::new("reload-startup");
        let paths = two_files(&dir, "1", "one");
        let error = Reloader::load("test", paths.clone(), move || sum(&paths)).unwrap_err();
        assert!(
            error.contains(&dir.path("b").display().to_string()),
            "{error}"
        );
    }

    /// New bytes in any file build a new value; bytes that do not build keep the previous one,
    /// are tried once, and are replaced by the next good ones; a missing file is refused too.
    #[test]
    fn new_files_are_applied_and_broken_ones_keep_the_previous_value() {
        let dir = Dir::new("reload-check");
        let mut reloader = summing(&dir, "1", "2");
        let value = reloader.config();
        assert_eq!(*value.current(), 3);
        assert_eq!(reloader.check(), Reload::Unchanged);

        dir.replace("b", "20");
        assert_eq!(reloader.check(), Reload::Applied);
        assert_eq!(*value.current(), 21);
        assert_eq!(reloader.check(), Reload::Unchanged);

        let before = value.current();
        dir.replace("a", "1o");
        assert_eq!(reloader.check(), Reload::Refused);
        assert!(Arc::ptr_eq(&before, &value.current()));
        // Refused once: the same bytes are not tried (nor logged) again.
        assert_eq!(reloader.check(), Reload::Unchanged);
        dir.replace("a", "10");
        assert_eq!(reloader.check(), Reload::Applied);
        assert_eq!(*value.current(), 30);
        assert!(!Arc::ptr_eq(&before, &value.current()));

        dir.remove("b");
        assert_eq!(reloader.check(), Reload::Refused);
        assert_eq!(*value.current(), 30);
        dir.replace("b", "5");
        assert_eq!(reloader.check(), Reload::Applied);
        assert_eq!(*value.current(), 15);
    }

    /// A value built while a file was being replaced is dropped, and the files looked at again
    /// next time.
    #[test]
    fn a_change_during_the_build_is_looked_at_again() {
        let dir = Dir::new("reload-changing");
        let paths = two_files(&dir, "1", "2");
        let interrupt = Arc::new(AtomicBool::new(false));
        let mut reloader = Reloader::load("test", paths.clone(), {
            let (interrupt, b) = (interrupt.clone(), dir.path("b"));
            move || {
                let value = sum(&paths);
                if interrupt.swap(false, Ordering::SeqCst) {
                    std::fs::write(&b, "7").map_err(|e| e.to_string())?;
                }
                value
            }
        })
        .unwrap();
        let value = reloader.config();

        dir.replace("a", "100");
        interrupt.store(true, Ordering::SeqCst);
        assert_eq!(reloader.check(), Reload::Changing);
        assert_eq!(*value.current(), 3);
        assert_eq!(reloader.check(), Reload::Applied);
        assert_eq!(*value.current(), 107);
    }

    /// `watch` looks on its own, at the interval given, and reports what it found.
    #[tokio::test]
    async fn watch_picks_up_a_change_by_itself() {
        let dir = Dir::new("reload-watch");
        let reloader = summing(&dir, "1", "2");
        let value = reloader.config();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(reloader.watch(Duration::from_millis(50), move |reload| {
            let _ = tx.send(reload);
        }));
        dir.replace("a", "40");
        let reloads = tokio::time::timeout(Duration::from_secs(5), async {
            let mut seen = Vec::new();
            while let Some(reload) = rx.recv().await {
                seen.push(reload);
                if reload == Reload::Applied {
                    break;
                }
            }
            seen
        })
        .await
        .unwrap();
        task.abort();
        assert_eq!(reloads.last(), Some(&Reload::Applied), "{reloads:?}");
        assert_eq!(*value.current(), 42);
    }
}
