#!/usr/bin/env bash
# Make mamba-ssm importable on the GPU machine (no registry there): the carried wheel in .gpu/ if it installs,
# else a build from the carried sdist (about 3-4 minutes on 16 cores). Exit 0 once `import mamba_ssm` works.
set -uo pipefail
python3 -c "import mamba_ssm" 2>/dev/null && exit 0
# the wheel only fits the Python it was built for; when it is missing or refused, build
python3 -m pip install -q --no-deps --no-index .gpu/wheel/mamba_ssm-*.whl 2>/dev/null \
  || { MAX_JOBS=$(nproc) bash .gpu/sdist/build-wheels.sh /tmp/wheels mamba_ssm \
       && python3 -m pip install -q --no-deps --no-index /tmp/wheels/mamba_ssm-*.whl; }
python3 -c "import mamba_ssm; print('mamba-ssm', mamba_ssm.__version__)"
