# shellcheck shell=bash
# Sourced by scripts/setup-system.sh and scripts/build-bundle.sh: which Debian archive to fetch from.
#
# Users run internal mirrors (and air-gapped machines have nothing else), so the archive is never a
# hard-coded host: it is the one this machine's apt already uses for Debian's main archive.

# debian_mirror: print the URI of the Debian main archive (not the security archive) this machine's apt
# is configured with: the first enabled `deb`/`deb-src` entry with component `main` and a suite that is
# not a -security suite, from /etc/apt/sources.list.d/*.sources (deb822) and then the one-line
# /etc/apt/sources.list and /etc/apt/sources.list.d/*.list. $DEBIAN_MIRROR, when set, wins.
# Returns 1 (printing nothing) when there is none.
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then printf '%s\n' "${DEBIAN_MIRROR%/}"; return 0; fi
  local etc=${APT_ETC:-/etc/apt} found="" f
  local -a sources=() lists=()
  for f in "$etc"/sources.list.d/*.sources; do [ -f "$f" ] && sources+=("$f"); done
  [ -f "$etc/sources.list" ] && lists+=("$etc/sources.list")
  for f in "$etc"/sources.list.d/*.list; do [ -f "$f" ] && lists+=("$f"); done
  if [ ${#sources[@]} -gt 0 ]; then
    # deb822: stanzas separated by blank lines; field names are case-insensitive; '#' lines are comments.
    found=$(awk '
      function flush() {
        if (!done && uris != "" && enabled != "no" && types ~ /(^| )deb(-src)?( |$)/ && comps ~ /(^| )main( |$)/) {
          n = split(suites, s, " ")
          for (i = 1; i <= n; i++) if (s[i] !~ /-security$/ && s[i] !~ /\/updates$/) {
            split(uris, u, " "); print u[1]; done = 1; exit
          }
        }
        uris = types = suites = comps = enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      {
        key = tolower($0); sub(/:.*/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
        if (key == "uris") uris = val; else if (key == "types") types = val
        else if (key == "suites") suites = val; else if (key == "components") comps = val
        else if (key == "enabled") enabled = tolower(val)
      }
      END { flush() }' "${sources[@]}")
  fi
  if [ -z "$found" ] && [ ${#lists[@]} -gt 0 ]; then
    # one-line: deb [options] URI SUITE COMPONENT...
    found=$(awk '
      /^[ \t]*(deb|deb-src)[ \t]/ {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        uri = $i; suite = $(i + 1); main = 0
        for (j = i + 2; j <= NF; j++) if ($j == "main") main = 1
        if (main && suite !~ /-security$/ && suite !~ /\/updates$/) { print uri; exit }
      }' "${lists[@]}")
  fi
  [ -n "$found" ] || return 1
  printf '%s\n' "${found%/}"
}
