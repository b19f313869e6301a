//! A fixed number of dry-run decisions of one program on a memory ledger, and nothing
//! else: what to run under a profiler to see where one decision's time goes. The program
//! is a directory (`policies/bergen`) or a bare component, run as the empty policy's
//! program (`target/guests/wasm32-wasip2/release/floor.wasm`, which `cargo build` makes).
//!
//! ```text
//! cargo build --release --example profile
//! target/release/examples/profile target/guests/wasm32-wasip2/release/floor.wasm 100000
//! perf record --call-graph dwarf target/release/examples/profile policies/bergen 100000
//! valgrind --tool=callgrind target/release/examples/profile policies/bergen 5000
//! ```
//!
//! Instruction counts (callgrind) are repeatable on a busy machine; divide by the number
//! of decisions, or better, subtract a run of half as many.

use std::path::PathBuf;
use std::sync::Arc;

use cardrules::{Program, Sandbox, Trust};

/// The `cardrules` command's allocator, so that the profile is the command's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .ok_or("usage: profile POLICY_DIR|COMPONENT.wasm [DECISIONS]")?,
    );
    let decisions: usize = args.next().map_or(Ok(10_000), |n| n.parse())?;
    let scratch = std::env::temp_dir().join(format!("cardrules-profile-{}", std::process::id()));
    let dir = match path.extension().is_some_and(|e| e == "wasm") {
        true => cardrules::sample::write_floor(&scratch, &path)?,
        false => path,
    };
    let sandbox = Arc::new(Sandbox::new()?);
    let loaded = Program::load(&sandbox, &Trust::allow_unsigned(), &dir);
    let _ = std::fs::remove_dir_all(&scratch);
    let program = Arc::new(loaded?);
    let host = cardrules::sample::memory_host(sandbox, program.clone())?;
    let mix = cardrules::sample::dry_runs(cardrules::sample::requests(&program));
    if mix.is_empty() {
        return Err(format!("`{}` has no demo holders", dir.display()).into());
    }
    let mut allowed = 0;
    for n in 0..decisions {
        allowed += usize::from(host.decide(&mix[n % mix.len()])?.allow);
    }
    println!("{decisions} decisions, {allowed} allowed");
    Ok(())
}
