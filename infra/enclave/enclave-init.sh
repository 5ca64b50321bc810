#!/bin/sh
# PID 1's command inside the Nitro Enclave (the EIF's entrypoint). Runs as root only to
# prepare what the unprivileged enclave-app needs, then drops every privilege:
#   - loopback up: the in-enclave KMS forwarder (kms.forward.listen) listens on 127.0.0.1;
#   - kms.<region>.amazonaws.com -> 127.0.0.1, so the AWS SDK's TLS checks the real KMS
#     name while the bytes go through the forwarder and the host's egress proxy (the
#     host sees only TLS it cannot read);
#   - ports from 443 up bindable without privileges (the forwarder listens on 443);
#   - /dev/nsm (attestation) readable by the service user.
# The enclave has no network interface besides loopback: vsock to its parent is all.
set -eu

: "${ZENVELOPE_KMS_REGION:?the image was built without KMS_REGION}"

ip addr add 127.0.0.1/8 dev lo 2>/dev/null || true
ip link set dev lo up
printf '127.0.0.1 localhost\n127.0.0.1 kms.%s.amazonaws.com\n' "$ZENVELOPE_KMS_REGION" > /etc/hosts
echo 443 > /proc/sys/net/ipv4/ip_unprivileged_port_start
chgrp 10001 /dev/nsm
chmod 0660 /dev/nsm

exec setpriv --reuid=10001 --regid=10001 --clear-groups \
  --inh-caps=-all --bounding-set=-all --no-new-privs \
  /usr/local/bin/enclave-app --config /etc/zenvelope/enclave-app.toml
