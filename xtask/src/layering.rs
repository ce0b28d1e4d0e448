//! The layering rules of `docs/architecture.md`, checked rather than trusted:
//!
//! - the pure crate (`edgetwin-model`) links no I/O crate and its non-test code calls no file,
//!   network, process, clock or environment API;
//! - a mapper's dependency tree holds `edgetwin-sdk` and never `edgetwin-core`;
//! - the edge build of `edgetwin-core` links no kube crate;
//! - within each crate, no two sibling modules import each other, directly or through others
//!   (at every level: `crate::a` ⇄ `crate::b`, `crate::a::x` ⇄ `crate::a::y`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Crates that do I/O (or are an async runtime, a database, a network stack or a Kubernetes
/// client): the pure crate's tree must hold none of them.
const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "rusqlite",
    "libsqlite3-sys",
    "rumqttc",
    "rumqttd",
    "kube",
    "kube-client",
    "k8s-openapi",
    "axum",
    "hyper",
    "reqwest",
    "tokio-tungstenite",
    "rustls",
    "tempfile",
    "rand",
    "getrandom",
];

/// Standard-library APIs the pure crate's non-test code must not call: files, sockets,
/// processes, threads, the clock and the environment. Time and file contents are inputs.
const IO_APIS: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::thread",
    "std::env",
    "std::io::stdin",
    "std::io::stdout",
    "SystemTime::now",
    "Instant::now",
    "Timestamp::now",
];

/// The pure crate: its manifest name and source directory.
const PURE_CRATE: (&str, &str) = ("edgetwin-model", "model/src");

/// Crates whose module graph is checked for cycles (source directory of the library).
const CYCLE_CHECKED: &[&str] = &[
    "model/src",
    "core/src",
    "sdk/src",
    "testkit/src",
    "hoptrace/src",
    "mappers/gpio/src",
    "mappers/modbus/src",
    "mappers/opcua/src",
    "mappers/ble/src",
    "mappers/sim/src",
    "hil-tests/src",
];

/// Every layering rule; the error lists every violation found.
pub fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    problems.extend(pure_crate_tree(root)?);
    problems.extend(pure_crate_sources(root)?);
    problems.extend(mappers_without_core(root)?);
    problems.extend(edge_build_without_kube(root)?);
    for dir in CYCLE_CHECKED {
        let dir = root.join(dir);
        if dir.is_dir() {
            problems.extend(module_cycles(&dir)?);
        }
    }
    if problems.is_empty() {
        println!("xtask: layering holds");
        Ok(())
    } else {
        bail!("layering is broken:\n  {}", problems.join("\n  "))
    }
}

/// The crate names (`name vX.Y.Z`, first word) of a package's normal dependency tree.
fn tree(root: &Path, args: &[&str]) -> Result<BTreeSet<String>> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args([
            "tree", "-e", "normal", "--prefix", "none", "--format", "{p}",
        ])
        .args(args)
        .output()
        .context("running cargo tree")?;
    if !output.status.success() {
        bail!(
            "cargo tree {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

fn pure_crate_tree(root: &Path) -> Result<Vec<String>> {
    let crates = tree(root, &["-p", PURE_CRATE.0])?;
    Ok(IO_CRATES
        .iter()
        .filter(|name| crates.contains(**name))
        .map(|name| format!("{} links the I/O crate {name}", PURE_CRATE.0))
        .collect())
}

fn pure_crate_sources(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for file in rust_files(&root.join(PURE_CRATE.1))? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        if is_test_file(&file, &text) {
            continue;
        }
        let code = strip_comments_and_strings(non_test_part(&text));
        for api in IO_APIS {
            if code.contains(api) {
                problems.push(format!(
                    "{} calls {api} (the pure crate takes time, files and the environment as inputs)",
                    file.strip_prefix(root).unwrap_or(&file).display()
                ));
            }
        }
    }
    Ok(problems)
}

/// Every `mappers/*` package; their trees must not hold `edgetwin-core`.
fn mappers_without_core(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for manifest in std::fs::read_dir(root.join("mappers"))?
        .map(|e| e.map(|e| e.path().join("Cargo.toml")))
        .collect::<std::io::Result<Vec<_>>>()?
    {
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)?;
        let Some(name) = package_name(&text) else {
            continue;
        };
        let crates = tree(root, &["-p", &name, "--all-features"])?;
        if crates.contains("edgetwin-core") {
            problems.push(format!("mapper {name} depends on edgetwin-core"));
        }
        if !crates.contains("edgetwin-sdk") {
            problems.push(format!("mapper {name} is not built on edgetwin-sdk"));
        }
    }
    let template = root.join("core/templates/mapper/Cargo.toml.tmpl");
    if std::fs::read_to_string(&template)
        .with_context(|| format!("reading {}", template.display()))?
        .contains("edgetwin-core")
    {
        problems.push("the `edgetwin new mapper` template depends on edgetwin-core".into());
    }
    Ok(problems)
}

