//! `relay-config`: the one error of a configuration check, [`ConfigError`], shared by every
//! part that checks a section of its own (the webhook, the streams, `[recovery]`,
//! `[cluster]`, the relay's loader) so that a mistake always names where it is and what is
//! wrong with it, and code can tell which key it was without parsing a message.

use std::fmt;

/// A setting that cannot be used: which section, which key, and what is wrong. Its
/// message never holds a secret's value (a check says a secret is empty or malformed,
/// never what it is).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where: `[webhook]`, `[[webhook.apps]] "main"`, `[[streams]] "s"`, `[cluster]`.
    pub section: String,
    /// The key, or keys (`idle_timeout, connect_timeout and max_line_bytes`); empty when
    /// the problem is the section as a whole.
    pub key: String,
    /// What is wrong, worded to follow the key: `must be positive`.
    pub problem: String,
}

impl ConfigError {
    pub fn new(
        section: impl Into<String>,
        key: impl Into<String>,
        problem: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            section: section.into(),
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.section, self.problem)
        } else {
            write!(f, "{}: {} {}", self.section, self.key, self.problem)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_section_key_and_problem() {
        let e = ConfigError::new("[[streams]] \"s\"", "bearer_token", "is required");
        assert_eq!(e.to_string(), "[[streams]] \"s\": bearer_token is required");
        let e = ConfigError::new("[webhook]", "", "no apps configured");
        assert_eq!(e.to_string(), "[webhook]: no apps configured");
    }
}
