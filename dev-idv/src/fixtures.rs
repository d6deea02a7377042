//! The fixture people of the dev IDV: fictional, each with a signed passport, a portrait and
//! selfies, chosen so that every case of the recovery flow has someone to try it with.
//!
//! [`Fixtures::generate`] draws the whole set deterministically; the files in
//! `dev-idv/fixtures/` are its output, committed so that people can download selfies and
//! read the documents, and a test checks that they have not drifted from the generator.
//! The service serves the generated set unless given another directory in the same layout:
//!
//! ```text
//! fixtures.json            people (id, case, status list index, revoked at start) and selfies
//! documents/<id>.json      the signed document (see `documents::Document`)
//! portraits/<id>.pgm       the document portrait
//! selfies/<name>.pgm       selfies to choose from
//! directory.json           the matching directory users, for `regain user import`
//! ```

use crate::documents::{Date, Document, Mrz, document_issuer, transliterate};
use crate::face;
use serde::{Deserialize, Serialize};
use std::path::{Component, Path};

/// Largest fixture file read, in bytes.
const MAX_FILE: u64 = 1024 * 1024;
/// Most people or selfies in a fixture set.
const MAX_ENTRIES: usize = 256;

/// Why a fixture directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// A file is missing or unreadable.
    #[error("cannot read `{path}`: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A file's content is malformed.
    #[error("`{path}` is malformed: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// One fixture person as the generator describes them.
struct Person {
    id: &'static str,
    case: &'static str,
    /// The visual zone's names; an empty given name puts the whole name in the primary
    /// identifier.
    given_name: &'static str,
    family_name: &'static str,
    sex: char,
    nationality: &'static str,
    country: &'static str,
    birth: (u16, u8, u8),
    expiry: (u16, u8, u8),
    document_number: &'static str,
    optional_data: &'static str,
    revoked: bool,
    login: &'static str,
    /// The names the directory holds (an HR system may drop diacritics or split otherwise).
    directory_names: (&'static str, &'static str),
}

const PEOPLE: [Person; 8] = [
    Person {
        id: "ana-silva",
        case: "the plain happy path",
        given_name: "Ana",
        family_name: "Silva",
        sex: 'F',
        nationality: "PRT",
        country: "PT",
        birth: (1985, 2, 11),
        expiry: (2031, 2, 10),
        document_number: "CB4471920",
        optional_data: "ZE184226B",
        revoked: false,
        login: "ana.silva@example.org",
        directory_names: ("Ana", "Silva"),
    },
    Person {
        id: "maria-santos-1980",
        case: "same-name pair (born 1980): the `birthdate` binding tells them apart",
        given_name: "Maria",
        family_name: "Santos",
        sex: 'F',
        nationality: "PRT",
        country: "PT",
        birth: (1980, 3, 14),
        expiry: (2030, 7, 1),
        document_number: "CA5511209",
        optional_data: "",
        revoked: false,
        login: "maria.santos@example.org",
        directory_names: ("Maria", "Santos"),
    },
    Person {
        id: "maria-santos-1992",
        case: "same-name pair (born 1992): the `birthdate` binding tells them apart",
        given_name: "Maria",
        family_name: "Santos",
        sex: 'F',
        nationality: "BRA",
        country: "BR",
        birth: (1992, 11, 2),
        expiry: (2033, 1, 15),
        document_number: "FZ7734120",
        optional_data: "",
        revoked: false,
        login: "maria.santos2@example.org",
        directory_names: ("Maria", "Santos"),
    },
    Person {
        id: "jose-garcia-marquez",
        case: "diacritics and a multi-part surname, written the same in the directory",
        given_name: "José",
        family_name: "García Márquez",
        sex: 'M',
        nationality: "ESP",
        country: "ES",
        birth: (1975, 6, 30),
        expiry: (2032, 9, 30),
        document_number: "XDA123456",
        optional_data: "",
        revoked: false,
        login: "jose.garcia@example.org",
        directory_names: ("José", "García Márquez"),
    },
    Person {
        id: "bjorn-odegard",
        case: "diacritics the directory dropped (relaxed match); ICAO spells them OE and AA in the MRZ",
        given_name: "Bjørn",
        family_name: "Ødegård",
        sex: 'M',
        nationality: "NOR",
        country: "NO",
        birth: (1988, 1, 21),
        expiry: (2030, 5, 20),
        document_number: "NO3302219",
        optional_data: "",
        revoked: false,
        login: "bjorn.odegard@example.org",
        directory_names: ("Bjorn", "Odegard"),
    },
    Person {
        id: "tomas-novak",
        case: "a revoked credential: the status list entry is set at start",
        given_name: "Tomáš",
        family_name: "Novák",
        sex: 'M',
        nationality: "CZE",
        country: "CZ",
        birth: (1979, 9, 9),
        expiry: (2031, 11, 11),
        document_number: "CZ9081726",
        optional_data: "",
        revoked: true,
        login: "tomas.novak@example.org",
        directory_names: ("Tomáš", "Novák"),
    },
    Person {
        id: "erik-lindqvist",
        case: "an expired passport: the document check fails, nothing is issued",
        given_name: "Erik",
        family_name: "Lindqvist",
        sex: 'M',
        nationality: "SWE",
        country: "SE",
        birth: (1969, 12, 1),
        expiry: (2024, 5, 31),
        document_number: "SE1122334",
        optional_data: "",
        revoked: false,
        login: "erik.lindqvist@example.org",
        directory_names: ("Erik", "Lindqvist"),
    },
    Person {
        id: "nguyen-van-an",
        case: "the whole name in one field (primary identifier), no given name; the directory splits it",
        given_name: "",
        family_name: "Nguyễn Văn An",
        sex: 'M',
        nationality: "VNM",
        country: "VN",
        birth: (1990, 4, 18),
        expiry: (2032, 4, 17),
        document_number: "VN4455667",
        optional_data: "",
        revoked: false,
        login: "an.nguyen@example.org",
        directory_names: ("An", "Nguyen Van"),
    },
];

