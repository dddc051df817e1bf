//! The core stays sans-IO: no runtime, OS or clock dependencies, and no clock, socket,
//! file or thread use in its sources (clippy.toml's disallowed lists catch calls; this
//! catches dependencies and imports).

use std::path::Path;

#[test]
fn dependencies_are_pure() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    let names: Vec<&str> = deps
        .lines()
        .filter_map(|l| l.split('=').next())
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect();
    for n in &names {
        assert!(
            ["tandem-proto", "thiserror"].contains(n),
            "tandem-core must stay sans-IO, but depends on {n}"
        );
    }
}

#[test]
fn sources_use_no_clock_socket_file_or_thread() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for banned in [
            "std::time::Instant",
            "SystemTime",
            "std::net",
            "std::fs",
            "std::thread",
            "tokio",
            "rustix",
            "nix::",
        ] {
            assert!(
                !text.contains(banned),
                "{} uses {banned}; the core takes time and IO from its caller",
                path.display()
            );
        }
    }
}
