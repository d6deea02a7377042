//! Matching the verified identity to the directory account.
//!
//! Two levels, chosen by the operator:
//!
//! - **exact**: first and last name equal after Unicode NFC normalisation and trimming;
//! - **relaxed**: in addition, case, diacritics, a few Latin letters without decomposition
//!   (`ł`, `ø`, `ß`...), apostrophes, and hyphen versus space are ignored, and when the field
//!   split differs (a passport that puts the whole name in one field) the words of both
//!   names are compared across fields.
//!
//! INVARIANT: relaxation never crosses scripts. Letters are only lowercased, stripped of
//! combining marks or transliterated within the Latin script; a word that mixes scripts
//! (Cyrillic `а` among Latin letters) refuses relaxed matching altogether.

use crate::env::User;
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;

/// How strictly names are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchLevel {
    /// NFC and trimmed, otherwise identical.
    Exact,
    /// Case, diacritics, hyphen/space and field split ignored, within one script.
    Relaxed,
}

/// The outcome of matching, with a reason code and an explanation for the administrator.
/// The explanation names the words compared: it is personal data, for the audit detail
/// and `policy explain`, never for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMatch {
    /// Whether the account matches.
    pub matched: bool,
    /// Stable reason code.
    pub reason: &'static str,
    /// Why, in words.
    pub explanation: Vec<String>,
}

impl AccountMatch {
    fn yes(reason: &'static str, explanation: Vec<String>) -> Self {
        Self { matched: true, reason, explanation }
    }

    fn no(reason: &'static str, explanation: Vec<String>) -> Self {
        Self { matched: false, reason, explanation }
    }
}

/// Reason codes of [`AccountMatch`], for documentation and tests.
pub const REASONS: [&str; 10] = [
    "matched-exact",
    "matched-relaxed",
    "matched-cross-field",
    "name-mismatch",
    "mixed-script",
    "credential-name-missing",
    "directory-name-missing",
    "same-name-ambiguous",
    "bound-attribute-mismatch",
    "bound-attribute-missing",
];

/// A claim of the credential bound to an attribute of the directory user, e.g. the
/// credential's `birthdate` to the directory's `birthdate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Claim name in the verified credential.
    pub claim: String,
    /// Attribute name in the directory.
    pub attribute: String,
}

/// Everything account matching looks at.
#[derive(Debug, Clone)]
pub struct MatchInput<'a> {
    /// The verified claims of the credential.
    pub claims: &'a Map<String, Value>,
    /// The directory user the login belongs to.
    pub user: &'a User,
    /// How many directory users carry the same first and last name.
    pub same_name_users: u32,
    /// Bound attributes that must agree (and that disambiguate same-name users).
    pub bindings: &'a [Binding],
    /// The level the operator chose.
    pub level: MatchLevel,
}

fn nfc_trim(s: &str) -> String {
    s.trim().nfc().collect()
}

/// Coarse script of a letter; `None` for characters that belong to every script (spaces,
/// hyphens, apostrophes, digits, combining marks).
fn script(c: char) -> Option<u32> {
    if !c.is_alphabetic() || is_combining_mark(c) {
        return None;
    }
    let cp = u32::from(c);
    Some(match cp {
        0x0000..=0x024F | 0x1E00..=0x1EFF | 0x2C60..=0x2C7F | 0xA720..=0xA7FF | 0xAB30..=0xAB6F => 1, // Latin
        0x0370..=0x03FF | 0x1F00..=0x1FFF => 2,                                                       // Greek
        0x0400..=0x052F | 0x1C80..=0x1C8F | 0x2DE0..=0x2DFF | 0xA640..=0xA69F => 3,                   // Cyrillic
        // Other blocks: the block's start identifies the script well enough to see mixing.
        _ => 0x1_0000 + cp / 0x80,
    })
}

fn mixes_scripts(word: &str) -> bool {
    let mut scripts = word.chars().filter_map(script);
    match scripts.next() {
        None => false,
        Some(first) => scripts.any(|s| s != first),
    }
}

/// Latin letters that have no canonical decomposition, spelled as ICAO 9303 transliterates.
fn transliterate(c: char, out: &mut String) {
    match c {
        'ł' => out.push('l'),
        'ø' => out.push('o'),
        'đ' | 'ð' => out.push('d'),
        'ß' => out.push_str("ss"),
        'æ' => out.push_str("ae"),
        'œ' => out.push_str("oe"),
        'þ' => out.push_str("th"),
        'ı' => out.push('i'),
        other => out.push(other),
    }
}

