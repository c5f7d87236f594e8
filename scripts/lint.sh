#!/usr/bin/env bash
# Style checks, run by CI: ruff lint and format (line length 100, settings in pyproject.toml) and
# clang-format (.clang-format) on every C++/CUDA file of csrc/. Exits non-zero on any finding.
#   scripts/lint.sh          check only
#   scripts/lint.sh --fix    rewrite the files instead
# The tools come from the [lint] extra: .venv/bin/pip install -e '.[lint]'
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${LINT_BIN:-.venv/bin}"
mapfile -t cxx < <(git ls-files 'csrc/*.cpp' 'csrc/*.h' 'csrc/*.cu' 'csrc/*.cuh')
if [[ "${1:-}" == "--fix" ]]; then
  "$bin/ruff" check --fix .
  "$bin/ruff" format .
  "$bin/clang-format" -i "${cxx[@]}"
else
  "$bin/ruff" check .
  "$bin/ruff" format --check .
  "$bin/clang-format" --dry-run --Werror "${cxx[@]}"
  echo "lint: ruff and clang-format clean (${#cxx[@]} C++/CUDA files)"
fi
