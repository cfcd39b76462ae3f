//! The terminal of the live view: raw mode (keys arrive one by one, Ctrl-C as a key),
//! the alternate screen (the shell's screen comes back as it was), no cursor; and
//! putting all that back on every way out: dropping [`Terminal`] (`q`, Ctrl-C, a
//! signal, an error) and a panic, whose hook restores the terminal before the panic
//! message is printed.

use std::io::{self, Write as _};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::style::Print;
use crossterm::terminal::{
    self, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode,
    enable_raw_mode,
};
use crossterm::{execute, queue};

/// The size assumed when the terminal does not say.
const FALLBACK_SIZE: (u16, u16) = (80, 24);

/// Whether the terminal is in the live view's state and must be put back.
static ENTERED: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

/// The terminal while the live view runs; restored when dropped.
pub(super) struct Terminal {
    out: io::BufWriter<io::Stdout>,
}

impl Terminal {
    /// Puts the terminal in raw mode on the alternate screen, cursor hidden.
    pub(super) fn enter() -> io::Result<Terminal> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        enable_raw_mode()?;
        ENTERED.store(true, Ordering::SeqCst);
        // From here on, dropping it restores whatever was done.
        let mut terminal = Terminal {
            out: io::BufWriter::new(io::stdout()),
        };
        execute!(
            terminal.out,
            EnterAlternateScreen,
            Hide,
            Clear(ClearType::All)
        )?;
        Ok(terminal)
    }

    /// The terminal's width and height.
    pub(super) fn size() -> (usize, usize) {
        let (width, height) = terminal::size()
            .ok()
            .filter(|&(width, height)| width > 0 && height > 0)
            .unwrap_or(FALLBACK_SIZE);
        (usize::from(width), usize::from(height))
    }

    /// Draws `lines` from the top, each on its row, clearing what is left of each row.
    /// A line as wide as the terminal is not followed by a clear: the cursor then waits
    /// on its last character, which a clear would erase.
    pub(super) fn draw(&mut self, lines: &[String], width: usize) -> io::Result<()> {
        for (row, line) in lines.iter().enumerate() {
            let row = u16::try_from(row).unwrap_or(u16::MAX);
            queue!(self.out, MoveTo(0, row), Print(line))?;
            if line.chars().count() < width {
                queue!(self.out, Clear(ClearType::UntilNewLine))?;
            }
        }
        self.out.flush()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.out.flush();
        restore();
    }
}

/// Shows the cursor, leaves the alternate screen and raw mode, once.
fn restore() {
    if ENTERED.swap(false, Ordering::SeqCst) {
        let _ = execute!(io::stdout(), Show, LeaveAlternateScreen);
        let _ = disable_raw_mode();
    }
}

/// Whether `key` means "quit": `q` (either case), or Ctrl-C (which raw mode turns into a
/// key instead of SIGINT).
pub(super) fn is_quit(key: &KeyEvent) -> bool {
    if key.kind != KeyEventKind::Press {
        return false;
    }
    match key.code {
        KeyCode::Char('q' | 'Q') => !key.modifiers.contains(KeyModifiers::CONTROL),
        KeyCode::Char('c' | 'C') => key.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_and_ctrl_c_quit_and_nothing_else() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(is_quit(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Char('Q'), KeyModifiers::SHIFT)));
        assert!(is_quit(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!is_quit(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!is_quit(&key(KeyCode::Char('x'), KeyModifiers::NONE)));
        assert!(!is_quit(&key(KeyCode::Enter, KeyModifiers::NONE)));
        let mut released = key(KeyCode::Char('q'), KeyModifiers::NONE);
        released.kind = KeyEventKind::Release;
        assert!(!is_quit(&released));
    }
}
