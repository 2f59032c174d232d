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
    /// Text that looks like personal data (DESIGN.md §2: personal data never goes on chain).
    PersonalData {
        /// What it looks like: "a phone number", "a resident ID number", "an e-mail address".
        looks_like: &'static str,
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
            Rule::PersonalData { looks_like } => {
                write!(f, "looks like {looks_like}: personal data stays off chain")
            }
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

/// Checks free text: 1..=`max_chars` characters (0 allowed when `allow_empty`), no
/// control characters other than newline and tab, and nothing that looks like personal data
/// ([`check_no_personal_data`]).
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
    check_no_personal_data(field, text)
}

/// Refuses text that contains something that looks like personal data, which never goes on
/// chain (DESIGN.md §2: the chain is replicated forever; member ids are opaque, never a name,
/// pinyin or phone number). Applied to every identifier (through
/// [`check_ident`](crate::ids::check_ident)) and every free-text field (through
/// [`check_text`]). Three hand-written scanners, over ASCII characters only:
///
/// * a Chinese mainland mobile number: 11 digits starting `13`–`19`, in digit groups joined by
///   one space or hyphen (`13812345678`, `138 1234 5678`, `138-1234-5678`), or 13 starting
///   with the country code `86` written without a separator; the number starts and ends at a
///   group's edge, so it is never a part of a longer run of digits (`20250313812345678`);
/// * a resident ID number: 18 characters, 17 digits and a last digit or `X` (or `x`), not a
///   part of a longer run of digits;
/// * an e-mail address: `local@domain.tld`, the local part of letters, digits and `._%+-`, the
///   domain at least two dot-separated labels, the last of two letters or more.
///
/// They look for shapes, not for real numbers (no check digit, no known prefixes), so a
/// number of that shape is refused whatever it means: identifiers with long digit runs should
/// not have 11 or 18 digits. Names and pinyin cannot be recognised this way and stay the
/// operator's responsibility.
pub fn check_no_personal_data(field: &str, text: &str) -> Validation {
    let bytes = text.as_bytes();
    // Too few digits for any number, no `@`: most text stops here, in one pass.
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    let looks_like = if digits >= MOBILE_DIGITS && has_mobile_number(bytes) {
        "a phone number"
    } else if digits >= RESIDENT_ID_DIGITS - 1 && has_resident_id(bytes) {
        "a resident ID number"
    } else if bytes.contains(&b'@') && has_email_address(bytes) {
        "an e-mail address"
    } else {
        return Ok(());
    };
    Err(ValidationError::new(
        field,
        Rule::PersonalData { looks_like },
    ))
}

/// Digits of a mainland mobile number.
const MOBILE_DIGITS: usize = 11;
/// Digits of a mobile number with the country code `86` in front.
const MOBILE_DIGITS_WITH_CODE: usize = 13;

/// True if `digits` starts a mainland mobile number: `1`, then `3`–`9`.
fn is_mobile_prefix(digits: &[u8]) -> bool {
    digits.len() >= 2 && digits[0] == b'1' && (b'3'..=b'9').contains(&digits[1])
}

/// The maximal runs of ASCII digits in `bytes`, as `(start, end, joined)`: `joined` when one
/// space or hyphen, and nothing else, separates the run from the one before.
fn digit_runs(bytes: &[u8]) -> Vec<(usize, usize, bool)> {
    let mut runs: Vec<(usize, usize, bool)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let joined = runs
            .last()
            .is_some_and(|&(_, end, _)| end + 1 == start && matches!(bytes[end], b' ' | b'-'));
        runs.push((start, i, joined));
    }
    runs
}

fn has_mobile_number(bytes: &[u8]) -> bool {
    let runs = digit_runs(bytes);
    // Every sequence of joined runs, from each run on, is a candidate; its digits are
    // gathered until they reach the length of a number or pass it.
    for first in 0..runs.len() {
        let mut digits = [0u8; MOBILE_DIGITS_WITH_CODE];
        let mut count = 0;
        for (k, &(start, end, joined)) in runs[first..].iter().enumerate() {
            if k > 0 && !joined {
                break;
            }
            let len = end - start;
            if count + len > MOBILE_DIGITS_WITH_CODE {
                break;
            }
            digits[count..count + len].copy_from_slice(&bytes[start..end]);
            count += len;
            let mobile = count == MOBILE_DIGITS && is_mobile_prefix(&digits);
            // `86` and the number in one run, as a country code is written without `+`.
            let with_code = count == MOBILE_DIGITS_WITH_CODE
                && k == 0
                && digits.starts_with(b"86")
                && is_mobile_prefix(&digits[2..]);
            if mobile || with_code {
                return true;
            }
        }
    }
    false
}

/// Characters of a resident ID number: 18 digits, or 17 and a check character `X`.
const RESIDENT_ID_DIGITS: usize = 18;

