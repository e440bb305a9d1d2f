//! Route matching with AWS semantics on a radix trie (matchit).
//!
//! Each method has its own tries so that "full match on route and method" wins before a greedy
//! match (AWS HTTP API routing, reference §8): a path with a route for the request's method is
//! preferred over a greedy `{proxy+}` route, and `ANY` fills only the methods a path does not
//! define itself. Exact templates and greedy templates live in separate tries because matchit
//! does not allow a parameter and a catch-all at the same position, which AWS does
//! (`/{id}` beside `/{proxy+}`). Parameters are renamed positionally (`p0`, `p1`, …) so that
//! templates differing only in parameter names share trie nodes.

use std::collections::HashMap;
use tollhouse_template::{PathError, PathTemplate, Segment};

/// Methods AWS's `ANY` stands for, in a fixed order that indexes the per-method tries.
pub const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// Index of a method in [`METHODS`], or `None` for methods no route can answer.
pub fn method_index(method: &http::Method) -> Option<usize> {
    match *method {
        http::Method::GET => Some(0),
        http::Method::POST => Some(1),
        http::Method::PUT => Some(2),
        http::Method::DELETE => Some(3),
        http::Method::PATCH => Some(4),
        http::Method::HEAD => Some(5),
        http::Method::OPTIONS => Some(6),
        _ => None,
    }
}

/// A path template (parsed by the grammar the controller checked it with) and the form the
/// trie matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The matchit form, with positional parameter names.
    pub trie_path: String,
    /// The parsed template.
    pub path: PathTemplate,
}

impl Template {
    /// Parses `/pets/{petId}`, `/files/{proxy+}` or `/`.
    pub fn parse(path: &str) -> Result<Template, PathError> {
        PathTemplate::parse(path).map(Template::new)
    }

    /// The trie form of a parsed template.
    pub fn new(path: PathTemplate) -> Template {
        let mut trie_path = String::with_capacity(path.path().len() + 8);
        let mut param = 0;
        for segment in path.segments() {
            trie_path.push('/');
            match segment {
                Segment::Literal(l) => trie_path.push_str(l),
                Segment::Param(_) => {
                    trie_path.push_str(&format!("{{p{param}}}"));
                    param += 1;
                }
                Segment::Greedy(_) => trie_path.push_str("{*g}"),
            }
        }
        if trie_path.is_empty() {
            trie_path.push('/');
        }
        Template { trie_path, path }
    }

    /// Parameter names in path order (the greedy one without its `+`).
    pub fn params(&self) -> &[String] {
        self.path.params()
    }

    /// Whether the last segment is greedy.
    pub fn greedy(&self) -> bool {
        self.path.greedy()
    }
}

/// A route found for a request: its index and the parameter values in template order.
#[derive(Debug, PartialEq, Eq)]
pub struct Found<'p> {
    /// Index into the stage's routes.
    pub route: usize,
    /// Raw (still percent-encoded) parameter values, in the order of [`Template::params`];
    /// inline up to four.
    pub params: smallvec::SmallVec<[&'p str; 4]>,
}

/// The tries of one stage: per method, exact tries before greedy tries.
#[derive(Default)]
pub struct RouteTable {
    exact: [Vec<matchit::Router<usize>>; 7],
    greedy: [Vec<matchit::Router<usize>>; 7],
}

/// A route definition as the table builder needs it.
pub struct RouteDef<'a> {
    /// The parsed template.
    pub template: &'a Template,
    /// Upper-case methods; `ANY` alone answers all.
    pub methods: &'a [String],
}

