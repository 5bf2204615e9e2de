//! Value encoding: JSON, readable with `redis-cli GET`.
//!
//! A stored value that does not decode into the function's return type (corrupt,
//! truncated, or written by an older version of the type) is reported as an
//! [`Error::Decode`]; the get-or-run path treats it as a miss and overwrites it.

use serde::{Serialize, de::DeserializeOwned};

use crate::Error;

/// Encodes a value for storage.
pub(crate) fn encode<T: ?Sized + Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(Error::Encode)
}

/// Decodes a stored value. Trailing bytes after the JSON value are an error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(Error::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let corpus: &[&[u8]] = &[
            b"",
            b"{\"id\":1,\"na",
            b"\xff\xfe\x00garbage",
            b"[1,2,3]",
            b"\"a string\"",
            b"null",
            b"{\"id\":1} trailing",
        ];
        for bytes in corpus {
            assert!(decode::<(u64, String)>(bytes).is_err(), "{bytes:?}");
        }
        let v: (u64, String) = decode(&encode(&(1u64, "x")).unwrap()).unwrap();
        assert_eq!(v, (1, "x".to_string()));
    }
}
