#!/usr/bin/env bash
# The real-SIIM pneumothorax model (`default` when it passes its bar), end to end, from ../shared/data (docs/real-model.md). Each step is a ptxseg
# command a user would run; the three fold trainings take about 15 CPU minutes each on 2 cores.
#   bash scripts/real_model.sh [WORK]      (WORK: where data, runs and maps go; default ../real-model-work)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIIM=$ROOT/../shared/data/siim
WORK=${1:-$ROOT/../real-model-work}
PTX=$ROOT/.venv/bin/ptxseg
PY=$ROOT/.venv/bin/python
mkdir -p "$WORK"/src/train_real "$WORK"/src/unlabeled_train "$WORK"/sample_src "$WORK"/stage2_src "$WORK"/negjpeg_src

# 1. the challenge layout: films named by ImageId beside the RLE file; unlabelled films have no RLE row
ln -sf "$SIIM"/train_real/images/* "$WORK"/src/train_real/
ln -sf "$SIIM"/unlabeled_train/images/* "$WORK"/src/unlabeled_train/
for d in src sample_src stage2_src negjpeg_src; do ln -sf "$SIIM"/train-rle.csv.gz "$WORK/$d/"; done
ln -sf "$SIIM"/real_sample/* "$WORK"/sample_src/
ln -sf "$SIIM"/unlabeled_dicom/* "$WORK"/stage2_src/
$PY "$ROOT"/scripts/reencode_negatives.py "$SIIM"/train_real "$WORK"/negjpeg_src --quality 75

# 2. training data: every film stored at 320² through one last JPEG step (quality 89: the unlabelled films' own)
$PTX convert "$WORK"/src "$WORK"/siim320q --size 320 --jpeg-quality 89 -q
$PTX split "$WORK"/siim320q --folds 3 --size-strata 3 --unlabelled
# evaluation data: the films as inference meets them (no extra JPEG step), the same folds
$PTX convert "$WORK"/src "$WORK"/siim320 --size 320 -q
cp "$WORK"/siim320q/folds.csv "$WORK"/siim320/folds.csv
for d in sample stage2 negjpeg; do $PTX convert "$WORK/${d}_src" "$WORK/${d}320" --size 320 -q; done

# 3. three fold models (ImageNet EfficientNet-Lite0 from its PyPI wheel), and the same fold 0 from random init
for k in 0 1 2; do
  $PTX train siim_real_lite0_256 --data "$WORK"/siim320q --fold $k --out "$WORK"/runs/real_f$k -q
done
$PTX train siim_real_lite0_256 --data "$WORK"/siim320q --fold 0 --set model.pretrained=null --out "$WORK"/runs/random_f0 -q

# 4. out-of-fold evaluation (nested tuning at SIIM prevalence), the shortcut checks, the held-out films
$PY "$ROOT"/benchmarks/real_model_eval.py --data "$WORK"/siim320 --runs "$WORK"/runs/real_f{0,1,2} --work "$WORK"/eval \
  --negjpeg "$WORK"/negjpeg320 --unlabelled "$WORK"/stage2320 --sample "$WORK"/sample320 \
  --out "$WORK"/eval/results.json --figure "$ROOT"/docs/images/real-model/oof_grid.jpg

# 5. ship only what beats the all-empty answer out of fold (nested, at SIIM prevalence) and finds lesions
if $PY -c "import json,sys; r=json.load(open(sys.argv[1]))['with_gate']; sys.exit(not (r['prevalence_weighted_dice'] > 0.78 and r['dice_positive'] > 0.2))" "$WORK"/eval/results.json; then
  $PTX tune "$WORK"/runs/real_f0 "$WORK"/runs/real_f1 "$WORK"/runs/real_f2 --probs "$WORK"/eval/oof --data "$WORK"/siim320 \
    --prevalence 0.22 --out "$WORK"/runs/real.json -q
  $PTX export "$WORK"/runs/real.json --out "$ROOT"/src/ptxseg/weights/default --int8 --calib "$WORK"/siim320q --no-lungs \
    --card-notes "$WORK"/eval/results.md -q
else
  echo "not shipped: out of fold the model does not beat the all-empty answer or find lesions (see $WORK/eval/results.md)"
fi
