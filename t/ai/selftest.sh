#!/bin/bash
# The self-test of t/ai without nginx: builds the SDK venv if needed (tools/install-python.sh),
# then runs t/ai/selftest.py, which starts the mock itself, drives both SDKs against it through
# t/ai/client.py, checks the wire format with raw sockets, and prints "N passed, N failed".
#
# Usage: t/ai/selftest.sh [-v] [-j JOBS] [-k NAME-FILTER]
set -euo pipefail
top="$(cd "$(dirname "$0")/../.." && pwd)"
"$top/tools/install-python.sh"
exec "$top/build/pyenv/bin/python" "$top/t/ai/selftest.py" "$@"
