#!/usr/bin/env bash
# Install everything TSCT needs into ./.venv (idempotent: a second run only checks).
#
#   bash scripts/install.sh          # CPU build of torch (the default; what CI uses)
#   TSCT_TORCH_INDEX=https://download.pytorch.org/whl/cu124 bash scripts/install.sh
#                                    # a CUDA build for a GPU machine (see README)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
TORCH_VERSION=2.13.0   # pinned: an open range pulls a multi-GB CUDA build on these machines

# Debian packages the tests and the app need: PostgreSQL (database tests), Chromium (browser
# tests), dicom3tools (dciodvfy checks the DICOM objects we write), Orthanc with its DICOMweb
# plug-in (the test PACS). Installed only when missing, and only when we can (root with
# apt-get); otherwise the tests that need them skip.
DEB_PACKAGES=(${TSCT_DEB_PACKAGES:-postgresql chromium dicom3tools orthanc orthanc-dicomweb})
need=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian packages: ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "Note: Debian packages ${need[*]} are missing and cannot be installed here (not root); tests that need them will skip."
  fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV/.tsct-installed-$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  if [ -n "${TSCT_TORCH_INDEX:-}" ]; then
    "$VENV/bin/pip" install -q "torch==${TSCT_TORCH_VERSION:-$TORCH_VERSION}" --index-url "$TSCT_TORCH_INDEX"
  else
    "$VENV/bin/pip" install -q "torch==$TORCH_VERSION"
  fi
  "$VENV/bin/pip" install -q -e ".[test]"
  rm -f "$VENV"/.tsct-installed-*
  touch "$stamp"
fi
echo "TSCT installed in $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
