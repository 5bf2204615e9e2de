//! The key encoding as documented in `redis_memo::key`, written here again
//! from the documentation and independently of the crate, so that tests
//! compare the crate's keys with what the documentation promises.

use sha2::{Digest, Sha256};

/// The canonical encoding of an argument list, built value by value.
///
/// ```
/// use redis_memo_test_support::reference::Encoded;
///
/// let bytes = Encoded::new().str("pen").int(2).into_bytes();
/// assert_eq!(bytes[0], 1, "the encoding version");
/// ```
#[derive(Debug, Clone)]
pub struct Encoded(Vec<u8>);

impl Default for Encoded {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoded {
    /// No arguments yet: the version byte `0x01`.
    pub fn new() -> Self {
        Encoded(vec![1])
    }

    /// Bytes spelled out by hand (the version byte included), as a test vector.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Encoded(bytes)
    }

    /// Any integer: `i` and 16 bytes of big-endian two's complement.
    pub fn int(mut self, value: impl Into<i128>) -> Self {
        self.0.push(b'i');
        self.0.extend_from_slice(&value.into().to_be_bytes());
        self
    }

    /// A string: `s`, the length as a big-endian `u64`, the UTF-8 bytes.
    pub fn str(mut self, value: &str) -> Self {
        self.0.push(b's');
        self.0
            .extend_from_slice(&(value.len() as u64).to_be_bytes());
        self.0.extend_from_slice(value.as_bytes());
        self
    }

    /// A `bool`: `b` and `0x00` or `0x01`.
    pub fn bool(mut self, value: bool) -> Self {
        self.0.push(b'b');
        self.0.push(u8::from(value));
        self
    }

    /// The bytes so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The 64 lowercase hex digits of the SHA-256 of the bytes.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(&self.0))
    }

    /// The key of a function named `name` (its qualified name, as in keys)
    /// with these arguments: `{prefix}{name}:{digest}`.
    pub fn key(&self, prefix: &str, name: &str) -> String {
        format!("{prefix}{name}:{}", self.digest())
    }
}

/// The lease key of a value key, as documented in `redis_memo`'s lease
/// module: `{key}:lease` when the key has a hash tag (or any `{`), else
/// `{key}:lease{t}` with `t` the smallest number, written in base 36, whose
/// Redis Cluster slot is the key's (slots computed by redis-rs).
///
/// ```
/// use redis_memo_test_support::reference::lease_key;
///
/// assert_eq!(lease_key("{users}:1"), "{users}:1:lease");
/// let lease = lease_key("users:1");
/// assert!(lease.starts_with("users:1:lease{") && lease.ends_with('}'));
/// ```
pub fn lease_key(key: &str) -> String {
    use redis::cluster_routing::Slot;

    let lease = format!("{key}:lease");
    if key.contains('{') {
        return lease;
    }
    let slot = Slot::for_key(key);
    let tag = (0u32..)
        .map(base36)
        .find(|tag| Slot::for_key(tag) == slot)
        .expect("every slot has a tag");
    format!("{lease}{{{tag}}}")
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// The envelope of the values of functions with `stale` or `fail_safe`, as
/// the codec's documentation describes it: `0x00 '~' 0x01`, when the value
/// stops being fresh and until when no new run is tried (each a big-endian
/// `u64` of ms since the Unix epoch), then the value's stored form.
///
/// ```
/// use redis_memo_test_support::reference::{envelope, unenvelope};
///
/// let bytes = envelope(5, 0, b"42");
/// assert_eq!(unenvelope(&bytes), Some((5, 0, &b"42"[..])));
/// assert_eq!(unenvelope(b"42"), None);
/// ```
pub fn envelope(fresh_until: u64, retry_after: u64, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![0, b'~', 1];
    out.extend_from_slice(&fresh_until.to_be_bytes());
    out.extend_from_slice(&retry_after.to_be_bytes());
    out.extend_from_slice(inner);
    out
}

/// The times and the stored form in an [`envelope`]: `(fresh_until,
/// retry_after, inner)`; `None` for anything else.
pub fn unenvelope(bytes: &[u8]) -> Option<(u64, u64, &[u8])> {
    let rest = bytes.strip_prefix(&[0, b'~', 1][..])?;
    let (fresh, rest) = rest.split_first_chunk::<8>()?;
    let (retry, inner) = rest.split_first_chunk::<8>()?;
    Some((
        u64::from_be_bytes(*fresh),
        u64::from_be_bytes(*retry),
        inner,
    ))
}

/// Now, in ms since the Unix epoch: the clock of an [`envelope`]'s times.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Rewrites the enveloped value of `key` through `conn` (a plain client of
/// any topology) as if its `ttl` had ended `ago`, keeping its value and
/// giving the key `left` to live, with no wait before a new run.
pub async fn expire_enveloped(
    conn: &mut impl redis::aio::ConnectionLike,
    key: &str,
    ago: std::time::Duration,
    left: std::time::Duration,
) {
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .expect("GET");
    let (_, _, inner) = unenvelope(&bytes).expect("an enveloped value");
    let fresh_until = now_ms() - ago.as_millis() as u64;
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(envelope(fresh_until, 0, inner))
        .arg("PX")
        .arg(left.as_millis() as u64)
        .query_async(conn)
        .await
        .expect("SET");
}
