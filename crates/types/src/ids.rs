//! Identifiers, dates and periods.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::limits::{IDENT_LEN_MAX, YEAR_MAX, YEAR_MIN};
use crate::validation::{check_no_personal_data, Rule, Validation, ValidationError};

/// The identifier pattern of DESIGN.md §2.
pub const IDENT_PATTERN: &str = "[a-z0-9][a-z0-9._-]{0,63}";

/// Checks `text` against [`IDENT_PATTERN`], and that it does not look like personal data
/// ([`check_no_personal_data`]).
pub fn check_ident(field: &str, text: &str) -> Validation {
    let len = text.len();
    if len == 0 || len > IDENT_LEN_MAX {
        return Err(ValidationError::new(
            field,
            Rule::Length {
                min: 1,
                max: IDENT_LEN_MAX,
                actual: text.chars().count(),
            },
        ));
    }
    // The pattern is ASCII, so bytes say as much as characters: a byte of a multi-byte
    // character is never one of the allowed ones.
    let bytes = text.as_bytes();
    let first_ok = bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit();
    let rest_ok = bytes[1..]
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if !(first_ok && rest_ok) {
        return Err(ValidationError::new(
            field,
            Rule::Charset {
                allowed: IDENT_PATTERN,
            },
        ));
    }
    // Identifiers are opaque: never a phone or ID number (DESIGN.md §2).
    check_no_personal_data(field, text)
}

