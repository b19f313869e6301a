#![no_std]
//! Hostile-guest corpus, program `hostile-hostcalls`. An endless loop of host calls in
//! `evaluate`, one import per action (`count-in`, `count-within`, `last-use`, `balance`,
//! `find-holder`, `config`, `local`, `period-of`, `add-months`): each call costs the host
//! far more than the few instructions around it, so the host charges fuel for it, and the
//! loop ends on fuel long before the deadline. `measure-N` makes exactly N `count-in` calls
//! and allows, to time them; `beyond-the-calendar` asks for a date the calendar cannot
//! compute, once.
//! Built in CI with the real policies; `tests/hostile.rs` shows the host surviving it.

use cardrules_sdk::prelude::*;

struct Hostile;

impl Policy for Hostile {
    fn describe() -> PolicyInfo {
        policy_info(
            "hostile-hostcalls",
            "0.0.1",
            &["attack"],
            &[OK, BAD_REQUEST, UNKNOWN_ACTION],
        )
    }

    fn evaluate(req: Request) -> Decision {
        evaluate(req)
    }
}

fn evaluate(req: Request) -> Decision {
    let card = req.holder.card.clone();
    let at = req.at;
    let window = Window {
        start: at - 86_400,
        end: at,
    };
    let action = req.action.as_str();
    if let Some(n) = action.strip_prefix("measure-") {
        let n: u64 = n.parse().unwrap_or(0);
        let mut total = 0u64;
        for _ in 0..n {
            total = total.wrapping_add(ledger::count_in(Some(&card), "visits", Period::Year, at));
        }
        return allow().note(&format!("sum:{total}"));
    }
    // One call the calendar cannot answer (a date far beyond any it computes): the host
    // call fails, and the decision's error names that call and its cause.
    if action == "beyond-the-calendar" {
        return allow().note(&format!("at:{}", calendar::add_months(at, i32::MAX)));
    }
    let mut sink = 0u64;
    loop {
        let got = match action {
            "count-in" => ledger::count_in(Some(&card), "visits", Period::Year, at),
            "count-in-all" => ledger::count_in(None, "visits", Period::Year, at),
            "count-within" => ledger::count_within(Some(&card), "visits", window),
            "last-use" => ledger::last_use(&card, "visits").map_or(0, |t| t as u64),
            "balance" => ledger::balance(&card, "DKK", at) as u64,
            "find-holder" => ledger::find_holder(&card).map_or(0, |h| h.statuses.len() as u64),
            "config" => config_text("anything", "").len() as u64,
            "local" => calendar::local(at).hour as u64,
            "period-of" => calendar::period_of(Period::IsoWeek, at).start as u64,
            "add-months" => calendar::add_months(at, 1) as u64,
            _ => return deny(UNKNOWN_ACTION),
        };
        sink = core::hint::black_box(sink.wrapping_add(got));
    }
}

export_policy!(Hostile);
