//! The typed model of `#[cached(...)]` and its parser.
//!
//! The parser never stops at the first mistake: each bad argument is recorded
//! as an error spanned on its tokens, skipped, and left at its default, so the
//! function and its helpers are still generated next to the errors (callers
//! and the IDE keep seeing them).

use crate::similar::closest;
use proc_macro2::{Span, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{BinOp, Expr, ExprLit, ExprUnary, Ident, Lit, LitStr, Token, UnOp, Visibility};

/// Every argument of `#[cached(...)]`; all optional.
#[derive(Default)]
pub struct Args {
    /// `ttl = 300` (validated integer literal) or `ttl = EXPR`.
    pub ttl: Option<Ttl>,
    /// `key_prefix = "users:"` or `key_prefix = SOME_CONST`.
    pub key_prefix: Option<Expr>,
    pub skip_cache: Option<Expr>,
    pub cache: Option<Expr>,
    pub ignore: Vec<Ident>,
    /// `key(self.tenant_id, region)`: expressions added to the key.
    pub key: Vec<Expr>,
    pub name: Option<LitStr>,
    /// `version = 3` or a const `u32` expression.
    pub version: Option<Expr>,
    /// `lease = 5`: cross-process stampede control, like `ttl`.
    pub lease: Option<Ttl>,
    /// Where `lease` was written.
    pub lease_span: Option<Span>,
    /// `codec = redis_memo::Codec::MessagePack`.
    pub codec: Option<Expr>,
    /// `ttl_jitter = 0.1`: stored TTLs spread over `ttl·(1 ± 0.1)`.
    pub ttl_jitter: Option<Expr>,
    /// `stale = 30`: served stale that long after `ttl` while refreshed in
    /// the background, like `ttl`; with the span of the key.
    pub stale: Option<(Ttl, Span)>,
    /// `fail_safe = 3600`: kept that long after `ttl`, to return when the
    /// body fails, like `ttl`; with the span of the key.
    pub fail_safe: Option<(Ttl, Span)>,
    /// `fail_safe_throttle = 30`: how long the body is not run again after a
    /// failure, like `ttl`.
    pub fail_safe_throttle: Option<Ttl>,
    /// `soft_timeout = Duration::from_millis(200)`: with the span of the key.
    pub soft_timeout: Option<(Expr, Span)>,
    /// `grouped` / `grouped = true`: the span of the key, when on.
    pub grouped: Option<Span>,
    /// `helpers`, `helpers = false`, `helpers(name = "...", vis = pub(crate))`.
    pub helpers: Helpers,
    /// `result` / `result = false`: whether only `Ok` is cached, when the
    /// type cannot tell (the return type is a type parameter, ...).
    pub result: Option<(bool, Span)>,
    /// `cache_none = false`: an `Option` return leaves `None` uncached.
    pub cache_none: Option<(bool, Span)>,
    /// `local = false`: the cache's local tier neither serves nor keeps values.
    pub local: Option<bool>,
    /// `batch = ids`: the parameter holding the ids of a batch loader.
    pub batch: Option<Ident>,
    /// The arguments already seen, to reject duplicates.
    seen: Vec<String>,
    /// Every mistake found, each spanned on its tokens.
    pub errors: Vec<syn::Error>,
}

/// What to generate next to the function.
#[derive(Default)]
pub struct Helpers {
    /// `None`: the default (on for functions without `self`, off for methods).
    pub enabled: Option<bool>,
    /// The base of the helpers' names, instead of the function's name.
    pub name: Option<Ident>,
    /// Their visibility, instead of the function's (capped at `pub(crate)`).
    pub vis: Option<Visibility>,
}

pub enum Ttl {
    /// An integer literal, or arithmetic over them (`5 * 60`), in seconds.
    Secs(u64),
    /// Any other expression: `u64`, `u32`, `usize` seconds or a `Duration`.
    Expr(Expr),
}

/// Every argument the attribute takes.
const KNOWN_NAMES: [&str; 21] = [
    "ttl",
    "key_prefix",
    "skip_cache",
    "cache",
    "ignore",
    "key",
    "name",
    "version",
    "lease",
    "grouped",
    "codec",
    "helpers",
    "result",
    "cache_none",
    "ttl_jitter",
    "stale",
    "fail_safe",
    "fail_safe_throttle",
    "soft_timeout",
    "local",
    "batch",
];

/// The arguments, for an error: `` `ttl`, `key_prefix`, ... ``.
fn known() -> String {
    let quoted: Vec<String> = KNOWN_NAMES.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

impl Args {
    /// Whether the attribute names `key`, even with a value it refused.
    pub fn given(&self, key: &str) -> bool {
        self.seen.iter().any(|seen| seen == key)
    }

    /// Parses the whole attribute, recording errors instead of stopping at them.
    pub fn parse(tokens: proc_macro2::TokenStream) -> Args {
        let mut args = Args::default();
        let parser = syn::meta::parser(|meta| {
            let input = meta.input;
            if let Err(err) = args.parse_entry(meta) {
                args.errors.push(err);
                skip_to_comma(input)?;
            }
            Ok(())
        });
        if let Err(err) = syn::parse::Parser::parse2(parser, tokens) {
            args.errors.push(err);
        }
        args
    }

    /// Parses one `key = value`, `key(...)` or `key` entry.
    fn parse_entry(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        let Some(ident) = meta.path.get_ident() else {
            return Err(meta.error(format!("unknown argument; expected one of {}", known())));
        };
        let key = ident.to_string();
        if self.seen.contains(&key) {
            return Err(meta.error(format!("duplicate argument `{key}`")));
        }
        self.seen.push(key.clone());
        let takes_parens = match key.as_str() {
            "ignore" => Some("`ignore(db, log)`, the parameters to leave out of the key"),
            "key" => Some(
                "`key(self.tenant_id)`, expressions to add to the key (the text every key starts \
                 with is `key_prefix = \"users:\"`)",
            ),
            _ => None,
        };
        if let Some(expected) = takes_parens
            && !meta.input.peek(syn::token::Paren)
        {
            return Err(meta.error(format!("`{key}` takes parentheses: {expected}")));
        }
        match key.as_str() {
            "ttl" => self.ttl = Some(parse_ttl("ttl", meta.value()?.parse()?)?),
            "lease" => {
                let lease = parse_ttl("lease", meta.value()?.parse()?)?;
                if let Ttl::Secs(0) = lease {
                    return Err(meta.error("`lease` must be at least 1 second"));
                }
                self.lease = Some(lease);
                self.lease_span = Some(ident.span());
            }
            "stale" => {
                let expr: Expr = meta.value()?.parse()?;
                let span = expr.span();
                let stale = parse_ttl("stale", expr)?;
                if let Ttl::Secs(0) = stale {
                    return Err(syn::Error::new(
                        span,
                        "`stale = 0` serves nothing stale; give how many seconds a value may be \
                         served after its `ttl` while it is refreshed (`stale = 30`), or remove `stale`",
                    ));
                }
                self.stale = Some((stale, ident.span()));
            }
            "fail_safe" => {
                let expr: Expr = meta.value()?.parse()?;
                let span = expr.span();
                let keep = parse_ttl("fail_safe", expr)?;
                if let Ttl::Secs(0) = keep {
                    return Err(syn::Error::new(
                        span,
                        "`fail_safe = 0` keeps nothing; give how many seconds a value is kept \
                         after its `ttl` to return when the body fails (`fail_safe = 3600`), or \
                         remove `fail_safe`",
                    ));
                }
                self.fail_safe = Some((keep, ident.span()));
            }
            "fail_safe_throttle" => {
                self.fail_safe_throttle =
                    Some(parse_ttl("fail_safe_throttle", meta.value()?.parse()?)?);
            }
            "soft_timeout" => {
                let expr: Expr = meta.value()?.parse()?;
                if let Expr::Lit(ExprLit { lit, .. }) = &expr {
                    return Err(syn::Error::new(
                        lit.span(),
                        "`soft_timeout` is a `Duration` expression, e.g. \
                         `soft_timeout = std::time::Duration::from_millis(200)`",
                    ));
                }
                self.soft_timeout = Some((expr, ident.span()));
            }
            "version" => {
                let expr: Expr = meta.value()?.parse()?;
                if let Expr::Lit(ExprLit { lit, .. }) = &expr {
                    let ok = matches!(lit, Lit::Int(int) if int.base10_parse::<u32>().is_ok());
                    if !ok {
                        return Err(syn::Error::new(
                            lit.span(),
                            "`version` must be a whole number (u32), e.g. `version = 2`",
                        ));
                    }
                }
                self.version = Some(expr);
            }
            "grouped" => {
                if flag(&meta)? {
                    self.grouped = Some(ident.span());
                }
            }
            "result" => self.result = Some((flag(&meta)?, ident.span())),
            "cache_none" => self.cache_none = Some((flag(&meta)?, ident.span())),
            "local" => {
                let value: Expr = meta.value()?.parse()?;
                match &value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Bool(local),
                        ..
                    }) => self.local = Some(local.value),
                    _ => {
                        return Err(syn::Error::new_spanned(
                            &value,
                            "`local` is `true` or `false`, e.g. `local = false` to keep this \
                             function out of the cache's local tier",
                        ));
                    }
                }
            }
            "key_prefix" => {
                let expr: Expr = meta.value()?.parse()?;
                if let Expr::Lit(ExprLit { lit, .. }) = &expr
                    && !matches!(lit, Lit::Str(_))
                {
                    return Err(syn::Error::new(
                        lit.span(),
                        "`key_prefix` must be a string: a literal (`key_prefix = \"users:\"`) or a `&str` const",
                    ));
                }
                self.key_prefix = Some(expr);
            }
            "name" => {
                let name: LitStr = meta.value()?.parse()?;
                if name.value().is_empty() {
                    return Err(syn::Error::new(name.span(), "`name` must not be empty"));
                }
                self.name = Some(name);
            }
            "skip_cache" => self.skip_cache = Some(meta.value()?.parse()?),
            "batch" => {
                let value: Expr = meta.value()?.parse()?;
                match &value {
                    Expr::Path(path) if path.qself.is_none() && path.path.get_ident().is_some() => {
                        self.batch = path.path.get_ident().cloned();
                    }
                    _ => {
                        return Err(syn::Error::new_spanned(
                            &value,
                            "`batch` names the parameter that holds the ids, e.g. `batch = ids`",
                        ));
                    }
                }
            }
            "ttl_jitter" => {
                let expr: Expr = meta.value()?.parse()?;
                if let Expr::Lit(ExprLit { lit, .. }) = &expr {
                    let ok = match lit {
                        Lit::Float(f) => f
                            .base10_parse::<f64>()
                            .is_ok_and(|f| (0.0..=1.0).contains(&f)),
                        _ => false,
                    };
                    if !ok {
                        return Err(syn::Error::new(
                            lit.span(),
                            "`ttl_jitter` is a fraction between 0.0 and 1.0, e.g. `ttl_jitter = 0.1`",
                        ));
                    }
                }
                self.ttl_jitter = Some(expr);
            }
            "codec" => self.codec = Some(meta.value()?.parse()?),
            "cache" => self.cache = Some(meta.value()?.parse()?),
            "ignore" => meta.parse_nested_meta(|param| {
                match param.path.get_ident() {
                    Some(ident) => self.ignore.push(ident.clone()),
                    None => return Err(param.error("expected a parameter name")),
                }
                Ok(())
            })?,
            "key" => {
                let content;
                syn::parenthesized!(content in meta.input);
                let exprs = content.parse_terminated(Expr::parse, Token![,])?;
                if exprs.is_empty() {
                    return Err(meta.error(
                        "`key(...)` takes the expressions to add to the key, e.g. `key(self.tenant_id)`",
                    ));
                }
                self.key.extend(exprs);
            }
            "helpers" => self.parse_helpers(&meta)?,
            _ => {
                let hint = match meant(&key) {
                    Some(meant) => format!(" (did you mean `{meant}`?)"),
                    None => String::new(),
                };
                return Err(meta.error(format!(
                    "unknown argument `{key}`{hint}; expected one of {}",
                    known()
                )));
            }
        }
        Ok(())
    }

    /// `helpers`, `helpers = false`, `helpers(name = "...", vis = pub)`.
    fn parse_helpers(&mut self, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
        if !meta.input.peek(syn::token::Paren) {
            self.helpers.enabled = Some(flag(meta)?);
            return Ok(());
        }
        self.helpers.enabled = Some(true);
        meta.parse_nested_meta(|entry| {
            if entry.path.is_ident("name") {
                let name: LitStr = entry.value()?.parse()?;
                self.helpers.name = Some(name.parse().map_err(|_| {
                    syn::Error::new(
                        name.span(),
                        "`name` must be an identifier, e.g. \"user_cache\"",
                    )
                })?);
            } else if entry.path.is_ident("vis") {
                self.helpers.vis = Some(entry.value()?.parse()?);
            } else {
                return Err(entry.error(
                    "unknown helpers option; expected `name = \"...\"` or `vis = pub(crate)`",
                ));
            }
            Ok(())
        })
    }
}

