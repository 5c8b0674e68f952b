#!/usr/bin/env bash
# The sanitizer job: build the C++ extension once more with AddressSanitizer and UndefinedBehaviorSanitizer
# and run the tests that drive the cpp backend's edge cases through it. Any report fails the run.
#
#   bash tools/sanitize.sh            # from the repository root; CI runs it after the main test run
#
# Needs GCC with its sanitizer runtimes (FUSEDLOSS_SANITIZE_CXX, default g++), CMake, Ninja and pybind11 in the
# Python environment (`pip install cmake ninja pybind11`), and the test requirements.
#
# - Build: plain CMake + Ninja into its own directory (FUSEDLOSS_SANITIZE_BUILD, default build-sanitize), -O1 -g,
#   -fsanitize=address,undefined -fno-sanitize-recover=undefined (the first UB report aborts), one ISA level
#   (FUSEDLOSS_DISPATCH=OFF: the kernels are the same source at every level). pip and the installed package
#   are not touched; a second run rebuilds only what changed.
# - Import: a copy of src/fusedloss with the sanitized _core*.so goes into a temporary directory that is put
#   first on PYTHONPATH for the test run only; the script checks that this is the module the tests import.
# - Run: the ASan runtime preloaded (an instrumented extension inside an uninstrumented Python needs it first in
#   the process), with libstdc++ (Python does not link it, and ASan's interceptor of C++ throws must find it at
#   start: otherwise the first exception the extension throws aborts with "real___cxa_throw"); leak detection
#   off (CPython keeps its allocations at exit by design); huge allocations return NULL (the MemoryError tests
#   ask for them) instead of aborting. pytest captures at the Python level only (--capture=sys), so that a
#   report, written by the runtime to file descriptor 2, reaches the log before the process exits with it.
# - Tests: FUSEDLOSS_SANITIZE_TESTS (default below) restricted to the cpp backend with -k
#   (FUSEDLOSS_SANITIZE_SELECT): the bad-input, in-place, misaligned, extremes, multiclass and CTC tests, and the
#   corpus's cpp cases (its child processes inherit PYTHONPATH and the preload; a report aborts a child, which
#   the corpus counts as a crash: about 2,400 cases in 10 s). Numba
#   and torch load and run under the preload (torch is the CTC tests' oracle), but numba-backend tests are
#   deselected: the job is about the C++ kernels and bindings, and their time.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${FUSEDLOSS_SANITIZE_BUILD:-build-sanitize}
tests=${FUSEDLOSS_SANITIZE_TESTS:-"tests/test_misaligned.py tests/test_bad_input.py tests/test_inplace.py
  tests/test_extremes.py tests/test_multiclass.py tests/test_ctc.py tests/test_corpus.py tests/test_pairwise.py
  tests/test_metrics_binary.py tests/test_overlap.py"}
select=${FUSEDLOSS_SANITIZE_SELECT:-"cpp"}
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
cxx=${FUSEDLOSS_SANITIZE_CXX:-g++}
asan=$("$cxx" -print-file-name=libasan.so)
if [ ! -e "$asan" ]; then
  echo "sanitize: $cxx has no AddressSanitizer runtime (libasan.so); install GCC's (e.g. Debian: libasan8)" >&2
  exit 1
fi

start=$SECONDS
cmake -S . -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Sanitize -DFUSEDLOSS_DISPATCH=OFF \
  -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g -fno-omit-frame-pointer $san" \
  -DCMAKE_MODULE_LINKER_FLAGS="$san" -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" >/dev/null
ninja -C "$build"
so=$(ls "$build"/_core*.so)
syms=$(nm -D "$so")  # (not piped into grep -q: with pipefail, nm's SIGPIPE would fail the test)
if [[ $syms != *__ubsan_handle* || $syms != *__asan_init* ]]; then
  echo "sanitize: $so is not instrumented" >&2
  exit 1
fi
echo "sanitize: built in $((SECONDS - start)) s"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -r src/fusedloss "$stage/"
find "$stage" \( -name '_core*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
cp "$so" "$stage/fusedloss/"

export PYTHONPATH="$stage${PYTHONPATH:+:$PYTHONPATH}"
export LD_PRELOAD="$asan:$("$cxx" -print-file-name=libstdc++.so)${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

python - "$stage" <<'EOF'
import sys
import fusedloss
from fusedloss import _core
stage = sys.argv[1]
assert _core.__file__.startswith(stage), f"sanitize: imported {_core.__file__}, not the sanitized copy in {stage}"
assert "cpp" in [b["name"] for b in fusedloss.backends() if b["available"]], "sanitize: the cpp backend did not load"
print(f"sanitize: testing {_core.__file__} ({_core.build_info()['build_type']})")
EOF

start=$SECONDS
# shellcheck disable=SC2086  # the test list is a list of paths
python -m pytest -q -p no:cacheprovider --capture=sys -k "$select" $tests
echo "sanitize: tests ran in $((SECONDS - start)) s"
