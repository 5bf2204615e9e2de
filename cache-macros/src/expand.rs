//! The rewrite of a `#[cached]` function.
//!
//! ```text
//! async fn f<T>(a: A, b: B) -> R { body }
//! ```
//! becomes
//! ```text
//! async fn f<T>(a: A, b: B) -> R {
//!     let call = {
//!         let cache = <cache>; let spec = Spec::new(prefix, name).ttl(..)..;
//!         if <skip_cache> { Call::skip(cache, &spec) }
//!         else { key = T's name, then &a, &b, key(..) exprs; Call::new(cache, &key, &spec) }
//!     };
//!     let body = move || async move { body };
//!     <plain | result | option>(call, body).await
//! }
//! // and, unless turned off: f_key, f_invalidate, f_prime, f_invalidate_all
//! ```
//! The key is computed from borrowed arguments before the first `.await`, and
//! the user's body stays an `async move` block whose type is the declared
//! return type, so type errors point at the user's code. The block is made by
//! a closure, called only when the body has to run.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, FnArg, GenericArgument, GenericParam, Ident, Pat, PatType, PathArguments,
    ReturnType, Signature, Type, Visibility,
};

use crate::attr::{Args, Ttl};
use crate::batch::Batch;
use crate::function::{Function, bound_idents, mentions};
use crate::similar::closest;

