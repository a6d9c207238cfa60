//! The layering of `src/`, checked on the source itself: no top-level module imports one that
//! imports it back (directly or through others), the web, database and Redis crates stay in
//! their layers, and code lines name no vendor (vendor knowledge lives in `adapters/`).
//!
//! `KNOWN_*` list what the code does today that the layering forbids: a ratchet. An entry that
//! no longer happens fails the test until it is removed, so the lists only shrink.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module cycles still to break, each as its sorted members joined by ` `.
const KNOWN_CYCLES: &[&str] = &[];

/// `(crate, module)` pairs still to move into their layer.
const KNOWN_CRATE_USES: &[(&str, &str)] = &[];

/// Modules whose code lines still name a vendor.
const KNOWN_VENDOR_NAMES: &[&str] = &[];

/// Which layer may name which crate.
const CONFINED: &[(&str, &[&str])] = &[
    ("axum", &["http"]),
    ("utoipa", &["http"]),
    ("rusqlite", &["store"]),
    ("sqlx", &["store"]),
    ("tokio_postgres", &["store"]),
    ("deadpool_postgres", &["store"]),
    ("redis", &["admission"]),
    // The simulated vendors are wired in the composition root only; their schema validator
    // belongs to the sandbox crate, never to the gateway.
    ("promo_sandbox", &["lib", "main"]),
    ("jsonschema", &[]),
];

/// Modules that are documentation (the CLI's manual, whose examples name upstream instances).
const DOCS: &[&str] = &["help"];

const VENDORS: &[&str] = &["spacebring", "partnero", "moltin", "limio", "loop"];

/// Every `.rs` file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The top-level module a file of `src/` belongs to (`src/store/sqlite.rs` -> `store`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The code of a file without comments: whole comment lines dropped, and a trailing `//`
/// comment cut where it stands outside a string literal.
fn code_lines(text: &str) -> Vec<String> {
    let mut in_tests = false;
    let mut after_cfg_test = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        // A file's unit tests (`#[cfg(test)] mod tests { ... }`, its last item by convention)
        // name what they like: they are not the layer's code.
        if after_cfg_test && trimmed.starts_with("mod tests") {
            in_tests = true;
        }
        after_cfg_test = trimmed.starts_with("#[cfg(test)]");
        if in_tests || trimmed.starts_with("//") {
            continue;
        }
        let mut quotes = 0;
        let mut cut = line.len();
        let bytes = line.as_bytes();
        for i in 0..bytes.len() {
            match bytes[i] {
                b'"' if i == 0 || bytes[i - 1] != b'\\' => quotes += 1,
                b'/' if quotes % 2 == 0 && bytes.get(i + 1) == Some(&b'/') => {
                    cut = i;
                    break;
                }
                _ => {}
            }
        }
        out.push(line[..cut].to_owned());
    }
    out
}

struct Source {
    /// Module -> the modules its code names through `crate::`.
    imports: BTreeMap<String, BTreeSet<String>>,
    /// Module -> the external crates its code names.
    crates: BTreeMap<String, BTreeSet<String>>,
    /// Module -> the vendors its code lines name.
    vendors: BTreeMap<String, BTreeSet<String>>,
}

fn read_source() -> Source {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut source = Source {
        imports: BTreeMap::new(),
        crates: BTreeMap::new(),
        vendors: BTreeMap::new(),
    };
    let confined: Vec<&str> = CONFINED.iter().map(|(c, _)| *c).collect();
    for file in files(&src) {
        let module = module_of(&src, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        let imports = source.imports.entry(module.clone()).or_default();
        let crates = source.crates.entry(module.clone()).or_default();
        let vendors = source.vendors.entry(module.clone()).or_default();
        for line in code_lines(&text) {
            for (at, _) in line.match_indices("crate::") {
                let before = line[..at].chars().last();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue; // `promo_adapters::...crate::` is not ours
                }
                let name: String = line[at + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    imports.insert(name);
                }
            }
            for krate in &confined {
                let named = line.match_indices(krate).any(|(at, _)| {
                    let before = line[..at].chars().last();
                    let after = &line[at + krate.len()..];
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                        && (after.starts_with("::") || after.starts_with(" ::"))
                });
                if named {
                    crates.insert((*krate).to_owned());
                }
            }
            // A module's unit tests in a file of their own (`sqlite/tests.rs`) name what they
            // like, as an inline `mod tests` does.
            if file.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let lower = line.to_lowercase();
            for vendor in VENDORS {
                let words = lower
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(|w| w == *vendor || w.starts_with(&format!("{vendor}_")));
                // `loop` is also a keyword: only a capitalised `Loop` or one in a string counts.
                let named = if *vendor == "loop" {
                    line.split(|c: char| !c.is_alphanumeric()).any(|w| w == "Loop") || in_string(&line, "loop")
                } else {
                    words
                };
                if named {
                    vendors.insert((*vendor).to_owned());
                }
            }
        }
    }
    source
}

