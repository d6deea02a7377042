//! Identity documents, as the dev IDV checks them: the machine readable zone of an ICAO 9303
//! TD3 passport with real check digits, the visual zone's names and their transliteration to
//! the MRZ, the expiry date, and a tamper signature.
//!
//! The tamper signature stands in for the chip and the security printing of a real document:
//! every fixture document is signed by a fixed "document issuer" key over its canonical
//! content (MRZ, visual-zone names, portrait digest), so that changing any field, or swapping
//! the portrait, fails the check.

use crate::keys::SigningKey;
use regain_core::jose::{b64url_decode, b64url_encode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;

/// Characters in a TD3 MRZ line.
pub const LINE_LEN: usize = 44;

/// Characters of the TD3 name field.
const NAME_LEN: usize = 39;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// A line of the MRZ has the wrong length.
    #[error("MRZ line {line} must have 44 characters, not {found}")]
    LineLength {
        /// 1 or 2.
        line: u8,
        /// The characters found.
        found: usize,
    },
    /// The MRZ holds a character outside its alphabet.
    #[error("the MRZ holds `{0}`, outside `A-Z`, `0-9` and `<`")]
    Character(char),
    /// The document code is not a passport's.
    #[error("document code `{0}` is not a passport's")]
    NotPassport(String),
    /// A check digit does not match its field.
    #[error("the check digit of the {0} does not match")]
    CheckDigit(&'static str),
    /// A date field is not a calendar date.
    #[error("the {0} `{1}` is not a valid date")]
    Date(&'static str, String),
    /// The name field holds no name.
    #[error("the MRZ name field is empty")]
    NameMissing,
    /// A field cannot be written into the MRZ (too long, or outside the alphabet).
    #[error("the {0} does not fit the MRZ")]
    Unwritable(&'static str),
    /// The document expired before the time of the check.
    #[error("the document expired on {0}")]
    Expired(String),
    /// A visual-zone name does not transliterate to the MRZ's.
    #[error("the visual zone's {0} does not transliterate to the MRZ")]
    NameMismatch(&'static str),
    /// The tamper signature does not verify over the document's content.
    #[error("the document signature does not verify: the document was altered")]
    Tampered,
    /// The portrait is not the one the document was signed with.
    #[error("the portrait is not the document's")]
    PortraitMismatch,
    /// The document file cannot be read.
    #[error("malformed document: {0}")]
    Malformed(String),
}

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Year.
    pub year: u16,
    /// Month, 1-12.
    pub month: u8,
    /// Day of the month, from 1.
    pub day: u8,
}

impl Date {
    /// A valid calendar date, or `None`.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Self> {
        let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (1..=days).contains(&day).then_some(Self { year, month, day })
    }

    /// `YYYY-MM-DD`.
    pub fn iso(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `YYMMDD`, as the MRZ writes it.
    pub fn mrz(&self) -> String {
        format!("{:02}{:02}{:02}", self.year % 100, self.month, self.day)
    }

    /// Days since 1970-01-01 (H. Hinnant's `days_from_civil`).
    pub fn days_since_epoch(&self) -> i64 {
        let (month, day) = (i64::from(self.month), i64::from(self.day));
        let year = i64::from(self.year) - i64::from(month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    /// The date (UTC) of a Unix time.
    pub fn from_unix(seconds: u64) -> Self {
        let days = i64::try_from(seconds / 86_400).unwrap_or(0) + 719_468;
        let era = days.div_euclid(146_097);
        let day_of_era = days - era * 146_097;
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let mp = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Self {
            year: u16::try_from(year).unwrap_or(u16::MAX),
            month: u8::try_from(month).unwrap_or(1),
            day: u8::try_from(day).unwrap_or(1),
        }
    }
}

/// The value of an MRZ character in check digit computation; `None` outside the alphabet.
fn char_value(c: char) -> Option<u32> {
    match c {
        '0'..='9' => c.to_digit(10),
        'A'..='Z' => Some(u32::from(c) - u32::from('A') + 10),
        '<' => Some(0),
        _ => None,
    }
}

/// The ICAO 9303 check digit of `field` (weights 7, 3, 1, sum modulo 10); `None` if the
/// field holds a character outside the MRZ alphabet.
pub fn check_digit(field: &str) -> Option<char> {
    let mut sum = 0u32;
    for (c, weight) in field.chars().zip([7u32, 3, 1].into_iter().cycle()) {
        sum += char_value(c)? * weight;
    }
    char::from_digit(sum % 10, 10)
}

/// The fields of a TD3 MRZ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mrz {
    /// `P` and the type letter (`P<` for an ordinary passport).
    pub document_code: String,
    /// The issuing state (ICAO three-letter code).
    pub issuing_state: String,
    /// The name field as written (39 characters, `<` as filler).
    pub name_field: String,
    /// The primary identifier (surname, or the whole name), words separated by spaces.
    pub primary_identifier: String,
    /// The secondary identifier (given names), words separated by spaces; empty when the
    /// document puts the whole name in the primary identifier.
    pub secondary_identifier: String,
    /// The document number, without fillers.
    pub document_number: String,
    /// The holder's nationality (ICAO three-letter code).
    pub nationality: String,
    /// Date of birth.
    pub birth_date: Date,
    /// `F`, `M` or `<`.
    pub sex: char,
    /// Date of expiry.
    pub expiry_date: Date,
    /// Optional data (a personal number), without fillers.
    pub optional_data: String,
}

/// `value` padded with `<` to `len`, or `None` when too long or outside the alphabet.
fn field(value: &str, len: usize) -> Option<String> {
    let value = value.replace(' ', "<");
    if value.chars().count() > len || value.chars().any(|c| char_value(c).is_none()) {
        return None;
    }
    Some(format!("{value:<<len$}"))
}

/// The name field: `PRIMARY<<SECONDARY`, words joined by `<`, padded or truncated to 39.
fn name_field(primary: &str, secondary: &str) -> Option<String> {
    let join = |name: &str| name.split_whitespace().collect::<Vec<_>>().join("<");
    let mut name = join(primary);
    if !secondary.trim().is_empty() {
        name.push_str("<<");
        name.push_str(&join(secondary));
    }
    let name: String = name.chars().take(NAME_LEN).collect();
    field(&name, NAME_LEN)
}

/// A byte range of an ASCII line.
fn part(line: &str, start: usize, end: usize) -> Result<&str, DocumentError> {
    line.get(start..end).ok_or(DocumentError::Malformed("MRZ line too short".into()))
}

/// The character at `at` of an ASCII line.
fn char_at(line: &str, at: usize) -> Result<char, DocumentError> {
    part(line, at, at + 1)?.chars().next().ok_or(DocumentError::Malformed("MRZ line too short".into()))
}

fn verify_digit(data: &str, digit: char, what: &'static str) -> Result<(), DocumentError> {
    // ICAO 9303 allows `<` instead of 0 for the check digit of an all-filler optional field.
    let filler_ok = digit == '<' && data.chars().all(|c| c == '<');
    if check_digit(data) == Some(digit) || filler_ok { Ok(()) } else { Err(DocumentError::CheckDigit(what)) }
}

fn mrz_date(text: &str, what: &'static str, century: impl Fn(u16) -> u16) -> Result<Date, DocumentError> {
    let bad = || DocumentError::Date(what, text.to_owned());
    let number = |range: std::ops::Range<usize>| -> Result<u16, DocumentError> {
        text.get(range).filter(|t| t.bytes().all(|b| b.is_ascii_digit())).and_then(|t| t.parse().ok()).ok_or_else(bad)
    };
    let (yy, mm, dd) = (number(0..2)?, number(2..4)?, number(4..6)?);
    Date::new(century(yy), u8::try_from(mm).map_err(|_| bad())?, u8::try_from(dd).map_err(|_| bad())?).ok_or_else(bad)
}

fn words(field: &str) -> String {
    field.split('<').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

impl Mrz {
    /// Parses and checks a TD3 MRZ: lengths, alphabet, every check digit. Two-digit birth
    /// years are placed in the century that keeps the birth date at or before
    /// `reference_year`; expiry years are in the 2000s.
    pub fn parse(line1: &str, line2: &str, reference_year: u16) -> Result<Self, DocumentError> {
        for (number, line) in [(1u8, line1), (2, line2)] {
            if let Some(bad) = line.chars().find(|c| char_value(*c).is_none()) {
                return Err(DocumentError::Character(bad));
            }
            if line.len() != LINE_LEN {
                return Err(DocumentError::LineLength { line: number, found: line.chars().count() });
            }
        }
        let document_code = part(line1, 0, 2)?;
        if !document_code.starts_with('P') {
            return Err(DocumentError::NotPassport(document_code.to_owned()));
        }
        let name = part(line1, 5, LINE_LEN)?;
        let (primary, secondary) = name.split_once("<<").unwrap_or((name, ""));
        let (primary, secondary) = (words(primary), words(secondary));
        if primary.is_empty() && secondary.is_empty() {
            return Err(DocumentError::NameMissing);
        }

        let number = part(line2, 0, 9)?;
        verify_digit(number, char_at(line2, 9)?, "document number")?;
        let birth = part(line2, 13, 19)?;
        verify_digit(birth, char_at(line2, 19)?, "birth date")?;
        let expiry = part(line2, 21, 27)?;
        verify_digit(expiry, char_at(line2, 27)?, "expiry date")?;
        let optional = part(line2, 28, 42)?;
        verify_digit(optional, char_at(line2, 42)?, "optional data")?;
        let composite = format!("{}{}{}", part(line2, 0, 10)?, part(line2, 13, 20)?, part(line2, 21, 43)?);
        verify_digit(&composite, char_at(line2, 43)?, "composite")?;

        let birth_date =
            mrz_date(birth, "birth date", |yy| if 2000 + yy > reference_year { 1900 + yy } else { 2000 + yy })?;
        let expiry_date = mrz_date(expiry, "expiry date", |yy| 2000 + yy)?;
        let sex = char_at(line2, 20)?;
        if !matches!(sex, 'F' | 'M' | '<' | 'X') {
            return Err(DocumentError::Malformed(format!("sex `{sex}`")));
        }
        Ok(Self {
            document_code: document_code.to_owned(),
            issuing_state: part(line1, 2, 5)?.replace('<', ""),
            name_field: name.to_owned(),
            primary_identifier: primary,
            secondary_identifier: secondary,
            document_number: number.replace('<', ""),
            nationality: part(line2, 10, 13)?.replace('<', ""),
            birth_date,
            sex,
            expiry_date,
            optional_data: optional.replace('<', ""),
        })
    }

    /// Writes the two lines, computing every check digit. Names are given in MRZ form (upper
    /// case `A-Z`, words separated by spaces); the name field is truncated at 39 characters.
    pub fn lines(&self) -> Result<[String; 2], DocumentError> {
        let code = field(&self.document_code, 2).ok_or(DocumentError::Unwritable("document code"))?;
        let state = field(&self.issuing_state, 3).ok_or(DocumentError::Unwritable("issuing state"))?;
        let name = name_field(&self.primary_identifier, &self.secondary_identifier)
            .ok_or(DocumentError::Unwritable("name"))?;
        let number = field(&self.document_number, 9).ok_or(DocumentError::Unwritable("document number"))?;
        let nationality = field(&self.nationality, 3).ok_or(DocumentError::Unwritable("nationality"))?;
        let optional = field(&self.optional_data, 14).ok_or(DocumentError::Unwritable("optional data"))?;
        let digit = |data: &str, what| check_digit(data).ok_or(DocumentError::Unwritable(what));
        let (birth, expiry) = (self.birth_date.mrz(), self.expiry_date.mrz());
        let optional_digit = if optional.chars().all(|c| c == '<') { '<' } else { digit(&optional, "optional data")? };
        let head = format!("{number}{}{nationality}", digit(&number, "document number")?);
        let birth_part = format!("{birth}{}", digit(&birth, "birth date")?);
        let tail = format!("{expiry}{}{optional}{optional_digit}", digit(&expiry, "expiry date")?);
        let composite = digit(&format!("{}{birth_part}{tail}", head.get(..10).unwrap_or_default()), "composite")?;
        let line1 = format!("{code}{state}{name}");
        let line2 = format!("{head}{birth_part}{}{tail}{composite}", self.sex);
        Ok([line1, line2])
    }
}

/// The ICAO 9303 (Part 3, section 6) transliterations of a character that has more than one,
/// or none by decomposition; the first is the one used when writing an MRZ.
fn special(c: char) -> Option<&'static [&'static str]> {
    Some(match c {
        'Ä' => &["AE", "A"],
        'Å' => &["AA", "A"],
        'Æ' => &["AE"],
        'Ð' | 'Đ' => &["D"],
        'Ñ' => &["N", "NXX"],
        'Ö' => &["OE", "O"],
        'Ø' => &["OE"],
        'Ü' => &["UE", "U"],
        'ẞ' => &["SS"],
        'Þ' => &["TH"],
        'Ł' => &["L"],
        'Œ' => &["OE"],
        'Ħ' => &["H"],
        'Ŧ' => &["T"],
        'Ĳ' => &["IJ"],
        _ => return None,
    })
}

/// The MRZ spellings a visual-zone character may have: letters upper-cased and
/// transliterated, spaces and hyphens as `<`, apostrophes and other punctuation omitted.
fn options(c: char) -> Vec<String> {
    let upper: String = c.to_uppercase().collect();
    let mut chars = upper.chars();
    let (Some(u), None) = (chars.next(), chars.next()) else {
        // `ß` upper-cases to `SS`; other multi-letter cases decompose below.
        return vec![upper.nfd().filter(|c| !is_combining_mark(*c)).filter(char::is_ascii_uppercase).collect()];
    };
    if let Some(list) = special(u) {
        return list.iter().map(|s| (*s).to_owned()).collect();
    }
    if u.is_whitespace() || matches!(u, '-' | '‐' | '‑' | '–') {
        return vec!["<".into()];
    }
    let plain: String = u.nfd().filter(|c| !is_combining_mark(*c)).collect();
    if plain.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
        vec![plain]
    } else {
        // Punctuation (apostrophes, full stops) is left out of the MRZ.
        vec![String::new()]
    }
}

/// The MRZ form of a visual-zone name (the first transliteration of each character), with
/// words separated by spaces.
pub fn transliterate(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        out.push_str(options(c).first().map_or("", String::as_str));
    }
    words(&out)
}

/// Whether the visual-zone `name` transliterates to the MRZ name `mrz` (words separated by
/// spaces), under any of ICAO's accepted spellings; with `truncated`, `mrz` may be a cut-off
/// start of it, as when the name field is full.
pub fn transliterates_to(name: &str, mrz: &str, truncated: bool) -> bool {
    let chars: Vec<Vec<String>> = name.trim().chars().map(options).collect();
    let target = words(&mrz.replace(' ', "<")).replace(' ', "<");
    // Spaces and hyphens may repeat in the visual zone; the MRZ has one `<` per break.
    fn walk(chars: &[Vec<String>], target: &str, truncated: bool, after_break: bool) -> bool {
        if truncated && target.is_empty() {
            return true;
        }
        let Some((first, rest)) = chars.split_first() else { return target.is_empty() };
        first.iter().any(|option| match option.as_str() {
            "" => walk(rest, target, truncated, after_break),
            "<" if after_break => walk(rest, target, truncated, true),
            _ => match target.strip_prefix(option.as_str()) {
                Some(remaining) => walk(rest, remaining, truncated, option == "<"),
                // A cut-off name field may end inside a multi-letter transliteration.
                None => truncated && option.starts_with(target),
            },
        })
    }
    walk(&chars, &target, truncated, true)
}

/// The fixed key of the "document issuer" whose signature protects fixture documents.
pub fn document_issuer() -> SigningKey {
    SigningKey::p256(0xD0)
}

/// A fixture identity document: its MRZ, the names in its visual zone (UTF-8, with
/// diacritics: what the credential carries), its portrait and the tamper signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// The fixture person's id.
    pub id: String,
    /// The two MRZ lines.
    pub mrz: [String; 2],
    /// Given names as printed in the visual zone; empty when the document has none.
    pub given_name: String,
    /// Surname as printed in the visual zone (the whole name on one-field documents).
    pub family_name: String,
    /// The portrait file (PGM), relative to the fixture directory.
    pub portrait: String,
    /// base64url SHA-256 of the portrait file.
    pub portrait_sha256: String,
    /// base64url ES256 signature of the document issuer over [`Document::canonical`].
    pub signature: String,
}

/// One check of a document and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, for the verification page.
    pub name: &'static str,
    /// `Ok` or why it failed.
    pub outcome: Result<(), DocumentError>,
}

