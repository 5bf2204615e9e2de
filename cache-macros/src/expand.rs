//! The rewrite of a `#[cached]` function.
//!
//! ```text
//! async fn f(a: A, b: B) -> R { body }
//! ```
//! becomes
//! ```text
//! async fn f(a: A, b: B) -> R {
//!     let call = if skip_cache { Call::skip(&spec) } else { Call::new(cache, key of (&a, &b), &spec) };
//!     let body = move || async move { body };
//!     __private::plain(call, body).await        // or __private::result for Result<T, E>
//! }
//! ```
//! The key is computed from borrowed arguments before the first `.await`, and the
//! user's body stays an `async move` block whose type is the declared return
//! type, so type errors point at the user's code. The block is made by a
//! closure, called only when the body has to run: on a hit the body's future
//! (its locals and everything it awaits) is never created, so the call's
//! future stays the same size whatever the body does.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::attr::{Args, Ttl};

pub fn expand(args: Args, func: ItemFn) -> syn::Result<TokenStream> {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
        ..
    } = &func;

    if sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            sig.fn_token,
            "#[cached] works on `async fn` only; make this function `async`",
        ));
    }

    let mut is_method = false;
    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(_) => is_method = true,
            FnArg::Typed(typed) => bound_idents(&typed.pat, &mut params),
        }
    }

    for ignored in &args.ignore {
        let is_self = ignored == "self" && is_method;
        if !is_self && !params.contains(ignored) {
            return Err(syn::Error::new(
                ignored.span(),
                format!("`{ignored}` is not a parameter of `{}`", sig.ident),
            ));
        }
    }

    if let (Some(span), None) = (args.grouped, &args.key_prefix) {
        return Err(syn::Error::new(
            span,
            "`grouped` needs a `key_prefix`: the group is the prefix",
        ));
    }

    // `cache = c` where `c` is a parameter: that parameter is the cache, not a key part.
    let cache_param = match &args.cache {
        Some(Expr::Path(path)) if path.qself.is_none() => path.path.get_ident(),
        _ => None,
    };
    let is_key_param = |p: &Ident| !args.ignore.contains(p) && Some(p) != cache_param;
    let key_params: Vec<&Ident> = params.iter().filter(|p| is_key_param(p)).collect();

    let call = mixed("call");
    let skip = mixed("skip");
    let cache = mixed("cache");
    let key_args = mixed("args");
    let body = mixed("body");
    let ret = mixed("ret");

    let cache_expr = match &args.cache {
        Some(expr) => quote_spanned! {expr.span()=>
            ::redis_memo::__private::cache_ref(&(#expr))
        },
        None => quote!(::redis_memo::__private::default_cache()),
    };
    let spec = spec(&args, &sig.ident, is_method);
    let spec_var = mixed("spec");
    let add_args = add_args(&key_args, &key_params);
    let make_call = match &args.skip_cache {
        None => quote! {{
            let #cache = #cache_expr;
            let mut #key_args = ::redis_memo::__private::KeyBuilder::new();
            #add_args
            ::redis_memo::__private::Call::new(#cache, &#key_args, &#spec_var)
        }},
        Some(expr) => {
            let skip_value = quote_spanned!(expr.span()=> let #skip: bool = #expr;);
            quote! {{
                let #cache = #cache_expr;
                #skip_value
                if #skip {
                    ::redis_memo::__private::Call::skip(#cache, &#spec_var)
                } else {
                    let mut #key_args = ::redis_memo::__private::KeyBuilder::new();
                    #add_args
                    ::redis_memo::__private::Call::new(#cache, &#key_args, &#spec_var)
                }
            }}
        }
    };

    let (ret_type, ret_span) = match &sig.output {
        ReturnType::Default => (quote!(()), sig.ident.span()),
        ReturnType::Type(_, ty) => (quote!(#ty), ty.span()),
    };
    let is_result = returns_result(&sig.output);
    // Spanned on the return type (on `T` of `Result<T, E>`): "not Serialize /
    // DeserializeOwned" points there.
    let ret_span = if is_result {
        ok_type_span(&sig.output).unwrap_or(ret_span)
    } else {
        ret_span
    };
    let run = if is_result {
        quote_spanned!(ret_span=> ::redis_memo::__private::result(#call, #body).await)
    } else {
        quote_spanned!(ret_span=> ::redis_memo::__private::plain(#call, #body).await)
    };
    let stmts = &block.stmts;

    // Typed per-call helpers, next to the function: `{fn}_key`, `{fn}_invalidate`,
    // `{fn}_prime`. Associated functions (no `self`), so the same tokens work in
    // a module and inside an `impl` block.
    let key_inputs: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => Some(typed),
            FnArg::Receiver(_) => None,
        })
        .filter(|typed| {
            let mut bound = Vec::new();
            bound_idents(&typed.pat, &mut bound);
            bound.iter().any(is_key_param)
        })
        .collect();
    let taken = |name: &str| params.iter().any(|p| p == name);
    let helper_cache = format_ident!(
        "{}",
        if taken("cache") {
            "redis_memo_cache"
        } else {
            "cache"
        }
    );
    // Spanned on the return type, like the calls that need it `Serialize`.
    let helper_value = format_ident!(
        "{}",
        if taken("value") {
            "redis_memo_value"
        } else {
            "value"
        },
        span = ret_span
    );
    let prime_call = quote_spanned! {ret_span=>
        ::redis_memo::__private::prime_call(#helper_cache, &#key_args, &#spec, #helper_value).await
    };
    let value_type = if is_result {
        quote!(<#ret_type as ::redis_memo::__private::OkType>::Ok)
    } else {
        ret_type.clone()
    };
    let fn_ident = &sig.ident;
    let key_fn = format_ident!("{}_key", fn_ident);
    let invalidate_fn = format_ident!("{}_invalidate", fn_ident);
    let prime_fn = format_ident!("{}_prime", fn_ident);
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;
    let doc_key = format!(
        "The cache key of one call of [`{fn_ident}`](Self::{fn_ident}) with these arguments \
         (the call's other parameters are not part of the key)."
    );
    let doc_key = if is_method {
        doc_key
    } else {
        doc_key.replace("(Self::", "(")
    };
    let doc_invalidate = format!(
        "Deletes the cached result of one call of `{fn_ident}`; `true` when there was one."
    );
    let doc_prime =
        format!("Stores `{helper_value}` as the cached result of one call of `{fn_ident}`.");
    let helper_prelude = quote! {
        let mut #key_args = ::redis_memo::__private::KeyBuilder::new();
        #add_args
    };

    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let #call = {
                let #spec_var = #spec;
                #make_call
            };
            // A closure: the body's future is created only when the body
            // runs, so a hit's future does not carry the body's state.
            let #body = move || async move {
                // Gives the block the declared return type, so `?` and `return`
                // in the body check against it.
                #[allow(unreachable_code)]
                if false {
                    let #ret: #ret_type = loop {};
                    return #ret;
                }
                #(#stmts)*
            };
            #run
        }

        #[doc = #doc_key]
        #[allow(dead_code, unused_variables, unused_mut, clippy::too_many_arguments)]
        #vis async fn #key_fn #generics (
            #helper_cache: &::redis_memo::Cache,
            #(#key_inputs),*
        ) -> ::core::result::Result<::std::string::String, ::redis_memo::Error> #where_clause {
            #helper_prelude
            ::redis_memo::__private::key_of(#helper_cache, &#key_args, &#spec).await
        }

        #[doc = #doc_invalidate]
        #[allow(dead_code, unused_variables, unused_mut, clippy::too_many_arguments)]
        #vis async fn #invalidate_fn #generics (
            #helper_cache: &::redis_memo::Cache,
            #(#key_inputs),*
        ) -> ::core::result::Result<bool, ::redis_memo::Error> #where_clause {
            #helper_prelude
            ::redis_memo::__private::invalidate_call(#helper_cache, &#key_args, &#spec).await
        }

        #[doc = #doc_prime]
        #[allow(dead_code, unused_variables, unused_mut, clippy::too_many_arguments)]
        #vis async fn #prime_fn #generics (
            #helper_cache: &::redis_memo::Cache,
            #(#key_inputs,)*
            #helper_value: &#value_type,
        ) -> ::core::result::Result<(), ::redis_memo::Error> #where_clause {
            #helper_prelude
            #prime_call
        }
    })
}

/// `KeyBuilder::arg` for each key parameter, spanned on the parameter so that
/// "not `Serialize`" points at it.
fn add_args(key_args: &Ident, key_params: &[&Ident]) -> TokenStream {
    let calls = key_params.iter().map(|param| {
        quote_spanned! {param.span()=> #key_args.arg(&#param); }
    });
    quote!(#(#calls)*)
}

/// The `__private::Spec` of the function, built by its constructor and one
/// method per argument given.
fn spec(args: &Args, ident: &Ident, is_method: bool) -> TokenStream {
    let prefix = match &args.key_prefix {
        Some(lit) => quote!(#lit),
        None => quote!(""),
    };
    let fn_name = ident.to_string();
    let name = match (&args.name, is_method) {
        (Some(lit), _) => quote!(::redis_memo::__private::FnName::Custom(#lit)),
        (None, true) => quote! {
            ::redis_memo::__private::FnName::Method {
                module: ::core::module_path!(),
                self_type: ::core::any::type_name::<Self>(),
                function: #fn_name,
            }
        },
        (None, false) => quote! {
            ::redis_memo::__private::FnName::Free {
                module: ::core::module_path!(),
                function: #fn_name,
            }
        },
    };
    let mut spec = quote!(::redis_memo::__private::Spec::new(#prefix, #name));
    let seconds = |ttl: &Ttl| match ttl {
        Ttl::Secs(secs) => quote!(::redis_memo::Ttl::secs(#secs)),
        Ttl::Expr(expr) => quote_spanned! {expr.span()=>
            ::redis_memo::__private::IntoTtl::into_ttl(#expr)
        },
    };
    if let Some(ttl) = &args.ttl {
        let ttl = seconds(ttl);
        spec.extend(quote!(.ttl(#ttl)));
    }
    if let Some(lease) = &args.lease {
        let lease = seconds(lease);
        spec.extend(quote!(.lease(#lease)));
    }
    if let Some(expr) = &args.version {
        spec.extend(quote_spanned!(expr.span()=> .version(#expr)));
    }
    if args.grouped.is_some() {
        spec.extend(quote!(.grouped()));
    }
    if let Some(expr) = &args.codec {
        spec.extend(quote_spanned!(expr.span()=> .codec(#expr)));
    }
    spec
}

fn mixed(name: &str) -> Ident {
    format_ident!("__redis_memo_{}", name, span = Span::mixed_site())
}

/// Whether the declared return type is a `Result` (`Result`, `io::Result`,
/// `anyhow::Result`, ...): then only `Ok` values are cached.
fn returns_result(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    let Type::Path(path) = &**ty else {
        return false;
    };
    path.qself.is_none()
        && path
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Result")
}

/// The span of `T` in a `Result<T, E>` return type.
fn ok_type_span(output: &ReturnType) -> Option<Span> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(path) = &**ty else {
        return None;
    };
    let syn::PathArguments::AngleBracketed(args) = &path.path.segments.last()?.arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        syn::GenericArgument::Type(ok) => Some(ok.span()),
        _ => None,
    })
}

/// The names a parameter pattern binds: `x`, `mut x`, `(a, b)`, `Point { x, y }`, ...
fn bound_idents(pat: &Pat, out: &mut Vec<Ident>) {
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
