//! The serde serializer that writes the canonical argument encoding
//! documented in [the module above](super).

use serde::ser::{self, Serialize};

use super::KeyError;

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
