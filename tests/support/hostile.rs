//! Program directories for the hostile guests (`guest-rules/hostile/`), which
//! `host/cli/build.rs` builds: each a manifest, an empty catalogue and one demo holder,
//! `H-1`, around the guest's component.

use std::path::{Path, PathBuf};

/// Where `host/cli/build.rs` put the built guests.
pub fn guest(name: &str) -> PathBuf {
    Path::new(env!("CARDRULES_GUESTS_DIR")).join(format!("{}.wasm", name.replace('-', "_")))
}

/// Writes a program directory for a hostile guest, with `extra` lines in its manifest.
pub fn hostile_program(policies: &Path, name: &str, extra: &str) -> PathBuf {
    let program = format!("hostile-{name}");
    // The demo holder starts with DKK, so every hostile program declares it.
    let assets = if extra.contains("assets =") {
        ""
    } else {
        "assets = [\"DKK\"]"
    };
    let dir = policies.join(&program);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(guest(&program), dir.join("policy.wasm")).unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"program = "{program}"
name = "Hostile guest `{name}`"
time-zone = "Europe/Oslo"
languages = ["en"]
component = "policy.wasm"
{assets}
{extra}

# What the snoop reads from its holders (the host refuses undeclared attributes).
[schema.holder.victim-card]
type = "text"
[schema.holder.victim-counter]
type = "text"
[schema.holder.victim-asset]
type = "text"

[messages]
ok = {{ en = "Allowed." }}
bad-request = {{ en = "Bad request." }}
unknown-action = {{ en = "Unknown action." }}
"#
        ),
    )
    .unwrap();
    std::fs::write(dir.join("catalogue.toml"), "# no offers\n").unwrap();
    std::fs::write(
        dir.join("holders.toml"),
        r#"[[holders]]
card = "H-1"
birth-date = "2010-01-01"
municipality = "nowhere"
balances = { DKK = 100 }
attributes = { victim-card = "AK-1001", victim-counter = "visit:bergen-kino", victim-asset = "DKK" }
"#,
    )
    .unwrap();
    dir
}
