#!/usr/bin/env bash
# The report's final CNN on the full CIFAR-10 with the engine's GPU path (data on the GPU as
# uint8, bf16 autocast, channels_last, evaluation in batches of 4096), to its early stop or 20
# epochs. The report: 81.43% in 7.8 minutes on a Kaggle GPU; the target: ≥ 81.43% in ≤ 60 s on
# one H100-class GPU. Prints the accuracy, the training time and the wall time of the command.
#
#   DATA_DIR=/path/with/cifar10 bash benchmarks/gpu_final.sh [OUT_DIR]
#
# On a lent device machine, carry the dataset archive in an ignored folder and unpack it first:
#   mkdir -p /tmp/d && tar xzf .data/cifar10-jpeg.tar.gz -C /tmp/d && DATA_DIR=/tmp/d bash benchmarks/gpu_final.sh "$OUT"
set -euo pipefail
out="${1:-.}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
/usr/bin/time -f "wall time of the whole command: %e s" \
  python -m training final --preset report --device cuda --out "$out/final-gpu.json" --save-dir "$out/final-gpu-model"