fn edge_build_without_kube(root: &Path) -> Result<Vec<String>> {
    let crates = tree(
        root,
        &[
            "-p",
            "edgetwin-core",
            "--no-default-features",
            "--features",
            "edge,embedded-broker",
        ],
    )?;
    Ok(["kube", "kube-client", "k8s-openapi"]
        .iter()
        .filter(|name| crates.contains(**name))
        .map(|name| format!("the edge build of edgetwin-core links {name}"))
        .collect())
}

fn package_name(manifest: &str) -> Option<String> {
    let package = manifest.split("[package]").nth(1)?;
    package.lines().find_map(|line| {
        let value = line.trim().strip_prefix("name")?.trim().strip_prefix('=')?;
        Some(value.trim().trim_matches('"').to_owned())
    })
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Test-only files: `tests.rs`, `*_tests.rs`, `proptests.rs`, `testkit.rs`, or a file whose
/// first item is `#![cfg(test)]`.
fn is_test_file(path: &Path, text: &str) -> bool {
    let name = path
        .file_stem()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name == "tests"
        || name.ends_with("_tests")
        || name == "proptests"
        || name == "testkit"
        || name == "kubeedge_replay"
        || text.contains("#![cfg(test)]")
}

/// The code before the file's first `#[cfg(test)]` (test modules come last, by convention).
fn non_test_part(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |at| &text[..at])
}

/// The text with comments and string/char literals blanked out (kept as spaces, so that the
/// rest keeps its shape). Raw strings `r"…"`/`r#"…"#` are handled; lifetimes are not chars.
fn strip_comments_and_strings(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(bytes.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(bytes.len(), |n| i + n + 2);
            i = end;
        } else if let Some(hashes) = raw_string_start(rest) {
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            let end = rest[body..]
                .find(&close)
                .map_or(bytes.len(), |n| i + body + n + close.len());
            out.push(' ');
            i = end;
        } else if rest.starts_with('"') {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push(' ');
            i = j + 1;
        } else if rest.starts_with('\'') && is_char_literal(rest) {
            let end = rest[1..].find('\'').map_or(bytes.len(), |n| i + n + 2);
            out.push(' ');
            i = end;
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn raw_string_start(rest: &str) -> Option<usize> {
    let after_r = rest.strip_prefix('r').or_else(|| rest.strip_prefix("br"))?;
    let hashes = after_r.bytes().take_while(|b| *b == b'#').count();
    after_r[hashes..]
        .starts_with('"')
        .then_some(hashes + usize::from(rest.starts_with('b')))
}

fn is_char_literal(rest: &str) -> bool {
    let mut chars = rest.chars().skip(1);
    matches!(
        (chars.next(), chars.next()),
        (Some('\\'), _) | (Some(_), Some('\''))
    )
}

/// A module path, from the crate root (`["edge", "service"]`).
type ModPath = Vec<String>;

/// The module path of a source file below `src`.
fn module_of(src: &Path, file: &Path) -> Option<ModPath> {
    let relative = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if !matches!(stem, "lib" | "main" | "mod") {
        parts.push(stem.to_owned());
    }
    Some(parts)
}

/// The module paths a file's code names through `crate::…` and `super::…`.
fn references(module: &ModPath, code: &str) -> Vec<ModPath> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let preceded_by_ident = i > 0
            && (bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b'$');
        let rest = &code[i..];
        let (base, skip) = if !preceded_by_ident && rest.starts_with("crate::") {
            (Some(Vec::new()), "crate::".len())
        } else if !preceded_by_ident && rest.starts_with("super::") {
            let mut base = module.clone();
            let mut j = 0;
            while rest[j..].starts_with("super::") {
                base.pop();
                j += "super::".len();
            }
            (Some(base), j)
        } else {
            (None, 1)
        };
        if let Some(base) = base {
            for tail in path_tails(&rest[skip..]) {
                let mut path = base.clone();
                path.extend(tail);
                found.push(path);
            }
        }
        i += skip;
    }
    found
}

