//! Cache keys: a canonical encoding of the arguments, hashed with SHA-256.
//!
//! A key is `{key_prefix}{qualified name}:{64 lowercase hex}`, where the hex
//! digits are the SHA-256 of the *canonical argument encoding* below.
//!
//! # The canonical argument encoding (version 1)
//!
//! This encoding is a compatibility promise: the same arguments give the same
//! bytes in every process, on every machine and in every release that keeps
//! `KEY_ENCODING_VERSION` at 1. The test vectors in this module's tests pin it.
//!
//! The bytes are the version byte `0x01` followed by each non-ignored argument,
//! in declaration order, encoded as a *value*. Every value starts with a one-byte
//! type tag, and every variable-length part carries its length first, so
//! `("ab", "c")` and `("a", "bc")` never share bytes. Lengths and counts are
//! `u64` big-endian.
//!
//! | serde data model            | encoding                                                     |
//! |-----------------------------|--------------------------------------------------------------|
//! | `()`, unit struct, `None`   | `n`                                                          |
//! | `Some(v)`                   | `S` v                                                        |
//! | `bool`                      | `b` then `0x00` or `0x01`                                    |
//! | any integer                 | `i` then the value as 16-byte big-endian two's complement (`i128`); a `u128` above `i128::MAX` is `u` then 16-byte big-endian |
//! | `f32`, `f64`                | `d` then the `f64` bits, big-endian; `-0.0` is written as `0.0` and every NaN as the canonical NaN |
//! | `str`, `String`, `char`     | `s` len UTF-8 bytes                                          |
//! | bytes (`serialize_bytes`)   | `y` len bytes                                                |
//! | sequence, tuple, tuple struct | `l` count then each element                                |
//! | map                         | `m` count then each entry (key then value), entries sorted by their encoded bytes |
//! | struct                      | `r` count then each field as name (`s`...) and value, in declaration order |
//! | newtype struct              | the inner value (transparent)                                |
//! | enum: unit variant          | `e` name                                                     |
//! | enum: newtype variant       | `E` name value                                               |
//! | enum: tuple variant         | `T` name count values                                        |
//! | enum: struct variant        | `R` name count (field name, value)...                        |
//!
//! Integers share one tag, so changing a parameter from `u32` to `u64` keeps its
//! keys. Names (`name` above) are encoded as strings (`s` len bytes).
//!
//! **Order-independent collections.** Maps are always written with their entries
//! sorted, so a `HashMap` gives the same key whatever its iteration order. serde
//! serializes sets as plain sequences; a value whose type is
//! `std::collections::HashSet` (or `hashbrown::HashSet`), at any depth, has its
//! elements sorted by their encoded bytes as well. For other unordered
//! collections, use [`sorted_set`] as a `#[serde(serialize_with)]` helper, or a
//! `BTreeSet`.

use std::fmt;

use serde::ser::{self, Serialize};
use sha2::{Digest, Sha256};

/// The version of the canonical argument encoding, the first byte hashed.
///
/// ```
/// assert_eq!(redis_memo::key::KEY_ENCODING_VERSION, 1);
/// ```
pub const KEY_ENCODING_VERSION: u8 = 1;

/// Why arguments could not be encoded: a `Serialize` impl returned an error.
///
/// ```
/// struct Broken;
///
/// impl serde::Serialize for Broken {
///     fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
///         Err(serde::ser::Error::custom("cannot serialize Broken"))
///     }
/// }
///
/// let mut args = redis_memo::key::KeyBuilder::new();
/// args.arg(&Broken);
/// assert_eq!(args.digest_hex().unwrap_err().to_string(), "cannot serialize Broken");
/// ```
#[derive(Debug)]
pub struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl ser::Error for KeyError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        KeyError(msg.to_string())
    }
}

