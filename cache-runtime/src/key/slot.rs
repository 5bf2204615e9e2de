//! Redis Cluster slots of keys, so that a lease key lands in the slot of the
//! value key it guards.
//!
//! A key's slot is `CRC16(k) mod 16384`, where `k` is the key's hash tag (the
//! text between its first `{` and the next `}`, when not empty) or else the
//! whole key. A lease key starts with its value key (so that a Redis user
//! limited to `~{key_prefix}*` may take it) and must hash to the same slot
//! (so that one pipeline or script may touch both on a cluster). When the
//! value key has a hash tag, `{key}:lease` already shares its slot. Otherwise
//! the lease key ends with a hash tag of its own, `{key}:lease{t}`, where `t`
//! is a short text chosen once per slot so that `CRC16(t)` is the value key's
//! slot.

use std::sync::LazyLock;

/// The number of hash slots of a Redis Cluster.
const SLOTS: usize = 16384;

/// The slot of `key`.
pub(crate) fn slot(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key).unwrap_or(key)) % SLOTS as u16
}

/// The hash tag of `key`, when it has a non-empty one.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let close = key[open + 1..].iter().position(|&b| b == b'}')?;
    let tag = &key[open + 1..open + 1 + close];
    (!tag.is_empty()).then_some(tag)
}

/// Whether `key` has a hash tag: then every key that starts with it is in
/// its slot.
pub(crate) fn has_hash_tag(key: &str) -> bool {
    hash_tag(key.as_bytes()).is_some()
}

/// For each slot, the smallest number whose base-36 text hashes to it.
static TAGS: LazyLock<Box<[u32]>> = LazyLock::new(|| {
    let mut tags = vec![u32::MAX; SLOTS].into_boxed_slice();
    let mut missing = SLOTS;
    let mut text = String::new();
    let mut n = 0u32;
    while missing > 0 {
        base36(n, &mut text);
        let slot = &mut tags[usize::from(slot(text.as_bytes()))];
        if *slot == u32::MAX {
            *slot = n;
            missing -= 1;
        }
        n += 1;
    }
    tags
});

/// `n` in base 36 (digits and lowercase letters), into `out`.
fn base36(mut n: u32, out: &mut String) {
    out.clear();
    let mut digits = [0u8; 8];
    let mut len = 0;
    loop {
        digits[len] = b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize];
        len += 1;
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[..len].iter().rev().map(|&b| char::from(b)));
}

/// `key` followed by `suffix`, and by a hash tag when needed so that the
/// result is in the slot of `key`. A key with a `{` but no hash tag (`a{b`,
/// `a{}b`) cannot be followed by a tag that would decide the slot; it gets
/// `suffix` alone, in another slot.
pub(crate) fn with_suffix_in_slot(key: &str, suffix: &str) -> String {
    let mut out = String::with_capacity(key.len() + suffix.len() + 6);
    out.push_str(key);
    out.push_str(suffix);
    if key.contains('{') || suffix.contains('{') {
        return out;
    }
    let mut tag = String::with_capacity(4);
    base36(TAGS[usize::from(slot(key.as_bytes()))], &mut tag);
    out.push('{');
    out.push_str(&tag);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    fn same_slot(a: &str, b: &str) -> bool {
        slot(a.as_bytes()) == slot(b.as_bytes())
    }

    #[test]
    fn slots_are_the_ones_redis_computes() {
        for key in [
            "",
            "a",
            "users:1",
            "{users}:1",
            "a{}b",
            "a{b",
            "x{y}z{w}",
            "{}",
        ] {
            let ours = Slot::new(slot(key.as_bytes())).expect("in range");
            assert_eq!(ours, Slot::for_key(key), "{key}");
        }
        // A known value: redis-cli CLUSTER KEYSLOT foo = 12182.
        assert_eq!(slot(b"foo"), 12182);
    }

    #[test]
    fn a_suffixed_key_starts_with_the_key_and_shares_its_slot() {
        for key in [
            "users:app::f:0123",
            "{users}:app::f:0123",
            "",
            "k",
            "g:@3:app::f:ab",
        ] {
            let lease = with_suffix_in_slot(key, ":lease");
            assert!(lease.starts_with(key), "{lease}");
            assert!(same_slot(key, &lease), "{key} -> {lease}");
        }
        assert_eq!(
            with_suffix_in_slot("{users}:1", ":lease"),
            "{users}:1:lease"
        );
        assert_eq!(with_suffix_in_slot("a{b", ":lease"), "a{b:lease");
    }

    #[test]
    fn every_slot_has_a_short_tag() {
        let mut text = String::new();
        for (slot_number, &n) in TAGS.iter().enumerate() {
            base36(n, &mut text);
            assert!(text.len() <= 4, "{text}");
            assert_eq!(usize::from(slot(text.as_bytes())), slot_number);
        }
    }
}
