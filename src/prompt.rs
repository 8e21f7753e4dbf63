//! Prompts on a terminal (dialoguer), with two promises: a yes/no question waits for Enter, so
//! a typed `y` answers one question and not the next; and Ctrl-C at any prompt leaves the
//! terminal as it was (echo on, cursor visible) and exits 130, like a shell reports SIGINT.
//!
//! Two ways Ctrl-C arrives: dialoguer's raw-mode prompts (select, confirm) read it as a key
//! and return `Interrupted`, mapped here to [`crate::exit::Interrupted`]; the hidden password
//! prompt leaves signals on, so SIGINT comes as a signal, and [`guard`] restores the terminal
//! from a signal handler before exiting.

use std::sync::OnceLock;

use anyhow::Result;

/// How many times a rejected answer is asked for again before giving up.
pub const TRIES: usize = 3;

/// A dialoguer result, with Ctrl-C as exit 130 (and the cursor shown again).
fn map<T>(r: dialoguer::Result<T>) -> Result<T> {
    match r {
        Ok(v) => Ok(v),
        Err(dialoguer::Error::IO(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
            let _ = dialoguer::console::Term::stderr().show_cursor();
            eprintln!();
            Err(crate::exit::Interrupted.into())
        }
        Err(e) => Err(anyhow::Error::new(e).context("could not read from the terminal")),
    }
}

/// Yes or no, confirmed with Enter.
pub fn confirm(prompt: &str, default: bool) -> Result<bool> {
    guard();
    map(dialoguer::Confirm::new()
        .with_prompt(prompt)
        .default(default)
        .wait_for_newline(true)
        .interact())
}

/// A hidden line (for secrets), trimmed.
pub fn password(prompt: &str) -> Result<String> {
    guard();
    map(dialoguer::Password::new().with_prompt(prompt).interact()).map(|s| s.trim().to_owned())
}

/// A visible line, starting from `initial`.
pub fn input(prompt: &str, initial: &str) -> Result<String> {
    guard();
    map(dialoguer::Input::<String>::new()
        .with_prompt(prompt)
        .with_initial_text(initial)
        .interact_text())
    .map(|s| s.trim().to_owned())
}

/// One of `items`.
pub fn select(prompt: &str, items: &[&str], default: usize) -> Result<usize> {
    guard();
    map(dialoguer::Select::new()
        .with_prompt(prompt)
        .items(items)
        .default(default)
        .interact())
}

/// Any of `items`, `defaults` ticked.
pub fn multi_select(prompt: &str, items: &[String], defaults: &[bool]) -> Result<Vec<usize>> {
    guard();
    map(dialoguer::MultiSelect::new()
        .with_prompt(prompt)
        .items(items)
        .defaults(defaults)
        .interact())
}

/// Ask with `ask` until `check` accepts the answer, at most [`TRIES`] times; each refusal is
/// shown with how many tries are left, and the last one is returned as the error.
pub fn until_valid<T>(
    mut ask: impl FnMut() -> Result<String>,
    mut check: impl FnMut(&str) -> Result<T>,
) -> Result<T> {
    let mut tries = 0;
    loop {
        let answer = ask()?;
        tries += 1;
        match check(&answer) {
            Ok(v) => return Ok(v),
            Err(e) if tries < TRIES && !e.is::<crate::exit::Interrupted>() => {
                let left = TRIES - tries;
                eprintln!(
                    "{e:#}\nPlease try again ({left} {} left).",
                    if left == 1 { "try" } else { "tries" }
                );
            }
            Err(e) => return Err(e),
        }
    }
}

/// The terminal's settings when the first prompt opened, restored by the SIGINT handler.
static SAVED: OnceLock<Option<libc::termios>> = OnceLock::new();

/// Install (once) a SIGINT handler that puts the terminal back and exits 130.
fn guard() {
    SAVED.get_or_init(|| {
        // SAFETY: tcgetattr fills a zeroed termios for fd 2; sigaction installs a handler
        // that only calls async-signal-safe functions (tcsetattr, write, _exit).
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            let saved = (libc::tcgetattr(2, &mut t) == 0).then_some(t);
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_interrupt as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
            saved
        }
    });
}

extern "C" fn on_interrupt(_: libc::c_int) {
    const SHOW_CURSOR: &[u8] = b"\x1b[?25h\n";
    // SAFETY: async-signal-safe calls only; SAVED is initialised before the handler exists.
    unsafe {
        if let Some(Some(t)) = SAVED.get() {
            libc::tcsetattr(2, libc::TCSANOW, t);
        }
        libc::write(2, SHOW_CURSOR.as_ptr().cast(), SHOW_CURSOR.len());
        libc::_exit(crate::exit::INTERRUPTED as libc::c_int);
    }
}
