#!/usr/bin/env bash
# Downloads bitsandbytes 0.50.2 from PyPI into .whl/ and writes .whl/slim/, the
# same wheel without the libraries a CUDA 12.8+ PyTorch on sm_90 never loads
# (CUDA 11.8-12.6, ROCm, XPU builds): 43 MB -> about 12 MB, so that it fits the
# device tool's 64 MiB carry beside the bundle and the data
# (tools/gpu/run.sh's peers stage installs .whl/slim/*.whl there).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl/dl .whl/slim
whl=.whl/dl/bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl
[ -f "$whl" ] || pip download -q --no-deps --only-binary=:all: --platform manylinux_2_24_x86_64 \
  --python-version 3.12 bitsandbytes==0.50.2 -d .whl/dl
python3 - "$whl" .whl/slim/"$(basename "$whl")" <<'PY'
import re, sys, zipfile
drop = re.compile(r"libbitsandbytes_(cuda(118|12[0-6])|rocm\d+|xpu\d+)\.so$")
src, dst = sys.argv[1:]
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        if drop.search(info.filename):
            continue
        data = zin.read(info.filename)
        if info.filename.endswith(".dist-info/RECORD"):  # keep RECORD true to the files
            data = b"".join(l for l in data.splitlines(True) if not drop.search(l.split(b",")[0].decode()))
        zout.writestr(info, data)
PY
du -h .whl/slim/*.whl
