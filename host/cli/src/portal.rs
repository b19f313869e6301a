//! `cardrules allowances` and `cardrules history`: what a card may still do and what it
//! did, as the HTTP API's `GET …/allowances` and `GET …/history` answer them, read from a
//! ledger without writing to it.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use cardrules::allowance::AllowanceQuery;
use cardrules::history::HistoryPage;
use cardrules::{Host, Sandbox, parse_instant};

use crate::args::ReadArgs;
use crate::exit;

/// What `cardrules allowances` asks, as given.
pub struct Asked {
    pub at: Option<String>,
    pub action: Option<String>,
    pub offer: Option<String>,
    pub language: Option<String>,
}

/// The host over `args`' ledger and programs, loaded only for reading.
pub(crate) fn host(args: &ReadArgs) -> anyhow::Result<Host> {
    let trust = args.trust.resolve(false)?;
    let host = Host::new(Arc::new(Sandbox::new()?), args.ledger.open()?).with_trust(trust);
    // A one-shot command writes no snapshot: the thread would be cut short at its exit.
    host.ledger().snapshot_every(0);
    for error in cardrules::loader::load_dir(&host, &args.policies)? {
        eprintln!("warning: {error}");
    }
    Ok(host)
}

pub(crate) fn unknown_card(program: &str, card: &str, args: &ReadArgs) -> anyhow::Error {
    anyhow!(
        "card `{card}` is not known to program `{program}` in ledger `{}`",
        args.ledger
    )
}

/// Prints the allowances of `card` as JSON.
pub fn allowances(args: &ReadArgs, program: &str, card: &str, asked: Asked) -> anyhow::Result<u8> {
    let at = asked
        .at
        .as_deref()
        .map(|text| parse_instant(text).map_err(|e| anyhow!("`--at`: {e}")))
        .transpose()?;
    let host = host(args)?;
    let query = AllowanceQuery {
        at,
        action: asked.action,
        offer: asked.offer,
        language: asked.language,
    };
    let allowances = host
        .allowances(program, card, &query)
        .with_context(|| format!("cannot read the allowances of card `{card}`"))?
        .ok_or_else(|| unknown_card(program, card, args))?;
    println!("{}", serde_json::to_string_pretty(&allowances)?);
    Ok(exit::OK)
}

/// Prints a page of the statement of `card` as JSON.
pub fn history(
    args: &ReadArgs,
    program: &str,
    card: &str,
    [since, until, limit, after]: [Option<String>; 4],
) -> anyhow::Result<u8> {
    let page = HistoryPage::parse(
        since.as_deref(),
        until.as_deref(),
        limit.as_deref(),
        after.as_deref(),
    )?;
    let host = host(args)?;
    let history = host
        .history(program, card, &page)
        .with_context(|| format!("cannot read the history of card `{card}`"))?
        .ok_or_else(|| unknown_card(program, card, args))?;
    println!("{}", serde_json::to_string_pretty(&history)?);
    Ok(exit::OK)
}
