//! Printing for people and for machines: aligned tables, `--json`, and whether to use colour
//! (`NO_COLOR`, or not a terminal, turns it off).

use std::io::IsTerminal;

use serde::Serialize;

/// The innermost cause of an error: the one a person can act on (refused, DNS, TLS), without
/// the URLs that outer layers add.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut src = e;
    while let Some(next) = src.source() {
        src = next;
    }
    src.to_string()
}

/// `s` with control characters (newlines, escape codes, …) written as `\n`, `\u{1b}`, so text
/// from outside (a tunnel's output, an event's fields) cannot forge or garble a line.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// `1 event`, `2 events`.
pub fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Print `value` as pretty JSON on stdout. Every `--json` output has its keys in one order,
/// sorted, whether it was built from a struct or with `json!` (going through `Value`, whose
/// maps are sorted, does that).
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::to_value(value)?)?
    );
    Ok(())
}

/// An error as `--json` reports it, on stderr: one object with the exit code and message.
pub fn json_error(code: u8, message: &str) -> String {
    serde_json::json!({"error": {"exit_code": code, "message": message}}).to_string()
}

/// Whether `stream` (stdout or stderr) should carry ANSI colour: a terminal, and `NO_COLOR`
/// unset or empty (https://no-color.org).
pub fn color_on(stream: &impl IsTerminal) -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && stream.is_terminal()
}

/// Unix seconds as an RFC 3339 UTC time, to the second.
pub fn unix_time(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Bold text when colour is on.
pub fn bold(s: &str) -> String {
    if color_on(&std::io::stdout()) {
        format!("\x1b[1m{s}\x1b[0m")
    } else {
        s.to_owned()
    }
}

/// Render rows under a header with columns padded to the widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    // Cells often come from outside (event ids, subjects): no control character reaches the
    // terminal.
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| printable(c).into_owned()).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = bold(&line(header.to_vec()));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Whether we may prompt: stdin and stderr are terminals and `--no-input` was not given.
pub fn interactive(no_input: bool) -> bool {
    !no_input && std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_pads_columns() {
        let t = super::table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "alpha".into()],
                vec!["100".into(), "b".into()],
            ],
        );
        assert_eq!(t, "ID   NAME\n1    alpha\n100  b\n");
    }
}
