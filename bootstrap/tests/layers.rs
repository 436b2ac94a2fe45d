//! The import graph runs one way: leaf (pure modules, the step shape, small shared utilities)
//! <- adapters (one per real system) <- drivers (wiring, daemon, render, upgrade) <- edge (CLI).
//! Reads every source file and fails on a `crate::` path that points up a layer. Test modules
//! (`#[cfg(test)] mod tests`) and comments are ignored.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Leaf,
    Adapter,
    Driver,
    Edge,
}

/// Which layer a module path (`["observability", "rules"]`) belongs to. A module not listed
/// fails the test: a new top-level module must be placed on purpose.
fn layer_of(path: &[&str]) -> Option<Layer> {
    use Layer::*;
    if path.starts_with(&["observability", "rules"]) {
        return Some(Leaf);
    }
    Some(match *path.first()? {
        // Pure: parse, size, decide. No I/O beyond reading the configuration file.
        "config" | "capacity" | "versions" | "error" | "reconcile" => Leaf,
        // Utilities every layer may use; they know no system.
        "fsutil" | "serve" | "ensure_crypto_provider" => Leaf,
        "pki" | "postgres" | "search" | "temporal" | "observability" | "kubernetes" | "codec" => {
            Adapter
        }
        "steps" | "daemon" | "render" | "upgrade" | "audit" => Driver,
        "cli" | "main" => Edge,
        _ => return None,
    })
}

/// The modules the pure layer consists of: they may import nothing but other leaf modules.
const PURE: &[&str] = &["config", "capacity", "versions", "error", "reconcile"];

#[test]
fn imports_point_down_the_layers_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut violations = Vec::new();
    for file in &files {
        let module = module_path(&src, file);
        if module.is_empty() || module == ["lib"] {
            continue;
        }
        let segments: Vec<&str> = module.iter().map(String::as_str).collect();
        let from = layer_of(&segments)
            .unwrap_or_else(|| panic!("{}: module `{}` has no layer", file.display(), module[0]));
        let text = std::fs::read_to_string(file).unwrap();
        for target in crate_paths(&production_code(&text)) {
            let parts: Vec<&str> = target.split("::").collect();
            if parts[0] == segments[0] {
                continue;
            }
            let to = layer_of(&parts).unwrap_or_else(|| {
                panic!(
                    "{}: `crate::{target}` names a module with no layer",
                    file.display()
                )
            });
            if to > from {
                violations.push(format!(
                    "{} ({from:?}) imports crate::{target} ({to:?})",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that point up a layer:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn the_layer_table_knows_every_top_level_module_and_pure_modules_are_leaves() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        {
            assert!(
                layer_of(&[name]).is_some(),
                "lib.rs declares `{name}`: give it a layer"
            );
        }
    }
    for m in PURE {
        assert_eq!(layer_of(&[m]), Some(Layer::Leaf), "{m}");
    }
}

#[test]
fn the_checker_sees_an_upward_import() {
    // The parser must find the paths a violation would use, or the main test proves nothing.
    let text = "use crate::cli::exit;\nuse crate::{postgres::PgError, config};\n// crate::steps in a comment\nfn f() { crate::temporal::connect(); }\n#[cfg(test)]\nmod tests { use crate::daemon; }\n";
    let found = crate_paths(&production_code(text));
    assert_eq!(
        found,
        [
            "cli::exit",
            "postgres::PgError",
            "config",
            "temporal::connect"
        ]
    );
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// `src/postgres/mod.rs` -> ["postgres"], `src/observability/rules.rs` -> ["observability", "rules"].
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The file without its test module and without comments.
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        let code = line.split("//").next().unwrap_or_default();
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Every `crate::a::b` path, and each item of `crate::{a::b, c}`, in order of appearance.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    found.push(path_prefix(item));
                }
            }
        } else {
            found.push(path_prefix(rest));
        }
    }
    found
}

/// `a::b::C` from `a::b::C;` or `a::b::{...}` (then `a::b`).
fn path_prefix(s: &str) -> String {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    s[..end].trim_end_matches(':').to_string()
}
