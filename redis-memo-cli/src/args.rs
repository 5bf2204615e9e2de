//! Arguments of a call, written as JSON, turned into the values the runtime's
//! canonical key encoding sees.
//!
//! Plain JSON maps onto the serde data model: numbers are integers (or floats
//! when they have a fraction or exponent), strings are strings, arrays are
//! sequences (a `Vec`, a tuple), objects are maps (a `HashMap`/`BTreeMap`),
//! `null` is `None` or `()`. Three wrapper objects say what JSON cannot:
//!
//! | JSON                                   | Rust value                      |
//! |----------------------------------------|---------------------------------|
//! | `{"$some": 5}`                         | `Some(5)`                       |
//! | `{"$struct": [["id", 1], ["name", "a"]]}` | a struct, fields in declaration order |
//! | `{"$variant": "Active"}`               | a unit enum variant             |

use serde::ser::{Serialize, SerializeMap, SerializeSeq, SerializeStruct, Serializer};
use serde_json::Value;

/// One argument, ready to be fed to `KeyBuilder::arg`.
#[derive(Debug)]
pub enum Arg {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Arg>),
    Map(Vec<(Arg, Arg)>),
    Some(Box<Arg>),
    Struct(Vec<(&'static str, Arg)>),
    Variant(&'static str),
}

impl Arg {
    /// Parses one command-line argument as JSON in the notation above.
    pub fn parse(text: &str) -> Result<Arg, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("`{text}` is not JSON: {e}"))?;
        Arg::from_json(value)
    }

    fn from_json(value: Value) -> Result<Arg, String> {
        Ok(match value {
            Value::Null => Arg::Null,
            Value::Bool(b) => Arg::Bool(b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Arg::Int(i),
                (None, Some(u), _) => Arg::UInt(u),
                (None, None, Some(f)) => Arg::Float(f),
                _ => return Err(format!("unsupported number {n}")),
            },
            Value::String(s) => Arg::Str(s),
            Value::Array(items) => Arg::Seq(
                items
                    .into_iter()
                    .map(Arg::from_json)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(mut object) if object.len() == 1 => {
                if let Some(inner) = object.remove("$some") {
                    Arg::Some(Box::new(Arg::from_json(inner)?))
                } else if let Some(fields) = object.remove("$struct") {
                    Arg::Struct(struct_fields(fields)?)
                } else if let Some(name) = object.remove("$variant") {
                    match name {
                        Value::String(name) => Arg::Variant(leak(name)),
                        other => return Err(format!("$variant takes a name, not {other}")),
                    }
                } else {
                    map(object)?
                }
            }
            Value::Object(object) => map(object)?,
        })
    }
}

fn map(object: serde_json::Map<String, Value>) -> Result<Arg, String> {
    let entries = object
        .into_iter()
        .map(|(k, v)| Ok((Arg::Str(k), Arg::from_json(v)?)))
        .collect::<Result<_, String>>()?;
    Ok(Arg::Map(entries))
}

fn struct_fields(fields: Value) -> Result<Vec<(&'static str, Arg)>, String> {
    let Value::Array(fields) = fields else {
        return Err("$struct takes a list of [\"field\", value] pairs".into());
    };
    fields
        .into_iter()
        .map(|field| match field {
            Value::Array(pair) if pair.len() == 2 => {
                let mut pair = pair.into_iter();
                match (pair.next(), pair.next()) {
                    (Some(Value::String(name)), Some(value)) => {
                        Ok((leak(name), Arg::from_json(value)?))
                    }
                    _ => Err("a $struct field is [\"name\", value]".into()),
                }
            }
            other => Err(format!("a $struct field is [\"name\", value], not {other}")),
        })
        .collect()
}

/// serde wants `&'static str` for field and variant names. The process is a
/// short-lived command, so the few names it parses live until it exits.
fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

impl Serialize for Arg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Arg::Null => s.serialize_none(),
            Arg::Bool(b) => s.serialize_bool(*b),
            Arg::Int(i) => s.serialize_i64(*i),
            Arg::UInt(u) => s.serialize_u64(*u),
            Arg::Float(f) => s.serialize_f64(*f),
            Arg::Str(text) => s.serialize_str(text),
            Arg::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Arg::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Arg::Some(inner) => s.serialize_some(inner),
            Arg::Struct(fields) => {
                let mut st = s.serialize_struct("Struct", fields.len())?;
                for (name, value) in fields {
                    st.serialize_field(name, value)?;
                }
                st.end()
            }
            Arg::Variant(name) => s.serialize_unit_variant("Enum", 0, name),
        }
    }
}
