//! A fixed, varied mix of requests for a program, generated from its catalogue, its demo
//! holders and the actions its policy describes: what `cardrules bench` and the peer
//! benchmark (`bench/peer`) decide, so that their figures are over the same requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{Error, Holder, Host, MemoryLedger, Program, Request, Result, Sandbox};

/// A realistic mix for `program`: every action its policy describes, for each demo holder,
/// with each catalogue offer, at a weekday noon, with the fields actions commonly need.
pub fn requests(program: &Program) -> Vec<Request> {
    let holders: &[Holder] = &program.files.holders;
    let mut offers: Vec<Option<String>> =
        program.files.catalogue.keys().cloned().map(Some).collect();
    offers.sort();
    if offers.is_empty() {
        offers.push(None);
    }
    let asset = program.files.manifest.assets.first().cloned();
    let at = jiff::Timestamp::from_second(1_715_083_200).unwrap_or_default(); // 2024-05-07T12:00Z
    let mut out = Vec::new();
    let mut n = 0;
    for action in &program.policy.info.actions {
        for (h, holder) in holders.iter().enumerate() {
            for offer in &offers {
                n += 1;
                out.push(Request {
                    program: program.id().to_string(),
                    card: holder.card.clone(),
                    action: action.clone(),
                    at,
                    offer: offer.clone(),
                    party: Some(1),
                    amount: Some(100),
                    asset: asset.clone(),
                    to_card: holders.get((h + 1) % holders.len()).map(|o| o.card.clone()),
                    new_card: Some(format!("BENCH-NEW-{n}")),
                    id: None,
                    dry_run: false,
                    language: None,
                    explain: false,
                    venue: None,
                });
            }
        }
    }
    // Put the first action — each program's everyday one — at twice the weight.
    let everyday: Vec<Request> = out
        .iter()
        .filter(|r| Some(&r.action) == program.policy.info.actions.first())
        .cloned()
        .collect();
    out.extend(everyday);
    let mut keyed: BTreeMap<usize, Request> = BTreeMap::new();
    for (i, request) in out.into_iter().enumerate() {
        // A fixed shuffle, so runs are comparable.
        keyed.insert((i * 2_654_435_761) % 1_000_003 * 1_000 + i, request);
    }
    keyed.into_values().collect()
}

/// The same requests as dry runs: decided in full, nothing committed.
pub fn dry_runs(requests: Vec<Request>) -> Vec<Request> {
    requests
        .into_iter()
        .map(|mut request| {
            request.dry_run = true;
            request
        })
        .collect()
}

/// A host serving `program` over an in-memory ledger, with its demo holders registered:
/// where benchmarks time evaluations without a disk.
pub fn memory_host(sandbox: Arc<Sandbox>, program: Arc<Program>) -> Result<Host> {
    let host = Host::new(sandbox, Arc::new(MemoryLedger::new()));
    host.insert(program.clone());
    host.register_demo_holders(program.id())?;
    Ok(host)
}

/// Writes the empty policy's program — the component at `component` (`guest-rules/floor`,
/// which allows everything and reads nothing), a manifest, one offer and one demo holder —
/// into `<scratch>/floor`, and returns that directory: what a sandboxed decision costs
/// with no rules at all, for benchmarks to compare programs with.
pub fn write_floor(scratch: &Path, component: &Path) -> Result<PathBuf> {
    write_program(
        scratch,
        "floor",
        component,
        "name = \"The empty policy\"\n",
        "[[offers]]\nid = \"nothing\"\ncategory = \"none\"\nlocation = \"nowhere\"\n",
        "F-1",
    )
}

/// Writes a program for a test guest into `<scratch>/<id>`: the component (as
/// `<id>.wasm`), a manifest in UTC and English with the messages every guest gives (`ok`,
/// `bad-request`, `unknown-action`) plus `manifest` (its name, limits…), the catalogue
/// given, and one demo holder with card `card`; returns the directory.
pub fn write_program(
    scratch: &Path,
    id: &str,
    component: &Path,
    manifest: &str,
    catalogue: &str,
    card: &str,
) -> Result<PathBuf> {
    let dir = scratch.join(id);
    let io = |e: std::io::Error| {
        Error::Invalid(format!(
            "cannot write the program `{id}` in `{}`: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    std::fs::copy(component, dir.join(format!("{id}.wasm"))).map_err(io)?;
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "program = \"{id}\"\ntime-zone = \"UTC\"\nlanguages = [\"en\"]\ncomponent = \"{id}.wasm\"\n{manifest}\n[messages]\nok = {{ en = \"Allowed.\" }}\nbad-request = {{ en = \"Bad request.\" }}\nunknown-action = {{ en = \"Unknown action.\" }}\n"
        ),
    )
    .map_err(io)?;
    std::fs::write(dir.join("catalogue.toml"), catalogue).map_err(io)?;
    std::fs::write(
        dir.join("holders.toml"),
        format!("[[holders]]\ncard = \"{card}\"\nbirth-date = \"2010-01-01\"\nmunicipality = \"nowhere\"\n"),
    )
    .map_err(io)?;
    Ok(dir)
}
