//! Revocation: the IETF Token Status List and the W3C Bitstring Status List.
//!
//! The two lists differ in every detail that matters: the IETF list is ZLIB-compressed and
//! packs each entry from the least significant bit of a byte; the W3C list is
//! GZIP-compressed, multibase-encoded, and its index 0 is the most significant bit.

use crate::jose::b64url_decode;
use miniz_oxide::inflate::{DecompressError, decompress_to_vec_with_limit, decompress_to_vec_zlib_with_limit};

/// Largest decompressed status list accepted, in bytes (2^20 entries of 8 bits is 1 MiB).
pub const MAX_LIST_BYTES: usize = 16 << 20;

/// The smallest W3C Bitstring Status List, in entries (16 KiB of bits), for herd privacy.
pub const MIN_BITSTRING_ENTRIES: usize = 131_072;

/// The status of one entry of an IETF Token Status List.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    /// `0x00`: the token is valid.
    Valid,
    /// `0x01`: the token is revoked for good.
    Invalid,
    /// `0x02`: the token is suspended; it may become valid again, but is not valid now.
    Suspended,
    /// Any other value: application-specific, and not valid for Regain.
    Other(u8),
}

/// Why a status list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// `bits` is not 1, 2, 4 or 8.
    #[error("`bits` must be 1, 2, 4 or 8")]
    Bits,
    /// The encoded list is not base64url / multibase.
    #[error("the list is not correctly encoded")]
    Encoding,
    /// The compressed list does not inflate, or inflates past the size limit.
    #[error("the list does not decompress within {MAX_LIST_BYTES} bytes")]
    Compression,
    /// A W3C list shorter than the minimum.
    #[error("the list has fewer than {MIN_BITSTRING_ENTRIES} entries")]
    TooShort,
    /// The index is past the end of the list.
    #[error("index {0} is out of range")]
    OutOfRange(u64),
}

fn inflate_error(_: DecompressError) -> ListError {
    ListError::Compression
}

/// A decoded IETF Token Status List.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStatusList {
    bits: u8,
    bytes: Vec<u8>,
}

