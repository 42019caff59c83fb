//! Entry point: arguments → run → exit code. Only this file decides exit codes.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anonymize::cli::{render_error, run, to_stderr, Args};
use anonymize::error::exit;

fn main() {
    // A panic's message could hold a value the code was looking at: only where it happened is
    // shown. (A panic in a transform worker is caught and fails the run like any error.)
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        to_stderr(&format!(
            "anonymize: internal error{at} (a bug in anonymize; its message is not shown, as it \
             could quote data)\n"
        ));
    }));
    let args = Args::parse();
    if let Err(e) = anonymize::interrupt::install() {
        to_stderr(&format!(
            "anonymize: error: cannot install signal handlers: {e}\n"
        ));
        std::process::exit(exit::RUNTIME);
    }
    // A panic anywhere else (a bug) still ends with the documented code for a failed run, after
    // the files and sessions it held were dropped.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(args)));
    let Ok(result) = result else {
        std::process::exit(exit::RUNTIME);
    };
    let code = match result {
        Ok(_) => exit::SUCCESS,
        // `anonymize ... | head`: the reader has what it wanted.
        Err(e) if e.is_closed_stdout() => exit::SUCCESS,
        Err(e) => {
            to_stderr(&format!("{}\n", render_error(&e)));
            e.exit_code()
        }
    };
    std::process::exit(code);
}
