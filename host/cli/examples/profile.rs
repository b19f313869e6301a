//! A fixed number of dry-run decisions of one program on a memory ledger, and nothing
//! else: what to run under a profiler to see where one decision's time goes.
//!
//! ```text
//! cargo build --release --example profile
//! valgrind --tool=callgrind target/release/examples/profile policies/floor 20000
//! perf record -g target/release/examples/profile policies/bergen 200000
//! ```
//!
//! Instruction counts (callgrind) are repeatable on a busy machine; divide by the number
//! of decisions (the setup is a few per cent of a 20 000-decision run).

use std::path::PathBuf;
use std::sync::Arc;

use cardrules::{Host, MemoryLedger, Program, Sandbox, Trust};

/// The `cardrules` command's allocator, so that the profile is the command's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: profile POLICY_DIR [DECISIONS]")?);
    let decisions: usize = args.next().map_or(Ok(10_000), |n| n.parse())?;
    let sandbox = Arc::new(Sandbox::new()?);
    let program = Arc::new(Program::load(&sandbox, &Trust::allow_unsigned(), &dir)?);
    let host = Host::new(sandbox, Arc::new(MemoryLedger::new()));
    host.insert(program.clone());
    host.register_demo_holders(program.id())?;
    let mut mix = cardrules::sample::requests(&program);
    if mix.is_empty() {
        return Err(format!("`{}` has no demo holders", dir.display()).into());
    }
    for request in &mut mix {
        request.dry_run = true;
    }
    let mut allowed = 0;
    for n in 0..decisions {
        allowed += usize::from(host.decide(&mix[n % mix.len()])?.allow);
    }
    println!("{decisions} decisions, {allowed} allowed");
    Ok(())
}
