//! What `stale = N` asks of a function: an explicit, expiring `ttl`, a window
//! shared by every call, and a body the background refresh can own (no
//! borrowed parameter or `&self` used in it).

use quote::ToTokens;
use syn::{FnArg, GenericArgument, PathArguments, ReceiverKind, Type, TypeParamBound};

use crate::attr::{Args, Ttl};
use crate::expand::{Function, bound_idents, mentions};

/// Checks `stale` against the function, recording each mistake spanned on
/// the user's tokens. A `stale` that cannot work is dropped, so the function
/// is still generated (as one without `stale`).
pub fn check(args: &mut Args, func: &Function, errors: &mut Vec<syn::Error>) {
    let Some((stale, span)) = &args.stale else {
        return;
    };
    let span = *span;
    let name = &func.sig.ident;
    match &args.ttl {
        None => {
            errors.push(syn::Error::new(
                span,
                "`stale` needs an explicit `ttl`: a value is served stale for `stale` seconds \
                 after its `ttl` has passed, e.g. `ttl = 60, stale = 30`",
            ));
            args.stale = None;
            return;
        }
        Some(Ttl::Secs(0)) => {
            errors.push(syn::Error::new(
                span,
                "with `ttl = 0` values never expire, so none is ever stale; give a `ttl` or \
                 remove `stale`",
            ));
            args.stale = None;
            return;
        }
        Some(_) => {}
    }
    if let Ttl::Expr(expr) = stale {
        let mut params = Vec::new();
        for input in &func.sig.inputs {
            if let FnArg::Typed(typed) = input {
                bound_idents(&typed.pat, &mut params);
            }
        }
        if mentions(expr.to_token_stream(), &params, true) {
            errors.push(syn::Error::new_spanned(
                expr,
                format!(
                    "`stale` is shared by every call of `{name}` (its `{name}_prime` stores \
                     for `ttl + stale`), so it cannot use the parameters or `self`; use a constant"
                ),
            ));
            args.stale = None;
            return;
        }
    }

    // The refresh runs the body after the call returned: what the body uses
    // must be owned. After such an error the function is generated without
    // `stale`, so that this is the only error.
    let before = errors.len();
    let body = func.block.to_token_stream();
    for input in &func.sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                let borrowed = match &receiver.kind {
                    ReceiverKind::Reference(..) => true,
                    ReceiverKind::Typed(_, ty) => borrows(ty),
                    _ => false,
                };
                if borrowed && mentions(body.clone(), &[], true) {
                    errors.push(syn::Error::new_spanned(
                        receiver,
                        format!(
                            "`stale` refreshes the value in the background, after the call \
                             returned, so the body of `{name}` cannot borrow `self`; take \
                             `self: Arc<Self>` (or move what the body needs into a free \
                             function with owned parameters), or remove `stale`"
                        ),
                    ));
                }
            }
            FnArg::Typed(typed) => {
                let mut bound = Vec::new();
                bound_idents(&typed.pat, &mut bound);
                if borrows(&typed.ty)
                    && (mentions(body.clone(), &bound, false) || formats(body.clone(), &bound))
                {
                    let param = typed.pat.to_token_stream();
                    errors.push(syn::Error::new_spanned(
                        &typed.ty,
                        format!(
                            "`stale` refreshes the value in the background, after the call \
                             returned, so the body cannot use the borrowed parameter `{param}`; \
                             take it owned (`String`, `Vec<T>`, `Arc<T>`, a cloneable pool or \
                             client), or remove `stale`"
                        ),
                    ));
                }
            }
        }
    }
    if errors.len() > before {
        args.stale = None;
    }
}

/// Whether a string literal in `tokens` names one of `names` as an inline
/// format argument (`format!("{name}")`), which `mentions` cannot see.
fn formats(tokens: proc_macro2::TokenStream, names: &[syn::Ident]) -> bool {
    tokens.into_iter().any(|tree| match tree {
        proc_macro2::TokenTree::Literal(lit) => {
            let text = lit.to_string();
            names.iter().any(|name| {
                text.contains(&format!("{{{name}}}")) || text.contains(&format!("{{{name}:"))
            })
        }
        proc_macro2::TokenTree::Group(group) => formats(group.stream(), names),
        _ => false,
    })
}

/// Whether a parameter's type borrows: a reference or a lifetime other than
/// `'static`, outside of function-pointer and `Fn(..)` argument lists (where
/// a `&` is a parameter of that function, not a borrow).
fn borrows(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) => r.lifetime.as_ref().is_none_or(|l| l.ident != "static"),
        Type::Paren(p) => borrows(&p.elem),
        Type::Group(g) => borrows(&g.elem),
        Type::Tuple(t) => t.elems.iter().any(borrows),
        Type::Array(a) => borrows(&a.elem),
        Type::Slice(s) => borrows(&s.elem),
        Type::Path(path) => path.path.segments.iter().any(|segment| {
            let PathArguments::AngleBracketed(args) = &segment.arguments else {
                return false;
            };
            args.args.iter().any(|arg| match arg {
                GenericArgument::Lifetime(l) => l.ident != "static",
                GenericArgument::Type(ty) => borrows(ty),
                _ => false,
            })
        }),
        Type::TraitObject(t) => bounds_borrow(t.bounds.iter()),
        Type::ImplTrait(t) => bounds_borrow(t.bounds.iter()),
        _ => false,
    }
}

fn bounds_borrow<'a>(mut bounds: impl Iterator<Item = &'a TypeParamBound>) -> bool {
    bounds.any(|bound| matches!(bound, TypeParamBound::Lifetime(l) if l.ident != "static"))
}