impl TokenStatusList {
    /// Decodes the `status_list` claim's `bits` and `lst` (base64url of ZLIB data).
    pub fn decode(bits: u64, lst: &str) -> Result<Self, ListError> {
        let bits = match bits {
            1 | 2 | 4 | 8 => u8::try_from(bits).map_err(|_| ListError::Bits)?,
            _ => return Err(ListError::Bits),
        };
        let compressed = b64url_decode(lst).ok_or(ListError::Encoding)?;
        let bytes = decompress_to_vec_zlib_with_limit(&compressed, MAX_LIST_BYTES).map_err(inflate_error)?;
        Ok(Self { bits, bytes })
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        (self.bytes.len() as u64) * 8 / u64::from(self.bits)
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The status at `index`; an index past the end is an error, never "valid".
    pub fn get(&self, index: u64) -> Result<TokenStatus, ListError> {
        let bits = u64::from(self.bits);
        let bit = index.checked_mul(bits).ok_or(ListError::OutOfRange(index))?;
        let byte = usize::try_from(bit / 8).map_err(|_| ListError::OutOfRange(index))?;
        let byte = *self.bytes.get(byte).ok_or(ListError::OutOfRange(index))?;
        let shift = u32::try_from(bit % 8).map_err(|_| ListError::OutOfRange(index))?;
        let mask = u8::MAX >> (8 - self.bits);
        Ok(match (byte >> shift) & mask {
            0 => TokenStatus::Valid,
            1 => TokenStatus::Invalid,
            2 => TokenStatus::Suspended,
            other => TokenStatus::Other(other),
        })
    }
}

/// Reads entry `index` of a W3C Bitstring Status List `encodedList` (multibase `u` +
/// base64url of GZIP data), with `status_size` bits per entry; returns the entry's value.
pub fn bitstring_status(encoded_list: &str, index: u64, status_size: u8) -> Result<u8, ListError> {
    if !matches!(status_size, 1 | 2 | 4 | 8) {
        return Err(ListError::Bits);
    }
    let encoded = encoded_list.strip_prefix('u').ok_or(ListError::Encoding)?;
    let gzip = b64url_decode(encoded).ok_or(ListError::Encoding)?;
    let deflate = gzip_member_body(&gzip).ok_or(ListError::Compression)?;
    let bytes = decompress_to_vec_with_limit(deflate, MAX_LIST_BYTES).map_err(inflate_error)?;
    let entries = bytes.len() * 8 / usize::from(status_size);
    if entries < MIN_BITSTRING_ENTRIES {
        return Err(ListError::TooShort);
    }
    let size = u64::from(status_size);
    let bit = index.checked_mul(size).ok_or(ListError::OutOfRange(index))?;
    let byte = usize::try_from(bit / 8).map_err(|_| ListError::OutOfRange(index))?;
    let byte = *bytes.get(byte).ok_or(ListError::OutOfRange(index))?;
    // Index 0 is the left-most (most significant) bit of the first byte.
    let shift = 8 - u32::try_from(bit % 8).map_err(|_| ListError::OutOfRange(index))? - u32::from(status_size);
    let mask = u8::MAX >> (8 - status_size);
    Ok((byte >> shift) & mask)
}

/// The raw DEFLATE data of a single-member GZIP file (RFC 1952), skipping the optional
/// header fields; the trailer is left to the inflater's end-of-stream check.
fn gzip_member_body(gzip: &[u8]) -> Option<&[u8]> {
    const FTEXT_MASK: u8 = 0b1110_0000;
    let (&[0x1f, 0x8b, 8, flags], rest) = gzip.split_first_chunk::<4>()? else { return None };
    if flags & FTEXT_MASK != 0 {
        return None;
    }
    let mut rest = rest.get(6..)?; // mtime (4), xfl, os
    if flags & 0x04 != 0 {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        rest = tail.get(usize::from(u16::from_le_bytes(*len))..)?;
    }
    for flag in [0x08, 0x10] {
        if flags & flag != 0 {
            let end = rest.iter().position(|&b| b == 0)?;
            rest = rest.get(end + 1..)?;
        }
    }
    if flags & 0x02 != 0 {
        rest = rest.get(2..)?;
    }
    rest.get(..rest.len().checked_sub(8)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// draft-ietf-oauth-status-list, "Status List encoding": bytes `[0xb9, 0xa3]` with one bit
    /// per entry encode as `eNrbuRgAAhcBXQ`; entries 0..16 read 1,0,0,1,1,1,0,1,1,1,0,0,0,1,0,1.
    #[test]
    fn the_drafts_one_bit_example_reads_back() {
        let list = TokenStatusList::decode(1, "eNrbuRgAAhcBXQ").unwrap();
        assert_eq!(list.len(), 16);
        let expected = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1];
        for (i, want) in expected.iter().enumerate() {
            let got = list.get(i as u64).unwrap();
            let want = if *want == 1 { TokenStatus::Invalid } else { TokenStatus::Valid };
            assert_eq!(got, want, "index {i}");
        }
        assert_eq!(list.get(16), Err(ListError::OutOfRange(16)));
        assert_eq!(list.get(u64::MAX), Err(ListError::OutOfRange(u64::MAX)));
    }

    /// The draft's two-bit example: bytes `[0xc9, 0x44, 0xf9]` encode as `eNo76fITAAPfAgc`;
    /// entries 0..12 read 1,2,0,3,0,1,0,1,1,2,3,3.
    #[test]
    fn the_drafts_two_bit_example_reads_back() {
        let list = TokenStatusList::decode(2, "eNo76fITAAPfAgc").unwrap();
        let expected = [1u8, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
        for (i, want) in expected.iter().enumerate() {
            let got = match list.get(i as u64).unwrap() {
                TokenStatus::Valid => 0,
                TokenStatus::Invalid => 1,
                TokenStatus::Suspended => 2,
                TokenStatus::Other(v) => v,
            };
            assert_eq!(got, *want, "index {i}");
        }
    }

    #[test]
    fn bad_lists_are_refused() {
        assert_eq!(TokenStatusList::decode(3, "eNrbuRgAAhcBXQ"), Err(ListError::Bits));
        assert_eq!(TokenStatusList::decode(1, "not base64!"), Err(ListError::Encoding));
        assert_eq!(TokenStatusList::decode(1, "AAAA"), Err(ListError::Compression));
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        out.extend(miniz_oxide::deflate::compress_to_vec(bytes, 6));
        out.extend_from_slice(&[0; 8]); // CRC and size: not checked by the reader
        out
    }

    #[test]
    fn bitstring_lists_read_most_significant_bit_first() {
        let mut bits = vec![0u8; MIN_BITSTRING_ENTRIES / 8];
        bits[0] = 0b0100_0000; // index 1
        bits[2] = 0b0000_0001; // index 23
        let encoded = format!("u{}", crate::jose::b64url_encode(&gzip(&bits)));
        assert_eq!(bitstring_status(&encoded, 0, 1), Ok(0));
        assert_eq!(bitstring_status(&encoded, 1, 1), Ok(1));
        assert_eq!(bitstring_status(&encoded, 23, 1), Ok(1));
        assert_eq!(bitstring_status(&encoded, 24, 1), Ok(0));
        let last = MIN_BITSTRING_ENTRIES as u64;
        assert_eq!(bitstring_status(&encoded, last, 1), Err(ListError::OutOfRange(last)));
        assert_eq!(bitstring_status(&encoded, 0, 2), Err(ListError::TooShort), "65536 two-bit entries are too few");

        let mut wide = vec![0u8; MIN_BITSTRING_ENTRIES * 2 / 8];
        wide[0] = 0b0110_0000; // entry 0 = 0b01, entry 1 = 0b10
        let encoded = format!("u{}", crate::jose::b64url_encode(&gzip(&wide)));
        assert_eq!(bitstring_status(&encoded, 0, 2), Ok(1));
        assert_eq!(bitstring_status(&encoded, 1, 2), Ok(2));
        assert_eq!(bitstring_status(&encoded, 2, 2), Ok(0));
    }

    #[test]
    fn short_or_misencoded_bitstring_lists_are_refused() {
        let short = format!("u{}", crate::jose::b64url_encode(&gzip(&[0u8; 1024])));
        assert_eq!(bitstring_status(&short, 0, 1), Err(ListError::TooShort));
        assert_eq!(bitstring_status("zABC", 0, 1), Err(ListError::Encoding));
        assert_eq!(bitstring_status("uAAAA", 0, 1), Err(ListError::Compression));
    }
}
