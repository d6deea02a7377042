//! The committed fixture files are the generator's output, the directory file is what
//! `regain user import` reads, and the fixture set covers every case it promises.
//!
//! After a deliberate change to the generator, rewrite the files with
//! `REGAIN_WRITE_FIXTURES=1 cargo test -p regain-dev-idv --test fixtures`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use regain_dev_idv::fixtures::Fixtures;
use serde_json::Value;
use std::path::Path;

fn committed() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
}

#[test]
fn the_committed_files_match_the_generator() {
    let fixtures = Fixtures::generate();
    if std::env::var_os("REGAIN_WRITE_FIXTURES").is_some() {
        fixtures.write(committed()).unwrap();
    }
    let mut expected: Vec<String> = Vec::new();
    for (path, content) in fixtures.files() {
        let on_disk = std::fs::read(committed().join(&path)).unwrap_or_default();
        assert!(
            on_disk == content,
            "dev-idv/fixtures/{path} differs from the generator; rewrite with REGAIN_WRITE_FIXTURES=1"
        );
        expected.push(path);
    }
    // No stray files either.
    let mut found = Vec::new();
    for dir in ["", "documents", "portraits", "selfies"] {
        for entry in std::fs::read_dir(committed().join(dir)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                let name = entry.file_name().into_string().unwrap();
                found.push(if dir.is_empty() { name } else { format!("{dir}/{name}") });
            }
        }
    }
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
    // The service loads the committed directory as it loads the built-in set.
    assert_eq!(Fixtures::load(committed()).unwrap(), fixtures);
}

#[test]
fn the_directory_holds_every_person_in_the_recovery_scope() {
    let directory: Vec<Value> =
        serde_json::from_slice(&std::fs::read(committed().join("directory.json")).unwrap()).unwrap();
    let fixtures = Fixtures::generate();
    assert_eq!(directory.len(), fixtures.people.len());
    for user in &directory {
        let keys: Vec<&str> = user.as_object().unwrap().keys().map(String::as_str).collect();
        for key in keys {
            assert!(
                ["id", "login", "given_name", "family_name", "country", "groups", "attributes", "last_sign_in"]
                    .contains(&key),
                "`{key}` is not a key of the directory format"
            );
        }
        assert!(user["groups"].as_array().unwrap().contains(&Value::from("recovery-enabled")));
        assert!(user["attributes"]["email"].as_str().unwrap().ends_with("@home.example"));
        assert!(user["attributes"]["birthdate"].as_str().is_some(), "every user can be bound by birth date");
    }
    let marias: Vec<&Value> =
        directory.iter().filter(|u| u["given_name"] == "Maria" && u["family_name"] == "Santos").collect();
    assert_eq!(marias.len(), 2, "the same-name pair");
    assert_ne!(marias[0]["attributes"]["birthdate"], marias[1]["attributes"]["birthdate"]);
    assert_eq!(marias[0]["attributes"]["birthdate"], "1980-03-14");
}

#[test]
fn the_set_covers_every_promised_case() {
    let f = Fixtures::generate();
    assert!(f.people.len() >= 6);
    assert!(f.people.iter().filter(|p| p.revoked).count() == 1);
    assert!(f.person("erik-lindqvist").unwrap().document.mrz[1].contains("240531"), "the expired passport");
    assert!(f.people.iter().any(|p| !p.document.given_name.is_ascii()), "diacritics");
    assert!(f.people.iter().any(|p| p.document.family_name.contains(' ')), "a multi-part surname");
    assert!(f.people.iter().any(|p| p.document.given_name.is_empty()), "the whole name in one field");
    assert!(f.selfie("someone-else").is_some(), "a selfie of someone else");
    let indexes: std::collections::BTreeSet<u64> = f.people.iter().map(|p| p.status_index).collect();
    assert_eq!(indexes.len(), f.people.len(), "one status entry per person");
}
