//! What `batch = ids` asks of a function: a parameter holding the ids
//! (`Vec<K>`, `&[K]`, `&Vec<K>`, `HashSet<K>`, `BTreeSet<K>`), a return type
//! that maps them to values (`HashMap<K, V>`, `BTreeMap<K, V>`, or a
//! `Result` of one), and none of the arguments a batch cannot honour.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::{FnArg, GenericArgument, Ident, Pat, PathArguments, ReturnType, Type};

use crate::attr::Args;
use crate::function::{Function, mentions};

/// A checked `batch = ids`.
pub struct Batch {
    /// The parameter.
    pub ident: Ident,
    /// How its type holds the ids.
    pub kind: IdsKind,
    /// Its declared type.
    pub ty: Type,
    /// The type of one id, `K`.
    pub elem: Type,
    /// Whether the function returns a `Result` of its map.
    pub result: bool,
    /// The type of one value, `V`.
    pub value: Type,
}

/// How the batch parameter holds its ids.
pub enum IdsKind {
    /// `Vec<K>`.
    Vec,
    /// `HashSet<K>`, `BTreeSet<K>`.
    Set,
    /// `&[K]`.
    Slice,
    /// `&Vec<K>`.
    VecRef,
}

const SHAPES: &str = "`Vec<K>`, `&[K]`, `&Vec<K>`, `HashSet<K>` or `BTreeSet<K>`";

/// Checks `batch = ids` against the function, recording each mistake spanned
/// on the user's tokens. `None` (and the attribute's batch dropped) when it
/// cannot work: the function is then generated as a plain cached function.
pub fn check(args: &mut Args, func: &Function, errors: &mut Vec<syn::Error>) -> Option<Batch> {
    let ident = args.batch.clone()?;
    let before = errors.len();
    let refuse = |errors: &mut Vec<syn::Error>, span: Span, what: &str| {
        errors.push(syn::Error::new(
            span,
            format!("`{what}` does not work with `batch`: {}", why(what)),
        ));
    };
    if let Some((_, span)) = args.stale {
        refuse(errors, span, "stale");
    }
    if let Some((_, span)) = args.fail_safe {
        refuse(errors, span, "fail_safe");
    }
    if let Some((_, span)) = &args.soft_timeout {
        refuse(errors, *span, "soft_timeout");
    }
    if let Some(span) = args.grouped {
        refuse(errors, span, "grouped");
    }
    if let Some(span) = args.lease_span {
        refuse(errors, span, "lease");
    }
    if let Some((_, span)) = args.result {
        refuse(errors, span, "result");
    }
    if let Some((_, span)) = args.cache_none {
        refuse(errors, span, "cache_none");
    }
    if let Some(ignored) = args.ignore.iter().find(|i| **i == ident) {
        errors.push(syn::Error::new(
            ignored.span(),
            format!("`{ident}` holds the ids of the batch: each element is part of its key, so it cannot be ignored"),
        ));
    }
    for expr in &args.key {
        if mentions(expr.to_token_stream(), std::slice::from_ref(&ident), false) {
            errors.push(syn::Error::new_spanned(
                expr,
                format!("`key(...)` cannot use `{ident}`: each element of the batch is in its own key already"),
            ));
        }
    }
    let param = func.sig.inputs.iter().find_map(|input| match input {
        FnArg::Typed(typed) => match &*typed.pat {
            Pat::Ident(pat) if pat.ident == ident => Some(typed),
            _ => None,
        },
        FnArg::Receiver(_) => None,
    });
    let Some(param) = param else {
        errors.push(syn::Error::new(
            ident.span(),
            format!(
                "`batch = {ident}` must name a parameter of `{}` (by itself, not in a pattern) \
                 holding the ids: {SHAPES}",
                func.sig.ident
            ),
        ));
        args.batch = None;
        return None;
    };
    let ids = ids_shape(&param.ty);
    if ids.is_none() {
        errors.push(syn::Error::new_spanned(
            &param.ty,
            format!("a `batch` parameter holds the ids as {SHAPES}"),
        ));
    }
    let map = map_shape(&func.sig.output);
    if map.is_none() {
        let message = "a `batch` function returns the values by id: `HashMap<K, V>`, \
                       `BTreeMap<K, V>`, or a `Result` of one";
        errors.push(match &func.sig.output {
            ReturnType::Type(_, ty) => syn::Error::new_spanned(ty, message),
            ReturnType::Default => syn::Error::new(func.sig.ident.span(), message),
        });
    }
    match (ids, map) {
        (Some((kind, elem)), Some((result, value))) if errors.len() == before => Some(Batch {
            ident,
            kind,
            ty: (*param.ty).clone(),
            elem,
            result,
            value,
        }),
        _ => {
            args.batch = None;
            None
        }
    }
}

