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

/// A file's path relative to the workspace, with `/` separators.
fn rel(file: &Path) -> String {
    file.strip_prefix(workspace())
        .unwrap_or(file)
        .to_string_lossy()
        .replace('\\', "/")
        .trim_start_matches("./")
        .to_owned()
}

fn sources(dir: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&workspace().join(dir), &mut files);
    assert!(!files.is_empty(), "found the sources of {dir}");
    files
        .into_iter()
        .map(|f| (rel(&f), std::fs::read_to_string(&f).unwrap_or_default()))
        .collect()
}

/// The source text without `#[cfg(test)]` modules (tests may do what the product may not).
fn product_part(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// Each `async fn` of `text`: its signature (up to the opening brace) and its body.
fn async_functions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("async fn ") {
        let i = i + "async ".len();
        let rest = &text[i..];
        let Some(open) = rest.find('{') else { continue };
        if rest[..open].contains(';') {
            continue; // a declaration without a body (trait method)
        }
        let mut depth = 0usize;
        let mut end = rest.len();
        for (j, c) in rest[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((rest[..open].to_owned(), rest[open..end].to_owned()));
    }
    out
}

/// A `TenantScope` is the only key to tenant data; it is minted by the authentication layer after
/// tenant resolution, or explicitly as an audited system context. Nothing else may construct one.
#[test]
fn tenant_scopes_are_minted_only_by_the_access_layer() {
    let allowed = [
        // where the type is defined
        "crates/tenantry-domain/src/access.rs",
        // the access layer: after the credential was verified and the tenant resolved
        "crates/tenantry-server/src/access/scope.rs",
        // test support and the conformance suites
        "crates/tenantry-store/src/conformance/",
        "crates/tenantry-store/tests/rls.rs",
    ];
    let mut offenders = Vec::new();
    for (rel, text) in sources("crates") {
        if allowed.iter().any(|a| rel.contains(a)) || rel.ends_with("tests/architecture.rs") {
            continue;
        }
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

/// Every tenant-data method of the store ports takes the scope first: a `&TenantScope`, or a
/// `JobScope` (one tenant's view or the platform's).
#[test]
fn tenant_data_is_reached_only_through_a_scope() {
    // (port file, trait, methods that are platform data and take no scope)
    let ports = [
        (
            "access.rs",
            "AccessStore",
            &[
                "insert_operator_key",
                "find_key",
                "count_active_operator_keys",
                "touch_key",
            ][..],
        ),
        ("jobs.rs", "JobConsole", &[][..]),
        (
            "schedules.rs",
            "ScheduleStore",
            &["due", "reschedule", "fire"][..],
        ),
        ("usage.rs", "UsageStore", &[][..]),
        (
            "telemetry.rs",
            "TelemetryStore",
            &["prepare", "settings", "put_settings", "drop_empty_months"][..],
        ),
        (
            "webhooks.rs",
            "WebhookStore",
            // the dispatcher's platform view: every tenant's enabled subscriptions, the fan-out
            // from the log, claims and outcomes across tenants, statistics, retention
            &[
                "enabled_subscriptions",
                "set_failing_since",
                "fan_out",
                "claim",
                "record",
                "stats",
                "prune",
            ][..],
        ),
    ];
    let mut checked = 0;
    for (file, trait_name, platform) in ports {
        let text =
            std::fs::read_to_string(workspace().join("crates/tenantry-store/src").join(file))
                .expect("port file");
        let start = text
            .find(&format!("pub trait {trait_name}"))
            .unwrap_or_else(|| panic!("{trait_name} in {file}"));
        let body = &text[start..];
        let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
        for (i, _) in body.match_indices("async fn ") {
            let sig = &body[i + "async fn ".len()..];
            let sig = &sig[..sig.find(')').unwrap_or(sig.len())];
            let name = sig.split('(').next().unwrap_or_default();
            if platform.contains(&name) {
                continue;
            }
            checked += 1;
            let first = sig
                .split('(')
                .nth(1)
                .unwrap_or_default()
                .split(',')
                .nth(1)
                .unwrap_or_default()
                .trim();
            // a group of batches: each batch carries its own scope (checked below)
            let scoped_batches = first.starts_with("batches: &[Batch")
                && text.contains("pub struct Batch<'a> {\n    pub scope: &'a TenantScope,");
            assert!(
                first.starts_with("scope: &TenantScope")
                    || first.starts_with("scope: JobScope")
                    || scoped_batches,
                "{trait_name}::{name} reaches tenant data without a scope first: {sig})"
            );
        }
    }
    assert!(checked >= 21, "found the tenant-data methods ({checked})");
}

/// In each adapter — its own files and the capability code both adapters share
/// (`sql/capabilities/`) — tenant data is opened only through its one routing point: a function
/// that takes a scope gets its transaction from `tenant_tx` / `scoped_tx`, never from a pool or a
/// platform transaction; and only the adapter's `mod.rs` (where the routing point lives) touches
/// the tenants' pool.
#[test]
fn adapters_reach_tenant_rows_only_through_the_routing_point() {
    let mut offenders = Vec::new();
    let mut checked = 0;
    for dir in ["sqlite", "postgres", "sql/capabilities"] {
        for (rel, text) in sources(&format!("crates/tenantry-store/src/{dir}")) {
            if rel.ends_with("sqlite/mod.rs") || rel.ends_with("postgres/mod.rs") {
                continue;
            }
            if text.contains("tenant_pool") {
                offenders.push(format!("{rel}: uses the tenants' pool directly"));
            }
            for (sig, body) in async_functions(product_part(&text)) {
                if !(sig.contains("TenantScope") || sig.contains("JobScope")) {
                    continue;
                }
                checked += 1;
                let name = sig.split('(').next().unwrap_or_default().trim();
                if !(body.contains("tenant_tx(") || body.contains("scoped_tx(")) {
                    offenders.push(format!("{rel}: {name} does not open a scoped transaction"));
                }
                if body.contains("self.pool") || body.contains("platform_tx(") {
                    offenders.push(format!("{rel}: {name} bypasses the routing point"));
                }
            }
        }
    }
    assert!(
        checked >= 18,
        "found the scoped adapter functions ({checked})"
    );
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

/// The server's capabilities (each a folder of `crates/tenantry-server/src`).
const CAPABILITIES: &[&str] = &[
    "tenants",
    "editions",
    "audit",
    "access",
    "jobs",
    "telemetry",
    "sync",
];

fn capability_of(rel: &str) -> Option<&'static str> {
    let rest = rel.strip_prefix("crates/tenantry-server/src/")?;
    CAPABILITIES
        .iter()
        .copied()
        .find(|c| rest.starts_with(&format!("{c}/")))
}

fn is_http(rel: &str) -> bool {
    rel.contains("/http/") || rel.ends_with("/http.rs")
}

/// Use cases and workers know nothing of HTTP: outside `http` modules, no capability (nor the
/// platform's core) imports axum.
#[test]
fn services_do_not_import_axum() {
    let mut offenders = Vec::new();
    for (rel, text) in sources("crates/tenantry-server/src") {
        let core = capability_of(&rel).is_some() || rel.contains("/src/platform/");
        if core && !is_http(&rel) && product_part(&text).contains("axum") {
            offenders.push(rel);
        }
    }
    assert!(
        offenders.is_empty(),
        "services that import axum: {offenders:?}"
    );
}

/// Capabilities meet in the platform and the store, never in each other's HTTP modules.
#[test]
fn no_capability_imports_another_capabilitys_http_module() {
    let mut offenders = Vec::new();
    for (rel, text) in sources("crates/tenantry-server/src") {
        let Some(own) = capability_of(&rel) else {
            continue;
        };
        for other in CAPABILITIES.iter().filter(|c| **c != own) {
            if text.contains(&format!("crate::{other}::http")) {
                offenders.push(format!("{rel} imports crate::{other}::http"));
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

/// Every capability folder is registered in `CAPABILITIES` (and nothing else is wired by hand).
#[test]
fn every_capability_is_registered() {
    let lib = std::fs::read_to_string(workspace().join("crates/tenantry-server/src/lib.rs"))
        .expect("lib.rs");
    for c in CAPABILITIES {
        assert!(
            lib.contains(&format!("    {c}::CAPABILITY,")),
            "{c} is not in CAPABILITIES"
        );
    }
}
