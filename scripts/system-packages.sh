#!/bin/sh
# Make sure the system packages sheetgen needs are present; install the missing ones with apt-get
# when running as root, otherwise print the one command to run and stop.
#
#   scripts/system-packages.sh build   what `make` needs: HarfBuzz subsetting (WeasyPrint embeds font
#                                      subsets), DejaVu fonts incl. Condensed (the PDF's text), poppler (the preview image)
#   scripts/system-packages.sh test    the above + Chromium (the browser tests)
#
# Each need is checked by what the program actually uses, not by a package database, so a machine
# that has them some other way passes too.
set -eu

missing=""
need() {  # need PACKAGE CHECK-COMMAND...
  package=$1; shift
  if ! "$@" >/dev/null 2>&1; then missing="$missing $package"; fi
}
has_library() { ldconfig -p | grep -q "$1"; }
has_font() { fc-list : family | grep -q "$1"; }

need libharfbuzz-subset0 has_library libharfbuzz-subset.so.0
# The PDF sets its text in DejaVu Sans Condensed (fonts-dejavu-extra) and its code in DejaVu Sans Mono
# (fonts-dejavu-core): with other fonts the sheet is fitted to other metrics and may not fit one page.
need fonts-dejavu-core has_font "DejaVu Sans Mono"
need fonts-dejavu-extra has_font "DejaVu Sans Condensed"
need poppler-utils command -v pdftoppm
if [ "${1:-build}" = test ]; then
  need chromium command -v chromium
fi

[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages:$missing (apt-get)"
  log=$(mktemp)
  # shellcheck disable=SC2086  # one word per package
  if apt-get update -qq >"$log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >>"$log" 2>&1; then
    rm -f "$log"
    exit 0
  fi
  cat "$log" >&2
  rm -f "$log"
  echo "apt-get could not install:$missing (see above)" >&2
  exit 1
fi
echo "sheetgen needs these system packages:$missing" >&2
echo "install them, then run make again:  sudo apt-get install -y$missing" >&2
exit 1
