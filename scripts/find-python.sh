#!/bin/sh
# Prints the path of a working Python interpreter: `find-python.sh 3.10` for exactly 3.10
# (Rasa's venv), `find-python.sh gateway` for the newest of 3.12, 3.13, 3.11.
# pyenv shims only answer for the selected version, so pyenv's versions are tried too.
set -u
case "$1" in
  gateway) wanted="3.12 3.13 3.11" ;;
  *) wanted="$1" ;;
esac
pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for version in $wanted; do
  for candidate in "python$version" "$pyenv_root"/versions/"$version"*/bin/python"$version" \
                   /usr/bin/python"$version" /usr/local/bin/python"$version"; do
    if "$candidate" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$version'.split('.')))" >/dev/null 2>&1; then
      command -v "$candidate" 2>/dev/null || echo "$candidate"
      exit 0
    fi
  done
done
echo "error: no working python$wanted found; install it or set the variable (RASA_PYTHON / GATEWAY_PYTHON)" >&2
exit 1
