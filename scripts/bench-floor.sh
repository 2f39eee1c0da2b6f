#!/usr/bin/env bash
# The floor of `make bench`: what the API server needs to serve the objects a
# verb reads, fetched by the most minimal client there is (curl with the
# kubeconfig's client certificate), every kind at once, the bytes thrown away.
#   bench-floor.sh creds  DIR          write DIR/{ca,cert,key,server} from
#                                      $KUBECONFIG (embedded *-data fields, as
#                                      kubesim's has), with $KUBECTL
#   bench-floor.sh paged  DIR PATH...  LIST page by page (limit=500, following
#                                      metadata.continue), a consistent read
#   bench-floor.sh cached DIR PATH...  one unpaged LIST per kind from the
#                                      watch cache (resourceVersion=0)
# PATH is an API path (/api/v1/pods), optionally with a query
# (/api/v1/events?fieldSelector=reason%3DFoo).
set -euo pipefail
mode="$1" creds="$2"; shift 2
if [ "$mode" = creds ]; then
  kubectl="${KUBECTL:-$(dirname "${BASH_SOURCE[0]}")/../target/kubesim/kubectl}"
  field() { "$kubectl" config view --raw --minify -o jsonpath="{$1}"; }
  mkdir -p "$creds"
  field '.clusters[0].cluster.certificate-authority-data' | base64 -d >"$creds/ca"
  field '.users[0].user.client-certificate-data' | base64 -d >"$creds/cert"
  field '.users[0].user.client-key-data' | base64 -d >"$creds/key"
  field '.clusters[0].cluster.server' | sed 's|/$||' >"$creds/server"
  exit 0
fi
server="$(cat "$creds/server")"
# Not curl's User-Agent: the API server pretty-prints JSON for curl.
curl_args=(-sS --fail -A bench-floor -H "Accept: application/json" --cacert "$creds/ca" --cert "$creds/cert" --key "$creds/key")

query_sep() { case "$1" in *\?*) echo "&";; *) echo "?";; esac; }

# One kind, page by page: only the first bytes (where metadata.continue is)
# are looked at, the rest is thrown away as it arrives.
paged() {
  local path="$1" token="" url
  while :; do
    url="$server$path$(query_sep "$path")limit=500"
    if [ -n "$token" ]; then
      token="$(curl "${curl_args[@]}" -G --data-urlencode "continue=$token" "$url" | { head -c 4096; cat >/dev/null; } |
        grep -o '"continue": *"[^"]*"' | head -1 | cut -d'"' -f4 || true)"
    else
      token="$(curl "${curl_args[@]}" "$url" | { head -c 4096; cat >/dev/null; } |
        grep -o '"continue": *"[^"]*"' | head -1 | cut -d'"' -f4 || true)"
    fi
    [ -n "$token" ] || return 0
  done
}

case "$mode" in
  paged)
    for p in "$@"; do paged "$p" & done
    wait
    ;;
  cached)
    urls=()
    for p in "$@"; do urls+=(-o /dev/null "$server$p$(query_sep "$p")resourceVersion=0"); done
    curl "${curl_args[@]}" --parallel --parallel-immediate --parallel-max 32 "${urls[@]}"
    ;;
  *) echo "usage: bench-floor.sh creds|paged|cached DIR [PATH...]" >&2; exit 2 ;;
esac
