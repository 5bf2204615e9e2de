//! Value encoding: JSON by default, readable with `redis-cli GET`.
//!
//! A plain JSON value is stored as it is. Any other stored form starts with a
//! three-byte header that a JSON text can never start with:
//!
//! ```text
//! 0x00  codec  compression  payload
//!       'j' JSON            '-' none
//!       'm' MessagePack     'l' LZ4 (size-prepended block)
//!       'p' postcard
//! ```
//!
//! A value is decoded only by the codec that wrote it: a value written by
//! another codec (or compressed without the `lz4` feature here) is reported as
//! undecodable, which the get-or-run path treats as a miss and overwrites.
//!
//! The values of functions with `stale`, `fail_safe` or `soft_timeout` say
//! when they stop being fresh, so that a read needs nothing but the value
//! (no `PTTL`). They are enveloped:
//!
//! ```text
//! 0x00 '~' 0x01  fresh_until  retry_after  the value's stored form (above)
//!                u64 BE, ms since the Unix epoch; retry_after 0: none
//! ```
//!
//! `fresh_until` is when the value's `ttl` ends; `retry_after`, when set, is
//! until when the function is not run again for the key after its body
//! failed (`fail_safe_throttle`). Every reader unwraps an envelope, so a plain
//! function sharing such a key reads its value; `~` is no codec, so an older
//! release sees an undecodable value, a miss. The times are wall-clock times:
//! processes whose clocks differ by a second see a value stale a second
//! apart.

use serde::{Serialize, de::DeserializeOwned};

use crate::error::Error;

/// How cached values are encoded. Choose one per cache
/// ([`CacheBuilder::codec`](crate::CacheBuilder::codec)) or per function
/// (`#[cached(codec = redis_memo::Codec::MessagePack)]`).
///
/// ```
/// let cache = redis_memo::Cache::builder().codec(redis_memo::Codec::Json);
/// # let _ = cache;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// JSON (serde_json), stored as plain text. The default.
    #[default]
    Json,
    /// MessagePack (rmp-serde), structs as maps: compact and tolerant of field
    /// reordering.
    #[cfg(feature = "msgpack")]
    #[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
    MessagePack,
    /// postcard: the most compact, but not self-describing (no
    /// `#[serde(untagged)]` or `#[serde(flatten)]` in the value type).
    #[cfg(feature = "postcard")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postcard")))]
    Postcard,
}

impl Codec {
    fn tag(self) -> u8 {
        match self {
            Codec::Json => b'j',
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => b'm',
            #[cfg(feature = "postcard")]
            Codec::Postcard => b'p',
        }
    }

    fn serialize<T: ?Sized + Serialize>(self, value: &T) -> Result<Vec<u8>, Error> {
        match self {
            Codec::Json => serde_json::to_vec(value).map_err(|e| Error::Encode(e.into())),
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => {
                rmp_serde::to_vec_named(value).map_err(|e| Error::Encode(e.into()))
            }
            #[cfg(feature = "postcard")]
            Codec::Postcard => postcard::to_allocvec(value).map_err(|e| Error::Encode(e.into())),
        }
    }

    fn deserialize<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, Error> {
        match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| Error::Decode(e.into())),
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => rmp_serde::from_slice(bytes).map_err(|e| Error::Decode(e.into())),
            #[cfg(feature = "postcard")]
            Codec::Postcard => match postcard::take_from_bytes(bytes) {
                Ok((value, [])) => Ok(value),
                Ok(_) => Err(Error::Decode("trailing bytes after the value".into())),
                Err(e) => Err(Error::Decode(e.into())),
            },
        }
    }
}

/// The times an enveloped value carries (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    /// When the value's `ttl` ends, in ms since the Unix epoch.
    pub(crate) fresh_until: u64,
    /// Until when the function is not run again for the key (after a
    /// failure), in ms since the Unix epoch; 0: no such wait.
    pub(crate) retry_after: u64,
}

const ENVELOPE: u8 = b'~';
const ENVELOPE_VERSION: u8 = 1;
const ENVELOPE_HEAD: usize = 3 + 8 + 8;

/// The times and the stored form inside an envelope; `None` for anything
/// else.
pub(crate) fn unwrap(bytes: &[u8]) -> Option<(Times, &[u8])> {
    let [FRAMED, ENVELOPE, ENVELOPE_VERSION, rest @ ..] = bytes else {
        return None;
    };
    let (fresh_until, rest) = rest.split_first_chunk::<8>()?;
    let (retry_after, inner) = rest.split_first_chunk::<8>()?;
    let times = Times {
        fresh_until: u64::from_be_bytes(*fresh_until),
        retry_after: u64::from_be_bytes(*retry_after),
    };
    Some((times, inner))
}

/// `inner` (a stored form) in an envelope with `times`.
pub(crate) fn wrap(times: Times, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENVELOPE_HEAD + inner.len());
    out.extend_from_slice(&[FRAMED, ENVELOPE, ENVELOPE_VERSION]);
    out.extend_from_slice(&times.fresh_until.to_be_bytes());
    out.extend_from_slice(&times.retry_after.to_be_bytes());
    out.extend_from_slice(inner);
    out
}

/// Now, in ms since the Unix epoch (the clock enveloped times are in).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How a cache stores values: the codec, and the size above which values are
/// compressed (with the `lz4` feature).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Format {
    pub(crate) codec: Codec,
    pub(crate) compress_above: Option<usize>,
}

const FRAMED: u8 = 0;
const NOT_COMPRESSED: u8 = b'-';
#[cfg(feature = "lz4")]
const LZ4: u8 = b'l';

