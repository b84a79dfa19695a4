//! `cargo xtask modgraph`: which top-level module of each crate uses which
//! (from `crate::…` paths, `use` lines or not, and `<lib>::…` in a crate's
//! `main.rs`), and the import cycles among them. A cycle means two rooms
//! that cannot be read, tested or changed one without the other; the test
//! below keeps every crate free of them.
//!
//! It reads the source text, not the compiler's name resolution: comments
//! and string literals are skipped; `super::` is not followed (within a
//! top-level module by construction, except `super::super::` at depth 2,
//! which is resolved).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

/// Module → the other top-level modules of its crate it uses.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The crates whose `src/` is checked.
pub const CRATES: [&str; 8] = [
    "ntp-filter-common",
    "ntp-filter-ebpf",
    "ntp-proto",
    "ntp-sim",
    "ntp-agent",
    "bench",
    "tests",
    "xtask",
];

/// The graph of one crate, `dir` being its directory (with `src/`).
pub fn crate_graph(dir: &Path) -> Result<Graph> {
    let src = dir.join("src");
    let has_lib = src.join("lib.rs").exists();
    let lib_name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .replace('-', "_");
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(&src).with_context(|| format!("listing {}", src.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
            continue;
        };
        if matches!(name, "lib" | "main" | "bin") {
            continue;
        }
        if path.is_dir() || path.extension().is_some_and(|e| e == "rs") {
            modules.insert(name.to_string());
        }
    }
    let root = if has_lib { "lib.rs" } else { "main.rs" };
    let reexported = std::fs::read_to_string(src.join(root))
        .map(|t| reexports(&strip_comments_and_strings(&t), &modules))
        .unwrap_or_default();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in rust_files(&src)? {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default()
            .trim_end_matches(".rs")
            .to_string();
        // The binary next to a library is a crate of its own that uses
        // the library by name; without a library, main.rs is the root.
        let (node, prefix) = match first.as_str() {
            "main" if has_lib => ("main".to_string(), format!("{lib_name}::")),
            m if modules.contains(m) => (m.to_string(), "crate::".to_string()),
            _ => continue,
        };
        let depth =
            rel.components().count() - usize::from(rel.file_name().is_some_and(|n| n == "mod.rs"));
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let code = strip_comments_and_strings(&text);
        let mut used = paths_after(&code, &prefix);
        if depth == 2 {
            used.extend(paths_after(&code, "super::super::"));
        }
        let edges = graph.entry(node.clone()).or_default();
        for m in used {
            // `crate::Item` where the root re-exports `module::Item`.
            let m = reexported.get(&m).cloned().unwrap_or(m);
            if m != node && modules.contains(&m) {
                edges.insert(m);
            }
        }
    }
    Ok(graph)
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The text with comments removed and string and char literals emptied,
/// so that neither can hold a path.
fn strip_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'#' | b'"'))
                && (i == 0 || !is_ident(b[i - 1])) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                i += 2 + hashes;
                while i < b.len() && !b[i..].starts_with(&close) {
                    i += 1;
                }
                i += close.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') => {
                i += 3;
                out.push_str("' '");
            }
            c => {
                // Copy one whole UTF-8 character.
                let len = match c {
                    0x00..=0x7f => 1,
                    0xc0..=0xdf => 2,
                    0xe0..=0xef => 3,
                    _ => 4,
                };
                out.push_str(&text[i..(i + len).min(text.len())]);
                i += len;
            }
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The first segment of every path that follows `prefix` (`crate::a::b`,
/// `crate::{a, b::c}`), where `prefix` starts a path.
fn paths_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = code.as_bytes();
    let mut from = 0;
    while let Some(pos) = code[from..].find(prefix) {
        let at = from + pos;
        from = at + prefix.len();
        if at > 0 && (is_ident(b[at - 1]) || b[at - 1] == b':') {
            continue;
        }
        let rest = code[from..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            out.extend(group_heads(group));
        } else {
            out.insert(ident_at(rest));
        }
    }
    out.remove("");
    out
}