impl RouteTable {
    /// Builds the table; returns the indices of routes that could not be placed, with why.
    pub fn build(routes: &[RouteDef<'_>]) -> (RouteTable, Vec<(usize, String)>) {
        // (method, trie path) -> route: an explicit method beats ANY on the same path shape,
        // the first definition beats later ones (the controller already resolved conflicts).
        let mut slots: HashMap<(usize, &str), (usize, bool)> = HashMap::new();
        for (idx, def) in routes.iter().enumerate() {
            let any = def.methods.iter().any(|m| m == "ANY");
            for (m, name) in METHODS.iter().enumerate() {
                if !(any || def.methods.iter().any(|x| x == name)) {
                    continue;
                }
                let key = (m, def.template.trie_path.as_str());
                match slots.get(&key) {
                    Some(&(_, explicit)) if explicit || any => {}
                    _ => {
                        slots.insert(key, (idx, !any));
                    }
                }
            }
        }
        let mut table = RouteTable::default();
        // A route that holds no slot would never answer: say so rather than drop it silently.
        let held: std::collections::HashSet<usize> = slots.values().map(|(i, _)| *i).collect();
        let mut failed: Vec<(usize, String)> = (0..routes.len())
            .filter(|idx| !held.contains(idx))
            .map(|idx| {
                (
                    idx,
                    "every method it answers on this path belongs to an earlier route".to_string(),
                )
            })
            .collect();
        let mut ordered: Vec<_> = slots.into_iter().collect();
        // Where two templates cannot share a trie, the one with more segments is the more
        // specific: insert it first so it lands in the earlier layer and is tried first.
        ordered.sort_unstable_by_key(|&((m, path), (idx, _))| {
            (m, std::cmp::Reverse(path.matches('/').count()), path, idx)
        });
        for ((m, path), (idx, _)) in ordered {
            let greedy = routes.get(idx).is_some_and(|d| d.template.greedy());
            let layers = if greedy {
                &mut table.greedy[m]
            } else {
                &mut table.exact[m]
            };
            if let Err(err) = insert_layered(layers, path, idx) {
                if !failed.iter().any(|(i, _)| *i == idx) {
                    failed.push((idx, err));
                }
            }
        }
        (table, failed)
    }

    /// Finds the route for a method index and a stage-relative path.
    pub fn find<'p>(&self, method: usize, path: &'p str) -> Option<Found<'p>> {
        let path = normalise(path);
        let tries = self
            .exact
            .get(method)?
            .iter()
            .chain(self.greedy.get(method)?.iter());
        for trie in tries {
            if let Ok(m) = trie.at(path) {
                let params = m.params.iter().map(|(_, v)| v).collect();
                return Some(Found {
                    route: *m.value,
                    params,
                });
            }
        }
        None
    }
}

