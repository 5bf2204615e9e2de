#!/usr/bin/env bash
# Instructions per hit held in this process (local tier, in-memory backend)
# against the moka floor, and the client's side of a Redis hit, counted by
# callgrind: each variant runs with N and 2N hits after the same warm-up,
# and the difference is divided by N.
#
#   bash scripts/hit-instructions.sh [N] [VARIANT...]   # N defaults to 20000;
#                                                       # variants: moka memory local redis
#                                                       # batch batch-raw (per batch of 100)
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
n="${1:-20000}"
shift || true
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(moka memory local redis)
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release -q -p redis-memo-benches --bench hit_instructions
bin=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/hit_instructions-* | grep -v '\.d$' | head -1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

count() { # variant hits -> instructions of the whole run
  if ! valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" "$1" "$2" 2>"$out/log" >/dev/null; then
    grep -v '^==' "$out/log" >&2
    echo "the $1 variant failed" >&2
    exit 1
  fi
  grep -o 'Collected : [0-9]*' "$out/log" | grep -o '[0-9]*'
}

declare -A per_hit
[[ " ${variants[*]} " == *" moka "* ]] || variants=(moka "${variants[@]}")
for variant in "${variants[@]}"; do
  one=$(count "$variant" "$n")
  two=$(count "$variant" $((2 * n)))
  per_hit[$variant]=$(( (two - one) / n ))
done
floor=${per_hit[moka]}
printf '%-8s %12s %10s\n' variant "instr/hit" "/moka"
for variant in "${variants[@]}"; do
  printf '%-8s %12d %9.2fx\n' "$variant" "${per_hit[$variant]}" \
    "$(echo "${per_hit[$variant]} / $floor" | bc -l)"
done
