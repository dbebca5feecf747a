// NODE_EXTRA_CA_CERTS for the TLS connections of an S3 repository, read by walvault instead of Node.
// Node parses every certificate the variable names when it starts, before any JavaScript runs (~35 ms
// for a system bundle of ~140 certificates), in every process: every archive_command and
// restore_command call the launcher cannot answer. Only the S3 backend makes TLS connections, so the
// archive and restore launchers (src/cli/launcher.sh) start Node without the variable and hand its
// value on as WALVAULT_NODE_EXTRA_CA_CERTS; the S3 backend adds those certificates here, once per
// process, to the trust store Node would have used (its default roots), for the S3 client and the
// credential clients that share its request handler (STS).
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

/** The variable the launchers put NODE_EXTRA_CA_CERTS's value in (see src/cli/launcher.sh). */
export const EXTRA_CA_VARIABLE = 'WALVAULT_NODE_EXTRA_CA_CERTS';

/** What the S3 client's https agent needs to trust the extra certificates: its options, or nothing to add. */
export interface ExtraCaAgent {
  httpsAgent?: { secureContext: tls.SecureContext };
}

let made: ExtraCaAgent | undefined;

/**
 * The https agent options of the S3 client: Node's default trust store plus the certificates named by
 * WALVAULT_NODE_EXTRA_CA_CERTS (one secure context per process, shared by every connection: parsing a
 * bundle per connection would cost as much as Node's own start-up parse each time). Without the
 * variable, nothing (Node's defaults, with NODE_EXTRA_CA_CERTS if Node was started with it). A file that
 * cannot be read or holds no certificate is reported and ignored, as Node does with NODE_EXTRA_CA_CERTS.
 */
export function extraCaAgent(warn: (message: string) => void): ExtraCaAgent {
  if (made !== undefined) return made;
  const file = process.env[EXTRA_CA_VARIABLE];
  made = {};
  if (file === undefined || file === '') return made;
  try {
    const pem = readFileSync(file, 'latin1');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it');
    // A context made without `ca` starts from Node's default roots (the bundled ones, or OpenSSL's with
    // --use-openssl-ca); addCACert then copies that store before adding (Node's `ca` option would
    // replace the defaults instead). The native context's addCACert is what `ca` itself calls.
    const secureContext = tls.createSecureContext();
    (secureContext.context as { addCACert(pem: string): void }).addCACert(pem);
    made = { httpsAgent: { secureContext } };
  } catch (error) {
    warn(`ignoring extra CA certificates from "${file}" (NODE_EXTRA_CA_CERTS): ${error instanceof Error ? error.message : String(error)}; HINT: point NODE_EXTRA_CA_CERTS at a readable PEM file, or unset it`);
  }
  return made;
}
