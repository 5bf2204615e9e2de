//! The typed model of `#[cached(...)]` and its parser.

use syn::meta::ParseNestedMeta;
use syn::{BinOp, Expr, ExprLit, ExprUnary, Ident, Lit, LitStr, UnOp};

/// Every argument of `#[cached(...)]`; all optional.
#[derive(Default)]
pub struct Args {
    /// `ttl = 300` (validated integer literal) or `ttl = CONST_EXPR`.
    pub ttl: Option<Ttl>,
    pub key_prefix: Option<LitStr>,
    pub skip_cache: Option<Expr>,
    pub cache: Option<Expr>,
    pub ignore: Vec<Ident>,
    pub name: Option<LitStr>,
    /// `version = 3` or a const `u32` expression.
    pub version: Option<Expr>,
    /// `lease = 5`: cross-process stampede control, like `ttl`.
    pub lease: Option<Ttl>,
    /// `codec = redis_memo::Codec::MessagePack`.
    pub codec: Option<Expr>,
    /// `grouped` / `grouped = true`: the span of the key, when on.
    pub grouped: Option<proc_macro2::Span>,
    /// The spans of arguments already seen, to reject duplicates.
    seen: Vec<String>,
}

pub enum Ttl {
    /// An integer literal, or arithmetic over them (`5 * 60`), in seconds.
    Secs(u64),
    /// Any other expression: `u64`, `u32`, `usize` seconds or a `Duration`.
    Expr(Expr),
}

const KNOWN: &str = "`ttl`, `key_prefix`, `skip_cache`, `cache`, `ignore`, `name`, `version`, `lease`, `grouped`, `codec`";

impl Args {
    /// Parses one `key = value` or `ignore(...)` entry.
    pub fn parse_entry(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        let Some(ident) = meta.path.get_ident() else {
            return Err(meta.error(format!("unknown argument; expected one of {KNOWN}")));
        };
        let key = ident.to_string();
        if self.seen.contains(&key) {
            return Err(meta.error(format!("duplicate argument `{key}`")));
        }
        match key.as_str() {
            "ttl" => self.ttl = Some(parse_ttl("ttl", meta.value()?.parse()?)?),
            "lease" => {
                let lease = parse_ttl("lease", meta.value()?.parse()?)?;
                if let Ttl::Secs(0) = lease {
                    return Err(meta.error("`lease` must be at least 1 second"));
                }
                self.lease = Some(lease);
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
                let on = if meta.input.peek(syn::Token![=]) {
                    meta.value()?.parse::<syn::LitBool>()?.value
                } else {
                    true
                };
                if on {
                    self.grouped = Some(ident.span());
                }
            }
            "key_prefix" => self.key_prefix = Some(meta.value()?.parse()?),
            "name" => {
                let name: LitStr = meta.value()?.parse()?;
                if name.value().is_empty() {
                    return Err(syn::Error::new(name.span(), "`name` must not be empty"));
                }
                self.name = Some(name);
            }
            "skip_cache" => self.skip_cache = Some(meta.value()?.parse()?),
            "codec" => self.codec = Some(meta.value()?.parse()?),
            "cache" => self.cache = Some(meta.value()?.parse()?),
            "ignore" => meta.parse_nested_meta(|param| {
                match param.path.get_ident() {
                    Some(ident) => self.ignore.push(ident.clone()),
                    None => return Err(param.error("expected a parameter name")),
                }
                Ok(())
            })?,
            _ => {
                return Err(
                    meta.error(format!("unknown argument `{key}`; expected one of {KNOWN}"))
                );
            }
        }
        self.seen.push(key);
        Ok(())
    }
}

fn parse_ttl(key: &str, expr: Expr) -> syn::Result<Ttl> {
    let wrong = |span: proc_macro2::Span| {
        let zero = if key == "ttl" {
            ", `0` for no expiry"
        } else {
            ""
        };
        syn::Error::new(
            span,
            format!(
                "`{key}` must be a whole number of seconds (`{key} = 300`{zero}), \
                 or a const expression of type u64 or std::time::Duration"
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
