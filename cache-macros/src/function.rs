//! The function `#[cached]` is on, as parsed, and what the checks and the
//! rewrite ask of its syntax: the names its parameters bind, whether tokens
//! use them.

use proc_macro2::{TokenStream, TokenTree};
use syn::{Attribute, Block, Ident, Pat, Signature, Visibility};

/// The function `#[cached]` is on: a free function, a method of an `impl`
/// block, or a default method of a trait.
pub struct Function {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub sig: Signature,
    pub block: Block,
}

/// A free function or impl method (`ItemFn`), or a trait method with a
/// default body (`TraitItemFn`).
pub fn parse(item: TokenStream) -> syn::Result<Function> {
    if let Ok(func) = syn::parse2::<syn::ItemFn>(item.clone()) {
        return Ok(Function {
            attrs: func.attrs,
            vis: func.vis,
            sig: func.sig,
            block: *func.block,
        });
    }
    let func = syn::parse2::<syn::TraitItemFn>(item)?;
    match func.default {
        Some(block) => Ok(Function {
            attrs: func.attrs,
            vis: Visibility::Inherited,
            sig: func.sig,
            block,
        }),
        None => Err(syn::Error::new_spanned(
            &func.sig.ident,
            "#[cached] needs the function's body: put it on the implementation, or give the \
             trait method a default body",
        )),
    }
}

/// Whether tokens use one of `names` (or `self`, when `with_self`).
pub fn mentions(tokens: TokenStream, names: &[Ident], with_self: bool) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => (with_self && ident == "self") || names.contains(&ident),
        TokenTree::Group(group) => mentions(group.stream(), names, with_self),
        _ => false,
    })
}

/// The names a parameter pattern binds: `x`, `mut x`, `(a, b)`, `Point { x, y }`, ...
pub fn bound_idents(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            out.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                bound_idents(sub, out);
            }
        }
        Pat::Tuple(p) => p.elems.iter().for_each(|e| bound_idents(e, out)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|e| bound_idents(e, out)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| bound_idents(&f.pat, out)),
        Pat::Slice(p) => p.elems.iter().for_each(|e| bound_idents(e, out)),
        Pat::Reference(p) => bound_idents(&p.pat, out),
        Pat::Paren(p) => bound_idents(&p.pat, out),
        Pat::Type(p) => bound_idents(&p.pat, out),
        Pat::Or(p) => {
            if let Some(first) = p.cases.first() {
                bound_idents(first, out);
            }
        }
        _ => {}
    }
}
