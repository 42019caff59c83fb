//! Entry point: arguments → run → exit code. Only this file decides exit codes.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anonymize::cli::{render_error, run, Args};
use anonymize::error::exit;

fn main() {
    let args = Args::parse();
    if let Err(e) = anonymize::interrupt::install() {
        eprintln!("anonymize: error: cannot install signal handlers: {e}");
        std::process::exit(exit::RUNTIME);
    }
    let code = match run(args) {
        Ok(_) => exit::SUCCESS,
        // `anonymize ... | head`: the reader has what it wanted.
        Err(e) if e.is_closed_stdout() => exit::SUCCESS,
        Err(e) => {
            eprintln!("{}", render_error(&e));
            e.exit_code()
        }
    };
    std::process::exit(code);
}
