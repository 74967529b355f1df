//! Untrusted text made safe to quote in an error message.
//!
//! Server answers, header values and file contents end up in error messages, where a person reads
//! them on one line: [`snippet`] keeps them short, single-line and free of control characters.
//!
//! ```
//! use workload_auth_core::text::snippet;
//! assert_eq!(snippet("  Not\nFound ", 120), "Not Found");
//! ```

/// The first `max` characters of `text` on one line: trimmed, control characters replaced by
/// spaces, `…` appended when cut. For putting untrusted text (error bodies, header values) into
/// an error message.
pub fn snippet(text: &str, max: usize) -> String {
    let trimmed = text.trim();
    let mut out: String = trimmed
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if trimmed.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_short_single_lines() {
        assert_eq!(snippet("  Not Found\n", 120), "Not Found");
        assert_eq!(snippet("a\nb\r\nc", 120), "a b  c");
        assert_eq!(snippet("abcdef", 3), "abc…");
    }
}
