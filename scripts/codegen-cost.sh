#!/usr/bin/env bash
# What one more #[cached] fn costs a user's release build: generates a binary
# crate with 50 cached fns and one with 1 cached + 49 plain fns (same bodies,
# same types), builds each in release with the dependencies already built, and
# prints the build time and the stripped binary size of both, and the cost
# per extra cached fn.
#
#   bash scripts/codegen-cost.sh            # 3 builds of each variant, median
#   RUNS=1 bash scripts/codegen-cost.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-3}"
fns=50
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# $1: crate dir, $2: how many of the fns are #[cached]
generate() {
    local dir="$1" cached="$2"
    mkdir -p "$dir/src"
    cat >"$dir/Cargo.toml" <<TOML
[package]
name = "codegen-cost"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
redis-memo = { path = "$root", default-features = false }
serde = { version = "1", features = ["derive"] }
tokio = { version = "1", features = ["rt", "macros"] }

[profile.release]
strip = true

[workspace]
TOML
    {
        echo 'use redis_memo::{Cache, cached};'
        echo '#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]'
        echo 'pub struct Row { pub id: u64, pub name: String, pub tags: Vec<String> }'
        echo '#[derive(Debug)] pub struct DbError;'
        for i in $(seq 1 "$fns"); do
            if [ "$i" -le "$cached" ]; then
                echo "#[cached(ttl = 60, key_prefix = \"f$i:\", cache = cache)]"
            fi
            if [ $((i % 2)) -eq 0 ]; then
                echo "pub async fn f$i(cache: &Cache, id: u64, name: &str) -> Result<Row, DbError> {"
                echo "    let _ = cache; tokio::task::yield_now().await;"
                echo "    if id == u64::MAX { return Err(DbError); }"
                echo "    Ok(Row { id: id + $i, name: name.to_owned(), tags: vec![\"t$i\".into()] })"
            else
                echo "pub async fn f$i(cache: &Cache, id: u64, name: &str) -> Row {"
                echo "    let _ = cache; tokio::task::yield_now().await;"
                echo "    Row { id: id * $i, name: name.to_owned(), tags: Vec::new() }"
            fi
            echo "}"
        done
        echo '#[tokio::main(flavor = "current_thread")]'
        echo 'async fn main() {'
        echo '    let cache = Cache::in_memory();'
        for i in $(seq 1 "$fns"); do
            echo "    let _ = std::hint::black_box(f$i(&cache, 1, \"a\").await);"
        done
        echo '}'
    } >"$dir/src/main.rs"
}

measure() { # prints "<seconds> <bytes>" for the crate in $1 (median of $runs builds)
    local dir="$1" times=()
    (cd "$dir" && CARGO_TARGET_DIR="$work/target" cargo build --release --quiet)
    for _ in $(seq 1 "$runs"); do
        touch "$dir/src/main.rs"
        local start end
        start=$(date +%s.%N)
        (cd "$dir" && CARGO_TARGET_DIR="$work/target" cargo build --release --quiet)
        end=$(date +%s.%N)
        times+=("$(echo "$end - $start" | bc)")
    done
    local median
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
    echo "$median $(stat -c %s "$work/target/release/codegen-cost")"
}

generate "$work/all" "$fns"
generate "$work/one" 1
read -r all_s all_b < <(measure "$work/all")
read -r one_s one_b < <(measure "$work/one")
extra=$((fns - 1))
printf '%-28s %10s %12s\n' "" "release s" "stripped B"
printf '%-28s %10.2f %12d\n' "$fns cached fns" "$all_s" "$all_b"
printf '%-28s %10.2f %12d\n' "1 cached + $extra plain" "$one_s" "$one_b"
printf '%-28s %10.3f %12d\n' "per extra cached fn" \
    "$(echo "($all_s - $one_s) / $extra" | bc -l)" "$(( (all_b - one_b) / extra ))"
