#!/bin/sh
# The update signing key: SIGNING_CERT/SIGNING_KEY if given (release builds), else a development
# key made once in CACHE_DIR/keys. Prints the certificate the image trusts (its RAUC keyring).
# Only the certificate goes into the image; the key never does.
set -eu
cache=$1
if [ -n "${SIGNING_CERT:-}" ]; then echo "$SIGNING_CERT"; exit 0; fi
dir="$cache/keys"
if [ ! -s "$dir/signing.key.pem" ]; then
  mkdir -p "$dir"; chmod 700 "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/O=Faxbridge/CN=Faxbridge development update signing ($(hostname))" \
    -keyout "$dir/signing.key.pem.tmp" -out "$dir/signing.cert.pem" 2>/dev/null
  mv "$dir/signing.key.pem.tmp" "$dir/signing.key.pem"
  echo "image: made a development signing key in $dir (set SIGNING_CERT and SIGNING_KEY for a release)" >&2
fi
echo "$dir/signing.cert.pem"
