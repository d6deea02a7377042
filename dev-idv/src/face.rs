//! A deterministic face matcher over fixture images. It STANDS IN for a face recognition
//! service and recognises nothing: it compares perceptual hashes of small grayscale images,
//! which is enough to tell the procedurally drawn fixture "faces" apart and to survive the
//! brightness change and noise of a fixture selfie.
//!
//! Images are binary PGM files (`P5`, 8 bits). A fixture selfie says in a header comment
//! whether it was "taken live" (`# regain-dev-idv liveness=live`) or is a photo of a photo
//! (`liveness=replay`); an image without the marker, or with the very pixels of the
//! portrait, is not live.
//!
//! The score: each image is reduced to a 128-bit difference hash (9×8 and 8×9 grids of
//! average brightness, one bit per pair of neighbouring cells), and the score is
//! `100 - 2 × hamming distance`, floored at 0. The fixture faces of one person score 85 or
//! more, of two different people 40 or less (tested on every fixture pair).

use std::fmt::Write as _;

/// Largest width or height accepted, in pixels.
pub const MAX_SIDE: usize = 1024;
/// Smallest width or height accepted, in pixels (the hash grid needs 9).
pub const MIN_SIDE: usize = 9;
/// Side of the fixture images, in pixels.
pub const FIXTURE_SIDE: usize = 48;
/// The header comment that marks a live selfie.
pub const LIVE_MARKER: &str = "regain-dev-idv liveness=live";
/// The header comment that marks a photo of a photo.
pub const REPLAY_MARKER: &str = "regain-dev-idv liveness=replay";
/// The header comment of every fixture image.
const DEV_ONLY: &str = "DEV ONLY fixture image of a fictional person";

/// Why an image was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Not a binary 8-bit PGM file.
    #[error("not a binary PGM image (`P5`)")]
    NotPgm,
    /// The header is malformed.
    #[error("malformed PGM header: {0}")]
    Header(&'static str),
    /// Width or height outside the accepted range.
    #[error("image sides must be {MIN_SIDE} to {MAX_SIDE} pixels")]
    Size,
    /// The pixel data is shorter or longer than the header says.
    #[error("the pixel data does not match the header")]
    Data,
}

/// A grayscale image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major brightness, 0 (black) to 255.
    pub pixels: Vec<u8>,
    /// The header comments, without `#` and surrounding spaces.
    pub comments: Vec<String>,
}

/// Reads a header token, skipping whitespace and `#` comments (collected).
fn token<'a>(bytes: &'a [u8], at: &mut usize, comments: &mut Vec<String>) -> Result<&'a [u8], ImageError> {
    loop {
        match bytes.get(*at) {
            Some(b) if b.is_ascii_whitespace() => *at += 1,
            Some(b'#') => {
                let start = *at + 1;
                while bytes.get(*at).is_some_and(|b| *b != b'\n') {
                    *at += 1;
                }
                let text = bytes.get(start..*at).ok_or(ImageError::Header("comment"))?;
                if comments.len() < 16 {
                    comments.push(String::from_utf8_lossy(text).trim().to_owned());
                }
            }
            Some(_) => break,
            None => return Err(ImageError::Header("truncated")),
        }
    }
    let start = *at;
    while bytes.get(*at).is_some_and(|b| !b.is_ascii_whitespace() && *b != b'#') {
        *at += 1;
        if *at - start > 8 {
            return Err(ImageError::Header("token too long"));
        }
    }
    bytes.get(start..*at).ok_or(ImageError::Header("truncated"))
}

fn number(text: &[u8], what: &'static str) -> Result<usize, ImageError> {
    std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()).ok_or(ImageError::Header(what))
}