/// The first status list index given to fixture people (one index per person).
pub const FIRST_STATUS_INDEX: u64 = 100;

/// The face of the selfie "of someone else": a person with no document.
pub const SOMEONE_ELSE: &str = "someone-else";

/// A fixture person as the service uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The id (also the document's).
    pub id: String,
    /// What the fixture is for.
    pub case: String,
    /// The status list index of every credential issued to this person.
    pub status_index: u64,
    /// Whether the index is revoked when the service starts.
    pub revoked: bool,
    /// The signed document.
    pub document: Document,
    /// The portrait file (PGM).
    pub portrait: Vec<u8>,
}

/// A selfie to choose from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selfie {
    /// The file name without `.pgm`.
    pub name: String,
    /// What it shows.
    pub case: String,
    /// The PGM file.
    pub image: Vec<u8>,
}

/// A fixture set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixtures {
    /// The people, in order.
    pub people: Vec<Entry>,
    /// The selfies, in order.
    pub selfies: Vec<Selfie>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    note: String,
    people: Vec<ManifestPerson>,
    selfies: Vec<ManifestSelfie>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestPerson {
    id: String,
    case: String,
    status_index: u64,
    revoked: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestSelfie {
    file: String,
    case: String,
}

/// A user of `directory.json`, in the format `regain user import` reads.
#[derive(Serialize)]
struct DirectoryUser {
    id: String,
    login: &'static str,
    given_name: &'static str,
    family_name: &'static str,
    last_sign_in: u64,
    groups: [&'static str; 2],
    country: &'static str,
    attributes: DirectoryAttributes,
}

#[derive(Serialize)]
struct DirectoryAttributes {
    email: String,
    birthdate: String,
}

fn date((year, month, day): (u16, u8, u8)) -> Date {
    Date::new(year, month, day).unwrap_or(Date { year, month: 1, day: 1 })
}

fn document(person: &Person, portrait: &[u8]) -> Document {
    let (primary, secondary) = if person.given_name.is_empty() {
        (transliterate(person.family_name), String::new())
    } else {
        (transliterate(person.family_name), transliterate(person.given_name))
    };
    let mrz = Mrz {
        document_code: "P".into(),
        issuing_state: person.nationality.into(),
        name_field: String::new(),
        primary_identifier: primary,
        secondary_identifier: secondary,
        document_number: person.document_number.into(),
        nationality: person.nationality.into(),
        birth_date: date(person.birth),
        sex: person.sex,
        expiry_date: date(person.expiry),
        optional_data: person.optional_data.into(),
    };
    let lines = mrz.lines().unwrap_or_default();
    let mut document = Document {
        id: person.id.into(),
        mrz: lines,
        given_name: person.given_name.into(),
        family_name: person.family_name.into(),
        portrait: format!("portraits/{}.pgm", person.id),
        portrait_sha256: String::new(),
        signature: String::new(),
    };
    document.seal(portrait, &document_issuer());
    document
}

impl Fixtures {
    /// The built-in fixture set, drawn deterministically.
    pub fn generate() -> Self {
        let mut people = Vec::new();
        let mut selfies = Vec::new();
        for (index, person) in (0u64..).zip(PEOPLE.iter()) {
            let portrait = face::portrait(person.id).to_pgm();
            people.push(Entry {
                id: person.id.into(),
                case: person.case.into(),
                status_index: FIRST_STATUS_INDEX + index,
                revoked: person.revoked,
                document: document(person, &portrait),
                portrait,
            });
            selfies.push(Selfie {
                name: person.id.into(),
                case: format!("a live selfie of {}", person.id),
                image: face::selfie(person.id, "selfie", true).to_pgm(),
            });
        }
        selfies.push(Selfie {
            name: SOMEONE_ELSE.into(),
            case: "a live selfie of someone who is none of the fixture people".into(),
            image: face::selfie(SOMEONE_ELSE, "selfie", true).to_pgm(),
        });
        selfies.push(Selfie {
            name: "ana-silva-printed".into(),
            case: "a photo of a printed photo of ana-silva: the right face, but not live".into(),
            image: face::selfie("ana-silva", "printed", false).to_pgm(),
        });
        Self { people, selfies }
    }

    /// A person by id.
    pub fn person(&self, id: &str) -> Option<&Entry> {
        self.people.iter().find(|p| p.id == id)
    }

    /// A selfie by name.
    pub fn selfie(&self, name: &str) -> Option<&Selfie> {
        self.selfies.iter().find(|s| s.name == name)
    }

    /// Every file of the set, as `(relative path, content)`, in a stable order.
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        let manifest = Manifest {
            note: "DEV ONLY: fictional people for Regain's dev IDV; regenerated by its fixture test".into(),
            people: self
                .people
                .iter()
                .map(|p| ManifestPerson {
                    id: p.id.clone(),
                    case: p.case.clone(),
                    status_index: p.status_index,
                    revoked: p.revoked,
                })
                .collect(),
            selfies: self
                .selfies
                .iter()
                .map(|s| ManifestSelfie { file: format!("selfies/{}.pgm", s.name), case: s.case.clone() })
                .collect(),
        };
        let mut files = vec![("fixtures.json".to_owned(), pretty(&manifest))];
        for person in &self.people {
            files.push((format!("documents/{}.json", person.id), pretty(&person.document)));
            files.push((person.document.portrait.clone(), person.portrait.clone()));
        }
        for selfie in &self.selfies {
            files.push((format!("selfies/{}.pgm", selfie.name), selfie.image.clone()));
        }
        files.push(("directory.json".into(), directory()));
        files
    }

    /// Writes [`Fixtures::files`] under `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        for (path, content) in self.files() {
            let path = dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, content)?;
        }
        Ok(())
    }

    /// Reads a fixture set from a directory in the layout above. Documents are read as they
    /// are: a tampered one loads, and fails its check when chosen.
    pub fn load(dir: &Path) -> Result<Self, FixtureError> {
        let manifest: Manifest = parse(dir, "fixtures.json")?;
        if manifest.people.len() > MAX_ENTRIES || manifest.selfies.len() > MAX_ENTRIES {
            return Err(malformed("fixtures.json", "too many entries"));
        }
        let mut people = Vec::new();
        for person in manifest.people {
            let path = format!("documents/{}.json", person.id);
            let document: Document = parse(dir, &path)?;
            if document.id != person.id {
                return Err(malformed(&path, "its id is not the file's"));
            }
            let portrait = read(dir, &document.portrait)?;
            people.push(Entry {
                id: person.id,
                case: person.case,
                status_index: person.status_index,
                revoked: person.revoked,
                document,
                portrait,
            });
        }
        let mut selfies = Vec::new();
        for selfie in manifest.selfies {
            let name = selfie
                .file
                .strip_prefix("selfies/")
                .and_then(|f| f.strip_suffix(".pgm"))
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                .ok_or_else(|| malformed("fixtures.json", "a selfie is not `selfies/<name>.pgm`"))?
                .to_owned();
            let image = read(dir, &selfie.file)?;
            selfies.push(Selfie { name, case: selfie.case, image });
        }
        Ok(Self { people, selfies })
    }
}

