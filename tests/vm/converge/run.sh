#!/usr/bin/env bash
# Guest entry point of the converge test (see converge.py).
set -euo pipefail
exec "${LVSGEN_HOST_PYTHON:-python3}" -I /test/converge.py