impl Image {
    /// Parses a binary PGM (`P5`, maximum value 1 to 255), within the size bounds.
    pub fn parse_pgm(bytes: &[u8]) -> Result<Self, ImageError> {
        if !bytes.starts_with(b"P5") {
            return Err(ImageError::NotPgm);
        }
        let mut at = 2;
        let mut comments = Vec::new();
        if !bytes.get(at).is_some_and(|b| b.is_ascii_whitespace() || *b == b'#') {
            return Err(ImageError::NotPgm);
        }
        let width = number(token(bytes, &mut at, &mut comments)?, "width")?;
        let height = number(token(bytes, &mut at, &mut comments)?, "height")?;
        let max = number(token(bytes, &mut at, &mut comments)?, "maximum value")?;
        if !(MIN_SIDE..=MAX_SIDE).contains(&width) || !(MIN_SIDE..=MAX_SIDE).contains(&height) {
            return Err(ImageError::Size);
        }
        if !(1..=255).contains(&max) {
            return Err(ImageError::Header("only 8-bit images are accepted"));
        }
        // Exactly one whitespace character separates the header from the pixels.
        if !bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            return Err(ImageError::Header("no separator before the pixels"));
        }
        let data = bytes.get(at + 1..).ok_or(ImageError::Data)?;
        if data.len() != width * height {
            return Err(ImageError::Data);
        }
        let pixels = if max == 255 {
            data.to_vec()
        } else {
            data.iter().map(|p| u8::try_from(usize::from(*p).min(max) * 255 / max).unwrap_or(u8::MAX)).collect()
        };
        Ok(Self { width, height, pixels, comments })
    }

    /// The binary PGM encoding, with the comments in the header.
    pub fn to_pgm(&self) -> Vec<u8> {
        let mut header = String::from("P5\n");
        for comment in &self.comments {
            let _ = writeln!(header, "# {comment}");
        }
        let _ = write!(header, "{} {}\n255\n", self.width, self.height);
        let mut out = header.into_bytes();
        out.extend_from_slice(&self.pixels);
        out
    }

    /// An 8-bit grayscale BMP, which browsers display (they do not display PGM).
    pub fn to_bmp(&self) -> Vec<u8> {
        let row = self.width.div_ceil(4) * 4;
        let offset = 14 + 40 + 256 * 4;
        let size = offset + row * self.height;
        let le32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(b"BM");
        out.extend_from_slice(&le32(size));
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&le32(offset));
        out.extend_from_slice(&le32(40));
        out.extend_from_slice(&le32(self.width));
        out.extend_from_slice(&le32(self.height));
        out.extend_from_slice(&[1, 0, 8, 0]);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&le32(row * self.height));
        out.extend_from_slice(&le32(2835));
        out.extend_from_slice(&le32(2835));
        out.extend_from_slice(&le32(256));
        out.extend_from_slice(&[0; 4]);
        for level in 0..=255u8 {
            out.extend_from_slice(&[level, level, level, 0]);
        }
        // Rows bottom-up, each padded to four bytes.
        for y in (0..self.height).rev() {
            let line = self.pixels.get(y * self.width..(y + 1) * self.width).unwrap_or_default();
            out.extend_from_slice(line);
            out.resize(out.len() + (row - line.len()), 0);
        }
        out
    }

    fn at(&self, x: usize, y: usize) -> u32 {
        self.pixels.get(y * self.width + x).copied().map_or(0, u32::from)
    }

    /// The average brightness of each cell of a `cols`×`rows` grid over the image.
    fn grid(&self, cols: usize, rows: usize) -> Vec<u32> {
        let mut cells = Vec::with_capacity(cols * rows);
        for row in 0..rows {
            let (y0, y1) =
                (row * self.height / rows, ((row + 1) * self.height / rows).max(row * self.height / rows + 1));
            for col in 0..cols {
                let (x0, x1) =
                    (col * self.width / cols, ((col + 1) * self.width / cols).max(col * self.width / cols + 1));
                let mut sum = 0u32;
                for y in y0..y1.min(self.height) {
                    for x in x0..x1.min(self.width) {
                        sum += self.at(x, y);
                    }
                }
                let count = u32::try_from((y1 - y0) * (x1 - x0)).unwrap_or(1).max(1);
                cells.push(sum / count);
            }
        }
        cells
    }

    /// The 128-bit difference hash: brighter-than-right-neighbour bits on a 9×8 grid, then
    /// brighter-than-lower-neighbour bits on an 8×9 grid.
    pub fn hash(&self) -> u128 {
        let mut hash = 0u128;
        let wide = self.grid(9, 8);
        for row in 0..8 {
            for col in 0..8 {
                let left = wide.get(row * 9 + col).copied().unwrap_or(0);
                let right = wide.get(row * 9 + col + 1).copied().unwrap_or(0);
                hash = (hash << 1) | u128::from(left > right);
            }
        }
        let tall = self.grid(8, 9);
        for row in 0..8 {
            for col in 0..8 {
                let upper = tall.get(row * 8 + col).copied().unwrap_or(0);
                let lower = tall.get((row + 1) * 8 + col).copied().unwrap_or(0);
                hash = (hash << 1) | u128::from(upper > lower);
            }
        }
        hash
    }

    /// Whether the header carries the live-selfie marker (and not the replay marker).
    pub fn marked_live(&self) -> bool {
        self.comments.iter().any(|c| c == LIVE_MARKER) && !self.comments.iter().any(|c| c == REPLAY_MARKER)
    }
}

