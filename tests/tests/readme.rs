//! The README's "Limits and guarantees" section names, for each promise, the
//! test that proves it (`file::test`): each named test must exist, so that
//! renaming or removing a test cannot leave a promise without its proof.

use std::path::Path;

/// The `file::test` names in backticks in the README's "Limits and
/// guarantees" section.
fn cited_tests(readme: &str) -> Vec<(String, String)> {
    let start = readme
        .find("## Limits and guarantees")
        .expect("the README has a limits section");
    let section = &readme[start..];
    let end = section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3);
    section[..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| {
            let (file, test) = code.split_once("::")?;
            let is_name = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            };
            (is_name(file) && is_name(test) && test != "test")
                .then(|| (file.to_owned(), test.to_owned()))
        })
        .collect()
}

#[test]
fn every_test_the_readme_cites_as_proof_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../README.md")).unwrap();
    let cited = cited_tests(&readme);
    assert!(cited.len() > 20, "found the citations: {cited:?}");
    let missing: Vec<_> = cited
        .iter()
        .filter(|(file, test)| {
            let path = root.join("tests").join(format!("{file}.rs"));
            let source = std::fs::read_to_string(&path).unwrap_or_default();
            !source.contains(&format!("fn {test}("))
        })
        .map(|(file, test)| format!("{file}::{test}"))
        .collect();
    assert!(
        missing.is_empty(),
        "the README cites tests that do not exist: {missing:?}"
    );
}
