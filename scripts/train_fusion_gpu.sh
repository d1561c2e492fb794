#!/usr/bin/env bash
# Retrain only the learned view fusion of the shipped stereo bundle and the separate baseline's
# post-filter: the same network, initialisation, seed, steps and device for both, so that joint vs
# separate stays a comparison of what the second view adds. Codecs (encoders, tables, synthesis) stay.
#
# Usage: scripts/train_fusion_gpu.sh OUT_DIR [--steps N] [--device cuda|cpu|auto] [--data DIR]
#                                    [--separate DIR] [--threads N] [--only joint|separate]
#   OUT_DIR/joint     copy of ndsc/bundles/stereo-middlebury, its fusion retrained (OUT_DIR/joint.log)
#   OUT_DIR/separate  copy of the separate baseline (default runs/stereo/separate), its post-filter
#                     retrained (OUT_DIR/separate.log)
#   --steps    Adam steps of each (default 2500, the preset's refiner_steps)
#   --data     the Middlebury scenes the bundles were split from (default ../shared/data/stereo/middlebury;
#              the whole folder: the scene split is computed from every scene in it)
#   --only     one of the two (two calls with the same OUT_DIR and --steps make the same pair)
# Python: $PYTHON, else .venv/bin/python, else python3. The inputs are only read; OUT_DIR/joint and
# OUT_DIR/separate must not exist.
# Then, e.g.: python benchmarks/stereo.py --joint OUT_DIR/joint --separate OUT_DIR/separate
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
out=$1; shift
steps=2500 device=cuda data=../shared/data/stereo/middlebury separate=runs/stereo/separate threads=8
kinds="joint separate"
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --separate) separate=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --only) case "$2" in joint|separate) kinds=$2 ;; *) usage ;; esac; shift 2 ;;
    *) usage ;;
  esac
done
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
source_of() { if [ "$1" = joint ]; then echo ndsc/bundles/stereo-middlebury; else echo "$separate"; fi; }
[ -d "$data" ] || { echo "train_fusion_gpu: no scenes at $data (give --data DIR)" >&2; exit 2; }
for kind in $kinds; do
  [ -f "$(source_of "$kind")/manifest.json" ] || { echo "train_fusion_gpu: no bundle at $(source_of "$kind")" >&2; exit 2; }
  [ ! -e "$out/$kind" ] || { echo "train_fusion_gpu: $out/$kind exists; give a new folder" >&2; exit 2; }
done
mkdir -p "$out"
for kind in $kinds; do
  cp -r "$(source_of "$kind")" "$out/$kind"
  echo "train_fusion_gpu: $kind, $steps steps on $device (log: $out/$kind.log)" >&2
  "$py" scripts/build_stereo_bundle.py --fusion-only --out "$out/$kind" --data "$data" \
    --fusion-steps "$steps" --device "$device" --threads "$threads" 2>&1 | tee "$out/$kind.log"
done
