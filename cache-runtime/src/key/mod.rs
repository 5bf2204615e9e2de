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

mod encoding;
mod slot;

use std::fmt;

use serde::ser::{self, Serialize};
use sha2::{Digest, Sha256};

pub use encoding::{encode_value, sorted_set};
pub(crate) use slot::{has_hash_tag, slot as key_slot, with_suffix_in_slot};

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
#[derive(Debug, Clone)]
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

/// What can be part of a cache key: every `serde::Serialize` type.
///
/// It exists for its compile errors: a parameter of a `#[cached]` function
/// that is not `Serialize` (and not left out with `ignore(..)`) is reported
/// as such, with what to do, and a generic or `impl Trait` parameter can be
/// bounded by it (or by `serde::Serialize`, which is the same).
///
/// ```
/// fn takes_a_key_part(_: &impl redis_memo::key::KeyPart) {}
/// takes_a_key_part(&("alice", 42u64));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key: it does not implement `serde::Serialize`",
    label = "part of the key, but not `serde::Serialize`",
    note = "derive or implement `serde::Serialize` for it, or leave the parameter out of the key \
            with `#[cached(ignore(..))]`; for an `impl Trait` parameter, add `+ serde::Serialize` \
            to its bounds or take a concrete type (`&str` or `String` for `impl AsRef<str>`)"
)]
pub trait KeyPart: Serialize {}

#[diagnostic::do_not_recommend]
impl<T: ?Sized + Serialize> KeyPart for T {}

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
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    buf: Vec<u8>,
    error: Option<KeyError>,
    /// `<T1,T2>`: the generic arguments of the call, or empty.
    generics: String,
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
        KeyBuilder {
            buf,
            error: None,
            generics: String::new(),
        }
    }

    /// Appends one generic argument of the call (a type's
    /// `std::any::type_name`, or a const parameter's value) to the name part
    /// of the key: `{name}<{first},{second}>`. Two instantiations of a generic
    /// function never share a key; a function without generics keeps `{name}`.
    ///
    /// ```
    /// use redis_memo::key::{FnName, KeyBuilder};
    ///
    /// let mut args = KeyBuilder::new();
    /// args.generic("my_app::User").generic("3").arg(&1u64);
    /// let key = args.finish("", &FnName::Free { module: "my_app", function: "find" }).unwrap();
    /// assert!(key.starts_with("my_app::find<my_app::User,3>:"));
    /// ```
    pub fn generic(&mut self, argument: &str) -> &mut Self {
        self.generics
            .push(if self.generics.is_empty() { '<' } else { ',' });
        self.generics.push_str(argument);
        self
    }

    /// Appends one argument.
    pub fn arg<T: ?Sized + KeyPart>(&mut self, value: &T) -> &mut Self {
        if self.error.is_none()
            && let Err(err) = encode_value(&mut self.buf, value)
        {
            self.error = Some(err);
        }
        self
    }

    /// Drops what was added after the first `len` bytes of the encoding
    /// (and an error from it): a batch reuses one builder for every element.
    pub(crate) fn rewind(&mut self, len: usize) {
        self.buf.truncate(len);
        self.error = None;
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
        let mut key =
            String::with_capacity(prefix.len() + name.len_hint() + self.generics.len() + 80);
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
        if !self.generics.is_empty() {
            out.push_str(&self.generics);
            out.push('>');
        }
        if let Some(version) = version {
            out.push_str(":v");
            out.push_str(&version.to_string());
        }
        out.push(':');
        self.push_digest(out)
    }
}

/// What identifies one call of a cached function within a cache: its
/// function, version and generic arguments, and the canonical bytes of its
/// arguments. Equal identities have equal keys, so a value held in this
/// process can be found from the identity alone, without the key's SHA-256
/// (see `store::shortcut`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallId<'n, 'a> {
    prefix: &'n str,
    name: FnName<'n>,
    version: Option<u32>,
    generics: &'a str,
    args: &'a [u8],
}

/// A [`CallId`] kept: the names are the function's own (`'static`), the
/// rest copied.
#[derive(Debug)]
pub(crate) struct OwnedCallId {
    prefix: &'static str,
    name: FnName<'static>,
    version: Option<u32>,
    generics: Box<str>,
    args: Box<[u8]>,
}

impl KeyBuilder {
    /// The identity of a call of the function `name` with these arguments;
    /// `None` when an argument could not be encoded.
    pub(crate) fn call_id<'n>(
        &self,
        prefix: &'n str,
        name: FnName<'n>,
        version: Option<u32>,
    ) -> Option<CallId<'n, '_>> {
        self.error.is_none().then_some(CallId {
            prefix,
            name,
            version,
            generics: &self.generics,
            args: &self.buf,
        })
    }
}

impl CallId<'_, '_> {
    /// Feeds the identity to `state`: the names by address (they are the
    /// function's own strings; equal identities at other addresses only
    /// hash apart), the rest by value.
    pub(crate) fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.prefix.as_ptr() as usize);
        for part in self.name.parts() {
            state.write_usize(part.as_ptr() as usize);
        }
        state.write_u32(self.version.map_or(0, |v| v.wrapping_add(1)));
        state.write(self.generics.as_bytes());
        state.write(self.args);
    }
}

impl CallId<'static, '_> {
    /// The identity, kept.
    pub(crate) fn to_owned(self) -> OwnedCallId {
        OwnedCallId {
            prefix: self.prefix,
            name: self.name,
            version: self.version,
            generics: self.generics.into(),
            args: self.args.into(),
        }
    }
}

impl OwnedCallId {
    /// Whether `id` is this identity.
    pub(crate) fn is(&self, id: &CallId<'_, '_>) -> bool {
        self.args[..] == *id.args
            && self.version == id.version
            && *self.generics == *id.generics
            && self.prefix == id.prefix
            && self.name == id.name
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
    /// The strings the name is made of.
    fn parts(&self) -> impl Iterator<Item = &str> {
        let (a, b, c) = match *self {
            FnName::Free { module, function } => (module, Some(function), None),
            FnName::Method {
                module,
                self_type,
                function,
            } => (module, Some(self_type), Some(function)),
            FnName::Custom(name) => (name, None, None),
        };
        std::iter::once(a).chain(b).chain(c)
    }

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

/// What follows a `key_prefix` in the key of its group's generation counter.
///
/// The counter of the functions declared `#[cached(key_prefix = "users:",
/// grouped)]` is `users:@generation`: under the prefix, so a Redis user
/// limited to `~users:*` can read and bump it. No other key redis-memo writes
/// can be that key: value keys end in `:{64 hex}` (grouped ones are
/// `{prefix}@{digits}:...`) and lease keys end in `:lease` or a slot tag.
///
/// ```
/// assert_eq!(redis_memo::key::GENERATION_SUFFIX, "@generation");
/// ```
pub const GENERATION_SUFFIX: &str = "@generation";

/// The key of the generation counter of a group of `grouped` functions (their
/// `key_prefix`).
pub(crate) fn generation_key(prefix: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + GENERATION_SUFFIX.len());
    key.push_str(prefix);
    key.push_str(GENERATION_SUFFIX);
    key
}

/// Whether `key` is a group's generation counter (see [`GENERATION_SUFFIX`]).
pub(crate) fn is_generation_key(key: &str) -> bool {
    key.ends_with(GENERATION_SUFFIX)
}

#[cfg(test)]
mod tests;