/// The paths named after a `crate::`/`super::`: `a::b::C` gives `[a, b, C]`; a group
/// `a::{b::x, c}` gives `[a, b, x]` and `[a, c]` (nested groups too; `self` names the prefix).
fn path_tails(rest: &str) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    let mut rest = rest.trim_start();
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let mut tails = Vec::new();
            for item in group_items(group) {
                for tail in path_tails(item) {
                    let mut path = prefix.clone();
                    if tail.first().is_some_and(|t| t != "self") {
                        path.extend(tail);
                    }
                    tails.push(path);
                }
            }
            return tails;
        }
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            return vec![prefix];
        }
        rest = &rest[ident.len()..];
        prefix.push(ident);
        match rest.trim_start().strip_prefix("::") {
            Some(after) => rest = after.trim_start(),
            None => return vec![prefix],
        }
    }
}

/// The comma-separated items of a `{…}` group whose opening brace is already consumed.
fn group_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..at]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.retain(|item| !item.trim().is_empty());
    items
}

/// Cycles between sibling modules of one crate, at every level of its module tree. Test-only
/// code (modules declared under `#[cfg(test)]`, a file's trailing test module) is left out:
/// tests may reach anywhere.
fn module_cycles(src: &Path) -> Result<Vec<String>> {
    let mut sources = Vec::new();
    let mut test_only = BTreeSet::new();
    for file in rust_files(src)? {
        let Some(module) = module_of(src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file)?;
        for child in test_only_children(&text) {
            let mut path = module.clone();
            path.push(child);
            test_only.insert(path);
        }
        sources.push((module, text));
    }
    // parent module → (child → children it depends on)
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, text) in &sources {
        if (1..=module.len()).any(|n| test_only.contains(&module[..n])) {
            continue;
        }
        // Inline test modules come last; their `super::` is the file's module, not its parent.
        let code = strip_comments_and_strings(non_test_part(text));
        for target in references(module, &code) {
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common < module.len() && common < target.len() {
                graphs
                    .entry(module[..common].to_vec())
                    .or_default()
                    .entry(module[common].clone())
                    .or_default()
                    .insert(target[common].clone());
            }
        }
    }
    let mut problems = Vec::new();
    for (parent, graph) in &graphs {
        for cycle in cycles(graph) {
            let prefix = if parent.is_empty() {
                String::new()
            } else {
                format!("{}::", parent.join("::"))
            };
            let names: Vec<String> = cycle.iter().map(|m| format!("{prefix}{m}")).collect();
            problems.push(format!(
                "{}: import cycle between {}",
                src.display(),
                names.join(", ")
            ));
        }
    }
    Ok(problems)
}

