//! Subcommands that exist in the command tree but are not built yet say so and exit with 2.

use std::process::ExitCode;

/// Prints which issue brings `what` and returns exit status 2. Never pretends to work.
pub fn exit(what: &str, issue: u32) -> ExitCode {
    eprintln!("{what}: not built yet (tracked in issue {issue}); nothing was done");
    ExitCode::from(2)
}
