//! Golden files for translate: `testdata/translate/<kind>/<case>.in.yaml` → `<case>.out.yaml`.
//!
//! Inputs go through the same manifest parser and index as the directory source. Each snapshot
//! is then compiled by the dataplane, and what it left out is part of the golden
//! (`dataplaneLeftOut`, absent when nothing): translate checks with the dataplane's own code, so
//! anything there is a disagreement the golden must show. Run with `UPDATE_GOLDEN=1` to rewrite
//! the outputs, then read the diff in review.

// Helpers outside #[test] functions are test code too; clippy.toml only knows the latter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tollhouse_controller::index::{FileRead, Index};
use tollhouse_controller::manifest::Problem;
use tollhouse_controller::translate::{translate_on, Status};
use tollhouse_dataplane::compile::CompiledSnapshot;
use tollhouse_dataplane::metrics::Metrics;
use tollhouse_snapshot::{LeftOut, Snapshot, Versioned};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Golden {
    snapshot: Snapshot,
    statuses: BTreeMap<String, Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<Problem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dataplane_left_out: Vec<LeftOut>,
}

fn render(file: &str, text: &str) -> String {
    let mut index = Index::new();
    index.update(vec![(file.to_string(), FileRead::Text(text.to_string()))]);
    // A fixed day (2026-12-01): SigV4 signing keys are derived per day.
    let output = translate_on(&index.input(), 20_788);
    // The unredacted snapshot, as the dataplane receives it.
    let compiled = CompiledSnapshot::compile(
        &Versioned::new(1, output.snapshot.clone()),
        &tollhouse_dataplane::runtime::Runtime::without_logs(Metrics::default()),
    )
    .unwrap();
    let golden = Golden {
        dataplane_left_out: compiled.left_out,
        snapshot: output.snapshot.redacted(),
        statuses: output
            .statuses
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        problems: index.problems(),
    };
    serde_yaml::to_string(&golden).unwrap()
}

#[test]
fn translate_goldens() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/translate");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    // One folder per kind, one file per case.
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .flat_map(|kind| std::fs::read_dir(kind).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty());
    let mut failures = Vec::new();
    for input in inputs {
        let name = input
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&input).unwrap();
        assert!(
            text.starts_with('#'),
            "{name} must begin with a comment saying what it proves"
        );
        let got = render(&name, &text);
        // Goldens are read in review and committed: no private key may reach them.
        assert!(
            !got.contains("PRIVATE KEY"),
            "{name}: key material in output"
        );
        let out = dir.join(name.replace(".in.yaml", ".out.yaml"));
        if update {
            std::fs::write(&out, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&out).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "{} differs (UPDATE_GOLDEN=1 rewrites):\n{got}",
                out.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
