#!/bin/sh
# One command for the single-node comparison (see docs/benchmarks.md):
# builds pkgswarm from this checkout, builds or reuses the fixtures under
# bench/.cache, measures every scenario (10-15 minutes on 2 cores), and
# writes bench/out/results.{json,md} and the plots. Extra arguments go to
# bench/cmd/single, e.g.
#
#   sudo bench/single.sh -doc docs/benchmarks.md   # also refresh the doc
#   sudo bench/single.sh -synthetic                # no Debian mirror needed
#   sudo bench/single.sh -scenarios upgrade,rtt    # fewer scenarios
set -eu
cd "$(dirname "$0")/.."
exec env CGO_ENABLED=0 go run ./bench/cmd/single -out bench/out "$@"
