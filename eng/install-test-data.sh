#!/usr/bin/env bash
# Installs the optional Debian packages the tests and samples use when they are missing:
#   dataset-fashion-mnist  the full Fashion-MNIST (60k/10k) under /usr/share/datasets/fashion-mnist;
#                          without it the full-set tests skip and the samples use samples/data's subset;
#   wamerican              /usr/share/dict/american-english, the domino sample's description vocabulary.
# Never fails: each package is optional.
set -u

install_if_missing() { # package, file it provides, what happens without it
  [ -e "$2" ] && return 0
  if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "eng/install-test-data.sh: $2 is missing and apt-get is not usable here; $3."
    return 0
  fi
  echo "eng/install-test-data.sh: installing $1 from Debian"
  apt-get install -y -qq "$1" >/dev/null 2>&1 && return 0
  apt-get update -qq >/dev/null 2>&1
  apt-get install -y -qq "$1" >/dev/null 2>&1 \
    || echo "eng/install-test-data.sh: could not install $1; $3."
}

install_if_missing dataset-fashion-mnist /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
  "tests on the full set will skip"
install_if_missing wamerican /usr/share/dict/american-english \
  "the domino sample describes slices with class names only"
exit 0
