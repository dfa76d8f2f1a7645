//! Architecture rules, checked on the source tree (seed 002: "the fixes guarded by architecture
//! tests").

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("readable source tree")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A `TenantScope` is the only key to tenant data; it is minted by the authentication layer after
/// tenant resolution, or explicitly as an audited system context. Nothing else may construct one.
#[test]
fn tenant_scopes_are_minted_only_by_the_access_layer() {
    let allowed = [
        // where the type is defined
        "crates/tenantry-domain/src/access.rs",
        // the access layer: after the credential was verified and the tenant resolved
        "crates/tenantry-server/src/app/access.rs",
        // test support and the conformance suite
        "crates/tenantry-store/src/conformance.rs",
        "crates/tenantry-store/src/job_conformance.rs",
        "crates/tenantry-store/tests/rls.rs",
    ];
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    assert!(files.len() > 20, "found the sources");
    let mut offenders = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(workspace())
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        let rel = rel.trim_start_matches("./").to_owned();
        if allowed.iter().any(|a| rel.ends_with(a)) || rel.ends_with("tests/architecture.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if line.contains("TenantScope::for_verified_request")
                || line.contains("TenantScope::system")
            {
                offenders.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "TenantScope minted outside the access layer:\n{}",
        offenders.join("\n")
    );
}

/// Every tenant-data method of the store port takes a `&TenantScope` first.
#[test]
fn tenant_data_is_reached_only_through_a_scope() {
    let port = std::fs::read_to_string(workspace().join("crates/tenantry-store/src/port.rs"))
        .expect("port.rs");
    let tenant_data = ["tenant_key", "tenant_keys", "device", "devices"];
    let mut checked = 0;
    for (i, _) in port.match_indices("async fn ") {
        let sig = &port[i..];
        let sig = &sig[..sig.find(')').unwrap_or(sig.len())];
        let name = sig["async fn ".len()..]
            .split('(')
            .next()
            .unwrap_or_default();
        if tenant_data.iter().any(|t| name.ends_with(t)) {
            checked += 1;
            let first_param = sig
                .split('(')
                .nth(1)
                .unwrap_or_default()
                .split(',')
                .nth(1)
                .unwrap_or_default();
            assert!(
                first_param.trim().starts_with("scope: &TenantScope"),
                "store method {name} reaches tenant data without a TenantScope first: {sig})"
            );
        }
    }
    assert!(checked >= 9, "found the tenant-data methods ({checked})");
}
