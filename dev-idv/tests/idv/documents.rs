//! Passport checks: ICAO 9303 check digits on the specimen of the standard, the tamper
//! signature, expiry, and the transliteration of visual-zone names to the MRZ.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use regain_dev_idv::documents::{
    Date, DocumentError, Mrz, check_digit, document_issuer, transliterate, transliterates_to,
};
use regain_dev_idv::fixtures::Fixtures;

/// The TD3 specimen of ICAO Doc 9303 Part 4 (Anna Maria Eriksson of Utopia).
const SPECIMEN: [&str; 2] =
    ["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10"];

/// 2026-11-25, the fixtures' reference day.
const NOW: u64 = 1_795_651_200;

#[test]
fn the_specimen_check_digits_are_computed_and_verified() {
    assert_eq!(check_digit("L898902C3"), Some('6'));
    assert_eq!(check_digit("740812"), Some('2'));
    assert_eq!(check_digit("120415"), Some('9'));
    assert_eq!(check_digit("ZE184226B<<<<<"), Some('1'));
    assert_eq!(check_digit("L898902C3674081221204159ZE184226B<<<<<1"), Some('0'));
    assert_eq!(check_digit("a"), None);

    let mrz = Mrz::parse(SPECIMEN[0], SPECIMEN[1], 2026).unwrap();
    assert_eq!(mrz.document_code, "P<");
    assert_eq!(mrz.issuing_state, "UTO");
    assert_eq!(mrz.primary_identifier, "ERIKSSON");
    assert_eq!(mrz.secondary_identifier, "ANNA MARIA");
    assert_eq!(mrz.document_number, "L898902C3");
    assert_eq!(mrz.birth_date, Date::new(1974, 8, 12).unwrap());
    assert_eq!(mrz.expiry_date, Date::new(2012, 4, 15).unwrap());
    assert_eq!(mrz.sex, 'F');
    assert_eq!(mrz.optional_data, "ZE184226B");
    // Written back from its fields, the specimen comes out identical.
    assert_eq!(mrz.lines().unwrap(), SPECIMEN.map(str::to_owned));
}

#[test]
fn a_wrong_check_digit_or_date_is_refused() {
    let cases = [
        ("L898902C37UTO7408122F1204159ZE184226B<<<<<10", DocumentError::CheckDigit("document number")),
        ("L898902C36UTO7408123F1204159ZE184226B<<<<<10", DocumentError::CheckDigit("birth date")),
        ("L898902C36UTO7408122F1204158ZE184226B<<<<<10", DocumentError::CheckDigit("expiry date")),
        ("L898902C36UTO7408122F1204159ZE184226B<<<<<20", DocumentError::CheckDigit("optional data")),
        ("L898902C36UTO7408122F1204159ZE184226B<<<<<11", DocumentError::CheckDigit("composite")),
        ("L898902C36UTO7408122F1204159ZE184226B<<<<<1", DocumentError::LineLength { line: 2, found: 43 }),
        ("L898902C36UTO7408122F1204159ZE184226b<<<<<10", DocumentError::Character('b')),
    ];
    for (line2, error) in cases {
        assert_eq!(Mrz::parse(SPECIMEN[0], line2, 2026), Err(error), "{line2}");
    }
    // A month 13 with correct check digits is still not a date.
    let bad_month = "L898902C36UTO7413128F1204159ZE184226B<<<<<1";
    let composite = check_digit(&format!("{}{}{}", &bad_month[..10], &bad_month[13..20], &bad_month[21..43])).unwrap();
    assert!(matches!(
        Mrz::parse(SPECIMEN[0], &format!("{bad_month}{composite}"), 2026),
        Err(DocumentError::Date("birth date", _))
    ));
    assert_eq!(
        Mrz::parse("I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", SPECIMEN[1], 2026),
        Err(DocumentError::NotPassport("I<".into()))
    );
}

#[test]
fn visual_zone_names_transliterate_as_icao_spells_them() {
    assert_eq!(transliterate("García Márquez"), "GARCIA MARQUEZ");
    assert_eq!(transliterate("Ødegård"), "OEDEGAARD");
    assert_eq!(transliterate("Nguyễn Văn An"), "NGUYEN VAN AN");
    assert_eq!(transliterate("O'Brien-Smith"), "OBRIEN SMITH");
    assert_eq!(transliterate("Groß"), "GROSS");
    // Either accepted spelling of an umlaut, Å or Ñ.
    assert!(transliterates_to("Müller", "MUELLER", false));
    assert!(transliterates_to("Müller", "MULLER", false));
    assert!(transliterates_to("Ødegård", "OEDEGARD", false));
    assert!(transliterates_to("Muñoz", "MUNXXOZ", false));
    assert!(transliterates_to("Jean-Luc", "JEAN LUC", false));
    assert!(transliterates_to("Łukasz Żółć", "LUKASZ ZOLC", false));
    // A full name field cuts the name off.
    assert!(transliterates_to("Maximiliana Friederike", "MAXIMILIANA FRIED", true));
    assert!(!transliterates_to("Maximiliana Friederike", "MAXIMILIANA FRIED", false));
    assert!(!transliterates_to("José", "JOSEF", false));
    assert!(!transliterates_to("Ana", "ANNA", false));
}

