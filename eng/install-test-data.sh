#!/usr/bin/env bash
# Installs the optional data the tests and samples use when it is missing: Debian's Fashion-MNIST
# package (60k/10k images under /usr/share/datasets/fashion-mnist). Without it the tests that need the
# full set skip and the samples use the subset shipped in samples/data. Never fails the build.
set -u
[ -f /usr/share/dict/american-english ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || apt-get install -y -qq wamerican >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq wamerican >/dev/null 2>&1; } || echo "eng/install-test-data.sh: could not install wamerican; the domino sample then describes slices with class names only."
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "eng/install-test-data.sh: $dir is missing and apt-get is not usable here; tests on the full set will skip."
  exit 0
fi
echo "eng/install-test-data.sh: installing dataset-fashion-mnist from Debian"
if ! apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
    || echo "eng/install-test-data.sh: could not install dataset-fashion-mnist; tests on the full set will skip."
fi
exit 0
