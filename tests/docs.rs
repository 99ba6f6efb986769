//! The book (`docs/src`) and the README checked without a server: every relative link points at
//! a file that exists, every `#anchor` at a heading of its page (as mdBook makes heading ids),
//! and every page of the book is reachable from `SUMMARY.md`. A broken link fails `make test`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every Markdown file under `dir`.
fn pages(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("a docs folder") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|extension| extension == "md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A page's links and the ids of its headings.
struct Page {
    links: Vec<String>,
    anchors: BTreeSet<String>,
}

/// mdBook's id of a heading: lower case, spaces to `-`, only letters, digits, `-` and `_`
/// kept; a second heading of the same text gets `-1`, a third `-2`.
fn heading_id(text: &str, seen: &mut BTreeMap<String, usize>) -> String {
    let base: String = text
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect::<String>()
        .to_lowercase();
    let count = seen.entry(base.clone()).or_insert(0);
    let id = if *count == 0 {
        base.clone()
    } else {
        format!("{base}-{count}")
    };
    *count += 1;
    id
}

fn read_page(path: &Path) -> Page {
    let text = std::fs::read_to_string(path).expect("a page");
    let mut links = Vec::new();
    let mut anchors = BTreeSet::new();
    let mut seen = BTreeMap::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(&text, Options::all()) {
        match event {
            Event::Start(Tag::Heading { id, .. }) => {
                if let Some(id) = id {
                    anchors.insert(id.to_string());
                }
                heading = Some(String::new());
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(text) = heading.take() {
                    anchors.insert(heading_id(&text, &mut seen));
                }
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some(heading) = heading.as_mut() {
                    heading.push_str(&text);
                }
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                links.push(dest_url.to_string());
            }
            _ => {}
        }
    }
    Page { links, anchors }
}

/// What is wrong with the links of `pages` (pages outside the book link into it too).
fn broken_links(pages: &[PathBuf]) -> Vec<String> {
    let mut read: BTreeMap<PathBuf, Page> = BTreeMap::new();
    let mut problems = Vec::new();
    for page in pages {
        let links = read_page(page).links;
        for link in links {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().expect("a folder").join(file)
            };
            let shown = page
                .strip_prefix(root())
                .unwrap_or(page)
                .display()
                .to_string();
            let Ok(target) = target.canonicalize() else {
                problems.push(format!("{shown}: {link}: no such file"));
                continue;
            };
            if anchor.is_empty() || target.extension().is_none_or(|extension| extension != "md") {
                continue;
            }
            let anchors = &read
                .entry(target.clone())
                .or_insert_with(|| read_page(&target))
                .anchors;
            if !anchors.contains(anchor) {
                problems.push(format!("{shown}: {link}: no heading with that anchor"));
            }
        }
    }
    problems
}

#[test]
fn every_link_of_the_book_and_the_readme_leads_somewhere() {
    let mut all = pages(&root().join("docs/src"));
    assert!(all.len() > 10, "the book has {} pages", all.len());
    for outside in ["README.md", "bench/README.md"] {
        all.push(root().join(outside));
    }
    let problems = broken_links(&all);
    assert!(problems.is_empty(), "\n  {}", problems.join("\n  "));
}

#[test]
fn every_page_of_the_book_is_in_its_summary() {
    let src = root().join("docs/src");
    let summary = read_page(&src.join("SUMMARY.md"));
    let listed: BTreeSet<PathBuf> = summary
        .links
        .iter()
        .filter_map(|link| src.join(link.split('#').next()?).canonicalize().ok())
        .collect();
    let orphans: Vec<String> = pages(&src)
        .into_iter()
        .filter(|page| !page.ends_with("SUMMARY.md"))
        .filter(|page| !listed.contains(&page.canonicalize().expect("a page")))
        .map(|page| page.display().to_string())
        .collect();
    assert!(orphans.is_empty(), "pages not in SUMMARY.md: {orphans:?}");
}

#[test]
fn the_checker_sees_a_broken_link_and_a_missing_anchor() {
    let dir = std::env::temp_dir().join(format!("sprayer-docs-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a folder");
    std::fs::write(dir.join("b.md"), "# The `Title`, again\n## Part\n## Part\n").expect("b");
    std::fs::write(
        dir.join("a.md"),
        "[ok](b.md#the-title-again) [ok](b.md#part-1) [gone](c.md) [anchor](b.md#nope) `[code](x.md)`\n",
    )
    .expect("a");
    let problems = broken_links(&[dir.join("a.md")]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].ends_with("c.md: no such file"), "{problems:?}");
    assert!(
        problems[1].ends_with("b.md#nope: no heading with that anchor"),
        "{problems:?}"
    );
}
