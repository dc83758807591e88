#!/usr/bin/env bash
# Makes the REAL TensorRT 10 Python bindings importable on a machine without a GPU or TensorRT, so that
# tests/backends/test_tensorrt_real_api.py can check our TensorRT code against the real classes, enums and signatures.
#
# The bindings wheel on PyPI (tensorrt-cu12-bindings, ~1.3 MB) holds the pybind11 module tensorrt_bindings/tensorrt.so;
# it links against libnvinfer / libnvonnxparser / libnvinfer_plugin (NVIDIA's index only) but needs just 9 of their
# functions to load. This script compiles stub libraries exporting those 9 (returning NULL / 0), so `import` works
# while anything that would create a real TensorRT object (trt.Builder(...), trt.Runtime(...)) must never be called.
#
#   bash scripts/tensorrt_api_stubs.sh     -> prints the prepared directory (.cache/tensorrt-api); idempotent
# Needs: python3 with pip (PyPI reachable) and a C compiler (cc: Debian packages gcc + libc6-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
version=10.16.1.11
dest=.cache/tensorrt-api
stamp="$dest/ready-$version"
py=${PYTHON:-python3}

fail() { echo "tensorrt_api_stubs.sh: $*" >&2; exit 1; }

if [ -f "$stamp" ]; then
  echo "$PWD/$dest"
  exit 0
fi
command -v cc >/dev/null || fail "no C compiler 'cc' to build the stub libraries; install gcc and libc6-dev"
rm -rf "$dest"
mkdir -p "$dest/wheel" "$dest/site" "$dest/lib"
$py -m pip download -q --no-deps --only-binary=:all: -d "$dest/wheel" "tensorrt-cu12-bindings==$version" \
  >"$dest/pip.log" 2>&1 || fail "pip could not download tensorrt-cu12-bindings==$version (see $dest/pip.log)"
whl=$(ls "$dest"/wheel/*.whl 2>/dev/null | head -n 1)
[ -n "$whl" ] || fail "pip downloaded no tensorrt-cu12-bindings wheel (see $dest/pip.log)"
$py -m zipfile -e "$whl" "$dest/site" || fail "cannot unzip $whl"

# One stub library per real one, each exporting the functions tensorrt.so imports from it (`nm -D --undefined-only`).
write_stub() {  # name, C source
  printf '%s\n' "#include <stddef.h>" "$2" >"$dest/lib/$1.c"
  cc -shared -fPIC -O0 -Wl,-soname,"$1.so.10" -o "$dest/lib/$1.so.10" "$dest/lib/$1.c" \
    || fail "cc could not compile the $1 stub"
}
write_stub libnvinfer '
void* createInferBuilder_INTERNAL(void* logger, int version) { return NULL; }
void* createInferRefitter_INTERNAL(void* engine, void* logger, int version) { return NULL; }
void* createInferRuntime_INTERNAL(void* logger, int version) { return NULL; }
void* getBuilderPluginRegistry(int capability) { return NULL; }
void* getPluginRegistry(void) { return NULL; }'
write_stub libnvonnxparser '
void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) { return NULL; }
void* createNvOnnxParserRefitter_INTERNAL(void* refitter, void* logger, int version) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }'
write_stub libnvinfer_plugin '
int initLibNvInferPlugins(void* logger, const char* name_space) { return 0; }'

LD_LIBRARY_PATH="$PWD/$dest/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PYTHONPATH="$PWD/$dest/site" \
  $py -c "import tensorrt_bindings as t; assert t.__version__ == '$version', t.__version__" >"$dest/import.log" 2>&1 \
  || fail "the bindings do not import against the stubs (see $dest/import.log)"
touch "$stamp"
echo "$PWD/$dest"
