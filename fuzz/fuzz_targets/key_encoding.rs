//! Any argument values: encoding never panics, is deterministic, and ignores
//! the iteration order of maps.
#![no_main]

use std::collections::{BTreeMap, HashMap};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use redis_memo::key::KeyBuilder;
use serde::Serialize;

#[derive(Debug, Clone, Arbitrary, Serialize)]
enum Value {
    Unit,
    Bool(bool),
    Int(i64),
    Big(u128),
    Float(f64),
    Char(char),
    Text(String),
    Bytes(#[serde(with = "serde_bytes_compat")] Vec<u8>),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Maybe(Option<Box<Value>>),
    Pair(Box<Value>, Box<Value>),
    Record { a: Box<Value>, b: u8 },
}

mod serde_bytes_compat {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
}

fuzz_target!(|args: Vec<Value>| {
    let encode = |args: &[Value]| {
        let mut builder = KeyBuilder::new();
        for a in args {
            builder.arg(a);
        }
        builder.digest_hex()
    };
    let first = encode(&args);
    assert_eq!(first.as_ref().ok(), encode(&args.clone()).as_ref().ok());
    if let Ok(hex) = &first {
        assert_eq!(hex.len(), 64);
    }
    // A map given in another insertion order hashes the same.
    for a in &args {
        if let Value::Map(map) = a {
            let forward: HashMap<&String, &Value> = map.iter().collect();
            let backward: HashMap<&String, &Value> = map.iter().rev().collect();
            let mut x = KeyBuilder::new();
            x.arg(&forward);
            let mut y = KeyBuilder::new();
            y.arg(&backward);
            assert_eq!(x.digest_hex().ok(), y.digest_hex().ok());
        }
    }
});
