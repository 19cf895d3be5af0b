#!/usr/bin/env bash
# Fuzzing gpt-auth-core's parsers with cargo fuzz (libFuzzer + AddressSanitizer): fuzz/.
#
#   tools/fuzz.sh run   [TARGET...]  `make fuzz`: each target FUZZ_SECONDS (60) s on its corpus
#                                    fuzz/corpus/<target>/, then the corpus is minimized
#                                    (see cmin below). Commit the corpus changes you want to keep.
#   tools/fuzz.sh smoke [TARGET...]  `make fuzz-smoke` (CI): build, then each target
#                                    FUZZ_SMOKE_SECONDS (10) s from the committed corpus, which
#                                    stays untouched. Fails if any target fails.
#   tools/fuzz.sh build              build every target
#   tools/fuzz.sh cmin  [TARGET...]  minimize the committed corpus
#   tools/fuzz.sh seed               (re)write the seed inputs (fuzz/examples/seeds.rs) into the corpus
#   tools/fuzz.sh repro TARGET FILE  run one input (a crash artifact) again, with a backtrace
#   tools/fuzz.sh list               the targets
#
# Targets run one after the other, each on one core, under `nice` (FUZZ_NICE, 10). Crash
# artifacts go to fuzz/artifacts/<target>/ (not committed). Any failure (crash, panic, failed
# assertion, leak, timeout, out of memory) makes the command exit non-zero.
#
# Toolchain: cargo fuzz passes nightly-only flags (-Zsanitizer=address, ...). The stable compiler
# accepts them with RUSTC_BOOTSTRAP=1, set here; no nightly toolchain is needed. cargo-fuzz itself
# is installed from crates.io when missing. The AddressSanitizer runtime comes with the Rust
# standard library (rust-std ships librustc-*_rt.asan.a); libFuzzer is compiled from source by
# the libfuzzer-sys crate, which needs a C++ compiler (g++, installed with apt-get if missing).
#
# Environment: FUZZ_SECONDS, FUZZ_SMOKE_SECONDS, FUZZ_MAX_LEN (8192: the largest input tried, so
# that corpus files stay small), FUZZ_CORPUS_MAX_FILES (30 per target, see cmin), FUZZ_RSS_MB (2048), FUZZ_TIMEOUT (10: seconds per input),
# FUZZ_SANITIZER (address; `none` for a faster run without ASan), FUZZ_NICE, CARGO.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ_DIR=$ROOT/fuzz
CARGO=${CARGO:-cargo}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_SMOKE_SECONDS=${FUZZ_SMOKE_SECONDS:-10}
FUZZ_MAX_LEN=${FUZZ_MAX_LEN:-8192}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}
FUZZ_NICE=${FUZZ_NICE:-10}
FUZZ_CORPUS_MAX_FILES=${FUZZ_CORPUS_MAX_FILES:-30}
CARGO_FUZZ_VERSION=0.13.2

# Stable rustc accepts -Z flags with this.
export RUSTC_BOOTSTRAP=1

log() { printf '== fuzz: %s\n' "$*" >&2; }
die() { printf 'fuzz: %s\n' "$*" >&2; exit 1; }

