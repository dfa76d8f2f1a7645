//! Every store conformance case on every adapter, and a check that no case is left out.

#![allow(clippy::unwrap_used)]

mod sqlite {
    tenantry_store::conformance_suite!(Some(tenantry_store::testing::sqlite().await));
}

mod postgres {
    tenantry_store::conformance_suite!(tenantry_store::testing::postgres().await);
}

/// Every `pub async fn case(store: &dyn Store)` in `src/conformance/` is in the suite's list.
#[test]
fn every_conformance_case_is_listed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/conformance");
    let mut written = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        let module = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("pub async fn ")
                && let Some((name, params)) = rest.split_once('(')
                && params.starts_with("store: &dyn Store)")
            {
                written.push(format!("{module}::{name}"));
            }
        }
    }
    assert!(written.len() > 30, "found the cases ({})", written.len());
    let missing: Vec<&String> = written
        .iter()
        .filter(|c| !sqlite::LISTED.contains(&c.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "conformance cases not in conformance_suite!: {missing:?}"
    );
    assert_eq!(
        written.len(),
        sqlite::LISTED.len(),
        "listed cases that do not exist"
    );
}