/// The words of a name for relaxed comparison, or `Err` with the word that mixes scripts.
fn relaxed_words(name: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    for raw in name.split(|c: char| c.is_whitespace() || matches!(c, '-' | '‐' | '‑' | '–')) {
        if raw.is_empty() {
            continue;
        }
        let nfc: String = raw.nfc().collect();
        if mixes_scripts(&nfc) {
            return Err(nfc);
        }
        let mut word = String::new();
        for c in nfc.nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase) {
            if matches!(c, '\'' | '’' | 'ʼ' | '`') {
                continue;
            }
            transliterate(c, &mut word);
        }
        if !word.is_empty() {
            words.push(word);
        }
    }
    Ok(words)
}

fn claim_text<'c>(claims: &'c Map<String, Value>, name: &str) -> Option<&'c str> {
    claims.get(name).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// Compares names only.
pub fn match_names(
    verified_given: &str,
    verified_family: &str,
    directory_given: &str,
    directory_family: &str,
    level: MatchLevel,
) -> AccountMatch {
    let (vg, vf, dg, df) =
        (nfc_trim(verified_given), nfc_trim(verified_family), nfc_trim(directory_given), nfc_trim(directory_family));
    if vg == dg && vf == df {
        return AccountMatch::yes("matched-exact", vec!["first and last name are identical after NFC".into()]);
    }
    if level == MatchLevel::Exact {
        return AccountMatch::no(
            "name-mismatch",
            vec![format!("exact match required: `{vg} {vf}` differs from the directory's `{dg} {df}`")],
        );
    }
    let words = [&vg, &vf, &dg, &df].map(|name| relaxed_words(name));
    let [Ok(vgw), Ok(vfw), Ok(dgw), Ok(dfw)] = words else {
        let culprit = words.into_iter().find_map(Result::err).unwrap_or_default();
        return AccountMatch::no(
            "mixed-script",
            vec![format!("`{culprit}` mixes letters of several scripts; relaxed matching refused")],
        );
    };
    if vgw == dgw && vfw == dfw {
        return AccountMatch::yes(
            "matched-relaxed",
            vec![format!(
                "first name `{}` and last name `{}` match ignoring case, diacritics and hyphens",
                dgw.join(" "),
                dfw.join(" ")
            )],
        );
    }
    let mut verified: Vec<&String> = vgw.iter().chain(&vfw).collect();
    let mut directory: Vec<&String> = dgw.iter().chain(&dfw).collect();
    verified.sort();
    directory.sort();
    if !verified.is_empty() && verified == directory {
        return AccountMatch::yes(
            "matched-cross-field",
            vec![format!(
                "the words {} appear in both names, split differently between first and last name",
                directory.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ")
            )],
        );
    }
    let missing: Vec<String> = directory.iter().filter(|w| !verified.contains(w)).map(|w| format!("`{w}`")).collect();
    let extra: Vec<String> = verified.iter().filter(|w| !directory.contains(w)).map(|w| format!("`{w}`")).collect();
    let mut explanation = vec!["the names differ even ignoring case, diacritics and hyphens".to_owned()];
    if !missing.is_empty() {
        explanation.push(format!("directory words not in the credential: {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        explanation.push(format!("credential words not in the directory: {}", extra.join(", ")));
    }
    AccountMatch::no("name-mismatch", explanation)
}

/// Matches the verified credential to the directory user: names, then bound attributes,
/// then the same-name rule.
pub fn match_account(input: &MatchInput<'_>) -> AccountMatch {
    // A passport may put the whole name in the primary identifier and leave the secondary
    // one empty; the relaxed level matches its words across both directory fields.
    let (vg, vf) = match (claim_text(input.claims, "given_name"), claim_text(input.claims, "family_name")) {
        (Some(vg), Some(vf)) => (vg, vf),
        (None, Some(vf)) if input.level == MatchLevel::Relaxed => ("", vf),
        _ => {
            return AccountMatch::no(
                "credential-name-missing",
                vec!["the credential lacks `given_name` or `family_name`".into()],
            );
        }
    };
    let (Some(dg), Some(df)) = (
        input.user.given_name.as_deref().filter(|s| !s.trim().is_empty()),
        input.user.family_name.as_deref().filter(|s| !s.trim().is_empty()),
    ) else {
        return AccountMatch::no("directory-name-missing", vec!["the directory user has no first or last name".into()]);
    };
    let names = match_names(vg, vf, dg, df, input.level);
    if !names.matched {
        return names;
    }
    let mut explanation = names.explanation;
    for binding in input.bindings {
        let claim = input.claims.get(&binding.claim).and_then(Value::as_str);
        let attribute = input.user.attributes.iter().find(|(k, _)| *k == binding.attribute).map(|(_, v)| v.as_str());
        match (claim, attribute) {
            (Some(c), Some(a)) if nfc_trim(c) == nfc_trim(a) => {
                explanation
                    .push(format!("`{}` agrees with directory attribute `{}`", binding.claim, binding.attribute));
            }
            (Some(_), Some(_)) => {
                explanation
                    .push(format!("`{}` differs from directory attribute `{}`", binding.claim, binding.attribute));
                return AccountMatch::no("bound-attribute-mismatch", explanation);
            }
            _ => {
                explanation
                    .push(format!("`{}` or directory attribute `{}` is missing", binding.claim, binding.attribute));
                return AccountMatch::no("bound-attribute-missing", explanation);
            }
        }
    }
    if input.same_name_users > 1 && input.bindings.is_empty() {
        explanation.push(format!(
            "{} directory users share this name and no bound attribute tells them apart",
            input.same_name_users
        ));
        return AccountMatch::no("same-name-ambiguous", explanation);
    }
    if input.same_name_users > 1 {
        explanation
            .push(format!("{} users share this name; the bound attributes single this one out", input.same_name_users));
    }
    AccountMatch { matched: true, reason: names.reason, explanation }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn relaxed(vg: &str, vf: &str, dg: &str, df: &str) -> &'static str {
        match_names(vg, vf, dg, df, MatchLevel::Relaxed).reason
    }

    #[test]
    fn exact_is_nfc_and_trim_only() {
        // "José" composed versus decomposed is the same after NFC.
        let decomposed = "Jose\u{301}";
        assert_eq!(match_names(" José ", "Silva", decomposed, "Silva", MatchLevel::Exact).reason, "matched-exact");
        assert_eq!(match_names("jose", "silva", "José", "Silva", MatchLevel::Exact).reason, "name-mismatch");
        assert_eq!(match_names("Ana", "Silva", "Ana", "Silva-Costa", MatchLevel::Exact).reason, "name-mismatch");
    }

    #[test]
    fn relaxed_ignores_case_diacritics_hyphens_and_apostrophes() {
        assert_eq!(relaxed("JOSE", "GARCIA MARQUEZ", "José", "García-Márquez"), "matched-relaxed");
        assert_eq!(relaxed("Zoë", "Ó Briain", "zoe", "O'Briain"), "name-mismatch", "apostrophe joins, space splits");
        assert_eq!(relaxed("Zoë", "OBriain", "zoe", "O'Briain"), "matched-relaxed");
        assert_eq!(relaxed("Łukasz", "Żółć", "Lukasz", "Zolc"), "matched-relaxed");
        assert_eq!(relaxed("Søren", "Kierkegaard", "Soren", "Kierkegaard"), "matched-relaxed");
        assert_eq!(relaxed("Jürgen", "Groß", "Jurgen", "Gross"), "matched-relaxed");
    }

    #[test]
    fn relaxed_matches_a_name_written_in_one_field() {
        let m = match_names("", "GARCIA MARQUEZ JOSE", "José", "García Márquez", MatchLevel::Relaxed);
        assert_eq!(m.reason, "matched-cross-field");
        assert!(m.explanation[0].contains("`garcia`"), "{:?}", m.explanation);
        assert_eq!(relaxed("Ana Maria", "Silva", "Ana", "Maria Silva"), "matched-cross-field");
    }

    #[test]
    fn relaxed_does_not_drop_or_add_words() {
        let m = match_names("Ana", "Silva", "Ana", "Silva Costa", MatchLevel::Relaxed);
        assert_eq!(m.reason, "name-mismatch");
        assert!(m.explanation.iter().any(|e| e.contains("`costa`")), "{:?}", m.explanation);
        assert_eq!(relaxed("Ana", "Silva Silva", "Ana", "Silva"), "name-mismatch");
        assert_eq!(relaxed("Anna", "Silva", "Ana", "Silva"), "name-mismatch");
    }

    #[test]
    fn confusable_letters_of_another_script_never_match() {
        // Cyrillic а (U+0430) in place of Latin a, the whole word Cyrillic: no relaxation
        // turns it into Latin.
        assert_eq!(relaxed("Аnnа", "Silva", "Anna", "Silva"), "mixed-script");
        assert_eq!(relaxed("Анна", "Силва", "Anna", "Silva"), "name-mismatch");
        // A word mixing scripts refuses relaxed matching even against itself.
        let mixed = "Аnna"; // Cyrillic А + Latin nna
        assert_eq!(relaxed(mixed, "Silva", mixed, "Silva"), "matched-exact", "exact equality is still equality");
        assert_eq!(relaxed(mixed, "SILVA", mixed, "Silva"), "mixed-script");
        // Greek omicron for Latin o.
        assert_eq!(relaxed("Jοhn", "Doe", "John", "Doe"), "mixed-script");
    }

    #[test]
    fn same_script_names_outside_latin_relax_within_their_script() {
        assert_eq!(relaxed("АННА", "ИВАНОВА", "Анна", "Иванова"), "matched-relaxed");
        assert_eq!(relaxed("Ελένη", "Παπαδοπούλου", "ΕΛΕΝΗ", "ΠΑΠΑΔΟΠΟΥΛΟΥ"), "matched-relaxed");
    }

    fn user(given: Option<&str>, family: Option<&str>, birthdate: Option<&str>) -> User {
        User {
            id: "u-1".into(),
            given_name: given.map(str::to_owned),
            family_name: family.map(str::to_owned),
            attributes: birthdate.map(|b| vec![("birthdate".to_owned(), b.to_owned())]).unwrap_or_default(),
            ..User::default()
        }
    }

    fn account(claims: Value, user: &User, same_name_users: u32, bindings: &[Binding]) -> AccountMatch {
        let claims = claims.as_object().cloned().unwrap_or_default();
        match_account(&MatchInput { claims: &claims, user, same_name_users, bindings, level: MatchLevel::Relaxed })
    }

    #[test]
    fn same_name_users_are_blocked_unless_a_bound_attribute_disambiguates() {
        let u = user(Some("Maria"), Some("Santos"), Some("1985-03-02"));
        let claims = json!({ "given_name": "Maria", "family_name": "Santos", "birthdate": "1985-03-02" });
        assert_eq!(account(claims.clone(), &u, 1, &[]).reason, "matched-exact");
        assert_eq!(account(claims.clone(), &u, 2, &[]).reason, "same-name-ambiguous");
        let birthdate = [Binding { claim: "birthdate".into(), attribute: "birthdate".into() }];
        let m = account(claims.clone(), &u, 2, &birthdate);
        assert!(m.matched, "{m:?}");
        let other = json!({ "given_name": "Maria", "family_name": "Santos", "birthdate": "1990-12-12" });
        assert_eq!(account(other, &u, 2, &birthdate).reason, "bound-attribute-mismatch");
        let undated = user(Some("Maria"), Some("Santos"), None);
        assert_eq!(account(claims, &undated, 2, &birthdate).reason, "bound-attribute-missing");
    }

    #[test]
    fn missing_names_never_match() {
        let u = user(Some("Ana"), None, None);
        assert_eq!(
            account(json!({ "given_name": "Ana", "family_name": "Silva" }), &u, 1, &[]).reason,
            "directory-name-missing"
        );
        let u = user(Some("Ana"), Some("Silva"), None);
        assert_eq!(account(json!({ "given_name": "Ana" }), &u, 1, &[]).reason, "credential-name-missing");
        assert_eq!(
            account(json!({ "given_name": "Ana", "family_name": "  " }), &u, 1, &[]).reason,
            "credential-name-missing"
        );
    }

    #[test]
    fn a_whole_name_in_the_family_name_matches_only_relaxed() {
        let u = user(Some("An"), Some("Nguyen Van"), None);
        let claims = json!({ "given_name": "", "family_name": "NGUYEN VAN AN" });
        assert_eq!(account(claims.clone(), &u, 1, &[]).reason, "matched-cross-field");
        let claims = json!({ "family_name": "NGUYEN VAN AN" });
        assert_eq!(account(claims.clone(), &u, 1, &[]).reason, "matched-cross-field");
        let map = claims.as_object().cloned().unwrap_or_default();
        let exact = MatchInput { claims: &map, user: &u, same_name_users: 1, bindings: &[], level: MatchLevel::Exact };
        assert_eq!(match_account(&exact).reason, "credential-name-missing");
        let other = json!({ "family_name": "NGUYEN VAN BINH" });
        assert_eq!(account(other, &u, 1, &[]).reason, "name-mismatch");
    }

    #[test]
    fn every_outcome_uses_a_listed_reason() {
        for reason in [relaxed("a", "b", "a", "b"), relaxed("a", "b", "c", "d"), relaxed("Аb", "c", "ab", "c")] {
            assert!(REASONS.contains(&reason));
        }
    }
}
