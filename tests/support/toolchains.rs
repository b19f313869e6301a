//! Whether the Python and JavaScript toolchains are here: tests that need them skip with a
//! line saying so, unless `CARDRULES_TEST_LANGUAGES=require` (CI), where that is a failure.

use std::process::Command;

/// Whether a missing toolchain fails the tests instead of skipping them.
pub fn required() -> bool {
    std::env::var("CARDRULES_TEST_LANGUAGES").is_ok_and(|v| v == "require")
}

pub fn skip(why: &str) {
    assert!(!required(), "CARDRULES_TEST_LANGUAGES=require, but {why}");
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {why} (set CARDRULES_TEST_LANGUAGES=require to fail instead)"
    );
}

pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}
