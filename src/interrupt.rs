//! Ctrl-C and SIGTERM. The first signal asks the run to stop: the statement running on each session
//! is cancelled, staging rolled back and the temporary target file removed on the way out. A second
//! one ends the process at once (the server rolls back the transaction of a closed connection),
//! after writing the run's `--report` as failed. Only `main` installs the handlers; the core only
//! asks whether a stop was requested.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

static SIGNAL: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// What to do on a second signal before exiting (write the report).
type Hook = Box<dyn Fn(i32) + Send>;
static ON_SECOND: Mutex<Option<Hook>> = Mutex::new(None);

/// Install the handlers (once, from `main`): a thread of its own receives the signals.
pub fn install() -> std::io::Result<()> {
    let signal = Arc::clone(SIGNAL.get_or_init(|| Arc::new(AtomicUsize::new(0))));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in signals.forever() {
                let first = signal
                    .compare_exchange(0, s as usize, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                if !first {
                    // The hook is not waited for if something holds it (it is being replaced).
                    if let Ok(hook) = ON_SECOND.try_lock() {
                        if let Some(h) = hook.as_ref() {
                            h(s);
                        }
                    }
                    std::process::exit(128 + s);
                }
            }
        })?;
    Ok(())
}

/// Run `hook` with the signal when a second one ends the process.
pub fn on_second_signal(hook: impl Fn(i32) + Send + 'static) {
    if let Ok(mut h) = ON_SECOND.lock() {
        *h = Some(Box::new(hook));
    }
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
