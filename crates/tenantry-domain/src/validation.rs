//! Field-level validation errors, collected so that a client learns every problem at once.

use serde::Serialize;

/// Bidirectional-text controls: they make text display in another order than it is stored
/// (`invoice\u{202E}fdp.exe` shows as `invoiceexe.pdf`).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The text policy for names people read (tenant, key, device and edition names): no control
/// characters (NUL included) and no bidirectional overrides. `None` when `s` passes.
pub fn name_problem(s: &str) -> Option<&'static str> {
    s.chars()
        .any(|c| c.is_control() || is_bidi_control(c))
        .then_some("must not contain control characters or bidirectional overrides")
}

/// The same policy for free text (descriptions), which may also hold line breaks and tabs.
pub fn text_problem(s: &str) -> Option<&'static str> {
    s.chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c))
        .then_some("must not contain control characters (but line breaks and tabs) or bidirectional overrides")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer-ish name of the field (`name`, `limits.burst`).
    pub field: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error("invalid input: {}", self.summary())]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Records the error of `result` under `field`, returning the value when it is valid.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(field, e.to_string());
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    fn summary(&self) -> String {
        self.0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_controls_and_bidi_overrides() {
        for bad in [
            "a\u{0}b",
            "tab\tname",
            "evil\u{202E}gnp",
            "x\u{2066}y",
            "\u{200F}",
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(name_problem("Acme Corp — Zürich 東京").is_none());
        assert!(text_problem("line one\nline two\tend").is_none());
        assert!(text_problem("hidden\u{202E}").is_some());
        assert!(text_problem("nul\u{0}").is_some());
    }
}