/// Encodes one value into the canonical encoding, appending to `out`.
///
/// ```
/// let mut out = Vec::new();
/// redis_memo::key::encode_value(&mut out, "ab").unwrap();
/// assert_eq!(out, b"s\0\0\0\0\0\0\0\x02ab");
/// ```
pub fn encode_value<T: ?Sized + Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), KeyError> {
    value.serialize(Encoder {
        out,
        sort_seq: is_unordered_set::<T>(),
    })
}

/// Serializes a set in canonical order: elements sorted by their canonical
/// encoding. Use it for set types this crate does not recognise on its own:
///
/// ```
/// use std::collections::HashSet;
///
/// #[derive(serde::Serialize)]
/// struct Filter {
///     #[serde(serialize_with = "redis_memo::key::sorted_set")]
///     tags: HashSet<String>,
/// }
/// # let _ = Filter { tags: HashSet::new() };
/// ```
///
/// With any other serializer (JSON, ...) the elements come out in the same
/// canonical order.
pub fn sorted_set<'a, I, T, S>(set: I, serializer: S) -> Result<S::Ok, S::Error>
where
    I: IntoIterator<Item = &'a T>,
    T: Serialize + 'a,
    S: ser::Serializer,
{
    let mut items: Vec<(Vec<u8>, &T)> = Vec::new();
    for item in set {
        let mut bytes = Vec::new();
        encode_value(&mut bytes, item).map_err(ser::Error::custom)?;
        items.push((bytes, item));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    serializer.collect_seq(items.into_iter().map(|(_, item)| item))
}

/// Whether `T` (through references) is a hash set, whose iteration order is not
/// part of its value.
fn is_unordered_set<T: ?Sized>() -> bool {
    let mut name = std::any::type_name::<T>();
    loop {
        if let Some(rest) = name.strip_prefix("&mut ") {
            name = rest;
        } else if let Some(rest) = name.strip_prefix('&') {
            name = rest;
        } else {
            break;
        }
    }
    name.starts_with("std::collections::hash::set::HashSet<")
        || name.starts_with("hashbrown::set::HashSet<")
}

/// Accumulates the canonical encoding of a call's arguments and turns it into a key.
///
/// Generated code creates one per call, feeds it every non-ignored argument with
/// [`arg`](Self::arg), and finishes it into the key string.
///
/// ```
/// use redis_memo::key::{FnName, KeyBuilder};
///
/// let mut args = KeyBuilder::new();
/// args.arg(&42u64).arg("alice");
/// assert_eq!(args.encoded()[0], 1, "the encoding version comes first");
/// let name = FnName::Free { module: "my_app::users", function: "profile" };
/// let key = args.finish("users:", &name).unwrap();
/// assert_eq!(key, format!("users:my_app::users::profile:{}", args.digest_hex().unwrap()));
/// ```
#[derive(Debug)]
pub struct KeyBuilder {
    buf: Vec<u8>,
    error: Option<KeyError>,
}

impl Default for KeyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyBuilder {
    /// An empty argument list.
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.push(KEY_ENCODING_VERSION);
        KeyBuilder { buf, error: None }
    }

    /// Appends one argument.
    pub fn arg<T: ?Sized + Serialize>(&mut self, value: &T) -> &mut Self {
        if self.error.is_none()
            && let Err(err) = encode_value(&mut self.buf, value)
        {
            self.error = Some(err);
        }
        self
    }

    /// The canonical bytes so far (version byte included).
    pub fn encoded(&self) -> &[u8] {
        &self.buf
    }

    /// The 64 lowercase hex digits of the SHA-256 of the encoded arguments.
    pub fn digest_hex(&self) -> Result<String, KeyError> {
        let mut out = String::with_capacity(64);
        self.push_digest(&mut out)?;
        Ok(out)
    }

    fn push_digest(&self, out: &mut String) -> Result<(), KeyError> {
        if let Some(err) = &self.error {
            return Err(KeyError(err.0.clone()));
        }
        let digest: [u8; 32] = Sha256::digest(&self.buf).into();
        let mut hex = [[0u8; 2]; 32];
        for (pair, byte) in hex.iter_mut().zip(digest) {
            *pair = HEX_PAIRS[usize::from(byte)];
        }
        // Always ASCII; the check is a few nanoseconds.
        let hex = std::str::from_utf8(hex.as_flattened()).map_err(|e| KeyError(e.to_string()))?;
        out.push_str(hex);
        Ok(())
    }

    /// The full key: `{prefix}{name}:{hex}`, built in one buffer.
    pub fn finish(&self, prefix: &str, name: &FnName<'_>) -> Result<String, KeyError> {
        self.finish_versioned(prefix, name, None)
    }

    /// The full key with an optional version: `{prefix}{name}:v{version}:{hex}`.
    pub fn finish_versioned(
        &self,
        prefix: &str,
        name: &FnName<'_>,
        version: Option<u32>,
    ) -> Result<String, KeyError> {
        let mut key = String::with_capacity(prefix.len() + name.len_hint() + 80);
        key.push_str(prefix);
        self.push_tail(&mut key, name, version)?;
        Ok(key)
    }

    /// `{name}[:v{version}]:{hex}`: everything after the prefix.
    pub(crate) fn push_tail(
        &self,
        out: &mut String,
        name: &FnName<'_>,
        version: Option<u32>,
    ) -> Result<(), KeyError> {
        name.write_to(out);
        if let Some(version) = version {
            out.push_str(":v");
            out.push_str(&version.to_string());
        }
        out.push(':');
        self.push_digest(out)
    }
}

