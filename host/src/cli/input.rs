//! Reading secrets from a person: a prompt on the terminal (never echoed), or one line of
//! standard input for scripts (`--password-stdin`).

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::{Context as _, bail};
use zeroize::Zeroizing;

/// Whether a person is at the keyboard.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Prompt on the terminal without echo.
pub fn prompt_secret(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .context("reading from the terminal")
}

/// One line of standard input, without its line ending.
pub fn stdin_line() -> anyhow::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading standard input")?;
    let trimmed = line.trim_end_matches(['\r', '\n']).to_owned();
    Ok(Zeroizing::new(trimmed))
}

/// Ask twice for a new secret; `allow_empty` lets the person choose none.
pub fn prompt_new_secret(prompt: &str, allow_empty: bool) -> anyhow::Result<Zeroizing<String>> {
    for _ in 0..3 {
        let first = prompt_secret(prompt)?;
        if first.is_empty() && allow_empty {
            return Ok(first);
        }
        if first.chars().count() < 8 {
            eprintln!("It must be at least 8 characters.");
            continue;
        }
        let second = prompt_secret("Again, to confirm: ")?;
        if *first == *second {
            return Ok(first);
        }
        eprintln!("The two did not match.");
    }
    bail!("no password chosen after three attempts")
}

/// A yes/no question on the terminal; anything but y/yes is no.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