/// The outcome of a comparison, as the reference server's face service answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    /// 0-100.
    pub score: u8,
    /// Whether the selfie was taken live.
    pub live: bool,
}

/// The score of two hashes: `100 - 2 × distance`, floored at 0.
pub fn score(a: u128, b: u128) -> u8 {
    let distance = (a ^ b).count_ones();
    u8::try_from(100u32.saturating_sub(2 * distance)).unwrap_or(0)
}

/// Compares a selfie with a portrait (both PGM files).
pub fn compare(portrait: &[u8], selfie: &[u8]) -> Result<Comparison, ImageError> {
    let portrait = Image::parse_pgm(portrait)?;
    let selfie = Image::parse_pgm(selfie)?;
    // The document's own photo held up to the camera is not a live selfie.
    let live = selfie.marked_live() && selfie.pixels != portrait.pixels;
    Ok(Comparison { score: score(portrait.hash(), selfie.hash()), live })
}

/// A small deterministic generator (SplitMix64) seeded from a name.
struct Rng(u64);

impl Rng {
    fn new(seed: &str) -> Self {
        // FNV-1a of the seed text.
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for byte in seed.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        Self(hash)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `low..=high`.
    fn range(&mut self, low: i32, high: i32) -> i32 {
        let span = u64::try_from(high - low + 1).unwrap_or(1).max(1);
        low + i32::try_from(self.next() % span).unwrap_or(0)
    }
}

fn clamp(value: i32) -> u8 {
    u8::try_from(value.clamp(0, 255)).unwrap_or(0)
}

/// A smooth random field: a 5×5 grid of values in `low..=high`, interpolated bilinearly.
fn field(rng: &mut Rng, low: i32, high: i32) -> impl Fn(i32, i32) -> i32 + use<> {
    let points: Vec<i32> = (0..25).map(|_| rng.range(low, high)).collect();
    let side = i32::try_from(FIXTURE_SIDE).unwrap_or(48) - 1;
    move |x, y| {
        let (fx, fy) = (x * 4 * 256 / side, y * 4 * 256 / side);
        let (cx, cy) = ((fx / 256).min(3), (fy / 256).min(3));
        let (tx, ty) = (fx - cx * 256, fy - cy * 256);
        let p = |i: i32, j: i32| usize::try_from(j * 5 + i).ok().and_then(|at| points.get(at)).copied().unwrap_or(128);
        let top = p(cx, cy) * (256 - tx) + p(cx + 1, cy) * tx;
        let bottom = p(cx, cy + 1) * (256 - tx) + p(cx + 1, cy + 1) * tx;
        (top * (256 - ty) + bottom * ty) / 65_536
    }
}

/// The procedural "face" of a fixture person: a textured background, an oval face with
/// hair, eyes, nose and mouth, all placed and shaded from a generator seeded by `person`.
pub fn face(person: &str) -> Image {
    let mut rng = Rng::new(person);
    let background = field(&mut rng, 20, 235);
    let shading = field(&mut rng, -45, 45);
    let (cx, cy) = (24 + rng.range(-3, 3), 26 + rng.range(-3, 3));
    let (rx, ry) = (12 + rng.range(0, 5), 15 + rng.range(0, 4));
    let skin = rng.range(70, 220);
    let hair = rng.range(15, 235);
    let hairline = rng.range(30, 60);
    let eye_y = cy - ry / 4 + rng.range(-2, 1);
    let eye_dx = rx * 2 / 5 + rng.range(0, 2);
    let eye_r = rng.range(2, 3);
    let mouth_y = cy + ry / 2 + rng.range(-1, 2);
    let mouth_w = rng.range(3, 7);
    let dark = rng.range(0, 50);
    let side = i32::try_from(FIXTURE_SIDE).unwrap_or(48);
    let mut pixels = Vec::with_capacity(FIXTURE_SIDE * FIXTURE_SIDE);
    for y in 0..side {
        for x in 0..side {
            let (dx, dy) = (x - cx, y - cy);
            // Inside the oval when (dx/rx)² + (dy/ry)² <= 1, in integers (×100).
            let oval = dx * dx * 100 / (rx * rx) + dy * dy * 100 / (ry * ry);
            let mut value = background(x, y);
            if oval <= 100 {
                value = skin + shading(x, y);
                if dy * 100 < -ry * hairline {
                    value = hair + shading(x, y) / 2;
                }
                let eye = |ex: i32| (x - ex) * (x - ex) + (y - eye_y) * (y - eye_y) <= eye_r * eye_r;
                if eye(cx - eye_dx) || eye(cx + eye_dx) {
                    value = dark;
                }
                if (y - mouth_y).abs() <= 1 && (x - cx).abs() <= mouth_w {
                    value = dark + 20;
                }
                if (x - cx).abs() <= 1 && y > eye_y + 2 && y < mouth_y - 3 {
                    value -= 35;
                }
            } else if oval <= 115 {
                value = (value + hair) / 2;
            }
            pixels.push(clamp(value));
        }
    }
    Image { width: FIXTURE_SIDE, height: FIXTURE_SIDE, pixels, comments: Vec::new() }
}

/// A portrait for a document: the person's face, marked as a document portrait.
pub fn portrait(person: &str) -> Image {
    let mut image = face(person);
    image.comments = vec!["regain-dev-idv portrait".into(), DEV_ONLY.into()];
    image
}

/// A selfie of `person`'s face as a camera takes it: brighter or darker, a little contrast
/// change and sensor noise, drawn from a generator seeded by `variant`; marked live or
/// replayed. (The fixture faces are not moved: the stand-in hash is not shift-invariant.)
pub fn selfie(person: &str, variant: &str, live: bool) -> Image {
    let base = face(person);
    let mut rng = Rng::new(&format!("{person}/{variant}"));
    let brightness = rng.range(-30, 30);
    let contrast = rng.range(88, 112);
    let side = i32::try_from(FIXTURE_SIDE).unwrap_or(48);
    let mut pixels = Vec::with_capacity(base.pixels.len());
    for y in 0..side {
        for x in 0..side {
            let source = usize::try_from(y * side + x).ok().and_then(|at| base.pixels.get(at)).copied();
            let value = i32::from(source.unwrap_or(0));
            let noise = rng.range(-6, 6);
            pixels.push(clamp((value - 128) * contrast / 100 + 128 + brightness + noise));
        }
    }
    let marker = if live { LIVE_MARKER } else { REPLAY_MARKER };
    Image { width: FIXTURE_SIDE, height: FIXTURE_SIDE, pixels, comments: vec![marker.into(), DEV_ONLY.into()] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgm_round_trips_and_bad_files_are_refused() {
        let image = selfie("someone", "a", true);
        let bytes = image.to_pgm();
        let parsed = Image::parse_pgm(&bytes).unwrap();
        assert_eq!(parsed.pixels, image.pixels);
        assert!(parsed.marked_live());
        assert!(!Image::parse_pgm(&selfie("someone", "a", false).to_pgm()).unwrap().marked_live());
        assert_eq!(Image::parse_pgm(b"P6\n1 1\n255\n"), Err(ImageError::NotPgm));
        assert_eq!(Image::parse_pgm(b"P5\n2000 10\n255\n"), Err(ImageError::Size));
        assert_eq!(Image::parse_pgm(b"P5\n10 10\n255\nshort"), Err(ImageError::Data));
        assert!(Image::parse_pgm(b"P5\n10 10\n65535\n").is_err());
        assert!(Image::parse_pgm(b"P5\n99999999999 10\n255\n").is_err());
        assert!(Image::parse_pgm(b"P5").is_err());
    }
}