/// Item → the top-level module it comes from, for each `pub use
/// module::Item` / `pub use module::{A, B}` of the crate root.
fn reexports(root: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut from = 0;
    while let Some(pos) = root[from..].find("pub use ") {
        from += pos + "pub use ".len();
        let path = root[from..].trim_start();
        let module = ident_at(path);
        if !modules.contains(&module) {
            continue;
        }
        let rest = path[module.len()..].trim_start_matches("::");
        let items = match rest.strip_prefix('{') {
            Some(group) => group_heads(group),
            None => {
                let end = rest.find(';').unwrap_or(rest.len());
                let last = rest[..end].rsplit("::").next().unwrap_or_default();
                vec![ident_at(last.trim())]
            }
        };
        for item in items {
            out.insert(item, module.clone());
        }
    }
    out
}

/// The first identifier of each top-level item of a `{…}` group (the text
/// after its opening brace).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && !c.is_whitespace() => {
                heads.push(ident_at(&group[i..]));
                start = false;
            }
            _ => {}
        }
    }
    heads
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The strongly connected components with more than one module: each is a
/// set of modules that use one another in a circle.
pub fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    // Two modules are in one cycle when each reaches the other.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for n in graph.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut placed = BTreeSet::new();
    let mut out = Vec::new();
    for m in graph.keys() {
        if placed.contains(m) || !reaches[m].contains(m) {
            continue;
        }
        let scc: Vec<String> = graph
            .keys()
            .filter(|n| reaches[m].contains(*n) && reaches[*n].contains(m))
            .cloned()
            .collect();
        placed.extend(scc.iter().cloned());
        out.push(scc);
    }
    out
}

/// The printed form: one `module → used, used` line per module.
pub fn render(graph: &Graph) -> String {
    let width = graph.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (m, uses) in graph {
        let list: Vec<&str> = uses.iter().map(String::as_str).collect();
        let list = if list.is_empty() {
            "-".to_string()
        } else {
            list.join(", ")
        };
        out.push_str(&format!("{m:<width$} → {list}\n"));
    }
    out
}

/// `cargo xtask modgraph [CRATE…]`: prints each crate's graph and its
/// cycles; fails when there is one.
pub fn run(root: &Path, crates: &[String]) -> Result<bool> {
    let crates: Vec<String> = if crates.is_empty() {
        CRATES.iter().map(|c| c.to_string()).collect()
    } else {
        crates.to_vec()
    };
    let mut clean = true;
    for c in &crates {
        let graph = crate_graph(&root.join(c))?;
        println!("== {c}\n{}", render(&graph));
        for cycle in cycles(&graph) {
            clean = false;
            println!("cycle: {}\n", cycle.join(" ⇄ "));
        }
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_groups_are_read_but_not_comments_or_strings() {
        let code = strip_comments_and_strings(
            "use crate::{a::X, b, c::{d, e}};\n// crate::f\nlet s = \"crate::g\"; crate::h::y(); r#\"crate::i\"#; let c = '\"'; crate::j; 'a: loop {}\n",
        );
        let got: Vec<String> = paths_after(&code, "crate::").into_iter().collect();
        assert_eq!(got, ["a", "b", "c", "h", "j"]);
    }

    #[test]
    fn items_the_root_reexports_count_for_their_module() {
        let modules: BTreeSet<String> = ["a", "b"].map(String::from).into();
        let r = reexports(
            "pub use a::{X, y::Z};\npub use b::W;\npub use std::io;\n",
            &modules,
        );
        let got: Vec<(&str, &str)> = r.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, [("W", "b"), ("X", "a"), ("y", "a")]);
    }

    #[test]
    fn cycles_are_found_and_a_chain_is_none() {
        let g = |edges: &[(&str, &str)]| {
            let mut g = Graph::new();
            for (a, b) in edges {
                g.entry(a.to_string()).or_default().insert(b.to_string());
                g.entry(b.to_string()).or_default();
            }
            g
        };
        assert!(cycles(&g(&[("a", "b"), ("b", "c")])).is_empty());
        assert_eq!(
            cycles(&g(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
            [["a", "b", "c"]]
        );
    }

    /// Dependencies point one way in every crate of the workspace.
    #[test]
    fn no_crate_has_an_import_cycle() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for c in CRATES {
            let graph = crate_graph(&root.join(c)).unwrap();
            assert!(
                graph.len() > 1 || c == "ntp-filter-common",
                "{c}: {graph:?}"
            );
            let cycles = cycles(&graph);
            assert!(
                cycles.is_empty(),
                "{c} has import cycles {cycles:?}:\n{}",
                render(&graph)
            );
        }
    }
}