macro_rules! ident_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Holds any string once decoded; [`Self::validate`] checks the pattern, and
        /// [`FromStr`] refuses what does not match it.
        #[derive(
            Clone, PartialEq, Eq, PartialOrd, Ord, Hash,
            BorshSerialize, BorshDeserialize, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// Checks the identifier pattern, naming `field` on failure.
            pub fn validate(&self, field: &str) -> Validation {
                check_ident(field, &self.0)
            }

            /// The identifier text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                check_ident(stringify!($name), text)?;
                Ok($name(text.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

ident_type!(
    /// A branch's identifier, listed in genesis.
    BranchId
);
ident_type!(
    /// A member's opaque, pseudonymous identifier (never a name or phone number).
    MemberId
);
ident_type!(
    /// A meeting's identifier, unique chain-wide.
    MeetingId
);
ident_type!(
    /// An issue's identifier, unique chain-wide.
    IssueId
);

/// A calendar date (UTC), e.g. the day a study session took place.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Date {
    /// Year, [`YEAR_MIN`]..=[`YEAR_MAX`].
    pub year: u16,
    /// Month, 1..=12.
    pub month: u8,
    /// Day of the month, 1..=28/29/30/31.
    pub day: u8,
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Days in `month` of `year` (0 for a month outside 1..=12).
pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// A date, unchecked.
    pub const fn new(year: u16, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    /// Checks that this is a calendar date within the allowed years.
    pub fn validate(&self, field: &str) -> Validation {
        let error = |reason: String| Err(ValidationError::new(field, Rule::Date { reason }));
        if self.year < YEAR_MIN || self.year > YEAR_MAX {
            return error(format!(
                "year {} outside {YEAR_MIN}..={YEAR_MAX}",
                self.year
            ));
        }
        if !(1..=12).contains(&self.month) {
            return error(format!("month {} outside 1..=12", self.month));
        }
        let days = days_in_month(self.year, self.month);
        if self.day < 1 || self.day > days {
            return error(format!(
                "day {} outside 1..={days} for {:04}-{:02}",
                self.day, self.year, self.month
            ));
        }
        Ok(())
    }

    /// The month this date falls in.
    pub fn period(&self) -> Period {
        Period {
            year: self.year,
            month: self.month,
        }
    }

    /// Days since 1970-01-01 (negative before it). Valid for checked dates.
    pub fn days_since_epoch(&self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The UTC date of a Unix time in milliseconds.
    pub fn from_unix_ms(ms: u64) -> Date {
        let z = (ms / 86_400_000) as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = if m <= 2 { y + 1 } else { y };
        Date {
            year: y.clamp(0, i64::from(u16::MAX)) as u16,
            month: m as u8,
            day: d as u8,
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Date({self})")
    }
}

impl FromStr for Date {
    type Err = ValidationError;
    /// Parses `YYYY-MM-DD` and checks it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ValidationError::new(
                "date",
                Rule::Date {
                    reason: format!("{text:?} is not YYYY-MM-DD"),
                },
            )
        };
        let parts: Vec<&str> = text.split('-').collect();
        if parts.len() != 3 || parts[0].len() != 4 || parts[1].len() != 2 || parts[2].len() != 2 {
            return Err(bad());
        }
        let date = Date {
            year: parts[0].parse().map_err(|_| bad())?,
            month: parts[1].parse().map_err(|_| bad())?,
            day: parts[2].parse().map_err(|_| bad())?,
        };
        date.validate("date")?;
        Ok(date)
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as Deserialize>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A calendar month, the period dues and aggregates are kept for.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Period {
    /// Year.
    pub year: u16,
    /// Month, 1..=12.
    pub month: u8,
}

impl Period {
    /// A period, unchecked.
    pub const fn new(year: u16, month: u8) -> Period {
        Period { year, month }
    }

    /// Checks the year and month.
    pub fn validate(&self, field: &str) -> Validation {
        Date::new(self.year, self.month, 1).validate(field)
    }

    /// The quarter (1..=4) this month is in.
    pub fn quarter(&self) -> u8 {
        (self.month.saturating_sub(1)) / 3 + 1
    }

    /// The next month.
    pub fn next(&self) -> Period {
        if self.month >= 12 {
            Period::new(self.year + 1, 1)
        } else {
            Period::new(self.year, self.month + 1)
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl fmt::Debug for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Period({self})")
    }
}

impl FromStr for Period {
    type Err = ValidationError;
    /// Parses `YYYY-MM` and checks it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let date: Date = format!("{text}-01").parse().map_err(|_| {
            ValidationError::new(
                "period",
                Rule::Date {
                    reason: format!("{text:?} is not YYYY-MM"),
                },
            )
        })?;
        Ok(date.period())
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as Deserialize>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_the_pattern() {
        for good in ["a", "0", "m-0001", "b.north_2", &"a".repeat(64)] {
            assert_eq!(check_ident("id", good), Ok(()), "{good}");
        }
        for bad in ["", "A", "-a", ".a", "a b", "張三", "a/b", &"a".repeat(65)] {
            assert!(check_ident("id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_are_calendar_dates() {
        assert!("2024-02-29".parse::<Date>().is_ok());
        assert!("2023-02-29".parse::<Date>().is_err());
        assert!("2024-04-31".parse::<Date>().is_err());
        assert!("2024-13-01".parse::<Date>().is_err());
        assert!("1899-12-31".parse::<Date>().is_err());
        assert!("2024-1-01".parse::<Date>().is_err());
    }

    #[test]
    fn unix_days_round_trip() {
        for ms in [
            0u64,
            86_399_999,
            951_782_400_000,
            1_709_164_800_000,
            4_102_444_800_000,
        ] {
            let date = Date::from_unix_ms(ms);
            assert_eq!(date.validate("d"), Ok(()));
            assert_eq!(date.days_since_epoch(), (ms / 86_400_000) as i64, "{date}");
        }
        assert_eq!(
            Date::from_unix_ms(1_709_164_800_000).to_string(),
            "2024-02-29"
        );
    }

    #[test]
    fn period_quarters() {
        assert_eq!(Period::new(2024, 1).quarter(), 1);
        assert_eq!(Period::new(2024, 3).quarter(), 1);
        assert_eq!(Period::new(2024, 4).quarter(), 2);
        assert_eq!(Period::new(2024, 12).quarter(), 4);
        assert_eq!(Period::new(2024, 12).next(), Period::new(2025, 1));
    }
}
