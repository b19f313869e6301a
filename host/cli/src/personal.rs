//! `cardrules ledger erase`, `ledger restrict`, `ledger export` and `ledger compact`: what a city's operator
//! does about one holder's personal data, on the ledger directly (the HTTP API's
//! `DELETE …/holders/{card}`, `PUT …/holders/{card}/restriction` and
//! `GET …/cards/{card}/export`). Each is recorded in the card's access log under the
//! operator's name (`cli:$USER`).

use anyhow::Context;
use cardrules::ledger::Access;

use crate::args::ReadArgs;
use crate::exit;
use crate::portal::{host, unknown_card};

/// Who the access log and the journal name for a command run by an operator.
fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_string());
    format!("cli:{user}")
}

/// Records that the operator used `command` on `card`, durably, before anything is shown.
fn record(host: &cardrules::Host, program: &str, card: &str, command: &str) -> anyhow::Result<()> {
    let entry = Access {
        id: 0,
        program: program.to_string(),
        card: card.to_string(),
        at: jiff::Timestamp::now().as_second(),
        token: operator(),
        route: command.to_string(),
        method: "CLI".to_string(),
    };
    host.ledger()
        .journal()
        .record_access(&[entry])
        .with_context(|| format!("cannot record this use of card `{card}` in the access log"))
}

/// Erases the holder of `card`; prints what was erased.
pub fn erase(args: &ReadArgs, program: &str, card: &str) -> anyhow::Result<u8> {
    let host = host(args)?;
    let erased = host
        .erase(program, card, &operator())
        .with_context(|| format!("cannot erase the holder of card `{card}`"))?;
    record(&host, program, card, "cardrules ledger erase")?;
    println!("{}", serde_json::to_string_pretty(&erased)?);
    Ok(exit::OK)
}

/// Restricts the holder of `card` (or lifts it); prints the card as it is now.
pub fn restrict(
    args: &ReadArgs,
    program: &str,
    card: &str,
    restricted: bool,
) -> anyhow::Result<u8> {
    let host = host(args)?;
    let view = host
        .restrict(program, card, restricted, &operator())
        .with_context(|| format!("cannot restrict the holder of card `{card}`"))?;
    record(&host, program, card, "cardrules ledger restrict")?;
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(exit::OK)
}

/// Prints everything the ledger holds about the holder of `card`.
pub fn export(args: &ReadArgs, program: &str, card: &str) -> anyhow::Result<u8> {
    let host = host(args)?;
    let export = host
        .export(program, card, jiff::Timestamp::now().as_second())
        .with_context(|| format!("cannot export the holder of card `{card}`"))?
        .ok_or_else(|| unknown_card(program, card, args))?;
    record(&host, program, card, "cardrules ledger export")?;
    println!("{}", serde_json::to_string_pretty(&export)?);
    Ok(exit::OK)
}

/// Applies every program's `[retention]` as of `at` (default now); prints what it removed
/// and the ledger's size before and after.
pub fn compact(args: &ReadArgs, at: Option<i64>, vacuum: bool, json: bool) -> anyhow::Result<u8> {
    let host = host(args)?;
    let journal = host.ledger().journal().clone();
    let before = journal.stats().context("cannot read the ledger's size")?;
    let now = at.unwrap_or_else(|| jiff::Timestamp::now().as_second());
    let done = host
        .compact(now)
        .with_context(|| format!("cannot compact ledger `{}`", args.ledger))?;
    if vacuum {
        journal
            .reclaim()
            .context("cannot give the removed space back")?;
    }
    let after = journal.stats().context("cannot read the ledger's size")?;
    if json {
        let out = serde_json::json!({
            "ledger": args.ledger.to_string(),
            "programs": done,
            "bytes-before": before.bytes,
            "bytes-after": after.bytes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(exit::OK);
    }
    if done.is_empty() {
        println!("no program served here sets `[retention]`: nothing removed");
    }
    for c in &done {
        println!(
            "{}: {} events removed, {} kept{}; {} holders erased{}; {} access-log entries removed ({} ms)",
            c.program,
            c.events_removed,
            c.events_kept,
            c.base
                .map_or_else(String::new, |b| format!(" (base snapshot at event {b})")),
            c.holders_erased.len(),
            if c.holders_kept.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} kept: {}",
                    c.holders_kept.len(),
                    c.holders_kept.join("; ")
                )
            },
            c.accesses_removed,
            c.millis
        );
    }
    let size = |bytes: Option<u64>| {
        bytes.map_or_else(|| "?".to_string(), |b| format!("{:.1} MB", b as f64 / 1e6))
    };
    println!(
        "ledger `{}`: {} before, {} after{}",
        args.ledger,
        size(before.bytes),
        size(after.bytes),
        if vacuum {
            ""
        } else {
            " (space is reused; `--vacuum` gives it back)"
        }
    );
    Ok(exit::OK)
}
