//! The local tier's ordering of fills, invalidations and writes, and its
//! bounds, without a server.

use super::*;

/// A tracking tier whose changes of `keys` are pushed.
fn tracking(keys: &[&str]) -> LocalTier {
    let tier = LocalTier::new(
        1 << 20,
        DEFAULT_LOCAL_TTL,
        Duration::ZERO,
        Coherence::Tracking,
    );
    for key in keys {
        tier.prefixes.coverage(key);
    }
    tier.cover(u64::MAX);
    tier
}

#[test]
fn the_weighted_size_stays_within_max_bytes_under_a_million_keys() {
    let max_bytes = 1 << 20;
    let tier = LocalTier::new(
        max_bytes,
        DEFAULT_LOCAL_TTL,
        Duration::ZERO,
        Coherence::Tracking,
    );
    tier.prefixes.coverage("user:");
    tier.cover(u64::MAX);
    let value = [b'v'; 45];
    for i in 0..1_000_000u32 {
        let key = format!("user:{i}");
        if i % 2 == 0 {
            tier.begin(&key).finish(&value);
        } else {
            tier.begin(&key).stored(&value, None);
        }
        if i % 100_000 == 99_999 {
            let (bytes, entries) = tier.size();
            assert!(bytes <= max_bytes, "{bytes} > {max_bytes} after {i} keys");
            assert!(entries > 0);
        }
    }
    let (bytes, entries) = tier.size();
    assert!(
        bytes <= max_bytes && entries > max_bytes / 200,
        "{bytes} bytes, {entries} entries"
    );
}

#[test]
fn a_fill_that_began_before_an_invalidation_inserts_nothing() {
    let tier = tracking(&["k"]);
    let fill = tier.begin("k");
    tier.invalidate("k"); // arrives while the GET is in flight
    fill.finish(b"old");
    assert!(tier.get("k").is_none());

    // One that began after it does.
    tier.begin("k").finish(b"new");
    assert_eq!(tier.get("k").as_deref().map(Held::bytes), Some(&b"new"[..]));
}

#[test]
fn a_fill_that_began_before_a_write_or_a_clear_inserts_nothing() {
    let tier = tracking(&["k", "j", "p:1", "m"]);
    let fill = tier.begin("k");
    tier.begin("k").stored(b"mine", None);
    fill.finish(b"older");
    assert_eq!(
        tier.get("k").as_deref().map(Held::bytes),
        Some(&b"mine"[..])
    );

    // A write whose key was invalidated while it was sent is dropped.
    let write = tier.begin("k");
    tier.invalidate("k");
    write.stored(b"raced", None);
    assert!(tier.get("k").is_none());

    let fill = tier.begin("j");
    tier.clear();
    fill.finish(b"old");
    assert!(tier.get("j").is_none());

    let fill = tier.begin("p:1");
    tier.invalidate_prefix("p:");
    fill.finish(b"old");
    assert!(tier.get("p:1").is_none());

    // Losing tracking clears too.
    let fill = tier.begin("m");
    tier.set_coherence(Coherence::Connecting);
    fill.finish(b"old");
    assert!(tier.get("m").is_none());
}

#[test]
fn the_push_of_an_own_write_does_not_drop_it_but_a_later_change_does() {
    let tier = tracking(&["k", "j"]);
    let write = tier.begin_write("k");
    tier.pushed("k"); // this write's own push, before its reply
    write.stored(b"mine", None);
    assert_eq!(
        tier.get("k").as_deref().map(Held::bytes),
        Some(&b"mine"[..])
    );

    // Another client's change after the write: its push comes second.
    let write = tier.begin_write("k");
    tier.pushed("k");
    tier.pushed("k");
    write.stored(b"mine again", None);
    assert!(tier.get("k").is_none());

    // A push after the write returned drops the entry.
    tier.begin_write("j").stored(b"v", None);
    tier.pushed("j");
    assert!(tier.get("j").is_none());
    assert!(tier.lock().pending.is_empty());
}

#[test]
fn a_cancelled_fill_leaves_nothing_pending() {
    let tier = tracking(&["k"]);
    drop(tier.begin("k"));
    let fill = tier.begin("k");
    fill.finish(b"v");
    assert!(tier.lock().pending.is_empty());
    assert_eq!(tier.get("k").as_deref().map(Held::bytes), Some(&b"v"[..]));
}

#[test]
fn entries_filled_before_their_prefix_is_covered_are_dropped_when_it_is() {
    let tier = LocalTier::new(
        1 << 20,
        DEFAULT_LOCAL_TTL,
        Duration::ZERO,
        Coherence::Tracking,
    );
    tier.prefixes.coverage("u:1");
    let fill = tier.begin("u:1");
    assert!(!fill.tracked, "its prefix is not registered yet");
    fill.finish(b"v");
    assert!(tier.get("u:1").is_some(), "kept, for at most the bound");
    let racing = tier.begin("u:2");
    tier.cover(tier.prefixes.all().version);
    assert!(
        tier.get("u:1").is_none(),
        "dropped once its prefix is covered"
    );
    racing.finish(b"w");
    assert!(tier.get("u:2").is_none(), "a fill begun before is refused");
    let fill = tier.begin("u:3");
    assert!(fill.tracked);
    fill.finish(b"x");
    assert!(tier.get("u:3").is_some());
}