fn malformed(path: &str, message: &str) -> FixtureError {
    FixtureError::Malformed { path: path.into(), message: message.into() }
}

/// Reads a file of the set: relative paths inside the directory only, bounded size.
fn read(dir: &Path, relative: &str) -> Result<Vec<u8>, FixtureError> {
    let error = |message: String| FixtureError::Read { path: relative.into(), message };
    let path = Path::new(relative);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(error("only paths inside the fixture directory are read".into()));
    }
    let full = dir.join(path);
    let size = std::fs::metadata(&full).map_err(|e| error(e.to_string()))?.len();
    if size > MAX_FILE {
        return Err(error(format!("larger than {MAX_FILE} bytes")));
    }
    std::fs::read(full).map_err(|e| error(e.to_string()))
}

fn parse<T: serde::de::DeserializeOwned>(dir: &Path, relative: &str) -> Result<T, FixtureError> {
    serde_json::from_slice(&read(dir, relative)?).map_err(|e| malformed(relative, &e.to_string()))
}

/// `directory.json`: the fixture people as directory users in the recovery scope, with an
/// `email` channel and the `birthdate` a deployment can bind.
pub fn directory() -> Vec<u8> {
    let users: Vec<DirectoryUser> = (0u64..)
        .zip(PEOPLE.iter())
        .map(|(index, p)| DirectoryUser {
            id: format!("u-{}", 2001 + index),
            login: p.login,
            given_name: p.directory_names.0,
            family_name: p.directory_names.1,
            last_sign_in: 1_790_000_000 + index * 86_400,
            groups: ["staff", "recovery-enabled"],
            country: p.country,
            attributes: DirectoryAttributes { email: format!("{}@home.example", p.id), birthdate: date(p.birth).iso() },
        })
        .collect();
    pretty(&users)
}

/// Pretty JSON with a final newline, for files people read.
fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_default();
    out.push(b'\n');
    out
}
