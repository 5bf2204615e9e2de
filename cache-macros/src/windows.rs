//! What the windows after `ttl` ask of a function: `stale = N` and
//! `fail_safe = N` an explicit, expiring `ttl` and a window shared by every
//! call; `fail_safe` a function that can fail (a `Result`) unless a
//! `soft_timeout` returns the kept value; `soft_timeout` a `fail_safe` to
//! keep a value; and `stale` and `soft_timeout` a body that can run in the
//! background, after the call returned (no borrowed parameter or `&self` used
//! in it).

use proc_macro2::Span;
use quote::ToTokens;
use syn::{FnArg, GenericArgument, PathArguments, ReceiverKind, ReturnType, Type, TypeParamBound};

use crate::attr::{Args, Ttl};
use crate::function::{Function, bound_idents, mentions};

/// Checks `stale`, `fail_safe` and `soft_timeout` against the function,
/// recording each mistake spanned on the user's tokens. An argument that
/// cannot work is dropped, so the function is still generated (without it).
pub fn check(args: &mut Args, func: &Function, errors: &mut Vec<syn::Error>) {
    if let Some((stale, span)) = &args.stale
        && !window_ok("stale", stale, *span, args, func, errors)
    {
        args.stale = None;
    }
    if let Some((keep, span)) = &args.fail_safe
        && !window_ok("fail_safe", keep, *span, args, func, errors)
    {
        args.fail_safe = None;
    }
    let name = &func.sig.ident;
    if let (Some((_, span)), None) = (&args.soft_timeout, &args.fail_safe) {
        errors.push(syn::Error::new(
            *span,
            "`soft_timeout` returns the value `fail_safe` keeps past its `ttl` when the body is \
             slow; add `fail_safe = N` (how long to keep it), e.g. `fail_safe = 3600`",
        ));
        args.soft_timeout = None;
    }
    if let (Some((_, span)), false) = (&args.fail_safe, args.given("soft_timeout"))
        && !can_fail(&func.sig.output, args)
    {
        let ret = match &func.sig.output {
            ReturnType::Type(_, ty) => ty.to_token_stream().to_string(),
            ReturnType::Default => "()".to_owned(),
        };
        errors.push(syn::Error::new(
            *span,
            format!(
                "`fail_safe` returns the kept value when `{name}` returns `Err`, and `{name}` \
                 returns `{ret}`, which is never an error: return a `Result`, or add \
                 `soft_timeout = ...` to return the kept value when the body is slow"
            ),
        ));
        args.fail_safe = None;
    }
    for what in ["stale", "soft_timeout"] {
        let on = match what {
            "stale" => args.stale.is_some(),
            _ => args.soft_timeout.is_some(),
        };
        if on && !owns_what_it_uses(what, func, errors) {
            // The function is generated without it, so that this is the
            // only error.
            match what {
                "stale" => args.stale = None,
                _ => args.soft_timeout = None,
            }
        }
    }
}

/// Whether a return type can be an `Err`: a `Result` (or an alias whose
/// name ends in `Result`), or any type with `result`.
fn can_fail(output: &ReturnType, args: &Args) -> bool {
    if let Some((result, _)) = args.result {
        return result;
    }
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    let Type::Path(path) = &**ty else {
        return false;
    };
    path.path
        .segments
        .last()
        .is_some_and(|last| last.ident.to_string().ends_with("Result"))
}

/// Checks a window after `ttl` (`stale`, `fail_safe`): it needs an explicit,
/// expiring `ttl`, and cannot use the parameters.
fn window_ok(
    what: &str,
    window: &Ttl,
    span: Span,
    args: &Args,
    func: &Function,
    errors: &mut Vec<syn::Error>,
) -> bool {
    let name = &func.sig.ident;
    match &args.ttl {
        None => {
            errors.push(syn::Error::new(
                span,
                match what {
                    "stale" => "`stale` needs an explicit `ttl`: a value is served stale for \
                                `stale` seconds after its `ttl` has passed, e.g. `ttl = 60, \
                                stale = 30`"
                        .to_owned(),
                    _ => format!(
                        "`{what}` needs an explicit `ttl`: a value is kept for `{what}` \
                         seconds after its `ttl` has passed, e.g. `ttl = 60, {what} = 3600`"
                    ),
                },
            ));
            return false;
        }
        Some(Ttl::Secs(0)) => {
            errors.push(syn::Error::new(
                span,
                match what {
                    "stale" => "with `ttl = 0` values never expire, so none is ever stale; give \
                                a `ttl` or remove `stale`"
                        .to_owned(),
                    _ => format!(
                        "with `ttl = 0` values never expire, so none is kept past it; give a \
                         `ttl` or remove `{what}`"
                    ),
                },
            ));
            return false;
        }
        Some(_) => {}
    }
    if let Ttl::Expr(expr) = window {
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
                    "`{what}` is shared by every call of `{name}` (its `{name}_prime` stores \
                     for `ttl + {what}`), so it cannot use the parameters or `self`; use a constant"
                ),
            ));
            return false;
        }
    }
    true
}

/// `stale` refreshes and `soft_timeout` finishes the body after the call
/// returned: what the body uses must be owned. Whether it is.
fn owns_what_it_uses(what: &str, func: &Function, errors: &mut Vec<syn::Error>) -> bool {
    let name = &func.sig.ident;
    let does = match what {
        "stale" => "refreshes the value in the background",
        _ => "lets a slow body finish in the background",
    };
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
                            "`{what}` {does}, after the call returned, so the body of `{name}` \
                             cannot borrow `self`; take `self: Arc<Self>` (or move what the body \
                             needs into a free function with owned parameters), or remove `{what}`"
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
                            "`{what}` {does}, after the call returned, so the body cannot use \
                             the borrowed parameter `{param}`; take it owned (`String`, `Vec<T>`, \
                             `Arc<T>`, a cloneable pool or client), or remove `{what}`"
                        ),
                    ));
                }
            }
        }
    }
    errors.len() == before
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
