//! Ctrl-C and SIGTERM. The first signal asks the run to stop at its next batch, so staging is rolled
//! back and the temporary target file removed on the way out; a second one ends the process at once.
//! Only `main` installs the handlers; the core only asks whether a stop was requested.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

static SIGNAL: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// Install the handlers (once, from `main`).
pub fn install() -> std::io::Result<()> {
    let signal = Arc::clone(SIGNAL.get_or_init(|| Arc::new(AtomicUsize::new(0))));
    let armed = Arc::new(AtomicBool::new(false));
    for s in [SIGINT, SIGTERM] {
        // Registered first, so it sees `armed` as it was before this signal: only a second one exits.
        signal_hook::flag::register_conditional_shutdown(s, 128 + s, Arc::clone(&armed))?;
        signal_hook::flag::register(s, Arc::clone(&armed))?;
        signal_hook::flag::register_usize(s, Arc::clone(&signal), s as usize)?;
    }
    Ok(())
}

/// The signal that asked the run to stop, if one did.
pub fn requested() -> Option<i32> {
    SIGNAL
        .get()
        .map(|s| s.load(Ordering::SeqCst))
        .filter(|s| *s != 0)
        .map(|s| s as i32)
}

/// The signal's name for messages.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