/// The two lowercase hex digits of every byte: one lookup per digest byte
/// (this runs on every call).
static HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0xf]];
        byte += 1;
    }
    pairs
};

/// The qualified name of a cached function, the middle part of its keys.
///
/// ```
/// use redis_memo::key::FnName;
///
/// let method = FnName::Method { module: "app", self_type: "app::db::Repo<app::User>", function: "get" };
/// assert_eq!(method.to_string(), "app::Repo<app::User>::get");
/// assert_eq!(FnName::Custom("users::get").to_string(), "users::get");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FnName<'a> {
    /// A free function: `module::path::function`.
    Free {
        /// `module_path!()` where the function is defined.
        module: &'a str,
        /// The function's name.
        function: &'a str,
    },
    /// A method: `module::path::Type::method`, where `Type` is the `Self` type
    /// without its module path (generic arguments kept, so `Repo<User>` and
    /// `Repo<Order>` differ).
    Method {
        /// `module_path!()` where the `impl` block is.
        module: &'a str,
        /// `std::any::type_name::<Self>()`.
        self_type: &'a str,
        /// The method's name.
        function: &'a str,
    },
    /// A name given with `name = "..."`, used as it is.
    Custom(&'a str),
}

impl FnName<'_> {
    fn len_hint(&self) -> usize {
        match self {
            FnName::Free { module, function } => module.len() + 2 + function.len(),
            FnName::Method {
                module,
                self_type,
                function,
            } => module.len() + self_type.len() + 4 + function.len(),
            FnName::Custom(name) => name.len(),
        }
    }

    /// Appends the qualified name to `out`.
    pub fn write_to(&self, out: &mut String) {
        match self {
            FnName::Free { module, function } => {
                out.push_str(module);
                out.push_str("::");
                out.push_str(function);
            }
            FnName::Method {
                module,
                self_type,
                function,
            } => {
                out.push_str(module);
                out.push_str("::");
                out.push_str(short_type_name(self_type));
                out.push_str("::");
                out.push_str(function);
            }
            FnName::Custom(name) => out.push_str(name),
        }
    }
}

impl fmt::Display for FnName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(self.len_hint());
        self.write_to(&mut s);
        f.write_str(&s)
    }
}

/// `app::models::Repo<app::User>` -> `Repo<app::User>`: drops the module path of
/// the outer type, keeps its generic arguments.
fn short_type_name(full: &str) -> &str {
    let head_end = full.find('<').unwrap_or(full.len());
    let start = full[..head_end].rfind("::").map_or(0, |i| i + 2);
    &full[start..]
}

