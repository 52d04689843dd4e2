# Sourced by the tests that compare with npm packages (the only registry CI reaches):
#   npm_packages CACHE_DIR PACKAGE@VERSION...
# installs each package missing from CACHE_DIR/node_modules and sets `modules` to that folder;
# when node or npm is missing, or an install fails, it says so and exits 77 (ctest's skip).
npm_packages() {
  local cache=$1 pkg
  shift
  if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
    echo "SKIP: no node/npm" >&2
    exit 77
  fi
  mkdir -p "$cache"
  # One install at a time into the cache: tests that share it run in parallel under ctest -j,
  # and two npm installs into one prefix leave truncated files behind.
  local lock
  exec {lock}> "$cache/.install.lock"
  flock "$lock"
  for pkg in "$@"; do
    if [[ ! -f "$cache/node_modules/${pkg%@*}/package.json" ]]; then
      if ! npm install --prefix "$cache" --silent --no-audit --no-fund "$pkg" > /dev/null 2>&1; then
        echo "SKIP: npm could not install $pkg" >&2
        exit 77
      fi
    fi
  done
  flock -u "$lock"
  exec {lock}>&-
  modules=$cache/node_modules
}
