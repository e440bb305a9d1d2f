//! Where access-log lines go: a bounded queue drained by one writer thread, so a request never
//! waits on the log's I/O. When the queue is full a line is dropped and counted
//! (`tollhouse_access_log_dropped_total`) rather than slowing the request path.

use prometheus_client::metrics::counter::Counter;
use std::io::Write;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Lines the queue holds before new ones are dropped.
pub const QUEUE_LINES: usize = 16_384;

/// The sending side, shared by every worker.
pub struct AccessLogSink {
    tx: Option<SyncSender<String>>,
    dropped: Counter,
}

impl AccessLogSink {
    /// A sink that writes nowhere (tests, and dataplanes whose Stages do not log).
    pub fn disabled() -> Self {
        AccessLogSink {
            tx: None,
            dropped: Counter::default(),
        }
    }

    /// A sink writing to standard output, or to `file` (appended) when given.
    pub fn start(file: Option<&Path>, dropped: Counter) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match file {
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => Box::new(std::io::stdout()),
        };
        let (tx, rx) = sync_channel(QUEUE_LINES);
        std::thread::Builder::new()
            .name("tollhouse-access-log".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(AccessLogSink {
            tx: Some(tx),
            dropped,
        })
    }

    /// A sink whose lines a test reads from the returned receiver.
    pub fn channel(capacity: usize) -> (Self, Receiver<String>) {
        let (tx, rx) = sync_channel(capacity);
        (
            AccessLogSink {
                tx: Some(tx),
                dropped: Counter::default(),
            },
            rx,
        )
    }

    /// Queues one line (without its newline); never blocks.
    pub fn send(&self, line: String) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

/// Writes lines as they come, flushing whenever the queue runs dry.
fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(line) = rx.recv() {
        let mut ok = writeln!(out, "{line}").is_ok();
        while let Ok(line) = rx.try_recv() {
            ok &= writeln!(out, "{line}").is_ok();
        }
        ok &= out.flush().is_ok();
        if !ok {
            tracing::warn!("access log write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (sink, rx) = AccessLogSink::channel(2);
        for i in 0..5 {
            sink.send(format!("line {i}"));
        }
        assert_eq!(sink.dropped(), 3);
        assert_eq!(rx.try_recv().unwrap(), "line 0");
        assert_eq!(rx.try_recv().unwrap(), "line 1");
    }

    #[test]
    fn lines_reach_the_file() {
        let dir = std::env::temp_dir().join(format!("th-al-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let sink = AccessLogSink::start(Some(&path), Counter::default()).unwrap();
        sink.send("one".into());
        sink.send("two".into());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text == "one\ntwo\n" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{text:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
