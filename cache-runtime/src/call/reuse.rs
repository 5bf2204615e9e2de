//! Hits of a `Clone` type held in this process: the value an earlier hit
//! decoded, cloned, instead of the bytes decoded again (see [`Held`]).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::codec::Format;
use crate::error::Error;
use crate::store::Held;

/// How a call's value type reuses decoded values: built only for types
/// that are `Clone + Send + Sync + 'static` (generated code picks it by the
/// type, and passes `None` for the others).
pub struct Reuse<T> {
    get: fn(&Held, Format) -> Option<T>,
    keep: fn(&Held, Format, &T),
}

impl<T> Clone for Reuse<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Reuse<T> {}

impl<T: Clone + Send + Sync + 'static> Reuse<T> {
    /// The reuse of a `T`.
    pub const fn new() -> Reuse<T> {
        Reuse {
            get: kept::<T>,
            keep: keep::<T>,
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Default for Reuse<T> {
    fn default() -> Self {
        Reuse::new()
    }
}

/// What a held entry keeps: a value, and the format it was decoded with.
struct Decoded<T> {
    format: Format,
    value: T,
}

fn kept<T: Clone + 'static>(held: &Held, format: Format) -> Option<T> {
    let decoded = held.decoded()?.downcast_ref::<Decoded<T>>()?;
    (decoded.format == format).then(|| decoded.value.clone())
}

fn keep<T: Clone + Send + Sync + 'static>(held: &Held, format: Format, value: &T) {
    held.keep(Box::new(Decoded {
        format,
        value: value.clone(),
    }));
}

/// The value of a held entry: a clone of the kept one, or else its bytes
/// decoded (and, with `reuse`, kept for the next hits).
pub(crate) fn decode<T: DeserializeOwned>(
    format: Format,
    held: &Held,
    reuse: Option<Reuse<T>>,
) -> Result<T, Error> {
    let Some(reuse) = reuse else {
        return format.decode(held.bytes());
    };
    if let Some(value) = (reuse.get)(held, format) {
        return Ok(value);
    }
    let value = format.decode::<T>(held.bytes())?;
    (reuse.keep)(held, format, &value);
    Ok(value)
}

/// Picks a [`Reuse`] by the type: `(&Keep::<T>::new()).reuse()` is
/// `Some` when `T` is `Clone + Send + Sync + 'static` (method lookup tries
/// the receiver as it is before taking another reference), `None` otherwise.
pub struct Keep<T>(PhantomData<fn() -> T>);

impl<T> Keep<T> {
    /// The selector for `T`.
    pub const fn new() -> Keep<T> {
        Keep(PhantomData)
    }
}

impl<T> Default for Keep<T> {
    fn default() -> Self {
        Keep::new()
    }
}

/// `T` can be reused: `Some`.
pub trait KeepClone<T> {
    /// The reuse of `T`.
    fn reuse(&self) -> Option<Reuse<T>>;
}

impl<T: Clone + Send + Sync + 'static> KeepClone<T> for Keep<T> {
    fn reuse(&self) -> Option<Reuse<T>> {
        Some(Reuse::new())
    }
}

/// Any other `T`: `None`, the bytes are decoded on every hit.
pub trait KeepNone<T> {
    /// No reuse.
    fn reuse(&self) -> Option<Reuse<T>>;
}

impl<T> KeepNone<T> for &Keep<T> {
    fn reuse(&self) -> Option<Reuse<T>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_type_is_decoded_once_and_an_other_type_every_time() {
        let held = Held::new(b"[1,2,3]");
        let format = Format::default();
        let reuse = Keep::<Vec<u32>>::new().reuse();
        assert!(reuse.is_some());
        assert_eq!(decode(format, &held, reuse).unwrap(), vec![1, 2, 3]);
        assert!(held.decoded().is_some(), "kept");
        assert_eq!(decode(format, &held, reuse).unwrap(), vec![1, 2, 3]);
        // Another type reading the same bytes decodes them.
        let other = Keep::<Vec<u64>>::new().reuse();
        assert_eq!(decode(format, &held, other).unwrap(), vec![1u64, 2, 3]);

        struct NotClone;
        assert!((&Keep::<NotClone>::new()).reuse().is_none());
        assert!(decode::<Vec<u32>>(format, &Held::new(b"[1,"), reuse).is_err());
    }
}
