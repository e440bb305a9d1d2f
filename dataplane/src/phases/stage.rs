//! Stage: which Stage a request is for, by host name and then longest base path (reference §8),
//! and which flavour answers a request that reaches none.

use crate::flavour::Flavour;
use std::collections::HashMap;

/// What the stage phase needs of one compiled Stage.
pub struct StageEntry<'a> {
    /// Lower-case host names; empty: any host.
    pub hostnames: &'a [String],
    /// `/` or `/a/b`.
    pub base_path: &'a str,
    /// The Stage's flavour.
    pub flavour: Flavour,
}

/// Host and base-path lookup over a snapshot's Stages.
#[derive(Default)]
pub struct StageTable {
    by_host: HashMap<String, Candidates>,
    any_host: Candidates,
    /// Base path per stage (`""` for `/`).
    bases: Vec<String>,
}

/// Stages to try for a host, longest base path first, and the flavour of a miss.
#[derive(Default)]
struct Candidates {
    stages: Vec<usize>,
    miss: Flavour,
}

/// A Stage found for a request: its index and where the path below its base path starts.
#[derive(Debug, PartialEq, Eq)]
pub struct StageMatch {
    /// Index of the Stage.
    pub stage: usize,
    /// Byte offset of the Stage-relative path in the routed path (`rest`).
    pub rest_start: usize,
    /// Whether `rest` is `/` although the path ends at the base path.
    pub rest_is_root: bool,
}

impl StageTable {
    /// Builds the lookup; stages keep their index.
    pub fn build(entries: &[StageEntry<'_>]) -> StageTable {
        let mut t = StageTable {
            bases: entries
                .iter()
                .map(|e| e.base_path.trim_end_matches('/').to_string())
                .collect(),
            ..StageTable::default()
        };
        for (i, e) in entries.iter().enumerate() {
            if e.hostnames.is_empty() {
                t.any_host.stages.push(i);
            }
            for h in e.hostnames {
                t.by_host.entry(h.clone()).or_default().stages.push(i);
            }
        }
        let bases = &t.bases;
        let order = |c: &mut Candidates, any: &[usize]| {
            c.stages
                .sort_by_key(|&i| std::cmp::Reverse(bases.get(i).map_or(0, String::len)));
            // A miss is answered as REST only when every Stage that could have served the
            // host is REST; otherwise as the default, HTTP.
            let all_rest = c
                .stages
                .iter()
                .chain(any)
                .all(|&i| entries.get(i).is_some_and(|e| e.flavour == Flavour::Rest));
            let any_stage = !c.stages.is_empty() || !any.is_empty();
            c.miss = if all_rest && any_stage {
                Flavour::Rest
            } else {
                Flavour::Http
            };
        };
        let any: Vec<usize> = t.any_host.stages.clone();
        for c in t.by_host.values_mut() {
            order(c, &any);
        }
        order(&mut t.any_host, &[]);
        t
    }

    fn for_host(&self, host: &str) -> Option<&Candidates> {
        if let Some(c) = self.by_host.get(host) {
            return Some(c);
        }
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.by_host.get(&host.to_ascii_lowercase());
        }
        None
    }

    /// The Stage for a host (port allowed) and a normalised path, or the flavour to answer
    /// the miss in.
    pub fn select(&self, host: &str, path: &str) -> Result<StageMatch, Flavour> {
        let host = strip_port(host);
        let by_host = self.for_host(host);
        let candidates = by_host
            .into_iter()
            .flat_map(|c| c.stages.iter())
            .chain(self.any_host.stages.iter());
        for &i in candidates {
            let Some(base) = self.bases.get(i) else {
                continue;
            };
            if let Some(m) = below(path, base) {
                return Ok(StageMatch { stage: i, ..m });
            }
        }
        Err(by_host.map_or(self.any_host.miss, |c| c.miss))
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map(|(h, _)| &host[..h.len() + 1])
            .unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// Where the path under a base path starts, on a segment boundary (`/prod/pets` under
/// `/prod` is `/pets`); duplicate slashes right after the base collapse (§3a R8:
/// `/stage//hardcoded` is served by `/hardcoded`).
fn below(path: &str, base: &str) -> Option<StageMatch> {
    let rest = path.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(StageMatch {
            stage: 0,
            rest_start: path.len(),
            rest_is_root: true,
        });
    }
    if !rest.starts_with('/') {
        return None;
    }
    let extra = rest.len() - rest.trim_start_matches('/').len() - 1;
    let start = base.len() + extra;
    Some(StageMatch {
        stage: 0,
        rest_start: start,
        rest_is_root: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(stages: &[(&[&str], &str, Flavour)]) -> StageTable {
        let hosts: Vec<Vec<String>> = stages
            .iter()
            .map(|(h, _, _)| h.iter().map(|s| s.to_string()).collect())
            .collect();
        let entries: Vec<StageEntry<'_>> = stages
            .iter()
            .zip(&hosts)
            .map(|((_, base, flavour), hostnames)| StageEntry {
                hostnames,
                base_path: base,
                flavour: *flavour,
            })
            .collect();
        StageTable::build(&entries)
    }

    fn rest<'p>(t: &StageTable, host: &str, path: &'p str) -> Option<(usize, &'p str)> {
        let m = t.select(host, path).ok()?;
        Some((
            m.stage,
            if m.rest_is_root {
                "/"
            } else {
                &path[m.rest_start..]
            },
        ))
    }

    #[test]
    fn host_then_longest_base_path_selects_the_stage() {
        let t = table(&[
            (&[], "/", Flavour::Http),
            (&[], "/prod", Flavour::Http),
            (&["api.example.com"], "/", Flavour::Http),
        ]);
        assert_eq!(rest(&t, "other", "/prod/pets"), Some((1, "/pets")));
        assert_eq!(rest(&t, "other", "/production"), Some((0, "/production")));
        assert_eq!(rest(&t, "other", "/prod"), Some((1, "/")));
        assert_eq!(rest(&t, "API.example.com:8443", "/x"), Some((2, "/x")));
    }

    /// reference §3a R8: `/stage//hardcoded` is served by `/hardcoded`.
    #[test]
    fn aws_r8_duplicate_slashes_after_the_base_path_collapse() {
        let t = table(&[(&[], "/stage", Flavour::Rest)]);
        assert_eq!(rest(&t, "h", "/stage//hardcoded"), Some((0, "/hardcoded")));
        assert_eq!(rest(&t, "h", "/stage/a//b"), Some((0, "/a//b")));
    }

    #[test]
    fn a_miss_is_rest_only_when_every_candidate_is_rest() {
        let t = table(&[
            (&["rest.example.com"], "/v1", Flavour::Rest),
            (&["mixed.example.com"], "/v1", Flavour::Rest),
            (&["mixed.example.com"], "/v2", Flavour::Http),
        ]);
        assert_eq!(t.select("rest.example.com", "/x"), Err(Flavour::Rest));
        assert_eq!(t.select("mixed.example.com", "/x"), Err(Flavour::Http));
        assert_eq!(t.select("unknown", "/x"), Err(Flavour::Http));
        let all_rest = table(&[(&[], "/prod", Flavour::Rest)]);
        assert_eq!(all_rest.select("any", "/x"), Err(Flavour::Rest));
        assert_eq!(StageTable::build(&[]).select("h", "/"), Err(Flavour::Http));
    }
}
