#!/bin/sh
# Summarises the memcheck logs of `make test-valgrind`: every error, and whether it is
# attributable to the module (a frame in ngx_http_gpt_auth_module or the gpt_auth crates).
# Exits non-zero if the module has any invalid access, uninitialised use or definite leak.
set -eu
dir="$1"
logs=$(ls "$dir"/memcheck.*.log 2>/dev/null || true)
[ -n "$logs" ] || { echo "valgrind-report: no logs in $dir" >&2; exit 1; }
echo "valgrind-report: $(echo "$logs" | wc -l) nginx processes checked"
python3 - "$dir" <<'PY'
import glob, re, sys
kinds = re.compile(r"^==\d+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|Syscall param|Mismatched free|\d[\d,]* bytes in [\d,]+ blocks are definitely lost)")
ours = re.compile(r"gpt_auth|ngx_http_gpt_auth_module")
total = mine = 0
for path in sorted(glob.glob(sys.argv[1] + "/memcheck.*.log")):
    block, inerr = [], False
    for line in open(path, errors="replace").read().splitlines() + ["==0== "]:
        if kinds.match(line):
            block, inerr = [line], True
            continue
        if inerr:
            if re.match(r"^==\d+== *$", line):
                total += 1
                if any(ours.search(l) for l in block):
                    mine += 1
                    print(f"MODULE: {path}\n  " + "\n  ".join(block[:12]))
                inerr = False
            else:
                block.append(line)
    m = re.search(r"ERROR SUMMARY: (\d+) errors", open(path, errors="replace").read())
print(f"valgrind-report: {total} error blocks in all, {mine} attributable to the module")
sys.exit(1 if mine else 0)
PY