/// `flag` or `flag = true|false`.
fn flag(meta: &ParseNestedMeta<'_>) -> syn::Result<bool> {
    if meta.input.peek(Token![=]) {
        Ok(meta.value()?.parse::<syn::LitBool>()?.value)
    } else {
        Ok(true)
    }
}

/// The argument an unknown `key` was most likely meant to be: a typo of
/// one, or a name other caching libraries give it.
fn meant(key: &str) -> Option<&'static str> {
    let alias = match key {
        "time" | "expire" | "expires" | "expiry" | "expiration" | "ex" | "timeout" | "seconds"
        | "ttl_secs" | "ttl_seconds" => Some("ttl"),
        "prefix" | "namespace" => Some("key_prefix"),
        "skip" | "bypass" | "unless" | "condition" => Some("skip_cache"),
        "exclude" | "skip_args" => Some("ignore"),
        "stale_while_revalidate" | "swr" => Some("stale"),
        "jitter" => Some("ttl_jitter"),
        "failover" | "fallback" => Some("fail_safe"),
        _ => None,
    };
    alias.or_else(|| closest(key, KNOWN_NAMES.iter().copied()))
}

/// Skips what is left of a bad entry, up to the next top-level comma.
fn skip_to_comma(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

fn parse_ttl(key: &str, expr: Expr) -> syn::Result<Ttl> {
    let wrong = |span: Span| {
        let zero = if key == "ttl" {
            ", `0` for no expiry"
        } else {
            ""
        };
        syn::Error::new(
            span,
            format!(
                "`{key}` must be a whole number of seconds (`{key} = 300`{zero}), \
                 or an expression of type u64 or std::time::Duration"
            ),
        )
    };
    match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(secs) => Ok(Ttl::Secs(secs)),
            Err(_) => Err(wrong(int.span())),
        },
        Expr::Lit(ExprLit { lit, .. }) => Err(wrong(lit.span())),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => Err(syn::Error::new_spanned(
            &expr,
            format!("`{key}` cannot be negative"),
        )),
        // Through `IntoTtl` the type of `5 * 60` would fall back to `i32`.
        _ => match eval_literal_arithmetic(&expr) {
            Some(Some(secs)) => Ok(Ttl::Secs(secs)),
            Some(None) => Err(syn::Error::new_spanned(
                &expr,
                format!(
                    "`{key}` must come to a whole number of seconds in u64; \
                     this overflows, goes below zero or divides by zero"
                ),
            )),
            None => Ok(Ttl::Expr(expr)),
        },
    }
}

/// Evaluates `5 * 60`, `(300)`: integer literals without a suffix, `+ - * / %`
/// and parentheses. `None`: not such an expression; `Some(None)`: it overflows
/// (or goes below zero, or divides by zero).
fn eval_literal_arithmetic(expr: &Expr) -> Option<Option<u64>> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) if int.suffix().is_empty() => Some(int.base10_parse::<u64>().ok()),
        Expr::Binary(binary) => {
            let op: fn(u64, u64) -> Option<u64> = match binary.op {
                BinOp::Add(_) => u64::checked_add,
                BinOp::Sub(_) => u64::checked_sub,
                BinOp::Mul(_) => u64::checked_mul,
                BinOp::Div(_) => u64::checked_div,
                BinOp::Rem(_) => u64::checked_rem,
                _ => return None,
            };
            let left = eval_literal_arithmetic(&binary.left)?;
            let right = eval_literal_arithmetic(&binary.right)?;
            Some(left.zip(right).and_then(|(l, r)| op(l, r)))
        }
        Expr::Paren(paren) => eval_literal_arithmetic(&paren.expr),
        Expr::Group(group) => eval_literal_arithmetic(&group.expr),
        _ => None,
    }
}