apt_install() {
    command -v apt-get >/dev/null || die "$* missing and no apt-get to install it"
    log "installing $* with apt-get"
    if [ "$(id -u)" -ne 0 ]; then die "$* missing: run as root, or install it: apt-get install $*"; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_tools() {
    command -v "$CARGO" >/dev/null || die "cargo not found (install Rust with rustup)"
    # libFuzzer is C++, built by libfuzzer-sys (cc crate: $CXX, else c++).
    if ! command -v "${CXX:-c++}" >/dev/null; then
        apt_install g++
    fi
    if ! "$CARGO" fuzz --version >/dev/null 2>&1; then
        log "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
        "$CARGO" install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
    fi
    if [ "$FUZZ_SANITIZER" = address ]; then
        local sysroot host
        sysroot=$(rustc --print sysroot)
        host=$(rustc -vV | sed -n 's/^host: //p')
        if ! compgen -G "$sysroot/lib/rustlib/$host/lib/librustc-*_rt.asan.a" >/dev/null; then
            die "this Rust toolchain has no AddressSanitizer runtime for $host \
(set FUZZ_SANITIZER=none to fuzz without it)"
        fi
    fi
}

targets() {
    sed -n 's/^name = "\(.*\)"$/\1/p' "$FUZZ_DIR/Cargo.toml" | grep -v '^gpt-auth-fuzz$\|^gpt_auth_fuzz$'
}

cargo_fuzz() {
    # --fuzz-dir: the directory holding the fuzz crate (cargo fuzz would also find it from here).
    nice -n "$FUZZ_NICE" "$CARGO" fuzz "$1" --fuzz-dir "$FUZZ_DIR" --sanitizer "$FUZZ_SANITIZER" "${@:2}"
}

build() {
    log "building $(targets | wc -l) targets (sanitizer: $FUZZ_SANITIZER)"
    cargo_fuzz build
}

libfuzzer_flags() {
    local target=$1 seconds=$2
    FLAGS=(-max_total_time="$seconds" -max_len="$FUZZ_MAX_LEN" -rss_limit_mb="$FUZZ_RSS_MB"
           -timeout="$FUZZ_TIMEOUT" -print_final_stats=1)
    if [ -f "$FUZZ_DIR/dict/$target.dict" ]; then
        FLAGS+=(-dict="$FUZZ_DIR/dict/$target.dict")
    fi
}

corpus_size() {
    local files bytes
    files=$(find "$FUZZ_DIR/corpus" -type f | wc -l)
    bytes=$(du -sb "$FUZZ_DIR/corpus" | cut -f1)
    log "corpus: $files files, $bytes bytes (fuzz/corpus)"
}

# Runs each target; $1 = run | smoke, then the targets.
fuzz() {
    local mode=$1; shift
    local seconds=$FUZZ_SECONDS
    [ "$mode" = smoke ] && seconds=$FUZZ_SMOKE_SECONDS
    local failed=() target ok
    if [ "$mode" = smoke ]; then
        SCRATCH=$(mktemp -d)
        trap 'rm -rf "$SCRATCH"' EXIT
    fi
    for target in "$@"; do
        mkdir -p "$FUZZ_DIR/corpus/$target" "$FUZZ_DIR/artifacts/$target"
        libfuzzer_flags "$target" "$seconds"
        local dirs=("$FUZZ_DIR/corpus/$target")
        if [ "$mode" = smoke ]; then
            # New inputs go to the first directory: a scratch one, the committed corpus is read only.
            mkdir -p "$SCRATCH/$target"
            dirs=("$SCRATCH/$target" "$FUZZ_DIR/corpus/$target")
        fi
        log "$target: ${seconds}s"
        ok=1
        if ! cargo_fuzz run "$target" "${dirs[@]}" -- "${FLAGS[@]}" \
                -artifact_prefix="$FUZZ_DIR/artifacts/$target/" 2>"$FUZZ_DIR/artifacts/$target.log"; then
            failed+=("$target")
            ok=0
            log "$target FAILED: last lines of fuzz/artifacts/$target.log:"
            tail -40 "$FUZZ_DIR/artifacts/$target.log" >&2
        else
            grep -E '^stat::number_of_executed_units|^stat::new_units_added' \
                "$FUZZ_DIR/artifacts/$target.log" | tr '\n' ' ' >&2 || true
            echo >&2
        fi
        if [ "$mode" = run ] && [ $ok = 1 ]; then
            cmin "$target"
        fi
    done
    if [ ${#failed[@]} -gt 0 ]; then
        log "FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/; rerun one with: tools/fuzz.sh repro TARGET FILE)"
        return 1
    fi
    if [ "$mode" = run ]; then corpus_size; fi
    log "all $# targets clean"
}

# Minimizes each target's corpus: one input per covered edge (libFuzzer -merge=1, the core of
# `cargo fuzz cmin`, with -use_counters=0: edges, not hit counts), then at most
# FUZZ_CORPUS_MAX_FILES (30) inputs per target: those that brought the most edges first
# (from the merge control file), so that the committed corpus stays a few hundred small files.
cmin() {
    local target host bin dir tmp before
    host=$(rustc -vV | sed -n 's/^host: //p')
    for target in "$@"; do
        dir=$FUZZ_DIR/corpus/$target
        bin=$FUZZ_DIR/target/$host/release/$target
        [ -d "$dir" ] || continue
        [ -x "$bin" ] || die "$bin not built"
        before=$(find "$dir" -type f | wc -l)
        tmp=$(mktemp -d)
        mv "$dir" "$tmp/old"
        mkdir -p "$dir"
        if ! nice -n "$FUZZ_NICE" "$bin" -merge=1 -use_counters=0 -merge_control_file="$tmp/control" \
                -max_len="$FUZZ_MAX_LEN" -rss_limit_mb="$FUZZ_RSS_MB" -timeout="$FUZZ_TIMEOUT" \
                "$dir" "$tmp/old" >"$FUZZ_DIR/artifacts/$target.cmin.log" 2>&1; then
            rm -rf "$dir"
            mv "$tmp/old" "$dir"
            tail -20 "$FUZZ_DIR/artifacts/$target.cmin.log" >&2
            die "minimizing the corpus of $target failed (corpus left as it was)"
        fi
        python3 - "$tmp/control" "$dir" "$FUZZ_CORPUS_MAX_FILES" <<'PY' >&2
import hashlib, os, shutil, sys
control, out, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(control).read().splitlines()
n = int(lines[0])
paths = lines[2:2 + n]
# COV lines list the edges an input covered first (inputs run smallest first): disjoint sets.
new = {}
for line in lines[2 + n:]:
    if line.startswith("COV "):
        idx, *edges = line.split()[1:]
        new[int(idx)] = len(edges)
total = sum(new.values())
ranked = sorted((i for i in new if new[i] > 0), key=lambda i: (-new[i], os.path.getsize(paths[i])))
if len(ranked) > limit:
    keep = ranked[:limit]
    shutil.rmtree(out)
    os.makedirs(out)
    for i in keep:
        data = open(paths[i], "rb").read()
        open(os.path.join(out, hashlib.sha1(data).hexdigest()), "wb").write(data)
    kept = sum(new[i] for i in keep)
    print(f"   capped to {limit} inputs: at least {kept}/{total} edges ({100 * kept // max(total, 1)}%)")
PY
        rm -rf "$tmp"
        log "$target: corpus $before -> $(find "$dir" -type f | wc -l) files"
    done
}

seed() {
    log "writing seed inputs"
    nice -n "$FUZZ_NICE" "$CARGO" run --quiet --release --manifest-path "$FUZZ_DIR/Cargo.toml" \
        --example seeds -- "$FUZZ_DIR/corpus" "$ROOT"
}

mode=${1:-run}
shift || true
if [ $# -eq 0 ]; then
    mapfile -t selected < <(targets)
else
    selected=("$@")
fi

case $mode in
    list) targets ;;
    build) ensure_tools; build ;;
    run) ensure_tools; build; mkdir -p "$FUZZ_DIR/artifacts"; fuzz run "${selected[@]}" ;;
    smoke)
        ensure_tools
        start=$SECONDS
        build
        mkdir -p "$FUZZ_DIR/artifacts"
        status=0
        fuzz smoke "${selected[@]}" || status=$?
        log "smoke run took $((SECONDS - start))s"
        exit $status
        ;;
    cmin) ensure_tools; build; mkdir -p "$FUZZ_DIR/artifacts"; cmin "${selected[@]}"; corpus_size ;;
    seed) ensure_tools; seed ;;
    repro)
        [ $# -eq 2 ] || die "usage: tools/fuzz.sh repro TARGET FILE"
        ensure_tools
        RUST_BACKTRACE=1 cargo_fuzz run "$1" "$2"
        ;;
    *) die "unknown command '$mode' (run, smoke, build, cmin, seed, repro, list)" ;;
esac
