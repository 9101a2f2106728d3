#!/usr/bin/env bash
# make setup: create VENV and install ptxseg with every dependency pinned by constraints.txt, saying what is
# installed, how large it is and where the time goes (pip's own progress lines), then the size it took.
#   TORCH=cpu  install PyTorch's CPU-only build first (from download.pytorch.org/whl/cpu; the same pinned versions,
#              torch==2.14.1+cpu satisfies the pin torch==2.14.1), without the 3.2 GB of NVIDIA libraries that PyPI's
#              Linux x86_64 build brings (the CPU-only install's size is not measured here: this machine reaches PyPI only).
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH=${TORCH:-default}
BIN=$VENV/bin
pin() { sed -n "s/^$1==\([^ ;#]*\).*/\1/p" constraints.txt | head -1; }
torch_v=$(pin torch); vision_v=$(pin torchvision)
n_pins=$(grep -cE '^[A-Za-z0-9_.-]+==' constraints.txt)
machine="$(uname -s) $(uname -m)"
case "$TORCH" in default|cpu) ;; *) echo "ptxseg: TORCH must be default or cpu, got '$TORCH'" >&2; exit 2 ;; esac
if [ "$TORCH" = cpu ]; then
  build="CPU-only build from https://download.pytorch.org/whl/cpu, without NVIDIA libraries"
elif [ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ]; then
  build="PyPI's build, which on $machine bundles CUDA: the venv takes about 6.4 GB, 3.2 GB of it NVIDIA libraries a CPU never uses; make setup TORCH=cpu installs the CPU-only build where download.pytorch.org is reachable"
else
  build="PyPI's build for $machine"
fi
[ -n "${DRY_RUN:-}" ] || test -x "$BIN/python" || "$PYTHON" -m venv "$VENV"
echo "ptxseg: installing into $VENV: torch $torch_v and torchvision $vision_v ($build), then ptxseg with the other packages pinned by constraints.txt ($n_pins pins). A first install takes a few minutes; pip's progress follows."
quiet_pip() { grep -v -e "is ignored: it is neither a file nor a directory" -e "^Requirement already satisfied" || true; }
pip_install() {  # DRY_RUN=1: print the command instead (tests/test_setup.py)
  if [ -n "${DRY_RUN:-}" ]; then echo "+ pip install $*"; return; fi
  "$BIN/python" -m pip install --disable-pip-version-check --progress-bar off "$@" 2>&1 | quiet_pip
}
if [ "$TORCH" = cpu ]; then
  pip_install --index-url https://download.pytorch.org/whl/cpu "torch==$torch_v+cpu" "torchvision==$vision_v+cpu"
fi
pip_install -c constraints.txt -e '.[dev,cluster]'
[ -z "${DRY_RUN:-}" ] || exit 0
"$BIN/python" -c "import ptxseg, torch; print(f'ptxseg: installed; torch {torch.__version__} (CUDA build: {torch.version.cuda is not None})')"
echo "ptxseg: $VENV takes $(du -sh "$VENV" | cut -f1)"
