//! The documentation's links lead somewhere: every relative link in README.md and docs/*.md
//! names a file or directory that exists (relative to the page that links), and every anchor
//! into a Markdown page, the same page included, names one of its headings as GitHub spells
//! heading anchors. Links inside fenced code blocks and inline code are not links.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// README.md, then every page of docs/, in name order.
fn pages(root: &Path) -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    let mut pages = vec![root.join("README.md")];
    pages.extend(docs);
    pages
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of a Markdown text outside fenced code blocks (``` or ~~~).
fn prose(text: &str) -> Vec<&str> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(*m));
        match (fence, marker) {
            (None, Some(opening)) => fence = Some(opening),
            (Some(open), Some(closing)) if open == closing => fence = None,
            (None, None) => lines.push(line),
            _ => {}
        }
    }
    lines
}

/// Where the next run of exactly `n` backticks starts in `text`.
fn backtick_run(text: &str, n: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            let run = bytes[i..].iter().take_while(|&&b| b == b'`').count();
            if run == n {
                return Some(i);
            }
            i += run;
        } else {
            i += 1;
        }
    }
    None
}

/// The text without its inline code spans (a run of backticks up to the next run as long).
fn without_code_spans(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let run = rest[start..].bytes().take_while(|&b| b == b'`').count();
        let after = &rest[start + run..];
        match backtick_run(after, run) {
            Some(end) => rest = &after[end + run..],
            None => {
                out.push_str(&rest[start..start + run]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every link target, `[text](target)` or `[text](target "title")`, outside code.
fn link_targets(text: &str) -> Vec<String> {
    let bare = without_code_spans(&prose(text).join("\n"));
    let mut targets = Vec::new();
    let mut rest = bare.as_str();
    while let Some(open) = rest.find("](") {
        rest = &rest[open + 2..];
        let close = rest.find(')').unwrap_or(rest.len());
        let target = rest[..close].split_whitespace().next().unwrap_or("");
        targets.push(target.trim_start_matches('<').trim_end_matches('>').to_owned());
        rest = &rest[close..];
    }
    targets
}

/// GitHub's anchor for a heading: lowercase; alphanumerics, `-`, `_` and spaces kept, each
/// space a `-`; everything else (backticks, slashes, braces, dots, colons, commas...) dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's ATX headings, in order; a repeated one gets `-1`, `-2`... as on GitHub.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = Vec::new();
    for line in prose(text) {
        let level = line.bytes().take_while(|&b| b == b'#').count();
        if !(1..=6).contains(&level) {
            continue;
        }
        let Some(title) = line[level..].strip_prefix(' ') else {
            continue;
        };
        // An optional closing sequence of `#`s, after a space, is not part of the title.
        let unclosed = title.trim_end().trim_end_matches('#');
        let title = if unclosed.is_empty() || unclosed.ends_with(' ') {
            unclosed
        } else {
            title
        };
        let base = slug(title);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.push(if *count == 0 { base } else { format!("{base}-{count}") });
        *count += 1;
    }
    anchors
}

fn is_external(target: &str) -> bool {
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| target.starts_with(scheme))
        || target.contains("://")
}

#[test]
fn every_relative_link_in_the_readme_and_docs_leads_to_a_file_and_a_heading() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages(root) {
        let name = page.strip_prefix(root).unwrap_or(&page).display().to_string();
        let text = read(&page);
        for target in link_targets(&text) {
            if target.is_empty() || target == "#" || is_external(&target) {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let linked = if path.is_empty() {
                page.clone()
            } else {
                page.parent().expect("a page is in a directory").join(path)
            };
            if !linked.exists() {
                broken.push(format!("{name}: ({target}): {} does not exist", linked.display()));
                continue;
            }
            let Some(anchor) = anchor else {
                continue;
            };
            if linked.is_file() && linked.extension().is_some_and(|ext| ext == "md") {
                let headings = anchors(&read(&linked));
                if !headings.iter().any(|heading| heading == anchor) {
                    broken.push(format!(
                        "{name}: ({target}): no heading of {} has the anchor #{anchor}",
                        linked.strip_prefix(root).unwrap_or(&linked).display()
                    ));
                }
            }
        }
    }
    assert!(checked > 0, "README.md and docs/ link to nothing: is the parser right?");
    assert!(
        broken.is_empty(),
        "{} broken link(s) in README.md and docs/ (of {checked} checked):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn anchors_are_spelt_as_github_spells_them() {
    let page = "# Title\n\n### `GET /health`\n\n## `POST /v1/promo-codes/{code}/revoke`\n\n\
                ## The ledger: no code lost, none created twice\n\n```sh\n# not a heading\n```\n\n\
                ## Issue 15's targets (group commit)\n\n## Title\n";
    assert_eq!(
        anchors(page),
        [
            "title",
            "get-health",
            "post-v1promo-codescoderevoke",
            "the-ledger-no-code-lost-none-created-twice",
            "issue-15s-targets-group-commit",
            "title-1",
        ]
    );
}

#[test]
fn links_in_code_are_not_links() {
    let page = "See [the API](docs/api.md#get-health) and `[not](a-link.md)`.\n\n\
                ```md\n[nor](this.md)\n```\n\n[a title](other.md \"Other\")\n";
    assert_eq!(link_targets(page), ["docs/api.md#get-health", "other.md"]);
}
