//! Test vectors of the canonical encoding and the key layout.

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
