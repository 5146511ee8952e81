#!/usr/bin/env bash
# Builds the device check's carry folder .devcheck/ (git-ignored through .git/info/exclude): a self-contained, untrimmed
# linux-x64 publish of eng/gpu-check/DeviceCheck (trimming breaks ILGPU) as dc.tar.xz, plus run.sh and peer.py.
# Then, on a task lent a GPU: run(command="bash .devcheck/run.sh", carry=[".devcheck"], timeout_s=480). See docs/gpu.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out="$(mktemp -d)"
dotnet publish eng/gpu-check/DeviceCheck -c Release -r linux-x64 --self-contained -p:PublishTrimmed=false -p:InvariantGlobalization=true -o "$out/DeviceCheck" -nologo -v q
mkdir -p .devcheck
grep -qx '.devcheck/' .git/info/exclude 2>/dev/null || echo '.devcheck/' >> "$(git rev-parse --git-path info/exclude)"
tar -C "$out" -cJf .devcheck/dc.tar.xz DeviceCheck
cp eng/gpu-check/run.sh eng/gpu-check/peer.py .devcheck/
rm -rf "$out"
size=$(stat -c %s .devcheck/dc.tar.xz)
echo "dc.tar.xz: $((size / 1048576)) MiB (carry limit 64 MiB)"
[ "$size" -lt $((64 * 1048576)) ]