#[test]
fn every_fixture_document_but_the_expired_one_passes() {
    let fixtures = Fixtures::generate();
    for person in &fixtures.people {
        let report = person.document.check(&person.portrait, NOW, &document_issuer());
        assert_eq!(report.checks.len(), 4, "{}", person.id);
        if person.id == "erik-lindqvist" {
            assert_eq!(report.result().unwrap_err(), DocumentError::Expired("2024-05-31".into()));
            assert!(report.checks.iter().filter(|c| c.outcome.is_ok()).count() == 3);
        } else {
            let verified = report.result().unwrap_or_else(|e| panic!("{}: {e}", person.id));
            assert_eq!(verified.family_name, person.document.family_name);
        }
    }
    let one_field = fixtures.person("nguyen-van-an").unwrap();
    assert!(one_field.document.mrz[0].starts_with("P<VNMNGUYEN<VAN<AN<<<<"));
    let verified = one_field.document.check(&one_field.portrait, NOW, &document_issuer());
    let verified = verified.result().unwrap();
    assert_eq!(
        (verified.mrz.primary_identifier.as_str(), verified.mrz.secondary_identifier.as_str()),
        ("NGUYEN VAN AN", "")
    );
    assert_eq!(verified.given_name, "");
    let bjorn = fixtures.person("bjorn-odegard").unwrap();
    assert!(bjorn.document.mrz[0].starts_with("P<NOROEDEGAARD<<BJOERN<"));
}

#[test]
fn a_changed_field_or_portrait_fails_the_tamper_check() {
    let fixtures = Fixtures::generate();
    let person = fixtures.person("ana-silva").unwrap();
    let issuer = document_issuer();
    let tampered = |edit: &dyn Fn(&mut regain_dev_idv::documents::Document)| {
        let mut document = person.document.clone();
        edit(&mut document);
        document.check(&person.portrait, NOW, &issuer).result().unwrap_err()
    };
    assert_eq!(tampered(&|d| d.given_name = "Anna".into()), DocumentError::Tampered);
    assert_eq!(tampered(&|d| d.family_name = "Silvo".into()), DocumentError::Tampered);
    // A new expiry date with correct check digits: still the signature gives it away.
    assert_eq!(
        tampered(&|d| {
            let mut mrz = Mrz::parse(&d.mrz[0], &d.mrz[1], 2026).unwrap();
            mrz.expiry_date = Date::new(2039, 1, 1).unwrap();
            d.mrz = mrz.lines().unwrap();
        }),
        DocumentError::Tampered
    );
    // Another person's portrait.
    let other = fixtures.person("maria-santos-1980").unwrap();
    let report = person.document.check(&other.portrait, NOW, &issuer);
    assert_eq!(report.result().unwrap_err(), DocumentError::PortraitMismatch);
    // Signed by someone else.
    let mut forged = person.document.clone();
    forged.seal(&person.portrait, &regain_dev_idv::keys::SigningKey::p256(0x77));
    assert_eq!(forged.check(&person.portrait, NOW, &issuer).result().unwrap_err(), DocumentError::Tampered);
    // Re-signed by the issuer but with a name the MRZ does not hold.
    let mut renamed = person.document.clone();
    renamed.given_name = "Beatriz".into();
    renamed.seal(&person.portrait, &issuer);
    assert_eq!(
        renamed.check(&person.portrait, NOW, &issuer).result().unwrap_err(),
        DocumentError::NameMismatch("given names")
    );
}

#[test]
fn expiry_is_checked_against_the_given_time() {
    let fixtures = Fixtures::generate();
    let person = fixtures.person("ana-silva").unwrap();
    let issuer = document_issuer();
    let expiry = Date::new(2031, 2, 10).unwrap();
    let last_day = u64::try_from(expiry.days_since_epoch()).unwrap() * 86_400;
    assert!(person.document.check(&person.portrait, last_day + 86_399, &issuer).result().is_ok());
    assert_eq!(
        person.document.check(&person.portrait, last_day + 86_400, &issuer).result().unwrap_err(),
        DocumentError::Expired("2031-02-10".into())
    );
}