impl Format {
    /// Encodes a value for storage. Only the serialization depends on `T`;
    /// framing and compression are shared by every type. Not inlined: one
    /// copy per value type, however many functions return it.
    #[inline(never)]
    pub(crate) fn encode<T: ?Sized + Serialize>(self, value: &T) -> Result<Vec<u8>, Error> {
        let payload = self.codec.serialize(value)?;
        Ok(self.frame(payload))
    }

    /// Encodes a value that must decode back into its type. JSON writes a
    /// NaN or infinite float as `null`, which the type then rejects: such a
    /// value is an error here, not a stored value that never decodes. Only
    /// encodings with a `null` are decoded again to check.
    pub(crate) fn encode_round_trip<T: Serialize + DeserializeOwned>(
        self,
        value: &T,
    ) -> Result<Vec<u8>, Error> {
        let bytes = self.encode(value)?;
        if self.codec == Codec::Json
            && bytes.windows(4).any(|w| w == b"null")
            && let Err(err) = self.decode::<T>(&bytes)
        {
            return Err(Error::Encode(
                format!("the value does not decode back ({err}): a NaN or infinite float?").into(),
            ));
        }
        Ok(bytes)
    }

    /// The stored form of a serialized payload: plain JSON, or the header
    /// and the (maybe compressed) payload.
    fn frame(self, payload: Vec<u8>) -> Vec<u8> {
        #[cfg(feature = "lz4")]
        if self
            .compress_above
            .is_some_and(|limit| payload.len() > limit)
        {
            let mut out = vec![FRAMED, self.codec.tag(), LZ4];
            out.extend_from_slice(&lz4_flex::compress_prepend_size(&payload));
            return out;
        }
        if self.codec == Codec::Json {
            return payload;
        }
        let mut out = Vec::with_capacity(payload.len() + 3);
        out.extend_from_slice(&[FRAMED, self.codec.tag(), NOT_COMPRESSED]);
        out.extend_from_slice(&payload);
        out
    }

    /// Decodes a stored value written with this format's codec. Not inlined,
    /// like [`encode`](Self::encode).
    #[inline(never)]
    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, Error> {
        let bytes = unwrap(bytes).map_or(bytes, |(_, inner)| inner);
        let payload = self.unframe(bytes)?;
        self.codec.deserialize(&payload)
    }

    /// The serialized payload of a stored value, checked to be this codec's.
    fn unframe(self, bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
        let [FRAMED, codec, compression, payload @ ..] = bytes else {
            return match self.codec {
                Codec::Json => Ok(bytes.into()),
                #[allow(unreachable_patterns)] // only Json without the codec features
                _ => Err(Error::Decode(
                    "a JSON value, not written by this codec".into(),
                )),
            };
        };
        if *codec != self.codec.tag() {
            return Err(Error::Decode(
                format!("written by another codec (tag {:?})", char::from(*codec)).into(),
            ));
        }
        match *compression {
            NOT_COMPRESSED => Ok(payload.into()),
            #[cfg(feature = "lz4")]
            LZ4 => lz4_flex::decompress_size_prepended(payload)
                .map(Into::into)
                .map_err(|e| Error::Decode(e.into())),
            other => Err(Error::Decode(
                format!("unknown compression {:?}", char::from(other)).into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formats() -> Vec<Format> {
        let mut codecs = vec![Codec::Json];
        #[cfg(feature = "msgpack")]
        codecs.push(Codec::MessagePack);
        #[cfg(feature = "postcard")]
        codecs.push(Codec::Postcard);
        let mut formats = Vec::new();
        for codec in codecs {
            formats.push(Format {
                codec,
                compress_above: None,
            });
            formats.push(Format {
                codec,
                compress_above: Some(8),
            });
        }
        formats
    }

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
            b"\x00",
            b"\x00m",
            b"\x00j-",
            b"\x00jl\xff\xff\xff\xff",
            b"\x00jz{}",
        ];
        for format in formats() {
            for bytes in corpus {
                assert!(
                    format.decode::<(u64, String)>(bytes).is_err(),
                    "{format:?} {bytes:?}"
                );
            }
        }
    }

    #[test]
    fn every_format_round_trips_and_json_stays_plain() {
        let value = (7u64, "x".repeat(100), vec![1.5f64, -2.0]);
        for format in formats() {
            let bytes = format.encode(&value).unwrap();
            let back: (u64, String, Vec<f64>) = format.decode(&bytes).unwrap();
            assert_eq!(back, value, "{format:?}");
        }
        let plain = Format::default().encode(&value).unwrap();
        assert_eq!(plain[0], b'[', "JSON is stored as plain JSON");
    }

    #[test]
    fn an_enveloped_value_round_trips_and_is_read_by_every_reader() {
        let times = Times {
            fresh_until: 1_700_000_000_000,
            retry_after: 7,
        };
        for format in formats() {
            let inner = format.encode(&vec![1u32, 2]).unwrap();
            let wrapped = wrap(times, &inner);
            assert_eq!(unwrap(&wrapped), Some((times, &inner[..])));
            assert_eq!(format.decode::<Vec<u32>>(&wrapped).unwrap(), vec![1, 2]);
        }
        // Cut short, it is nothing a codec reads.
        let short = &wrap(times, b"1")[..10];
        assert_eq!(unwrap(short), None);
        assert!(Format::default().decode::<u32>(short).is_err());
    }

    #[test]
    fn a_value_is_never_read_by_another_codec() {
        let value = vec![1u32, 2, 3];
        for writer in formats() {
            let bytes = writer.encode(&value).unwrap();
            for reader in formats() {
                let read = reader.decode::<Vec<u32>>(&bytes);
                if reader.codec == writer.codec {
                    assert_eq!(read.unwrap(), value);
                } else {
                    assert!(read.is_err(), "{writer:?} read by {reader:?}");
                }
            }
        }
    }
}