fn has_resident_id(bytes: &[u8]) -> bool {
    const LEN: usize = RESIDENT_ID_DIGITS;
    digit_runs(bytes).iter().any(|&(start, end, _)| {
        let run = end - start;
        run == LEN || (run == LEN - 1 && matches!(bytes.get(end), Some(b'X' | b'x')))
    })
}

fn has_email_address(bytes: &[u8]) -> bool {
    let local_char =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-');
    let domain_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-');
    for (at, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'@') {
        let local = bytes[..at]
            .iter()
            .rev()
            .take_while(|b| local_char(**b))
            .count();
        if !bytes[at - local..at].iter().any(u8::is_ascii_alphanumeric) {
            continue;
        }
        let domain_len = bytes[at + 1..]
            .iter()
            .take_while(|b| domain_char(**b))
            .count();
        let domain = &bytes[at + 1..at + 1 + domain_len];
        // A sentence may end right after the address.
        let domain = match domain.iter().rposition(u8::is_ascii_alphanumeric) {
            Some(last) => &domain[..=last],
            None => continue,
        };
        let mut labels = domain.split(|b| *b == b'.');
        let labels_ok = labels.clone().count() >= 2 && labels.all(|label| !label.is_empty());
        let tld = domain.rsplit(|b| *b == b'.').next().unwrap_or_default();
        if labels_ok && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) {
            return true;
        }
    }
    false
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

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Option<&'static str> {
        match check_no_personal_data("f", text) {
            Ok(()) => None,
            Err(ValidationError {
                rule: Rule::PersonalData { looks_like },
                ..
            }) => Some(looks_like),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    const PHONE: Option<&str> = Some("a phone number");
    const ID: Option<&str> = Some("a resident ID number");
    const EMAIL: Option<&str> = Some("an e-mail address");

    #[test]
    fn mobile_numbers_are_found_however_grouped() {
        for text in [
            "13812345678",
            "call 13812345678 after six",
            "138 1234 5678",
            "138-1234-5678",
            "1381234-5678",
            "+86 138 1234 5678",
            "+86-13812345678",
            "8613812345678",
            "tel:19912345678.",
            "m-139-0000-0000",
            "电话13912345678",
            "a13812345678b",
        ] {
            assert_eq!(found(text), PHONE, "{text}");
        }
    }

    #[test]
    fn other_numbers_are_not_mobile_numbers() {
        for text in [
            "",
            "Constitution, chapter 2",
            "1381234567",               // 10 digits
            "138123456789",             // 12 digits
            "12812345678",              // 1 then 2: no such prefix
            "10012345678",              // 1 then 0
            "23812345678",              // does not start with 1
            "20250313812345678",        // inside a longer run
            "138  1234 5678",           // two spaces are not one separator
            "138_1234_5678",            // not a separator
            "138, 1234, 5678",          // a list, not a number
            "2025-03-01",               // a date
            "2025-03-01 to 2025-03-31", // two dates
            "1741608000000",            // a time in milliseconds
            "m01-0001",
            "mt-2026-q1-01",
            "8612812345678", // 86, then not a mobile prefix
        ] {
            assert_eq!(found(text), None, "{text}");
        }
    }

    #[test]
    fn resident_id_numbers_are_found() {
        for text in [
            "110105194912310021",
            "11010519491231002X",
            "11010519491231002x",
            "id 11010519491231002X, issued 2010",
            "身份证号110105194912310021",
            "m-110105194912310021",
        ] {
            assert_eq!(found(text), ID, "{text}");
        }
        for text in [
            "11010519491231002",    // 17 digits
            "1101051949123100211",  // 19 digits
            "11010519491231002Y",   // not X
            "1101051949123100 21",  // split: neither an ID nor 11 digits
            "110105-19491231-0021", // grouped: not matched (only mobile numbers are)
        ] {
            assert_eq!(found(text), None, "{text}");
        }
    }

    #[test]
    fn email_addresses_are_found() {
        for text in [
            "zhang.san@example.com",
            "write to zhang_san+ledger@mail.example.cn.",
            "联系zhangsan@qq.com",
            "a@b.co",
            "x-y@sub-domain.example.org",
        ] {
            assert_eq!(found(text), EMAIL, "{text}");
        }
        for text in [
            "meet @ 3pm",
            "@branch-north",
            "zhang@localhost",
            "at@3.30pm",
            "a@b.c",
            "a@.com",
            "a@b..com",
            "张三@支部.中国",
        ] {
            assert_eq!(found(text), None, "{text}");
        }
    }

    #[test]
    fn free_text_and_the_message_name_field_and_rule() {
        let error = check_text("material", "ask 138 1234 5678", 200, false).expect_err("phone");
        assert_eq!(error.field, "material");
        assert_eq!(
            error.to_string(),
            "field `material`: looks like a phone number: personal data stays off chain"
        );
        assert_eq!(
            check_text("material", "Constitution, chapter 2", 200, false),
            Ok(())
        );
    }
}
