//! `redis-memo`: operate a redis-memo cache from the shell.
//!
//! ```text
//! redis-memo list users:                       keys under a literal prefix, with TTL and size
//! redis-memo show 'users:app::profile:3f1c…'   a stored value, decoded
//! redis-memo invalidate users: [--yes]         delete every key under a prefix
//! redis-memo key app::profile 42 '"ann"' --prefix users:   the key of one call
//! ```
//!
//! Talks to the Redis at `--url`, or `REDIS_URL`. On a Redis Cluster (`--cluster`,
//! or a node whose `INFO cluster` says so), the URL is one seed node and
//! list, show and invalidate act on every primary. `list` and `invalidate`
//! go through the library's own code (`Cache::keys_with_prefix`,
//! `Cache::invalidate_prefix`): the same literal prefixes, and an
//! invalidation that reaches the local tiers of running processes. Exit codes: 0 success,
//! 1 error (Redis unreachable, no such key, refused), 2 bad usage.

mod args;
mod conn;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use redis_memo::Cache;
use redis_memo::key::{FnName, GENERATION_SUFFIX, KeyBuilder};

use crate::args::Arg;
use crate::conn::Conn;

#[derive(Parser)]
#[command(name = "redis-memo", version, about = "Operate a redis-memo cache")]
struct Cli {
    /// Redis URL; defaults to the REDIS_URL environment variable.
    #[arg(long, global = true)]
    url: Option<String>,
    /// The URL is a seed node of a Redis Cluster: act on every primary.
    /// Without it, a node whose `INFO cluster` says `cluster_enabled:1` is
    /// taken for one as well.
    #[arg(long, global = true)]
    cluster: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the keys under a literal prefix, with TTL and size, sorted.
    List {
        /// The prefix; glob characters in it are matched literally.
        prefix: String,
        /// Show at most this many keys.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one stored value: pretty JSON, or hex for other codecs.
    Show {
        /// The full key.
        key: String,
    },
    /// Delete every key under a literal prefix (asks first unless --yes).
    Invalidate {
        /// The prefix; glob characters in it are matched literally.
        prefix: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Print the key a cached function uses for the given arguments.
    #[command(
        after_help = "Each argument is one JSON value: numbers, strings, arrays \
        (Vec, tuples), objects (maps), null (None or ()). Wrappers say what JSON cannot: \
        {\"$some\": 5} is Some(5); {\"$struct\": [[\"id\", 1], [\"name\", \"a\"]]} is a struct \
        with fields in declaration order; {\"$variant\": \"Active\"} is a unit enum variant. \
        Leave out ignored parameters and the cache parameter."
    )]
    Key {
        /// The qualified name, as in the keys: `my_app::users::profile`,
        /// `my_app::Users::get`, or the `name = "..."` of the function.
        name: String,
        /// The key arguments, in declaration order, each as JSON.
        args: Vec<String>,
        /// The function's `key_prefix`.
        #[arg(long, default_value = "")]
        prefix: String,
        /// The function's `version` (or the cache's default version).
        #[arg(long)]
        version: Option<u32>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the runtime: {err}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("redis-memo: {message}");
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> Result<(), String> {
    if let Command::Key {
        name,
        args,
        prefix,
        version,
    } = &cli.command
    {
        println!("{}", call_key(name, args, prefix, *version)?);
        return Ok(());
    }
    let url = cli
        .url
        .or_else(|| std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()))
        .ok_or("no Redis to talk to: set REDIS_URL or pass --url redis://host:port")?;
    let mut conn = Conn::open(&url, cli.cluster).await?;
    match cli.command {
        Command::List { prefix, limit } => {
            let cache = conn.cache(&url).await?;
            list(&cache, &mut conn, &prefix, limit).await
        }
        Command::Show { key } => show(&mut conn, &key).await,
        Command::Invalidate { prefix, yes } => {
            let cache = conn.cache(&url).await?;
            invalidate(&cache, &prefix, yes).await
        }
        Command::Key { .. } => Ok(()),
    }
}

fn call_key(
    name: &str,
    args: &[String],
    prefix: &str,
    version: Option<u32>,
) -> Result<String, String> {
    let mut builder = KeyBuilder::new();
    for arg in args {
        builder.arg(&Arg::parse(arg)?);
    }
    builder
        .finish_versioned(prefix, &FnName::Custom(name), version)
        .map_err(|e| e.to_string())
}

/// The keys under `prefix` (literally), sorted: the runtime's own scan of
/// the server or of every primary.
async fn keys_under(cache: &Cache, prefix: &str) -> Result<Vec<String>, String> {
    cache
        .keys_with_prefix(prefix)
        .await
        .map_err(|e| format!("SCAN failed: {e}"))
}

fn describe_ttl(ms: i64) -> String {
    match ms {
        -2 => "gone".into(),
        ms if ms < 0 => "no expiry".into(),
        ms => format!("{:.1}s", ms as f64 / 1000.0),
    }
}

async fn list(
    cache: &Cache,
    conn: &mut Conn,
    prefix: &str,
    limit: Option<usize>,
) -> Result<(), String> {
    let keys = keys_under(cache, prefix).await?;
    let total = keys.len();
    let shown = limit.unwrap_or(total).min(total);
    let mut out = std::io::stdout().lock();
    for key in &keys[..shown] {
        let ttl: i64 = conn.query(redis::cmd("PTTL").arg(key)).await.unwrap_or(-2);
        let size = conn
            .query::<u64>(redis::cmd("STRLEN").arg(key))
            .await
            .map_or_else(|_| "-".to_string(), |n| format!("{n}B"));
        let pending = conn
            .query::<Option<Vec<u8>>>(redis::cmd("GETRANGE").arg(key).arg(0).arg(15))
            .await
            .ok()
            .flatten()
            .is_some_and(|head| redis_memo::is_placeholder(&head));
        let size = if pending {
            "(being computed)".to_string()
        } else {
            size
        };
        let _ = writeln!(out, "{key}\t{}\t{size}", describe_ttl(ttl));
    }
    let _ = writeln!(out, "{shown} of {total} keys under {prefix:?}");
    Ok(())
}

async fn show(conn: &mut Conn, key: &str) -> Result<(), String> {
    let value: Option<Vec<u8>> = conn
        .query(redis::cmd("GET").arg(key))
        .await
        .map_err(|e| format!("GET failed: {e}"))?;
    let value = value.ok_or_else(|| format!("no such key: {key}"))?;
    let ttl: i64 = conn.query(redis::cmd("PTTL").arg(key)).await.unwrap_or(-2);
    if redis_memo::is_placeholder(&value) {
        println!(
            "key:  {key}\nttl:  {}\na call is running the function for this key (it holds a \
             placeholder: {})",
            describe_ttl(ttl),
            String::from_utf8_lossy(&value[1..])
        );
        return Ok(());
    }
    println!(
        "key:  {key}\nttl:  {}\nsize: {} bytes",
        describe_ttl(ttl),
        value.len()
    );
    match serde_json::from_slice::<serde_json::Value>(&value) {
        Ok(json) => println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
        ),
        Err(_) => {
            if let [0, codec, compression, ..] = value.as_slice() {
                println!(
                    "encoded with codec {:?}, compression {:?}:",
                    char::from(*codec),
                    char::from(*compression)
                );
            }
            let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
            println!("{hex}");
        }
    }
    Ok(())
}

/// Deletes the keys under `prefix` through the runtime's
/// `invalidate_prefix`, as an application would: group generation counters
/// are kept, and other processes' local tiers drop what it deleted.
async fn invalidate(cache: &Cache, prefix: &str, yes: bool) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("refusing the empty prefix: it would delete every key of the database".into());
    }
    let matching = keys_under(cache, prefix)
        .await?
        .iter()
        .filter(|key| !key.ends_with(GENERATION_SUFFIX))
        .count();
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(format!(
                "{matching} keys match {prefix:?}; refusing to delete without a terminal to confirm: pass --yes"
            ));
        }
        eprint!("delete {matching} keys under {prefix:?}? type yes to confirm: ");
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "yes" {
            return Err("not confirmed; nothing deleted".into());
        }
    }
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(matching as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let deleted = cache
        .invalidate_prefix_with(prefix, &|_| bar.inc(1))
        .await
        .map_err(|e| format!("invalidation failed: {e}"))?;
    bar.finish_and_clear();
    println!("deleted {deleted} keys under {prefix:?}");
    Ok(())
}
