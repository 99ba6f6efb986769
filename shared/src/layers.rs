//! The order of the crate's modules, checked: each module imports only modules of an earlier
//! layer or of its own, and no two import each other (directly or round a loop). The crate
//! doc lists the layers; a new module gets its place here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, first to last.
const LAYERS: [&[&str]; 5] = [
    &["model", "sms_text"],
    &["config"],
    &["tls"],
    &[
        "amqp",
        "redis",
        "mongo",
        "listen",
        "telemetry",
        "shutdown",
        "netguard",
        "signing",
        "wstoken",
    ],
    &["expand", "ops", "startup", "feed", "schedule", "personal"],
];

/// `text` without its comment lines.
fn code_only(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `.rs` file of `module` (a file, or a folder with its files).
fn sources(src: &Path, module: &str) -> Vec<String> {
    let mut texts = Vec::new();
    if let Ok(text) = std::fs::read_to_string(src.join(format!("{module}.rs"))) {
        texts.push(code_only(&text));
    }
    let mut folders = vec![src.join(module)];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                texts.push(code_only(&text));
            }
        }
    }
    texts
}

/// The crate's modules each module names as `crate::<module>` in code (a doc comment may
/// point anywhere).
fn imports() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let all: Vec<&'static str> = LAYERS
        .iter()
        .flat_map(|layer| layer.iter().copied())
        .collect();
    all.iter()
        .map(|module| {
            let texts = sources(&src, module);
            assert!(!texts.is_empty(), "module {module} has no source");
            let named = all
                .iter()
                .copied()
                .filter(|other| other != module)
                .filter(|other| {
                    let path = format!("crate::{other}");
                    texts.iter().any(|text| {
                        text.match_indices(&path).any(|(at, _)| {
                            let next = text[at + path.len()..].chars().next();
                            !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        })
                    })
                })
                .collect();
            (*module, named)
        })
        .collect()
}

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or(usize::MAX)
}

#[test]
fn every_module_is_in_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    for line in lib.lines() {
        if let Some(module) = line
            .strip_prefix("pub mod ")
            .and_then(|m| m.strip_suffix(';'))
        {
            assert!(
                layer(module) < LAYERS.len(),
                "{module} has no layer in layers.rs"
            );
        }
    }
}

#[test]
fn modules_import_only_earlier_layers_and_never_in_a_loop() {
    let imports = imports();
    let mut problems = Vec::new();
    for (module, named) in &imports {
        for other in named {
            if layer(other) > layer(module) {
                problems.push(format!("{module} imports {other}, a later layer"));
            }
        }
    }
    // Depth-first search for a loop among modules of the same layer.
    fn visit<'a>(
        module: &'a str,
        imports: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        loops: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|m| *m == module) {
            loops.push(format!("{} -> {module}", path[at..].join(" -> ")));
            return;
        }
        if !done.insert(module) {
            return;
        }
        path.push(module);
        for other in &imports[module] {
            visit(other, imports, path, done, loops);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for module in imports.keys() {
        visit(module, &imports, &mut Vec::new(), &mut done, &mut problems);
    }
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}
