//! Properties of the canonical argument encoding, through the public
//! `redis_memo::key::KeyBuilder`.

use proptest::prelude::*;
use redis_memo::key::KeyBuilder;
use serde::Serialize;

/// One argument of a mixed-type argument list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
enum Arg {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    List(Vec<u8>),
    Maybe(Option<String>),
    Pair((String, u16)),
}

fn arg() -> impl Strategy<Value = Arg> {
    prop_oneof![
        any::<i64>().prop_map(Arg::Int),
        // NaN and -0.0 are normalised on purpose (they equal other values).
        any::<f64>()
            .prop_filter("normalised", |f| !f.is_nan() && *f != 0.0)
            .prop_map(Arg::Float),
        any::<bool>().prop_map(Arg::Bool),
        ".{0,12}".prop_map(Arg::Text),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Arg::List),
        prop::option::of(".{0,6}").prop_map(Arg::Maybe),
        (".{0,6}", any::<u16>()).prop_map(Arg::Pair),
    ]
}

fn encode(args: &[Arg]) -> Vec<u8> {
    let mut builder = KeyBuilder::new();
    for a in args {
        builder.arg(a);
    }
    builder.encoded().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn distinct_argument_lists_never_share_encoded_bytes(
        a in prop::collection::vec(arg(), 0..5),
        b in prop::collection::vec(arg(), 0..5),
    ) {
        prop_assume!(a != b);
        prop_assert_ne!(encode(&a), encode(&b));
    }

    #[test]
    fn concatenations_do_not_collide(x in ".{0,8}", y in ".{0,8}", split in 0usize..8) {
        let joined = format!("{x}{y}");
        let cut = joined.char_indices().map(|(i, _)| i).nth(split).unwrap_or(joined.len());
        let (l, r) = joined.split_at(cut);
        prop_assume!(l != x);
        let one = encode(&[Arg::Text(x.clone()), Arg::Text(y.clone())]);
        let two = encode(&[Arg::Text(l.to_string()), Arg::Text(r.to_string())]);
        prop_assert_ne!(one, two);
    }

    #[test]
    fn equal_arguments_give_equal_keys(a in prop::collection::vec(arg(), 0..5)) {
        prop_assert_eq!(encode(&a), encode(&a.clone()));
    }
}
