// Seals a report's plaintext to intake's public keys as an institution would, with the
// `jose` package (https://github.com/panva/jose): an implementation independent of Punte's.
//
//   node seal-report.mjs <jwks.json | http://…/.well-known/jwks.json> < plaintext.json
//
// prints the JWE compact serialization for the report's `sealed` member: the first key of
// the set (intake publishes its current key first), alg ECDH-ES+A256KW, enc A256GCM, kid.
import { readFileSync } from 'node:fs';
import { CompactEncrypt, importJWK } from 'jose';

const [source] = process.argv.slice(2);
if (!source) {
  console.error('usage: node seal-report.mjs <jwks.json | jwks URL> < plaintext.json');
  process.exit(2);
}
const jwks = source.startsWith('http')
  ? await (await fetch(source)).json()
  : JSON.parse(readFileSync(source, 'utf8'));
const jwk = jwks.keys.find((k) => k.use === 'enc' && k.alg === 'ECDH-ES+A256KW');
if (!jwk) {
  console.error('no ECDH-ES+A256KW encryption key in the key set');
  process.exit(1);
}
const plaintext = readFileSync(0);
JSON.parse(plaintext.toString('utf8')); // a report's plaintext is JSON: fail here, not in intake
const { d, ...publicJwk } = jwk; // a key file may hold the private half: seal with the public one
const key = await importJWK(publicJwk, 'ECDH-ES+A256KW');
const jwe = await new CompactEncrypt(plaintext)
  .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: jwk.kid })
  .encrypt(key);
process.stdout.write(jwe + '\n');
