#!/usr/bin/env bash
# Set up the project in ./.venv (idempotent): the pinned Python packages and,
# when possible, the system OpenBLAS that PyTensor's C backend links to.
#   bash setup.sh && .venv/bin/python lstm.py
#   bash setup.sh && .venv/bin/python -m pytest -q
# SETUP_SYSTEM_BLAS=0 skips the OpenBLAS step.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

have_openblas() { ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\b'; }

if [ "${SETUP_SYSTEM_BLAS:-1}" != 0 ] && ! have_openblas; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup.sh: installing libopenblas-dev (PyTensor's C backend is ~1.5x faster with it)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev >/dev/null) \
      || echo "setup.sh: warning: could not install libopenblas-dev; continuing without it"
  else
    echo "setup.sh: note: no OpenBLAS found; for ~1.5x faster training install it" \
         "(Debian/Ubuntu: sudo apt-get install libopenblas-dev)"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi
