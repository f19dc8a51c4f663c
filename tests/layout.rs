//! The shape of `src/` that issue 32 reached, kept: no import circle
//! between modules, no file over 400 lines, no function over 80. Read from
//! the source text (comments and `#[cfg(test)] mod tests` left out).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 400;
const MAX_FN_LINES: usize = 80;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/controller/claims/mod.rs` is `controller::claims`; `lib.rs` and
/// `main.rs` are the root, "".
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).expect("under src");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The text a module's imports are read from: without line comments and
/// without its unit tests.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every path the code names from `crate`, `super` or `self`, as segments;
/// `use a::{b, c::d}` gives `a::b` and `a::c`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start).map(|i| i + from) {
            from = i + start.len();
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut segs = vec![start.trim_end_matches(':').to_string()];
            let mut rest = &code[from..];
            loop {
                while let Some(r) = rest.strip_prefix("super::") {
                    segs.push("super".into());
                    rest = r;
                }
                let id = ident_at(rest);
                if id.is_empty() {
                    break;
                }
                segs.push(id.to_string());
                rest = &rest[id.len()..];
                match rest.strip_prefix("::") {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            if let Some(group) = rest.strip_prefix('{') {
                let body = group.split('}').next().unwrap_or("");
                for item in body.split(',') {
                    let id = ident_at(item.trim());
                    if !id.is_empty() {
                        let mut p = segs.clone();
                        p.push(id.to_string());
                        out.push(p);
                    }
                }
            }
            out.push(segs);
        }
    }
    out
}

/// The module `path` names from module `cur`: the longest prefix that is a
/// module.
fn resolve(modules: &BTreeSet<String>, cur: &str, path: &[String]) -> Option<String> {
    let mut base: Vec<&str> = match path[0].as_str() {
        "crate" => vec![],
        "super" => {
            let mut b: Vec<&str> = cur.split("::").filter(|s| !s.is_empty()).collect();
            b.pop();
            b
        }
        _ => cur.split("::").filter(|s| !s.is_empty()).collect(),
    };
    let mut rest = &path[1..];
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut best = None;
    for i in 0..=rest.len() {
        let mut cand: Vec<&str> = base.clone();
        cand.extend(rest[..i].iter().map(String::as_str));
        let name = cand.join("::");
        if modules.contains(&name) {
            best = Some(name);
        }
    }
    best
}

fn is_nested(a: &str, b: &str) -> bool {
    a.is_empty()
        || b.is_empty()
        || a.starts_with(&format!("{b}::"))
        || b.starts_with(&format!("{a}::"))
}

/// Strongly connected components of more than one module.
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Two modules are in one circle when each reaches the other.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for n in edges.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|m| (m, reach(m))).collect();
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for (m, r) in &reaches {
        let mut circle: Vec<String> = r
            .iter()
            .filter(|n| reaches.get(n).is_some_and(|back| back.contains(*m)))
            .cloned()
            .collect();
        if circle.len() > 1 {
            circle.sort();
            found.insert(circle);
        }
    }
    found.into_iter().collect()
}

fn sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).expect("read");
            (f, text)
        })
        .collect()
}

#[test]
fn no_module_of_src_imports_one_that_imports_it_back() {
    let root = src();
    let files = sources();
    let modules: BTreeSet<String> = files.iter().map(|(f, _)| module_of(&root, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (f, text) in &files {
        let m = module_of(&root, f);
        let to = edges.entry(m.clone()).or_default();
        for p in paths(&code(text)) {
            if let Some(t) = resolve(&modules, &m, &p)
                && !is_nested(&m, &t)
            {
                to.insert(t);
            }
        }
    }
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 50,
        "the import graph was not read (too few edges): {edges:?}"
    );
    assert_eq!(
        circles(&edges),
        Vec::<Vec<String>>::new(),
        "import circles in src/"
    );
}

#[test]
fn the_circle_finder_finds_a_circle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges.entry(a.into()).or_default().insert(b.into());
        edges.entry(b.into()).or_default();
    }
    edges.entry("d".into()).or_default();
    assert_eq!(
        circles(&edges),
        vec![vec!["a".to_string(), "b".into(), "c".into()]]
    );
    let paths = paths("use super::{x::Y, z};\nlet q = crate::a::b::C;");
    assert!(
        paths.contains(&vec!["super".into(), "x".into()]),
        "{paths:?}"
    );
    assert!(
        paths.contains(&vec!["super".into(), "z".into()]),
        "{paths:?}"
    );
    assert!(paths.contains(&vec!["crate".into(), "a".into(), "b".into(), "C".into()]));
}

#[test]
fn no_file_of_src_is_over_400_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|(_, t)| t.lines().count() > MAX_FILE_LINES)
        .map(|(f, t)| format!("{} ({} lines)", f.display(), t.lines().count()))
        .collect();
    assert!(long.is_empty(), "over {MAX_FILE_LINES} lines: {long:?}");
}

/// Functions (with their signature) longer than `max` lines, found by the
/// closing brace at the `fn` line's indent.
fn long_functions(text: &str, max: usize) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let after_vis = trimmed
            .strip_prefix("pub(crate) ")
            .or_else(|| trimmed.strip_prefix("pub(super) "))
            .or_else(|| trimmed.strip_prefix("pub "))
            .unwrap_or(trimmed);
        let after_async = after_vis.strip_prefix("async ").unwrap_or(after_vis);
        let Some(sig) = after_async.strip_prefix("fn ") else {
            continue;
        };
        if line.trim_end().ends_with(';') {
            continue;
        }
        let close = " ".repeat(indent) + "}";
        let end = lines[i + 1..]
            .iter()
            .position(|l| {
                l.starts_with(&close)
                    && l[indent + 1..]
                        .chars()
                        .next()
                        .is_none_or(|c| " ;,)".contains(c))
            })
            .map(|p| i + 1 + p);
        if let Some(end) = end
            && end - i + 1 > max
        {
            out.push((ident_at(sig).to_string(), end - i + 1));
        }
    }
    out
}

#[test]
fn no_function_of_src_is_over_80_lines() {
    let long: Vec<String> = sources()
        .iter()
        .flat_map(|(f, t)| {
            long_functions(t, MAX_FN_LINES)
                .into_iter()
                .map(move |(name, n)| format!("{}: {name} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_FN_LINES} lines: {long:?}");
    let sample = format!("fn f() {{\n{}}}\n", "    x();\n".repeat(MAX_FN_LINES));
    assert_eq!(
        long_functions(&sample, MAX_FN_LINES),
        vec![("f".to_string(), MAX_FN_LINES + 2)]
    );
}
