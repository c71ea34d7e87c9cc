#!/usr/bin/env bash
# Bundles the server, client, bench and chosen test binaries of a build with the shared
# libraries a GPU machine (Ubuntu 24.04 with the CUDA toolkit, cuBLAS and OpenBLAS, but no gRPC,
# abseil, protobuf, spdlog or prometheus-cpp) lacks, so that one copy of the folder starts
# `sliminfer-server --device cuda` there:
#   scripts/bundle-gpu.sh BUILD_DIR OUT_DIR [extra binary names...]
#   OUT_DIR/run.sh sliminfer-server --device cuda ...   (sets LD_LIBRARY_PATH to OUT_DIR/lib)
# It also writes OUT_DIR.tar.xz (about a quarter of the folder: ICU's 30 MB data library
# compresses well), the form to carry when the folder itself is over a transfer limit:
#   tar -xJf OUT_DIR.tar.xz && OUT_DIR/run.sh ...
# Left out: the C runtime, libstdc++/libgcc, the CUDA libraries and OpenBLAS (with its Fortran
# runtime), which that machine has.
set -euo pipefail
BUILD="${1:?usage: bundle-gpu.sh BUILD_DIR OUT_DIR [binaries...]}"
OUT="${2:?usage: bundle-gpu.sh BUILD_DIR OUT_DIR [binaries...]}"
shift 2
BINS=(sliminfer-server sliminfer-cli sliminfer-bench "$@")
mkdir -p "$OUT/bin" "$OUT/lib"
for b in "${BINS[@]}"; do
  src="$BUILD/bin/$b"
  [ -x "$src" ] || { echo "bundle-gpu: no $src" >&2; exit 1; }
  cp "$src" "$OUT/bin/"
  ldd "$src" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
      libcuda.so*|libcudart.so*|libcublas*.so*|libnvidia*|libopenblas*.so*|libblas.so*|liblapack.so*) ;;
      libgfortran.so*|libquadmath.so*|libgomp.so*) ;;
      *) cp -Ln "$lib" "$OUT/lib/" ;;
    esac
  done
done
cat >"$OUT/run.sh" <<'SH'
#!/usr/bin/env bash
# Runs one of the bundled binaries with the bundled libraries.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$1"; shift
LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$here/bin/$bin" "$@"
SH
chmod +x "$OUT/run.sh"
tar -C "$(dirname "$OUT")" -cJf "$OUT.tar.xz" "$(basename "$OUT")"
echo "bundle-gpu: $OUT: $(du -sh "$OUT" | cut -f1) ($(ls "$OUT/lib" | wc -l) libraries); $OUT.tar.xz: $(du -sh "$OUT.tar.xz" | cut -f1)"