// --- the serde serializer that writes the encoding -------------------------------

const TAG_NONE: u8 = b'n';
const TAG_SOME: u8 = b'S';
const TAG_BOOL: u8 = b'b';
const TAG_INT: u8 = b'i';
const TAG_BIG_UINT: u8 = b'u';
const TAG_FLOAT: u8 = b'd';
const TAG_STR: u8 = b's';
const TAG_BYTES: u8 = b'y';
const TAG_SEQ: u8 = b'l';
const TAG_MAP: u8 = b'm';
const TAG_STRUCT: u8 = b'r';
const TAG_UNIT_VARIANT: u8 = b'e';
const TAG_NEWTYPE_VARIANT: u8 = b'E';
const TAG_TUPLE_VARIANT: u8 = b'T';
const TAG_STRUCT_VARIANT: u8 = b'R';

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u64).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.push(TAG_STR);
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_int(out: &mut Vec<u8>, v: i128) {
    out.push(TAG_INT);
    out.extend_from_slice(&v.to_be_bytes());
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    /// The next sequence is a set: sort its elements.
    sort_seq: bool,
}

/// A sequence, map, struct or variant being written: elements go straight to
/// `out`, or into `items` when they must be sorted first.
struct Compound<'a> {
    out: &'a mut Vec<u8>,
    count_at: usize,
    count: u64,
    items: Option<Vec<Vec<u8>>>,
}