/// The child modules a file declares under a `cfg` that names `test` (`#[cfg(test)] mod x;`,
/// `#[cfg(all(test, feature = "…"))] pub(crate) mod x;`).
fn test_only_children(text: &str) -> Vec<String> {
    let mut children = Vec::new();
    let mut under_test_cfg = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("#[cfg(") && line.contains("test") && !line.contains("not(test") {
            under_test_cfg = true;
            continue;
        }
        if under_test_cfg && !line.starts_with("#[") {
            let declaration = line
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ")
                .strip_prefix("mod ");
            if let Some(name) = declaration.and_then(|d| d.strip_suffix(';')) {
                children.push(name.trim().to_owned());
            }
            under_test_cfg = false;
        }
    }
    children
}

/// One cycle per strongly connected component with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, node: &'g str) {
        let at = s.index.len();
        s.index.insert(node, at);
        s.low.insert(node, at);
        s.stack.push(node);
        s.on_stack.insert(node);
        if let Some(next) = s.graph.get(node) {
            for next in next {
                let next = next.as_str();
                if !s.graph.contains_key(next) {
                    continue;
                }
                if !s.index.contains_key(next) {
                    visit(s, next);
                    let low = s.low[node].min(s.low[next]);
                    s.low.insert(node, low);
                } else if s.on_stack.contains(next) {
                    let low = s.low[node].min(s.index[next]);
                    s.low.insert(node, low);
                }
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = Vec::new();
            while let Some(member) = s.stack.pop() {
                s.on_stack.remove(member);
                component.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> ModPath {
        p.split("::").map(str::to_owned).collect()
    }

    #[test]
    fn references_resolve_crate_super_and_groups() {
        let code = "use crate::edge::config::{A, B};\nuse super::super::store::{self, x::Y, z};\n\
                    fn f() { crate::twin::run(); let s = \"crate::fake\"; }";
        let code = strip_comments_and_strings(code);
        let found = references(&path("cloud::registry::server"), &code);
        assert!(found.contains(&path("edge::config::A")));
        assert!(found.contains(&path("cloud::store::x::Y")));
        assert!(found.contains(&path("cloud::store::z")));
        assert!(found.contains(&path("twin::run")));
        assert!(!found.iter().any(|p| p.contains(&"fake".to_owned())));
    }

    #[test]
    fn a_cycle_between_siblings_is_found_and_a_chain_is_not() {
        let graph = |edges: &[(&str, &str)]| {
            let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (a, b) in edges {
                g.entry((*a).into()).or_default().insert((*b).into());
                g.entry((*b).into()).or_default();
            }
            g
        };
        assert_eq!(
            cycles(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
            [vec!["a".to_owned(), "b".into(), "c".into()]]
        );
        assert!(cycles(&graph(&[("a", "b"), ("b", "c")])).is_empty());
    }

    #[test]
    fn comments_strings_and_chars_are_blanked_but_lifetimes_stay() {
        let code =
            "let a = 'x'; // std::fs\nfn f<'a>(s: &'a str) { r#\"std::net\"#; \"std::env\" }";
        let stripped = strip_comments_and_strings(code);
        assert!(!stripped.contains("std::"));
        assert!(stripped.contains("<'a>"));
    }

    #[test]
    fn test_only_children_are_the_ones_declared_under_a_test_cfg() {
        let text = "#[cfg(test)]\nmod tests;\n#[cfg(all(test, feature = \"x\"))]\npub(crate) mod mock;\n\
                    #[cfg(not(test))]\nmod real;\nmod plain;\n";
        assert_eq!(test_only_children(text), ["tests", "mock"]);
    }

    #[test]
    fn module_paths_follow_the_file_layout() {
        let src = Path::new("/c/src");
        assert_eq!(module_of(src, Path::new("/c/src/lib.rs")), Some(vec![]));
        assert_eq!(
            module_of(src, Path::new("/c/src/edge/service/mod.rs")),
            Some(path("edge::service"))
        );
        assert_eq!(
            module_of(src, Path::new("/c/src/wire/topic.rs")),
            Some(path("wire::topic"))
        );
        assert_eq!(
            module_of(src, Path::new("/c/src/bin/edgetwin/main.rs")),
            None
        );
    }
}
