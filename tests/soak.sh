#!/usr/bin/env bash
# The long soak: 20 consecutive refreshes of a changing demo database (tests/soak.rs; CI runs 4).
# Usage: bash tests/soak.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
ANONYMIZE_SOAK_RUNS="${1:-20}" cargo test --release --test soak -- --nocapture
