//! The `#[cached]` attribute of [redis-memo](https://docs.rs/redis-memo).
//!
//! Use it through the `redis-memo` crate (`redis_memo::cached`); the generated
//! code refers to the runtime through `::redis_memo::__private`. The attribute
//! reference is in the `redis-memo` crate documentation.

mod attr;
mod expand;

use proc_macro::TokenStream;

/// Memoizes an `async fn` in a [`Cache`](https://docs.rs/redis-memo/latest/redis_memo/struct.Cache.html).
/// See the `redis-memo` crate documentation for the arguments.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut parsed = attr::Args::default();
    let parser = syn::meta::parser(|meta| parsed.parse_entry(meta));
    let result = syn::parse::Parser::parse(parser, args)
        .and_then(|()| syn::parse::<syn::ItemFn>(item.clone()))
        .and_then(|func| expand::expand(parsed, func));
    match result {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            // Keep the user's function so the IDE and later errors still see it.
            let mut out: TokenStream = err.to_compile_error().into();
            out.extend(item);
            out
        }
    }
}