/// Whether `word` appears inside a string literal of `line`.
fn in_string(line: &str, word: &str) -> bool {
    line.split('"').enumerate().filter(|(i, _)| i % 2 == 1).any(|(_, s)| {
        s.to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| w == word)
    })
}

/// The strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: BTreeSet<String>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.graph.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut members = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                members.push(w);
                if w == v {
                    break;
                }
            }
            if members.len() > 1 {
                members.sort();
                s.found.insert(members.join(" "));
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: BTreeSet::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let source = read_source();
    let found = cycles(&source.imports);
    let known: BTreeSet<String> = KNOWN_CYCLES.iter().map(|c| c.to_string()).collect();
    let new: Vec<&String> = found.difference(&known).collect();
    let gone: Vec<&String> = known.difference(&found).collect();
    assert!(
        new.is_empty(),
        "import cycles between modules of src/: {new:#?}\n(imports: {:#?})",
        source.imports
    );
    assert!(
        gone.is_empty(),
        "cycles no longer there: take them out of KNOWN_CYCLES: {gone:#?}"
    );
}

#[test]
fn web_database_and_redis_crates_stay_in_their_layers() {
    let source = read_source();
    let mut found = BTreeSet::new();
    for (module, crates) in &source.crates {
        for krate in crates {
            let allowed = CONFINED
                .iter()
                .find(|(c, _)| c == krate)
                .map(|(_, m)| *m)
                .unwrap_or(&[]);
            if !allowed.contains(&module.as_str()) {
                found.insert((krate.clone(), module.clone()));
            }
        }
    }
    let known: BTreeSet<(String, String)> = KNOWN_CRATE_USES
        .iter()
        .map(|(c, m)| (c.to_string(), m.to_string()))
        .collect();
    let new: Vec<_> = found.difference(&known).collect();
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(new.is_empty(), "crates named outside their layer: {new:#?}");
    assert!(
        gone.is_empty(),
        "no longer named there: take them out of KNOWN_CRATE_USES: {gone:#?}"
    );
}

/// The backends behind the ports (`store`, `admission`) are chosen by the composition root
/// alone: every other module speaks to them through `ports`.
#[test]
fn implementations_are_named_only_by_the_composition_root() {
    let source = read_source();
    let root_or_own = ["lib", "main", "store", "admission"];
    let found: Vec<(&String, &str)> = source
        .imports
        .iter()
        .filter(|(module, _)| !root_or_own.contains(&module.as_str()))
        .flat_map(|(module, imports)| {
            ["store", "admission"]
                .into_iter()
                .filter(|implementation| imports.contains(*implementation))
                .map(move |implementation| (module, implementation))
        })
        .collect();
    assert!(
        found.is_empty(),
        "modules naming a backend instead of its port: {found:#?}"
    );
}

#[test]
fn code_lines_of_src_name_no_vendor() {
    let source = read_source();
    let found: BTreeSet<String> = source
        .vendors
        .iter()
        .filter(|(m, v)| !v.is_empty() && !DOCS.contains(&m.as_str()))
        .map(|(m, _)| m.clone())
        .collect();
    let known: BTreeSet<String> = KNOWN_VENDOR_NAMES.iter().map(|m| m.to_string()).collect();
    let new: Vec<_> = found.difference(&known).collect();
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(
        new.is_empty(),
        "modules of src/ whose code names a vendor: {:#?}",
        new.iter().map(|m| (m, &source.vendors[*m])).collect::<Vec<_>>()
    );
    assert!(
        gone.is_empty(),
        "no longer naming a vendor: take them out of KNOWN_VENDOR_NAMES: {gone:#?}"
    );
}
