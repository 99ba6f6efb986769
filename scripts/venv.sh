# Sourced by scripts/stack.sh and scripts/validate-deploy.sh.
#
# make_venv DIR: a virtualenv with a working pip at DIR. It is made by python3 on PATH, else by
# Debian's /usr/bin/python3. Debian's python3 cannot make one without python3-venv (its
# ensurepip and pip wheels), and a python3 that imports ensurepip may still fail to run it, so
# the test is making the virtualenv: when no python3 can, what is left is removed, python3-venv
# and the python3.X-venv of Debian's python3 are installed, and Debian's python3 makes it.
make_venv() {
  local dir=$1 python output
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -m pip --version >/dev/null 2>&1; then return 0; fi
  local pythons=(python3)
  [ "$(command -v python3 || true)" = /usr/bin/python3 ] || pythons+=(/usr/bin/python3)
  for python in "${pythons[@]}"; do
    rm -rf "$dir"
    if output=$("$python" -m venv "$dir" 2>&1) && "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
      return 0
    fi
    printf 'venv: %s could not make a virtualenv at %s:\n%s\n' "$python" "$dir" "$output" >&2
  done
  rm -rf "$dir"
  local minor
  minor=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  printf 'venv: installing python3-venv and python%s-venv\n' "$minor" >&2
  local root=()
  [ "$(id -u)" -eq 0 ] || root=(sudo -n)
  local install=("${root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv "python$minor-venv")
  if ! "${install[@]}" >&2; then
    "${root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${install[@]}" >&2
  fi
  /usr/bin/python3 -m venv "$dir"
}