fn why(what: &str) -> &'static str {
    match what {
        "stale" | "soft_timeout" => "a batch's loader runs while its caller waits; use `ttl` alone",
        "fail_safe" => "a batch returns what its loader returns for each element; use `ttl` alone",
        "grouped" => {
            "each element's key must be the key of a one-element call; use `key_prefix` and `invalidate_prefix`"
        }
        "lease" => {
            "elements other processes are loading are loaded again here; single-flight \
                    still holds within the process"
        }
        "result" => {
            "the return type tells it already: a `Result` of a map caches the `Ok` map's elements"
        }
        _ => {
            "an element the loader does not return is not cached; return `Option` values to cache absence"
        }
    }
}

/// The ids' shape and element type of a parameter type.
fn ids_shape(ty: &Type) -> Option<(IdsKind, Type)> {
    match ty {
        Type::Reference(reference) => match &*reference.elem {
            Type::Slice(slice) => Some((IdsKind::Slice, (*slice.elem).clone())),
            inner => match generic_of(inner)? {
                ("Vec", types) => Some((IdsKind::VecRef, types.first()?.clone())),
                _ => None,
            },
        },
        Type::Paren(paren) => ids_shape(&paren.elem),
        ty => match generic_of(ty)? {
            ("Vec", types) => Some((IdsKind::Vec, types.first()?.clone())),
            ("HashSet" | "BTreeSet", types) => Some((IdsKind::Set, types.first()?.clone())),
            _ => None,
        },
    }
}

/// Whether a return type is a `Result` of a map, and the map's value type.
fn map_shape(output: &ReturnType) -> Option<(bool, Type)> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let map_value = |ty: &Type| match generic_of(ty)? {
        ("HashMap" | "BTreeMap", types) => types.get(1).cloned(),
        _ => None,
    };
    match generic_of(ty)? {
        ("Result", types) => Some((true, map_value(types.first()?)?)),
        _ => Some((false, map_value(ty)?)),
    }
}

/// The last segment's name of a path type, and its type arguments.
fn generic_of(ty: &Type) -> Option<(&'static str, Vec<Type>)> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    let name = match last.ident.to_string().as_str() {
        "Vec" => "Vec",
        "HashSet" => "HashSet",
        "BTreeSet" => "BTreeSet",
        "HashMap" => "HashMap",
        "BTreeMap" => "BTreeMap",
        other if other.ends_with("Result") => "Result",
        _ => return None,
    };
    let PathArguments::AngleBracketed(arguments) = &last.arguments else {
        return Some((name, Vec::new()));
    };
    let types = arguments
        .args
        .iter()
        .filter_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty.clone()),
            _ => None,
        })
        .collect();
    Some((name, types))
}

impl Batch {
    /// The ids, as an iterator of owned `K`, for the runtime's `Batch`.
    pub fn ids(&self) -> TokenStream {
        let ident = &self.ident;
        match self.kind {
            IdsKind::Slice | IdsKind::VecRef => {
                quote!(::core::iter::Iterator::cloned(::core::iter::IntoIterator::into_iter(#ident)))
            }
            IdsKind::Vec | IdsKind::Set => quote!(::core::iter::IntoIterator::into_iter(#ident)),
        }
    }

    /// Binds the parameter, inside the body, to the ids to load (`missing`,
    /// a `Vec<K>`), in the parameter's own type.
    pub fn rebind(&self, missing: &Ident) -> TokenStream {
        let (ident, ty) = (&self.ident, &self.ty);
        let value = match self.kind {
            IdsKind::Slice => quote!(&#missing[..]),
            IdsKind::VecRef => quote!(&#missing),
            IdsKind::Vec => quote!(#missing),
            IdsKind::Set => quote!(<#ty as ::core::iter::FromIterator<_>>::from_iter(#missing)),
        };
        quote! {
            #[allow(unused_mut)]
            let mut #ident = #value;
        }
    }
}
