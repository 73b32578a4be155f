//! Client-supplied text in log lines (client ids, user names, topics, reason strings), escaped so
//! that a client cannot forge or hide log lines (issue 16): MQTT strings may hold any Unicode
//! character but U+0000 (1.5.4), newlines and terminal escapes included.

use std::fmt;

/// Displays `0` with `\` as `\\`, newline, carriage return and tab as `\n`, `\r`, `\t`, and every
/// other control character (C0, DEL, C1), line or paragraph separator and bidirectional
/// formatting character as `\u{XXXX}`. Everything else is written as it is, so ordinary ids and
/// topics read unchanged, and the escaped text is unambiguous (a literal `\n` in an id is `\\n`).
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        // The common case: nothing to escape, one write.
        if !text.chars().any(needs_escape) {
            return f.write_str(text);
        }
        for c in text.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if needs_escape(c) => write!(f, "\\u{{{:04X}}}", c as u32)?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        // Line and paragraph separators, and the bidirectional embeddings, overrides and
        // isolates that can make a log line display differently from what it holds.
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::Escaped;

    #[test]
    fn plain_text_is_unchanged_and_controls_are_escaped() {
        assert_eq!(Escaped("sensor/a-1 ü").to_string(), "sensor/a-1 ü");
        assert_eq!(
            Escaped("a\nb\r\tc\\d\u{1b}[31m\u{7f}\u{85}\u{202E}").to_string(),
            "a\\nb\\r\\tc\\\\d\\u{001B}[31m\\u{007F}\\u{0085}\\u{202E}"
        );
    }
}
