//! AWS path templates: `/pets`, `/pets/{petId}`, `/files/{proxy+}`.
//!
//! One parser for the controller (which refuses a bad template with a condition and compares
//! route shapes for conflicts) and the dataplane (whose router builds its tries from the
//! segments), so both read a template the same way.

use std::fmt;

/// One segment of a path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Literal text, matched as is.
    Literal(String),
    /// `{name}`: one whole segment.
    Param(String),
    /// `{name+}`: the rest of the path; only ever the last segment.
    Greedy(String),
}

/// A parsed, normalised path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    path: String,
    segments: Vec<Segment>,
    params: Vec<String>,
}

/// Why a path template was refused; the message names the template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathError {
    raw: String,
    why: String,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "path {:?} {}", self.raw, self.why)
    }
}

impl std::error::Error for PathError {}

/// Characters of a parameter name (AWS: letters, digits, `_`, `.`, `-`).
fn is_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl PathTemplate {
    /// Parses a template. One trailing `/` is dropped (`/pets/` is `/pets`); empty segments,
    /// spaces, `?` and `#`, braces that do not enclose a whole segment, bad or repeated
    /// parameter names and a greedy parameter before the last segment are refused.
    pub fn parse(raw: &str) -> Result<PathTemplate, PathError> {
        let bad = |why: String| PathError {
            raw: raw.to_string(),
            why,
        };
        if !raw.starts_with('/') {
            return Err(bad("must start with /".into()));
        }
        let path = if raw.len() > 1 {
            raw.strip_suffix('/').unwrap_or(raw)
        } else {
            raw
        };
        if path == "/" && raw != "/" {
            return Err(bad("has an empty segment".into()));
        }
        let mut template = PathTemplate {
            path: path.to_string(),
            segments: Vec::new(),
            params: Vec::new(),
        };
        if path == "/" {
            return Ok(template);
        }
        let segments: Vec<&str> = path[1..].split('/').collect();
        for (index, segment) in segments.iter().enumerate() {
            if segment.is_empty() {
                return Err(bad("has an empty segment".into()));
            }
            if segment.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
                return Err(bad(format!(
                    "segment {segment:?} must not contain spaces, ? or #"
                )));
            }
            if !segment.contains(['{', '}']) {
                template
                    .segments
                    .push(Segment::Literal(segment.to_string()));
                continue;
            }
            let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                return Err(bad(format!(
                    "segment {segment:?}: a parameter must be a whole segment like {{name}}"
                )));
            };
            let (name, greedy) = match inner.strip_suffix('+') {
                Some(name) => (name, true),
                None => (inner, false),
            };
            if !is_param_name(name) {
                return Err(bad(format!(
                    "parameter {segment:?} must be named with [A-Za-z0-9_.-]"
                )));
            }
            if greedy && index + 1 != segments.len() {
                return Err(bad(format!(
                    "greedy parameter {segment:?} must be the last segment"
                )));
            }
            if template.params.iter().any(|p| p == name) {
                return Err(bad(format!("parameter {name:?} appears twice")));
            }
            template.params.push(name.to_string());
            template.segments.push(if greedy {
                Segment::Greedy(name.to_string())
            } else {
                Segment::Param(name.to_string())
            });
        }
        Ok(template)
    }

    /// The normalised template, e.g. `/pets/{petId}`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The segments after the leading `/` (none for `/`).
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Parameter names in path order, the greedy one (without its `+`) last.
    pub fn params(&self) -> &[String] {
        &self.params
    }

    /// Whether the last segment is greedy.
    pub fn greedy(&self) -> bool {
        matches!(self.segments.last(), Some(Segment::Greedy(_)))
    }

    /// The template with parameter names erased (`/pets/{}`, `/files/{+}`): two routes of one
    /// shape match the same requests.
    pub fn shape(&self) -> String {
        if self.segments.is_empty() {
            return "/".into();
        }
        let mut shape = String::with_capacity(self.path.len());
        for segment in &self.segments {
            shape.push('/');
            match segment {
                Segment::Literal(l) => shape.push_str(l),
                Segment::Param(_) => shape.push_str("{}"),
                Segment::Greedy(_) => shape.push_str("{+}"),
            }
        }
        shape
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_take_whole_segment_parameters_and_greedy_last() {
        let t = PathTemplate::parse("/pets/{petId}/toys/{proxy+}").unwrap();
        assert_eq!(t.params(), ["petId", "proxy"]);
        assert!(t.greedy());
        assert_eq!(t.shape(), "/pets/{}/toys/{+}");
        assert_eq!(PathTemplate::parse("/").unwrap().shape(), "/");
        assert_eq!(PathTemplate::parse("/pets/").unwrap().path(), "/pets");
        for (raw, why) in [
            ("pets", "must start with /"),
            ("//", "has an empty segment"),
            ("/a//b", "has an empty segment"),
            ("/a b", "must not contain spaces"),
            ("/a{b}", "must be a whole segment"),
            ("/{a+}/b", "must be the last segment"),
            ("/{a}/{a}", "appears twice"),
            ("/{a b}", "must not contain spaces"),
            ("/{a*}", "must be named with"),
            ("/{}", "must be named with"),
        ] {
            let e = PathTemplate::parse(raw).unwrap_err().to_string();
            assert!(e.contains(why), "{raw}: {e}");
        }
    }
}
