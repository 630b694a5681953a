#!/usr/bin/env bash
# Guest entry point of the cluster test: the driver does the work (see driver.py).
set -euo pipefail
exec "${LVSGEN_HOST_PYTHON:-python3}" -I /test/driver.py