/// What a document says once every check has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDocument {
    /// Given names from the visual zone (may be empty).
    pub given_name: String,
    /// Surname from the visual zone.
    pub family_name: String,
    /// Date of birth.
    pub birth_date: Date,
    /// Nationality (ICAO three-letter code).
    pub nationality: String,
    /// Date of expiry.
    pub expiry_date: Date,
    /// The parsed MRZ.
    pub mrz: Mrz,
}

/// Every check of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The checks in the order they ran.
    pub checks: Vec<Check>,
    /// The verified document when every check passed.
    pub verified: Option<VerifiedDocument>,
}

impl Report {
    /// The verified document, or the first failure.
    pub fn result(&self) -> Result<&VerifiedDocument, DocumentError> {
        if let Some(failed) = self.checks.iter().find_map(|c| c.outcome.clone().err()) {
            return Err(failed);
        }
        self.verified.as_ref().ok_or(DocumentError::Malformed("no checks ran".into()))
    }
}

impl Document {
    /// The signed content: everything but the signature and the portrait's file name.
    pub fn canonical(&self) -> Vec<u8> {
        // serde_json objects keep their keys sorted: the serialisation is canonical.
        json!({
            "id": self.id,
            "mrz": self.mrz,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "portrait_sha256": self.portrait_sha256,
        })
        .to_string()
        .into_bytes()
    }