/// AWS ignores one trailing slash (reference §8, REST routing).
fn normalise(path: &str) -> &str {
    if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Inserts into the first trie that accepts the path without a conflict, adding one if needed.
fn insert_layered(
    layers: &mut Vec<matchit::Router<usize>>,
    path: &str,
    idx: usize,
) -> Result<(), String> {
    let mut last_err = String::new();
    for trie in layers.iter_mut() {
        match trie.insert(path, idx) {
            Ok(()) => return Ok(()),
            Err(e) => last_err = e.to_string(),
        }
    }
    let mut trie = matchit::Router::new();
    trie.insert(path, idx).map_err(|e| {
        if last_err.is_empty() {
            e.to_string()
        } else {
            last_err.clone()
        }
    })?;
    layers.push(trie);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of `defs` (path, methods) and the indices of the routes it could not place.
    fn build(defs: &[(&str, &[&str])]) -> (RouteTable, Vec<usize>) {
        let templates: Vec<Template> = defs
            .iter()
            .map(|(p, _)| Template::parse(p).unwrap())
            .collect();
        let methods: Vec<Vec<String>> = defs
            .iter()
            .map(|(_, m)| m.iter().map(|s| s.to_string()).collect())
            .collect();
        let routes: Vec<RouteDef<'_>> = templates
            .iter()
            .zip(methods.iter())
            .map(|(template, methods)| RouteDef { template, methods })
            .collect();
        let (t, failed) = RouteTable::build(&routes);
        (t, failed.into_iter().map(|(i, _)| i).collect())
    }

    fn table(defs: &[(&str, &[&str])]) -> RouteTable {
        let (t, failed) = build(defs);
        assert!(failed.is_empty(), "{failed:?}");
        t
    }

    const GET: usize = 0;
    const POST: usize = 1;

    #[test]
    fn templates_parse_with_positional_names() {
        let t = Template::parse("/pets/{petId}/toys/{toy}").unwrap();
        assert_eq!(t.trie_path, "/pets/{p0}/toys/{p1}");
        assert_eq!(t.params(), ["petId", "toy"]);
        let g = Template::parse("/files/{proxy+}").unwrap();
        assert_eq!((g.trie_path.as_str(), g.greedy()), ("/files/{*g}", true));
        assert_eq!(Template::parse("/").unwrap().trie_path, "/");
        assert_eq!(Template::parse("/a/").unwrap().trie_path, "/a");
        assert!(Template::parse("/{proxy+}/x").is_err());
        assert!(Template::parse("/a{b}").is_err());
        assert!(Template::parse("a").is_err());
        assert!(Template::parse("/a//b").is_err());
    }

    #[test]
    fn static_beats_parameter_beats_greedy() {
        let t = table(&[
            ("/{proxy+}", &["ANY"]),
            ("/pets/{id}", &["GET"]),
            ("/pets/dog", &["GET"]),
            ("/{id}", &["GET"]),
        ]);
        assert_eq!(t.find(GET, "/pets/dog").unwrap().route, 2);
        let f = t.find(GET, "/pets/7").unwrap();
        assert_eq!((f.route, f.params.to_vec()), (1, vec!["7"]));
        assert_eq!(t.find(GET, "/solo").unwrap().route, 3);
        let g = t.find(GET, "/a/b/c").unwrap();
        assert_eq!((g.route, g.params.to_vec()), (0, vec!["a/b/c"]));
        // POST has no exact route on /pets/{id}: the greedy route takes it.
        assert_eq!(t.find(POST, "/pets/7").unwrap().route, 0);
    }

    #[test]
    fn backtracks_from_a_static_branch_to_a_parameter() {
        let t = table(&[("/pets/{id}/toys", &["GET"]), ("/pets/dog/food", &["GET"])]);
        assert_eq!(t.find(GET, "/pets/dog/toys").unwrap().route, 0);
        assert_eq!(t.find(GET, "/pets/dog/food").unwrap().route, 1);
    }

    #[test]
    fn explicit_method_beats_any_on_the_same_path() {
        let t = table(&[("/pets", &["ANY"]), ("/pets", &["POST"])]);
        assert_eq!(t.find(GET, "/pets").unwrap().route, 0);
        assert_eq!(t.find(POST, "/pets").unwrap().route, 1);
    }

    /// A route every one of whose methods an earlier route holds would never answer: it is
    /// reported (the compile turns that into a left-out), not dropped silently.
    #[test]
    fn a_wholly_shadowed_route_is_reported() {
        let (t, failed) = build(&[
            ("/pets/{a}", &["GET"]),
            ("/pets/{b}", &["GET"]),
            ("/pets/{c}", &["GET", "POST"]),
        ]);
        assert_eq!(failed, [1]);
        assert_eq!(t.find(POST, "/pets/7").unwrap().route, 2);
    }

    #[test]
    fn trailing_slash_is_ignored_and_greedy_needs_a_segment() {
        let t = table(&[
            ("/pets", &["GET"]),
            ("/files/{proxy+}", &["GET"]),
            ("/", &["GET"]),
        ]);
        assert_eq!(t.find(GET, "/pets/").unwrap().route, 0);
        assert!(t.find(GET, "/files").is_none());
        assert!(t.find(GET, "/files/").is_none());
        assert_eq!(t.find(GET, "/files/a").unwrap().params.to_vec(), vec!["a"]);
        assert_eq!(t.find(GET, "/").unwrap().route, 2);
        assert_eq!(t.find(GET, "").unwrap().route, 2);
        assert!(t.find(POST, "/pets").is_none());
    }

    #[test]
    fn parameter_names_may_differ_across_routes() {
        let t = table(&[
            ("/a/{x}/b", &["GET"]),
            ("/a/{y}/c", &["GET"]),
            ("/{proxy+}", &["GET"]),
            ("/{id}/q/{proxy+}", &["GET"]),
        ]);
        assert_eq!(t.find(GET, "/a/1/c").unwrap().route, 1);
        assert_eq!(t.find(GET, "/a/1/b").unwrap().route, 0);
        assert_eq!(t.find(GET, "/z/q/r/s").unwrap().route, 3);
        assert_eq!(t.find(GET, "/z/r/s").unwrap().route, 2);
    }

    #[test]
    fn ten_thousand_routes_build_and_match() {
        let paths: Vec<String> = (0..10_000)
            .map(|i| format!("/svc{i}/items/{{id}}"))
            .collect();
        let defs: Vec<(&str, &[&str])> = paths.iter().map(|p| (p.as_str(), &["GET"][..])).collect();
        let t = table(&defs);
        assert_eq!(t.find(GET, "/svc9999/items/5").unwrap().route, 9999);
        assert_eq!(t.find(GET, "/svc0/items/5").unwrap().route, 0);
    }
}
