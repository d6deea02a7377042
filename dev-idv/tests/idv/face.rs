//! The stand-in face matcher over the fixture images: one person's portrait and selfie
//! score high, two people's low, and liveness follows the selfie's marker.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a failing test panics with the reason"
)]

use regain_dev_idv::face::{self, FIXTURE_SIDE, Image};
use regain_dev_idv::fixtures::{Fixtures, SOMEONE_ELSE};

#[test]
fn the_same_person_scores_85_or_more_and_different_people_40_or_less() {
    let fixtures = Fixtures::generate();
    for person in &fixtures.people {
        for selfie in &fixtures.selfies {
            let comparison = face::compare(&person.portrait, &selfie.image).unwrap();
            let same = selfie.name == person.id || selfie.name == format!("{}-printed", person.id);
            if same {
                assert!(comparison.score >= 85, "{} vs {}: {}", person.id, selfie.name, comparison.score);
            } else {
                assert!(comparison.score <= 40, "{} vs {}: {}", person.id, selfie.name, comparison.score);
            }
        }
        // Portraits of two different people, too.
        for other in fixtures.people.iter().filter(|o| o.id != person.id) {
            assert!(face::compare(&person.portrait, &other.portrait).unwrap().score <= 40);
        }
    }
    assert!(fixtures.selfie(SOMEONE_ELSE).is_some());
}

#[test]
fn liveness_follows_the_marker_and_refuses_the_portrait_itself() {
    let fixtures = Fixtures::generate();
    let ana = fixtures.person("ana-silva").unwrap();
    let live = face::compare(&ana.portrait, &fixtures.selfie("ana-silva").unwrap().image).unwrap();
    assert!(live.live);
    let printed = face::compare(&ana.portrait, &fixtures.selfie("ana-silva-printed").unwrap().image).unwrap();
    assert!(!printed.live);
    let copy = face::compare(&ana.portrait, &ana.portrait).unwrap();
    assert_eq!(copy.score, 100);
    assert!(!copy.live, "the document photo held to the camera");
    // The portrait with a live marker added is still the portrait's pixels.
    let mut marked = Image::parse_pgm(&ana.portrait).unwrap();
    marked.comments = vec![face::LIVE_MARKER.into()];
    assert!(!face::compare(&ana.portrait, &marked.to_pgm()).unwrap().live);
    // An unmarked image is not live.
    let mut unmarked = face::selfie("ana-silva", "x", true);
    unmarked.comments.clear();
    assert!(!face::compare(&ana.portrait, &unmarked.to_pgm()).unwrap().live);
}

#[test]
fn images_are_bounded_pgm_and_render_as_bmp() {
    let image = face::portrait("ana-silva");
    assert_eq!((image.width, image.height), (FIXTURE_SIDE, FIXTURE_SIDE));
    let bmp = image.to_bmp();
    assert_eq!(&bmp[..2], b"BM");
    assert_eq!(u32::from_le_bytes(bmp[2..6].try_into().unwrap()) as usize, bmp.len());
    // Generation is deterministic.
    assert_eq!(face::selfie("x", "y", true), face::selfie("x", "y", true));
    assert_ne!(face::face("x"), face::face("y"));
    // Not an image of the kind compared: an error, not a score.
    assert!(face::compare(b"face:91", &image.to_pgm()).is_err());
    let mut maxval_15 = b"P5 9 9 15\n".to_vec();
    maxval_15.extend([15u8; 81]);
    assert_eq!(Image::parse_pgm(&maxval_15).unwrap().pixels, vec![255; 81]);
}
