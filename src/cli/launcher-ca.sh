# NODE_EXTRA_CA_CERTS (inserted by scripts/build-launchers.mjs into walvault-archive and walvault-restore):
# Node would parse every certificate it names at start (~35 ms for a system bundle), in every process.
# Only an S3 repository makes TLS connections, and the S3 backend reads the value from
# WALVAULT_NODE_EXTRA_CA_CERTS itself, once (src/backend/extra-ca.ts); --on-failure commands get the
# variable back (src/policy/notify.ts). Done before anything else, whatever the options: the records,
# fingerprints and workers all see the environment as Node gets it.
if [ -n "${NODE_EXTRA_CA_CERTS-}" ]; then
  WALVAULT_NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS
  export WALVAULT_NODE_EXTRA_CA_CERTS
fi
unset NODE_EXTRA_CA_CERTS
