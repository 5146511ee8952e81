#!/usr/bin/env bash
# The project's test command: installs optional test data, builds every project (library, tests,
# samples, benchmarks) in Release, runs the NUnit tests and ends with one line 'N passed, N failed, N skipped'.
#
# Variants (CI runs none of them; run them before changing numerics or native code):
#   --avx2          DOTNET_EnableAVX512=0: .NET's AVX2 code paths, as on a processor without AVX-512
#   --threads N     OMP_NUM_THREADS=N: libtorch's intra-op threads (try 1 and 2)
#   --load          one busy loop per core runs beside the tests (results must not depend on scheduling)
#   --filter EXPR   only the tests dotnet test's --filter selects
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

filter=()
load=0
while [ $# -gt 0 ]; do
  case "$1" in
    --avx2) export DOTNET_EnableAVX512=0 ;;
    --threads) export OMP_NUM_THREADS="$2" MKL_NUM_THREADS="$2"; shift ;;
    --load) load=1 ;;
    --filter) filter=(--filter "$2"); shift ;;
    *) echo "eng/test.sh: unknown option '$1' (see the comment at the top)" >&2; exit 2 ;;
  esac
  shift
done

bash eng/install-test-data.sh

dotnet build Hazy.ML.sln -c Release -nologo -v q || { echo "0 passed, 1 failed"; exit 1; }

results="$root/artifacts/test-results"
rm -rf "$results"
if [ "$load" = 1 ]; then
  busy=()
  for _ in $(seq "$(nproc)"); do (while :; do :; done) & busy+=($!); done
  trap 'kill "${busy[@]}" 2>/dev/null' EXIT
  echo "eng/test.sh: ${#busy[@]} busy loop(s) running beside the tests"
fi
dotnet test test/Microsoft.ML.Hazy.Tests -c Release --no-build -nologo "${filter[@]}" \
  --logger "trx;LogFileName=tests.trx" --logger "console;verbosity=normal" --results-directory "$results" 2>&1 | tee "$results.log"
code=${PIPESTATUS[0]}

trx="$results/tests.trx"
if [ -f "$trx" ]; then
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  get() { echo "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
  passed=$(get passed); failed=$(get failed); total=$(get total); executed=$(get executed)
  failed=$(( ${failed:-0} + $(get error || echo 0) + $(get timeout || echo 0) ))
  skipped=$(( ${total:-0} - ${executed:-0} ))
  echo "${passed:-0} passed, ${failed} failed, ${skipped} skipped"
else
  echo "0 passed, 1 failed"
  [ "$code" -eq 0 ] && code=1
fi
exit "$code"