impl<'a> Compound<'a> {
    fn begin(out: &'a mut Vec<u8>, tag: u8, name: Option<&str>, sorted: bool) -> Self {
        out.push(tag);
        if let Some(name) = name {
            put_str(out, name);
        }
        let count_at = out.len();
        out.extend_from_slice(&0u64.to_be_bytes());
        Compound {
            out,
            count_at,
            count: 0,
            items: sorted.then(Vec::new),
        }
    }

    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), KeyError> {
        self.count += 1;
        match &mut self.items {
            Some(items) => {
                let mut buf = Vec::new();
                encode_value(&mut buf, value)?;
                items.push(buf);
                Ok(())
            }
            None => encode_value(self.out, value),
        }
    }

    fn field<T: ?Sized + Serialize>(&mut self, name: &str, value: &T) -> Result<(), KeyError> {
        self.count += 1;
        put_str(self.out, name);
        encode_value(self.out, value)
    }

    fn end(self) -> Result<(), KeyError> {
        self.out[self.count_at..self.count_at + 8].copy_from_slice(&self.count.to_be_bytes());
        if let Some(mut items) = self.items {
            items.sort_unstable();
            for item in items {
                self.out.extend_from_slice(&item);
            }
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for Encoder<'a> {
    type Ok = ();
    type Error = KeyError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), KeyError> {
        self.out.push(TAG_BOOL);
        self.out.push(u8::from(v));
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), KeyError> {
        self.serialize_i128(v.into())
    }

    fn serialize_i16(self, v: i16) -> Result<(), KeyError> {
        self.serialize_i128(v.into())
    }

    fn serialize_i32(self, v: i32) -> Result<(), KeyError> {
        self.serialize_i128(v.into())
    }

    fn serialize_i64(self, v: i64) -> Result<(), KeyError> {
        self.serialize_i128(v.into())
    }

    fn serialize_i128(self, v: i128) -> Result<(), KeyError> {
        put_int(self.out, v);
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), KeyError> {
        self.serialize_i128(v.into())
    }

    fn serialize_u16(self, v: u16) -> Result<(), KeyError> {
        self.serialize_i128(v.into())
    }

    fn serialize_u32(self, v: u32) -> Result<(), KeyError> {
        self.serialize_i128(v.into())
    }

    fn serialize_u64(self, v: u64) -> Result<(), KeyError> {
        self.serialize_i128(v.into())
    }

    fn serialize_u128(self, v: u128) -> Result<(), KeyError> {
        match i128::try_from(v) {
            Ok(v) => put_int(self.out, v),
            Err(_) => {
                self.out.push(TAG_BIG_UINT);
                self.out.extend_from_slice(&v.to_be_bytes());
            }
        }
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), KeyError> {
        self.serialize_f64(v.into())
    }

    fn serialize_f64(self, v: f64) -> Result<(), KeyError> {
        let v = if v.is_nan() {
            f64::NAN
        } else if v == 0.0 {
            0.0
        } else {
            v
        };
        self.out.push(TAG_FLOAT);
        self.out.extend_from_slice(&v.to_bits().to_be_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), KeyError> {
        put_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), KeyError> {
        put_str(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), KeyError> {
        self.out.push(TAG_BYTES);
        put_len(self.out, v.len());
        self.out.extend_from_slice(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), KeyError> {
        self.out.push(TAG_NONE);
        Ok(())
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), KeyError> {
        self.out.push(TAG_SOME);
        encode_value(self.out, value)
    }

    fn serialize_unit(self) -> Result<(), KeyError> {
        self.serialize_none()
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), KeyError> {
        self.serialize_none()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), KeyError> {
        self.out.push(TAG_UNIT_VARIANT);
        put_str(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        encode_value(self.out, value)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        self.out.push(TAG_NEWTYPE_VARIANT);
        put_str(self.out, variant);
        encode_value(self.out, value)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, KeyError> {
        Ok(Compound::begin(self.out, TAG_SEQ, None, self.sort_seq))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, KeyError> {
        Ok(Compound::begin(self.out, TAG_SEQ, None, false))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, KeyError> {
        Ok(Compound::begin(self.out, TAG_SEQ, None, false))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, KeyError> {
        Ok(Compound::begin(
            self.out,
            TAG_TUPLE_VARIANT,
            Some(variant),
            false,
        ))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, KeyError> {
        Ok(Compound::begin(self.out, TAG_MAP, None, true))
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'a>, KeyError> {
        Ok(Compound::begin(self.out, TAG_STRUCT, None, false))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, KeyError> {
        Ok(Compound::begin(
            self.out,
            TAG_STRUCT_VARIANT,
            Some(variant),
            false,
        ))
    }
}

/// The compound serializers whose elements are plain values, in order.
macro_rules! elements {
    ($($trait:ident :: $method:ident),* $(,)?) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = KeyError;

            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), KeyError> {
                self.element(value)
            }

            fn end(self) -> Result<(), KeyError> {
                Compound::end(self)
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

/// The compound serializers whose elements are named fields.
macro_rules! fields {
    ($($trait:ident),* $(,)?) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = KeyError;

            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), KeyError> {
                self.field(key, value)
            }

            fn end(self) -> Result<(), KeyError> {
                Compound::end(self)
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = KeyError;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), KeyError> {
        // A map entry is sorted as a whole: key and value go into one buffer.
        self.count += 1;
        let mut entry = Vec::new();
        encode_value(&mut entry, key)?;
        self.items.get_or_insert_with(Vec::new).push(entry);
        Ok(())
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), KeyError> {
        match self.items.as_mut().and_then(|items| items.last_mut()) {
            Some(entry) => encode_value(entry, value),
            None => Err(KeyError("map value serialized before its key".into())),
        }
    }

    fn end(self) -> Result<(), KeyError> {
        Compound::end(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap, HashSet};

    fn args<T: Serialize>(value: T) -> Vec<u8> {
        let mut kb = KeyBuilder::new();
        kb.arg(&value);
        kb.encoded().to_vec()
    }

    fn digest(kb: &KeyBuilder) -> String {
        kb.digest_hex().unwrap()
    }

    #[test]
    fn the_digest_is_the_lowercase_hex_sha256_of_the_encoded_arguments() {
        let mut kb = KeyBuilder::new();
        kb.arg(&42u64).arg("alice").arg(&[0xffu8, 0x00]);
        let expected: String = Sha256::digest(kb.encoded())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(digest(&kb), expected);
        // Fixed: no arguments, only the encoding version byte 0x01.
        assert_eq!(
            digest(&KeyBuilder::new()),
            "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a"
        );
    }

    /// The encoding is a compatibility promise: these bytes and digests must never change.
    #[test]
    fn test_vectors_pin_the_encoding() {
        assert_eq!(args(5u64), b"\x01i\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x05");
        assert_eq!(
            args(-1i8),
            b"\x01i\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
        );
        assert_eq!(args("ab"), b"\x01s\0\0\0\0\0\0\0\x02ab");
        assert_eq!(args(true), b"\x01b\x01");
        assert_eq!(args(None::<u8>), b"\x01n");
        assert_eq!(args(Some(())), b"\x01Sn");
        assert_eq!(
            args(vec![1u8]),
            b"\x01l\0\0\0\0\0\0\0\x01i\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"
        );
        assert_eq!(args(1.5f64), b"\x01d\x3f\xf8\0\0\0\0\0\0");

        let mut kb = KeyBuilder::new();
        kb.arg(&42u64).arg("alice");
        assert_eq!(
            digest(&kb),
            "b371f7801f32981e65c8a4fc2d5f50d857afc05acb5c1313fab9ed4ce2457e09"
        );
        let mut kb = KeyBuilder::new();
        kb.arg(&HashMap::from([("b", 2u8), ("a", 1u8)]));
        assert_eq!(
            digest(&kb),
            "71ae9534327c58328107c9dfa02017d33f52387acbeb0a3292753831b673539f"
        );
        assert_eq!(
            digest(&KeyBuilder::new()),
            "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a"
        );
    }

    #[test]
    fn adjacent_strings_do_not_collide() {
        let mut a = KeyBuilder::new();
        a.arg("ab").arg("c");
        let mut b = KeyBuilder::new();
        b.arg("a").arg("bc");
        assert_ne!(a.encoded(), b.encoded());
        assert_ne!(digest(&a), digest(&b));
    }

    #[test]
    fn maps_and_sets_ignore_iteration_order() {
        let forward: HashMap<String, u32> = (0..200).map(|i| (format!("k{i}"), i)).collect();
        let backward: HashMap<String, u32> = (0..200).rev().map(|i| (format!("k{i}"), i)).collect();
        let sorted: BTreeMap<String, u32> = (0..200).map(|i| (format!("k{i}"), i)).collect();
        assert_eq!(args(&forward), args(&backward));
        assert_eq!(args(&forward), args(&sorted));

        let s1: HashSet<u32> = (0..500).collect();
        let s2: HashSet<u32> = (0..500).rev().collect();
        assert_eq!(args(&s1), args(&s2));
        assert_eq!(args(vec![s1.clone()]), args(vec![s2.clone()]));
        // A Vec keeps its order: [1, 2] and [2, 1] differ.
        assert_ne!(args(vec![1, 2]), args(vec![2, 1]));
    }

    #[test]
    fn integer_widths_share_a_tag_but_types_do_not() {
        assert_eq!(args(7u8), args(7i64));
        assert_eq!(args(u128::MAX).len(), 18);
        assert_ne!(args(1u8), args(true));
        assert_ne!(args("1"), args(1));
        assert_ne!(args(Some(1)), args(1));
        assert_eq!(args(0.0f64), args(-0.0f64));
        assert_eq!(args(f64::NAN), args(-f64::NAN));
    }

    #[test]
    fn method_names_drop_the_type_path_but_keep_generics() {
        let name = FnName::Method {
            module: "app::repo",
            self_type: "app::models::Repo<app::models::User>",
            function: "get",
        };
        assert_eq!(name.to_string(), "app::repo::Repo<app::models::User>::get");
        let kb = KeyBuilder::new();
        let key = kb.finish("users:", &name).unwrap();
        assert!(key.starts_with("users:app::repo::Repo<app::models::User>::get:"));
        assert_eq!(
            key.len(),
            "users:app::repo::Repo<app::models::User>::get:".len() + 64
        );
    }
}
