#!/usr/bin/env bash
# The project's test command: installs optional test data, builds every project (library, tests,
# samples, benchmarks) in Release, runs the NUnit tests and ends with one line 'N passed, N failed, N skipped'.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash eng/install-test-data.sh

dotnet build Hazy.ML.sln -c Release -nologo -v q || { echo "0 passed, 1 failed"; exit 1; }

results="$root/artifacts/test-results"
rm -rf "$results"
dotnet test test/Microsoft.ML.Hazy.Tests -c Release --no-build -nologo \
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
