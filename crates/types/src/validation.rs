//! Stateless validation errors: each names the field and the rule it breaks.

use std::fmt;

/// The rule a field breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Too short or too long (in characters for text, items for lists).
    Length {
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
        /// Found.
        actual: usize,
    },
    /// A number outside its range.
    Range {
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
        /// Found.
        actual: u64,
    },
    /// A character outside the allowed set.
    Charset {
        /// The allowed set, as a pattern.
        allowed: &'static str,
    },
    /// A value that is not one of the allowed names.
    Enum {
        /// The allowed names.
        allowed: &'static [&'static str],
        /// Found.
        actual: String,
    },
    /// Not a calendar date, or a year outside the allowed range.
    Date {
        /// What is wrong.
        reason: String,
    },
    /// A list that names the same thing twice.
    Duplicate {
        /// The repeated value.
        value: String,
    },
    /// A value that must differ from another field's.
    MustDiffer {
        /// The other field.
        other: &'static str,
    },
    /// A public key refused at registration (not a point, non-canonical, weak).
    Key {
        /// Why.
        reason: String,
    },
    /// A value not allowed in this position (e.g. a correction of a correction).
    NotAllowed {
        /// Why.
        reason: &'static str,
    },
    /// A required value is missing.
    Required,
    /// A value that is not in its expected format (hex of a given length, a number in range).
    Format {
        /// What was expected.
        expected: &'static str,
        /// What was found (shortened).
        actual: String,
    },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Length { min, max, actual } => {
                write!(f, "length must be {min}..={max}, got {actual}")
            }
            Rule::Range { min, max, actual } => {
                write!(f, "must be in {min}..={max}, got {actual}")
            }
            Rule::Charset { allowed } => write!(f, "must match {allowed}"),
            Rule::Enum { allowed, actual } => {
                write!(f, "must be one of {}, got {actual:?}", allowed.join(", "))
            }
            Rule::Date { reason } => write!(f, "invalid date: {reason}"),
            Rule::Duplicate { value } => write!(f, "duplicate value {value:?}"),
            Rule::MustDiffer { other } => write!(f, "must differ from {other}"),
            Rule::Key { reason } => write!(f, "key refused: {reason}"),
            Rule::NotAllowed { reason } => write!(f, "not allowed: {reason}"),
            Rule::Required => write!(f, "is required"),
            Rule::Format { expected, actual } => {
                write!(f, "must be {expected}, got {actual:?}")
            }
        }
    }
}

/// A field that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {rule}")]
pub struct ValidationError {
    /// Dotted path of the field, e.g. `body.minutes` or `body.attendees[3].member_id`.
    pub field: String,
    /// The rule broken.
    pub rule: Rule,
}

impl ValidationError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, rule: Rule) -> Self {
        ValidationError {
            field: field.into(),
            rule,
        }
    }

    /// The same error, with `prefix.` put before the field path.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

/// Result alias for stateless validation.
pub type Validation = Result<(), ValidationError>;

/// Checks free text: 1..=`max_chars` characters (0 allowed when `allow_empty`), and no
/// control characters other than newline and tab.
pub fn check_text(field: &str, text: &str, max_chars: usize, allow_empty: bool) -> Validation {
    let chars = text.chars().count();
    let min = usize::from(!allow_empty);
    if chars < min || chars > max_chars {
        return Err(ValidationError::new(
            field,
            Rule::Length {
                min,
                max: max_chars,
                actual: chars,
            },
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ValidationError::new(
            field,
            Rule::Charset {
                allowed: "printable text (newline and tab allowed)",
            },
        ));
    }
    Ok(())
}

/// Checks `min <= value <= max`.
pub fn check_range(field: &str, value: u64, min: u64, max: u64) -> Validation {
    if value < min || value > max {
        return Err(ValidationError::new(
            field,
            Rule::Range {
                min,
                max,
                actual: value,
            },
        ));
    }
    Ok(())
}

/// Checks a list's length.
pub fn check_count(field: &str, count: usize, min: usize, max: usize) -> Validation {
    if count < min || count > max {
        return Err(ValidationError::new(
            field,
            Rule::Length {
                min,
                max,
                actual: count,
            },
        ));
    }
    Ok(())
}