/// The version of the macro, checked against the runtime's by generated code.
const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn expand(mut args: Args, mut func: Function) -> TokenStream {
    let mut errors = std::mem::take(&mut args.errors);
    lift_inner_attributes(&mut func.attrs);

    if func.sig.asyncness.is_none() {
        errors.push(not_async(&func.sig));
        // Emit the function as it is: it cannot be rewritten.
        let Function {
            attrs,
            vis,
            sig,
            block,
        } = &func;
        let errors = errors.iter().map(syn::Error::to_compile_error);
        return quote!(#(#errors)* #(#attrs)* #vis #sig #block);
    }

    let model = Model::new(&mut args, &func, &mut errors);
    let function = model.function(&args, &func);
    let helpers = model.helpers(&args, &func);
    let errors = errors.iter().map(syn::Error::to_compile_error);
    quote! {
        #(#errors)*
        #function
        #helpers
    }
}

/// What the rewrite needs to know about the function and its arguments.
struct Model {
    /// The function's name, as written.
    fn_name: String,
    is_method: bool,
    /// Every name the parameters bind.
    params: Vec<Ident>,
    /// The parameters in the key, in declaration order.
    key_params: Vec<Ident>,
    /// `false` when the key's parameters are not known for sure (an
    /// `ignore(..)` named no parameter): then none is put in the key, so that
    /// the error says what is wrong and no follow-on error what is not.
    key_args: bool,
    /// Whether `key(...)` expressions use `self`.
    key_uses_self: bool,
    /// The declared parameters the helpers take: those the key depends on.
    helper_inputs: Vec<PatType>,
    /// The function's type and const parameters, in declaration order.
    generics: Vec<Generic>,
    ret_type: TokenStream,
    ret_span: Span,
    /// The type `{fn}_prime` takes: the stored value's type.
    value_type: TokenStream,
    /// `ttl` depends on the call's arguments: `{fn}_prime` takes a TTL.
    ttl_per_call: bool,
    /// `batch = ids`, checked.
    batch: Option<Batch>,
    /// What the helpers of a batch function call one element.
    element: Ident,
}

enum Generic {
    Type(Ident),
    Const(Ident),
}

impl Model {
    fn new(args: &mut Args, func: &Function, errors: &mut Vec<syn::Error>) -> Model {
        let sig = &func.sig;
        let mut is_method = false;
        let mut params = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(_) => is_method = true,
                FnArg::Typed(typed) => bound_idents(&typed.pat, &mut params),
            }
        }

        // A name that is no parameter leaves the key without arguments: the
        // parameter it meant to leave out (a pool, a client) is often not
        // `Serialize`, and one error is enough.
        let mut key_args = true;
        args.ignore.retain(|ignored| {
            let known = params.contains(ignored) || (ignored == "self" && is_method);
            if !known {
                let names = params.iter().map(|p| p.to_string()).collect::<Vec<_>>();
                let hint = match closest(&ignored.to_string(), names.iter().map(String::as_str)) {
                    Some(name) => format!(" (did you mean `{name}`?)"),
                    None => format!(" (its parameters: {})", list(&names)),
                };
                errors.push(syn::Error::new(
                    ignored.span(),
                    format!("`{ignored}` is not a parameter of `{}`{hint}", sig.ident),
                ));
                key_args = false;
            }
            known
        });
        if let (Some(span), None) = (args.grouped, &args.key_prefix) {
            errors.push(syn::Error::new(
                span,
                "`grouped` needs a `key_prefix`: the group is the prefix",
            ));
            args.grouped = None;
        }
        // What every key of the function shares cannot depend on one call.
        let mentions_params = |expr: &Expr| mentions(expr.to_token_stream(), &params, true);
        for (what, expr) in [
            ("key_prefix", &mut args.key_prefix),
            ("version", &mut args.version),
            ("codec", &mut args.codec),
        ] {
            if let Some(bad) = expr.take_if(|e| mentions_params(e)) {
                errors.push(syn::Error::new_spanned(
                    bad,
                    format!(
                        "`{what}` is shared by every call of the function (its helpers and \
                         `{}_invalidate_all` use it), so it cannot use the parameters or `self`; \
                         use a constant, or put the value in the key with `key(...)`",
                        sig.ident
                    ),
                ));
            }
        }

        crate::windows::check(args, func, errors);
        let batch = crate::batch::check(args, func, errors);

        // Left out of the key: ignored parameters, the root of `cache = x` or
        // `cache = x.field`, and the parameter `skip_cache = flag` names.
        let cache_root = args.cache.as_ref().and_then(root_ident);
        let skip_param = match &args.skip_cache {
            Some(Expr::Path(path)) if path.qself.is_none() => path.path.get_ident().cloned(),
            _ => None,
        };
        let key_params: Vec<Ident> = params
            .iter()
            .filter(|p| {
                !args.ignore.contains(p)
                    && Some(*p) != cache_root.as_ref()
                    && Some(*p) != skip_param.as_ref()
            })
            .cloned()
            .collect();
        let key_uses_self = args
            .key
            .iter()
            .any(|e| mentions(e.to_token_stream(), &[], true));
        let key_mentions: Vec<Ident> = params
            .iter()
            .filter(|p| {
                args.key
                    .iter()
                    .any(|e| mentions(e.to_token_stream(), std::slice::from_ref(*p), false))
            })
            .cloned()
            .collect();
        let batch_param = batch.as_ref().map(|batch| &batch.ident);
        let helper_inputs = sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(typed) => Some(typed),
                FnArg::Receiver(_) => None,
            })
            .filter(|typed| {
                let mut bound = Vec::new();
                bound_idents(&typed.pat, &mut bound);
                bound.iter().any(|b| {
                    Some(b) != batch_param && (key_params.contains(b) || key_mentions.contains(b))
                })
            })
            .cloned()
            .collect();

        let generics = sig
            .generics
            .params
            .iter()
            .filter_map(|param| match param {
                GenericParam::Type(t) => Some(Generic::Type(t.ident.clone())),
                GenericParam::Const(c) => Some(Generic::Const(c.ident.clone())),
                GenericParam::Lifetime(_) => None,
            })
            .collect();

        let (ret_type, ret_span) = match &sig.output {
            ReturnType::Default => (quote!(()), sig.ident.span()),
            ReturnType::Type(_, ty) => (quote!(#ty), ty.span()),
        };
        let value_type = match &batch {
            Some(batch) => batch.value.to_token_stream(),
            None => stored_type(&sig.output, args).unwrap_or_else(|| ret_type.clone()),
        };
        let ttl_per_call = matches!(&args.ttl, Some(Ttl::Expr(expr)) if mentions_params(expr));
        let element = format_ident!(
            "{}",
            if params.iter().any(|p| p == "element") {
                "redis_memo_element"
            } else {
                "element"
            }
        );
        Model {
            fn_name: sig.ident.to_string(),
            is_method,
            params,
            key_params,
            key_args,
            key_uses_self,
            helper_inputs,
            generics,
            ret_type,
            ret_span,
            value_type,
            ttl_per_call,
            batch,
            element,
        }
    }

    /// The rewritten function.
    fn function(&self, args: &Args, func: &Function) -> TokenStream {
        let Function {
            attrs, vis, sig, ..
        } = func;
        let (call, cache, key, body, ret, skip) = (
            mixed("call"),
            mixed("cache"),
            mixed("key"),
            mixed("body"),
            mixed("ret"),
            mixed("skip"),
        );
        let cache_expr = match &args.cache {
            Some(expr) => quote_spanned! {expr.span()=>
                ::redis_memo::__private::cache_ref(&(#expr))
            },
            None => quote!(::redis_memo::__private::default_cache()),
        };
        let spec = self.spec(args, SpecUse::Call);
        if let Some(batch) = &self.batch {
            return self.batch_function(args, func, batch, cache_expr, spec);
        }
        let build_key = self.build_key(args, &key);
        let make_call = match &args.skip_cache {
            None => quote! {
                #build_key
                ::redis_memo::__private::Call::new(#cache, &#key, &__redis_memo_spec)
            },
            Some(expr) => {
                let skip_value = quote_spanned!(expr.span()=> let #skip: bool = #expr;);
                quote! {
                    #skip_value
                    if #skip {
                        ::redis_memo::__private::Call::skip(#cache, &__redis_memo_spec)
                    } else {
                        #build_key
                        ::redis_memo::__private::Call::new(#cache, &#key, &__redis_memo_spec)
                    }
                }
            }
        };
        let run = self.run(args, &call, &body);
        let returns_declared = returns_declared(&ret, &self.ret_type);
        let stmts = &func.block.stmts;
        quote! {
            #(#attrs)*
            #vis #sig {
                const _: () = ::redis_memo::__private::check_version(#VERSION);
                let #call = {
                    let #cache = #cache_expr;
                    let __redis_memo_spec = #spec;
                    #make_call
                };
                // A closure: the body's future is created only when the body
                // runs, so a hit's future does not carry the body's state.
                let #body = move || async move {
                    #returns_declared
                    #(#stmts)*
                };
                #run
            }
        }
    }

    /// How the call runs: `plain` (every value cached), `result` (only `Ok`),
    /// `option` (`None` uncached), or chosen by the return type.
    fn run(&self, args: &Args, call: &Ident, body: &Ident) -> TokenStream {
        let ret_span = self.ret_span;
        let ret_type = &self.ret_type;
        if args.stale.is_some() || args.soft_timeout.is_some() {
            return self.run_stale(args, call, body);
        }
        // `reuse`: how hits held in this process reuse a decoded value,
        // picked by the cached type (`Some` for `Clone` types).
        let returns =
            quote_spanned!(ret_span=> ::redis_memo::__private::Returns::<#ret_type>::new());
        let (runner, kept) = match (args.result, args.cache_none) {
            (Some((true, _)), _) => (quote!(result), quote!(#returns.kept_ok())),
            (_, Some((false, _))) => (quote!(option), quote!(#returns.kept_some())),
            (Some((false, _)), _) => (
                quote!(plain),
                quote_spanned!(ret_span=> ::redis_memo::__private::Keep::<#ret_type>::new()),
            ),
            // By the type, not by its name: `Result` and any alias of it
            // cache only `Ok`; every other type is cached as it is.
            _ => {
                return quote_spanned! {ret_span=>
                    {
                        #[allow(unused_imports)]
                        use ::redis_memo::__private::{
                            KeepClone as _, KeepNone as _, ReturnsPlain as _, ReturnsResult as _,
                        };
                        (&#returns).run(#call, #body, (&(&#returns).kept()).reuse()).await
                    }
                };
            }
        };
        quote_spanned! {ret_span=>
            {
                #[allow(unused_imports)]
                use ::redis_memo::__private::{KeepClone as _, KeepNone as _};
                ::redis_memo::__private::#runner(#call, #body, (&#kept).reuse()).await
            }
        }
    }

    /// [`run`](Self::run) for a function with `stale` or `soft_timeout`: the
    /// same choice, through the runners that run the body in the background
    /// (and own it).
    fn run_stale(&self, args: &Args, call: &Ident, body: &Ident) -> TokenStream {
        let ret_span = self.ret_span;
        let ret_type = &self.ret_type;
        let soft = args.soft_timeout.is_some();
        let runner = match (args.result, args.cache_none, soft) {
            (Some((true, _)), _, false) => quote!(stale_result),
            (_, Some((false, _)), false) => quote!(stale_option),
            (Some((false, _)), _, false) => quote!(stale_plain),
            (Some((true, _)), _, true) => quote!(soft_result),
            (_, Some((false, _)), true) => quote!(soft_option),
            (Some((false, _)), _, true) => quote!(soft_plain),
            _ => {
                let method = if soft {
                    quote!(run_soft)
                } else {
                    quote!(run_stale)
                };
                return quote_spanned! {ret_span=>
                    {
                        #[allow(unused_imports)]
                        use ::redis_memo::__private::{ReturnsPlain as _, ReturnsResult as _};
                        (&::redis_memo::__private::Returns::<#ret_type>::new())
                            .#method(#call, #body)
                            .await
                    }
                };
            }
        };
        quote_spanned!(ret_span=> ::redis_memo::__private::#runner(#call, #body).await)
    }

    /// Statements that leave the call's key arguments in `key`: the generic
    /// instantiation, then each key parameter, then each `key(...)` expression.
    /// A batch function's helpers put their one element (a `&K`) where the
    /// batch parameter is.
    fn build_key(&self, args: &Args, key: &Ident) -> TokenStream {
        let (head, tail) = self.key_parts(args, key);
        let element = self.batch.as_ref().map(|_| {
            let element = &self.element;
            quote!(#key.arg(#element);)
        });
        quote! {
            let mut #key = ::redis_memo::__private::KeyBuilder::new();
            #head
            #element
            #tail
        }
    }

    /// The key's arguments before the batch parameter (all of them without
    /// one), and those after it with the `key(...)` expressions.
    fn key_parts(&self, args: &Args, key: &Ident) -> (TokenStream, TokenStream) {
        let generics = self.generics.iter().map(|g| match g {
            Generic::Type(t) => quote!(#key.generic(::core::any::type_name::<#t>());),
            Generic::Const(c) => quote!(#key.generic(&::std::string::ToString::to_string(&#c));),
        });
        let split = self
            .batch
            .as_ref()
            .and_then(|batch| self.key_params.iter().position(|p| *p == batch.ident));
        let (before, after) = match split {
            Some(at) => (&self.key_params[..at], &self.key_params[at + 1..]),
            None => (&self.key_params[..], &[][..]),
        };
        let (before, after) = match self.key_args {
            true => (before, after),
            false => (&[][..], &[][..]),
        };
        let arg = |p: &Ident| quote_spanned! {p.span()=> #key.arg(&#p); };
        let (before, after) = (before.iter().map(arg), after.iter().map(arg));
        let exprs = args.key.iter().map(|e| {
            quote_spanned! {e.span()=> #key.arg(&(#e)); }
        });
        (
            quote!(#(#generics)* #(#before)*),
            quote!(#(#after)* #(#exprs)*),
        )
    }

    /// The rewritten function of `batch = ids`: the runtime's `Batch` of the
    /// ids with a key per element, and the body as a loader of the ids to
    /// load, the parameter bound to them in its own type.
    fn batch_function(
        &self,
        args: &Args,
        func: &Function,
        batch: &Batch,
        cache_expr: TokenStream,
        spec: TokenStream,
    ) -> TokenStream {
        let Function { attrs, vis, .. } = func;
        // The parameter gives its ids to the runtime and is bound again, in
        // the body, to the ids to load: a `mut` on it is the body's.
        let mut sig = func.sig.clone();
        for input in &mut sig.inputs {
            if let FnArg::Typed(typed) = input
                && matches!(&*typed.pat, Pat::Ident(pat) if pat.ident == batch.ident && pat.mutability.is_some())
            {
                typed.attrs.push(syn::parse_quote!(#[allow(unused_mut)]));
            }
        }
        let (call, cache, key, body, ret, skip, missing, element) = (
            mixed("call"),
            mixed("cache"),
            mixed("key"),
            mixed("body"),
            mixed("ret"),
            mixed("skip"),
            mixed("missing"),
            mixed("element"),
        );
        let ids = batch.ids();
        let (head, tail) = self.key_parts(args, &key);
        let make_call = quote! {
            let mut #key = ::redis_memo::__private::KeyBuilder::new();
            #head
            ::redis_memo::__private::Batch::new(
                #cache,
                &__redis_memo_spec,
                #ids,
                &#key,
                |#key: &mut ::redis_memo::__private::KeyBuilder, #element| {
                    #key.arg(#element);
                    #tail
                },
            )
        };
        let make_call = match &args.skip_cache {
            None => make_call,
            Some(expr) => {
                let skip_value = quote_spanned!(expr.span()=> let #skip: bool = #expr;);
                quote! {
                    #skip_value
                    if #skip {
                        ::redis_memo::__private::Batch::skip(#cache, &__redis_memo_spec, #ids)
                    } else {
                        #make_call
                    }
                }
            }
        };
        let elem = &batch.elem;
        let rebind = batch.rebind(&missing);
        let runner = if batch.result {
            quote!(batch_result)
        } else {
            quote!(batch_plain)
        };
        let returns_declared = returns_declared(&ret, &self.ret_type);
        let stmts = &func.block.stmts;
        let run = quote_spanned! {self.ret_span=>
            ::redis_memo::__private::#runner(#call, #body).await
        };
        quote! {
            #(#attrs)*
            #vis #sig {
                const _: () = ::redis_memo::__private::check_version(#VERSION);
                let #call = {
                    let #cache = #cache_expr;
                    let __redis_memo_spec = #spec;
                    #make_call
                };
                // The loader: the body, with the batch parameter bound to
                // the ids to load, in its own type.
                let #body = move |#missing: ::std::vec::Vec<#elem>| async move {
                    #rebind
                    #returns_declared
                    #(#stmts)*
                };
                #run
            }
        }
    }

    /// The function's `Spec`: for a call, every argument; for the helpers,
    /// those that do not depend on one call (`ttl` is passed to `_prime`).
    fn spec(&self, args: &Args, usage: SpecUse) -> TokenStream {
        let prefix = match &args.key_prefix {
            Some(expr) => quote_spanned!(expr.span()=> #expr),
            None => quote!(""),
        };
        let name = self.name(args);
        let mut spec = quote!(::redis_memo::__private::Spec::new(#prefix, #name));
        let seconds = |ttl: &Ttl| match ttl {
            Ttl::Secs(secs) => quote!(::redis_memo::Ttl::secs(#secs)),
            Ttl::Expr(expr) => quote_spanned! {expr.span()=>
                ::redis_memo::__private::IntoTtl::into_ttl(#expr)
            },
        };
        match (&args.ttl, usage) {
            (_, SpecUse::Key) | (None, _) => {}
            (Some(_), SpecUse::Prime) if self.ttl_per_call => spec.extend(quote!(.ttl(
                ::redis_memo::__private::IntoTtl::into_ttl(ttl)
            ))),
            (Some(ttl), _) => {
                let ttl = seconds(ttl);
                spec.extend(quote!(.ttl(#ttl)));
            }
        }
        // Only a call takes leases, so `lease` may use the call's parameters.
        if let (Some(lease), SpecUse::Call) = (&args.lease, usage) {
            let lease = seconds(lease);
            spec.extend(quote!(.lease(#lease)));
        }
        if let (Some((stale, _)), SpecUse::Call | SpecUse::Prime) = (&args.stale, usage) {
            let stale = seconds(stale);
            spec.extend(quote!(.stale(#stale)));
        }
        if let (Some((keep, _)), SpecUse::Call | SpecUse::Prime) = (&args.fail_safe, usage) {
            let keep = seconds(keep);
            spec.extend(quote!(.fail_safe(#keep)));
        }
        if let (Some(wait), SpecUse::Call) = (&args.fail_safe_throttle, usage) {
            let wait = seconds(wait);
            spec.extend(quote!(.fail_safe_throttle(#wait)));
        }
        if let (Some((wait, _)), SpecUse::Call) = (&args.soft_timeout, usage) {
            spec.extend(quote_spanned!(wait.span()=> .soft_timeout(#wait)));
        }
        if let (Some(expr), SpecUse::Call | SpecUse::Prime) = (&args.ttl_jitter, usage) {
            spec.extend(quote_spanned!(expr.span()=> .ttl_jitter(#expr)));
        }
        if let Some(expr) = &args.version {
            spec.extend(quote_spanned!(expr.span()=> .version(#expr)));
        }
        if let Some(local) = args.local {
            spec.extend(quote!(.local(#local)));
        }
        if args.grouped.is_some() {
            spec.extend(quote!(.grouped()));
        }
        if let Some(expr) = &args.codec {
            spec.extend(quote_spanned!(expr.span()=> .codec(#expr)));
        }
        spec
    }

    /// The qualified name: `name = ...`, or the module path, the `Self` type
    /// for methods, and the function's name.
    fn name(&self, args: &Args) -> TokenStream {
        match (&args.name, self.is_method) {
            (Some(lit), _) => quote!(::redis_memo::__private::FnName::Custom(#lit)),
            (None, true) => {
                let function = &self.fn_name;
                quote! {
                    ::redis_memo::__private::FnName::Method {
                        module: ::core::module_path!(),
                        self_type: ::core::any::type_name::<Self>(),
                        function: #function,
                    }
                }
            }
            (None, false) => {
                let function = &self.fn_name;
                quote! {
                    ::redis_memo::__private::FnName::Free {
                        module: ::core::module_path!(),
                        function: #function,
                    }
                }
            }
        }
    }

    /// `{fn}_key`, `{fn}_invalidate`, `{fn}_prime`, `{fn}_invalidate_all`,
    /// unless turned off. On by default for functions without `self`; a
    /// method's helpers would break a trait impl, so they are opt-in.
    fn helpers(&self, args: &Args, func: &Function) -> TokenStream {
        let enabled = args.helpers.enabled.unwrap_or(!self.is_method);
        if !enabled {
            return TokenStream::new();
        }
        let sig = &func.sig;
        let base = args
            .helpers
            .name
            .clone()
            .unwrap_or_else(|| sig.ident.clone());
        // `pub` helpers would add public items a library did not ask for: by
        // default they are at most `pub(crate)`, defined by a macro whose
        // line says so in the error of a use from another crate.
        let capped = args.helpers.vis.is_none() && matches!(func.vis, Visibility::Public(_));
        let vis = match &args.helpers.vis {
            Some(vis) => vis.to_token_stream(),
            None if capped => TokenStream::new(),
            None => func.vis.to_token_stream(),
        };
        let define = |helper: TokenStream| match capped {
            true => quote!(::redis_memo::__private::crate_helper! { #helper }),
            false => helper,
        };
        let cfgs: Vec<&Attribute> = func
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg") || a.path().is_ident("cfg_attr"))
            .collect();
        let fn_ident = &sig.ident;
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        let taken = |name: &str| self.params.iter().any(|p| p == name);
        let cache = format_ident!(
            "{}",
            if taken("cache") {
                "redis_memo_cache"
            } else {
                "cache"
            }
        );
        let value = format_ident!(
            "{}",
            if taken("value") {
                "redis_memo_value"
            } else {
                "value"
            },
            span = self.ret_span
        );
        let receiver = self.key_uses_self.then(|| quote!(&self,));
        let inputs = &self.helper_inputs;
        // A batch function's helpers take one element, after the other
        // arguments.
        let element_param = self.batch.as_ref().map(|batch| {
            let (element, elem) = (&self.element, &batch.elem);
            quote!(#element: &#elem,)
        });
        let key = mixed("key");
        let build_key = self.build_key(args, &key);
        let spec = self.spec(args, SpecUse::Key);
        let prime_spec = self.spec(args, SpecUse::Prime);
        let value_type = &self.value_type;
        let ttl_param = self
            .ttl_per_call
            .then(|| quote!(ttl: impl ::redis_memo::__private::IntoTtl,));
        let allow = quote! {
            #[allow(dead_code, unused_variables, unused_mut, clippy::too_many_arguments)]
        };
        let doc = |text: String| quote!(#[doc = #text]);
        let link = if self.is_method {
            format!("[`{fn_ident}`](Self::{fn_ident})")
        } else {
            format!("[`{fn_ident}`]")
        };
        let key_doc = doc(format!(
            "The cache key of one call of {link} with these arguments (the parameters \
             left out of the key are left out here too)."
        ));
        let invalidate_doc = doc(format!(
            "Deletes the cached result of one call of {link}; `true` when there was one."
        ));
        let prime_doc = doc(format!(
            "Stores `{value}` as the cached result of one call of {link}."
        ));
        let all_doc = doc(format!(
            "Deletes every cached result of {link} (every version, every generic \
             instantiation, nothing of another function); returns how many."
        ));
        let key_fn = format_ident!("{}_key", base);
        let invalidate_fn = format_ident!("{}_invalidate", base);
        let prime_fn = format_ident!("{}_prime", base);
        let all_fn = format_ident!("{}_invalidate_all", base);
        let prime_call = quote_spanned! {self.ret_span=>
            ::redis_memo::__private::prime_call::<#value_type>(#cache, &#key, &__redis_memo_spec, #value).await
        };
        let key_helper = define(quote! {
            #(#cfgs)*
            #key_doc
            #allow
            #vis async fn #key_fn #generics (
                #receiver
                #cache: &::redis_memo::Cache,
                #(#inputs,)*
                #element_param
            ) -> ::core::result::Result<::std::string::String, ::redis_memo::Error> #where_clause {
                let __redis_memo_spec = #spec;
                #build_key
                ::redis_memo::__private::key_of(#cache, &#key, &__redis_memo_spec).await
            }
        });
        let invalidate_helper = define(quote! {
            #(#cfgs)*
            #invalidate_doc
            #allow
            #vis async fn #invalidate_fn #generics (
                #receiver
                #cache: &::redis_memo::Cache,
                #(#inputs,)*
                #element_param
            ) -> ::core::result::Result<bool, ::redis_memo::Error> #where_clause {
                let __redis_memo_spec = #spec;
                #build_key
                ::redis_memo::__private::invalidate_call(#cache, &#key, &__redis_memo_spec).await
            }
        });
        let prime_helper = define(quote! {
            #(#cfgs)*
            #prime_doc
            #allow
            #vis async fn #prime_fn #generics (
                #receiver
                #cache: &::redis_memo::Cache,
                #(#inputs,)*
                #element_param
                #value: &#value_type,
                #ttl_param
            ) -> ::core::result::Result<(), ::redis_memo::Error> #where_clause {
                let __redis_memo_spec = #prime_spec;
                #build_key
                #prime_call
            }
        });
        let all_helper = define(quote! {
            #(#cfgs)*
            #all_doc
            #allow
            #vis async fn #all_fn(
                #cache: &::redis_memo::Cache,
            ) -> ::core::result::Result<u64, ::redis_memo::Error> {
                let __redis_memo_spec = #spec;
                ::redis_memo::__private::invalidate_function(#cache, &__redis_memo_spec).await
            }
        });
        quote! {
            #key_helper
            #invalidate_helper
            #prime_helper
            #all_helper
        }
    }
}

/// Where a `Spec` is built, which decides where its `ttl` comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SpecUse {
    /// The call: every argument, evaluated once per call.
    Call,
    /// `{fn}_prime`: a `ttl` that depends on the call is its `ttl` parameter.
    Prime,
    /// The other helpers: no `ttl` (they neither read nor write values).
    Key,
}

/// `#![...]` inside the body becomes `#[...]` on the function: the body is
/// moved into a closure, where an inner attribute could not stay.
fn lift_inner_attributes(attrs: &mut [Attribute]) {
    for attr in attrs {
        attr.style = syn::AttrStyle::Outer;
    }
}

/// The error for a function that is not `async`, telling `#[async_trait]`'s
/// rewrite apart from a plain `fn`.
/// A statement that gives a body's block the declared return type, so that
/// `?` and `return` in the body check against it; it never runs.
fn returns_declared(ret: &Ident, ret_type: &TokenStream) -> TokenStream {
    quote! {
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            let #ret: #ret_type = loop {};
            return #ret;
        }
    }
}

fn not_async(sig: &Signature) -> syn::Error {
    let output = sig.output.to_token_stream().to_string();
    let rewritten = output.contains("Future") && output.contains("Pin")
        || sig
            .generics
            .lifetimes()
            .any(|l| l.lifetime.ident == "async_trait");
    if rewritten {
        return syn::Error::new_spanned(
            sig.fn_token,
            "#[cached] sees this function after #[async_trait] rewrote it into a fn returning a \
             boxed future, which it cannot cache; remove #[async_trait] (async fn in traits works \
             without it since Rust 1.75), or call a #[cached] inherent fn from this method",
        );
    }
    syn::Error::new_spanned(
        sig.fn_token,
        "#[cached] works on `async fn` only; make this function `async`",
    )
}

/// The type `{fn}_prime` stores: `T` of a `Result<T, E>` (or of an alias
/// whose name ends in `Result`, or any type with `result`), `T` of an
/// `Option<T>` with `cache_none = false`, else the return type.
fn stored_type(output: &ReturnType, args: &Args) -> Option<TokenStream> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(path) = &**ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    let name = last.ident.to_string();
    let first_type = || {
        let PathArguments::AngleBracketed(generic) = &last.arguments else {
            return None;
        };
        generic.args.iter().find_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty.to_token_stream()),
            _ => None,
        })
    };
    let forced_result = matches!(args.result, Some((true, _)));
    let plain = matches!(args.result, Some((false, _)));
    let no_none = matches!(args.cache_none, Some((false, _)));
    if forced_result || (!plain && name.ends_with("Result")) || (no_none && name == "Option") {
        return first_type();
    }
    None
}

/// The root of `x`, `x.field`, `x.method()`, `&x`, `*x`: the parameter a
/// `cache = ...` expression reads.
fn root_ident(expr: &Expr) -> Option<Ident> {
    match expr {
        Expr::Path(path) if path.qself.is_none() => path.path.get_ident().cloned(),
        Expr::Field(field) => root_ident(&field.base),
        Expr::MethodCall(call) => root_ident(&call.receiver),
        Expr::Reference(reference) => root_ident(&reference.expr),
        Expr::Unary(unary) => root_ident(&unary.expr),
        Expr::Paren(paren) => root_ident(&paren.expr),
        _ => None,
    }
}

fn mixed(name: &str) -> Ident {
    format_ident!("__redis_memo_{}", name, span = Span::mixed_site())
}

/// `a`, `a` and `b`, `a`, `b` and `c`: names in backticks.
fn list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => "none".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}
