//! `cardrules replay`: the report of a replay as a terminal table, JSON, or one
//! self-contained HTML page with a bar chart of the transitions.

use std::fmt::Write as _;

use cardrules::replay::Report;

/// The report as a readable table.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replayed {} decisions: {} unchanged, {} changed",
        report.replayed, report.unchanged, report.changed
    );
    if report.erased > 0 {
        let _ = writeln!(
            out,
            "{} decisions on cards whose holder was erased were not decided again (their facts are gone); their recorded effects were kept",
            report.erased
        );
    }
    if !report.transitions.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<14} {:<26} {:<26} {:>7}  examples",
            "program", "recorded", "replayed", "count"
        );
        for t in &report.transitions {
            let _ = writeln!(
                out,
                "{:<14} {:<26} {:<26} {:>7}  {}",
                t.program,
                t.from,
                t.to,
                t.count,
                t.examples.join(", ")
            );
            for why in &t.why {
                if let Some(check) = &why.check {
                    let _ = writeln!(
                        out,
                        "{:<14}   {}: {}",
                        "",
                        why.example,
                        cardrules::suite::show_check(check)
                    );
                }
            }
        }
    }
    if !report.assets.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<14} {:<10} {:>16} {:>16} {:>16}",
            "program", "asset", "recorded", "replayed", "difference"
        );
        for (program, assets) in &report.assets {
            for (asset, units) in assets {
                let _ = writeln!(
                    out,
                    "{:<14} {:<10} {:>16} {:>16} {:>+16}",
                    program,
                    asset,
                    units.recorded,
                    units.replayed,
                    i128::from(units.replayed) - i128::from(units.recorded)
                );
            }
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A transition's examples, each with the check that decided it differently.
fn examples(t: &cardrules::replay::Transition) -> String {
    t.why
        .iter()
        .map(|why| match &why.check {
            Some(check) => format!("{} ({})", why.example, cardrules::suite::show_check(check)),
            None => why.example.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as one HTML page, with no outside resources, for the people deciding on
/// the rules.
pub fn html(report: &Report, title: &str) -> String {
    let most = report
        .transitions
        .iter()
        .map(|t| t.count)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut bars = String::new();
    for t in &report.transitions {
        let width = (t.count as f64 / most as f64 * 100.0).max(1.0);
        let _ = writeln!(
            bars,
            "<tr><td>{}</td><td>{} → {}</td><td class=\"bar\"><div style=\"width:{width:.1}%\"></div></td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&t.program),
            escape(&t.from),
            escape(&t.to),
            t.count,
            escape(&examples(t))
        );
    }
    let mut assets = String::new();
    for (program, list) in &report.assets {
        for (asset, units) in list {
            let _ = writeln!(
                assets,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:+}</td></tr>",
                escape(program),
                escape(asset),
                units.recorded,
                units.replayed,
                i128::from(units.replayed) - i128::from(units.recorded)
            );
        }
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ padding: .3rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.bar {{ width: 20rem; }}
td.bar div {{ background: #3a6ea5; height: 1rem; }}
</style></head><body>
<h1>{title}</h1>
<p>{replayed} decisions replayed: <b>{unchanged}</b> unchanged, <b>{changed}</b> changed; {erased} on erased holders' cards not decided again.</p>
<h2>What would be decided differently</h2>
<table><tr><th>program</th><th>recorded → replayed</th><th></th><th>count</th><th>examples</th></tr>
{bars}</table>
<h2>Units granted minus consumed</h2>
<table><tr><th>program</th><th>asset</th><th>recorded</th><th>replayed</th><th>difference</th></tr>
{assets}</table>
</body></html>
"#,
        title = escape(title),
        replayed = report.replayed,
        unchanged = report.unchanged,
        changed = report.changed,
        erased = report.erased,
    )
}