    /// Sets the portrait digest for `portrait` and signs the document with `key`.
    pub fn seal(&mut self, portrait: &[u8], key: &SigningKey) {
        self.portrait_sha256 = b64url_encode(&Sha256::digest(portrait));
        self.signature = b64url_encode(&key.sign(&self.canonical()));
    }

    /// Runs every check at Unix time `now`: the tamper signature (with `issuer`'s key) and
    /// the portrait digest, the MRZ and its check digits, the visual zone's names against
    /// the MRZ, and the expiry.
    pub fn check(&self, portrait: &[u8], now: u64, issuer: &SigningKey) -> Report {
        let mut checks = Vec::new();
        let signature = b64url_decode(&self.signature).unwrap_or_default();
        let sealed = if !crate::keys::verify_own(issuer, &self.canonical(), &signature) {
            Err(DocumentError::Tampered)
        } else if b64url_encode(&Sha256::digest(portrait)) != self.portrait_sha256 {
            Err(DocumentError::PortraitMismatch)
        } else {
            Ok(())
        };
        checks.push(Check { name: "tamper signature", outcome: sealed });

        let today = Date::from_unix(now);
        let [line1, line2] = &self.mrz;
        let mrz = Mrz::parse(line1, line2, today.year);
        checks.push(Check { name: "MRZ check digits", outcome: mrz.as_ref().map(|_| ()).map_err(Clone::clone) });
        let Ok(mrz) = mrz else { return Report { checks, verified: None } };

        let truncated = !mrz.name_field.ends_with('<');
        let whole_name_in_primary = mrz.secondary_identifier.is_empty();
        let names = if whole_name_in_primary {
            let full = format!("{} {}", self.family_name, self.given_name);
            if transliterates_to(&full, &mrz.primary_identifier, truncated) {
                Ok(())
            } else {
                Err(DocumentError::NameMismatch("name"))
            }
        } else if !transliterates_to(&self.family_name, &mrz.primary_identifier, false) {
            Err(DocumentError::NameMismatch("surname"))
        } else if !transliterates_to(&self.given_name, &mrz.secondary_identifier, truncated) {
            Err(DocumentError::NameMismatch("given names"))
        } else {
            Ok(())
        };
        checks.push(Check { name: "visual zone matches MRZ", outcome: names });

        let expiry = if mrz.expiry_date < today { Err(DocumentError::Expired(mrz.expiry_date.iso())) } else { Ok(()) };
        checks.push(Check { name: "not expired", outcome: expiry });

        let verified = checks.iter().all(|c| c.outcome.is_ok()).then(|| VerifiedDocument {
            given_name: self.given_name.trim().to_owned(),
            family_name: self.family_name.trim().to_owned(),
            birth_date: mrz.birth_date,
            nationality: mrz.nationality.clone(),
            expiry_date: mrz.expiry_date,
            mrz,
        });
        Report { checks, verified }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_days() {
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2026, 11, 25), (1969, 12, 31), (2099, 12, 31)] {
            let date = Date::new(y, m, d).unwrap();
            let seconds = u64::try_from(date.days_since_epoch().max(0)).unwrap() * 86_400;
            if date.days_since_epoch() >= 0 {
                assert_eq!(Date::from_unix(seconds + 86_399), date);
            }
        }
        assert_eq!(Date::new(2001, 2, 29), None);
        assert_eq!(Date::new(2001, 13, 1), None);
    }
}
