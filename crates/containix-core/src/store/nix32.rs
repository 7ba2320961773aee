//! Nix's base-32 encoding ("nix32"), used for store path hash parts and NAR hashes.
//!
//! It is not RFC 4648 base32: the alphabet omits `e`, `o`, `u` and `t`, and the digits are emitted
//! from the most significant 5-bit group of a little-endian bit string first.

use thiserror::Error;

/// The 32 characters of the nix32 alphabet, in digit order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Why a string is not valid nix32 for the expected digest size.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Nix32Error {
    /// The string has the wrong number of characters for the digest size.
    #[error("nix32 string has {actual} characters, expected {expected} for a {bytes}-byte digest")]
    Length {
        /// Characters found.
        actual: usize,
        /// Characters a digest of `bytes` bytes encodes to.
        expected: usize,
        /// The digest size asked for.
        bytes: usize,
    },
    /// A character outside the nix32 alphabet.
    #[error("nix32 string has {character:?} at position {position}, expected one of {alphabet}", alphabet = std::str::from_utf8(ALPHABET).unwrap_or_default())]
    Character {
        /// The offending character.
        character: char,
        /// Its byte position in the string.
        position: usize,
    },
    /// The string encodes bits beyond the digest size (only possible in its first character).
    #[error("nix32 string encodes more than {bytes} bytes")]
    Overflow {
        /// The digest size asked for.
        bytes: usize,
    },
}

/// Number of nix32 characters that encode a digest of `bytes` bytes.
pub const fn encoded_len(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        (bytes * 8 - 1) / 5 + 1
    }
}

/// Encodes bytes as nix32.
pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        let low = bytes[i] >> j;
        let high = match bytes.get(i + 1) {
            Some(next) if j > 0 => next << (8 - j),
            _ => 0,
        };
        out.push(ALPHABET[usize::from((low | high) & 0x1f)] as char);
    }
    out
}

/// Decodes a nix32 string into exactly `bytes` bytes.
pub fn decode(text: &str, bytes: usize) -> Result<Vec<u8>, Nix32Error> {
    let expected = encoded_len(bytes);
    if text.len() != expected {
        return Err(Nix32Error::Length {
            actual: text.chars().count(),
            expected,
            bytes,
        });
    }
    let mut out = vec![0u8; bytes];
    for (n, (position, character)) in text.char_indices().rev().enumerate() {
        let digit = digit_of(character).ok_or(Nix32Error::Character {
            character,
            position,
        })?;
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        out[i] |= digit << j;
        let carry = if j > 0 { digit >> (8 - j) } else { 0 };
        if i + 1 < bytes {
            out[i + 1] |= carry;
        } else if carry != 0 {
            return Err(Nix32Error::Overflow { bytes });
        }
    }
    Ok(out)
}

/// Whether `byte` is a character of the nix32 alphabet.
pub const fn is_nix32_char(byte: u8) -> bool {
    matches!(byte, b'0'..=b'9' | b'a'..=b'z') && !matches!(byte, b'e' | b'o' | b'u' | b't')
}

fn digit_of(character: char) -> Option<u8> {
    let byte = u8::try_from(character).ok()?;
    ALPHABET
        .iter()
        .position(|&c| c == byte)
        .map(|digit| digit as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        // sha256("") as Nix prints it (`nix hash to-base32` of the empty-string digest).
        let digest = hex_bytes("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(
            encode(&digest),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
        assert_eq!(encode(&[0u8; 20]), "00000000000000000000000000000000");
        assert_eq!(encode(&[0xff; 20]), "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
        assert_eq!(encode(&[]), "");
    }

    #[test]
    fn lengths() {
        assert_eq!(encoded_len(20), 32);
        assert_eq!(encoded_len(32), 52);
        assert_eq!(encoded_len(64), 103);
    }

    #[test]
    fn rejects_bad_input() {
        let err = decode("0000000000000000000000000000000e", 20).unwrap_err();
        assert_eq!(
            err,
            Nix32Error::Character {
                character: 'e',
                position: 31
            }
        );
        assert!(err.to_string().contains("'e' at position 31"));
        assert!(matches!(
            decode("000", 20),
            Err(Nix32Error::Length {
                actual: 3,
                expected: 32,
                ..
            })
        ));
        // 52 characters carry 260 bits; a 32-byte digest has 256, so the top digit must be < 16.
        let too_big = format!("z{}", "0".repeat(51));
        assert_eq!(
            decode(&too_big, 32),
            Err(Nix32Error::Overflow { bytes: 32 })
        );
        assert!(matches!(
            decode(&"é".repeat(16), 20),
            Err(Nix32Error::Character {
                character: 'é', ..
            })
        ));
    }

    #[test]
    fn alphabet_predicate_matches_table() {
        for byte in 0..=255u8 {
            assert_eq!(is_nix32_char(byte), ALPHABET.contains(&byte), "{byte}");
        }
    }

    fn hex_bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    proptest! {
        #[test]
        fn round_trips_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let text = encode(&bytes);
            prop_assert_eq!(text.len(), encoded_len(bytes.len()));
            prop_assert_eq!(decode(&text, bytes.len()).unwrap(), bytes);
        }

        #[test]
        fn round_trips_store_hash_parts(text in "[0-9a-df-np-sv-z]{32}") {
            let bytes = decode(&text, 20).unwrap();
            prop_assert_eq!(encode(&bytes), text);
        }
    }
}
