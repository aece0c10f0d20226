// Validates contracts/asyncapi.yaml with the official AsyncAPI parser (@asyncapi/parser).
// Relative $refs (schemas/, examples/) are resolved against the document's own folder.
// Prints every error and warning; exits 1 when the document has an error.
//
//   cd contracts/tools && npm install && node validate-asyncapi.mjs [path/to/asyncapi.yaml]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Parser, fromFile, DiagnosticSeverity } from '@asyncapi/parser';

const here = path.dirname(fileURLToPath(import.meta.url));
const documentPath = path.resolve(process.argv[2] ?? path.join(here, '..', 'asyncapi.yaml'));
const labels = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, documentPath).parse();

let errors = 0;
for (const diagnostic of diagnostics) {
  if (diagnostic.severity > DiagnosticSeverity.Warning) continue;
  if (diagnostic.severity === DiagnosticSeverity.Error) errors += 1;
  const where = diagnostic.path.length ? diagnostic.path.join('.') : '(document)';
  const line = diagnostic.range?.start ? `:${diagnostic.range.start.line + 1}` : '';
  console.log(`${labels[diagnostic.severity]} ${diagnostic.code} at ${where}${line}: ${diagnostic.message}`);
}

if (document === undefined || errors > 0) {
  console.log(`FAILED: ${path.relative(process.cwd(), documentPath)} has ${errors} error(s)`);
  process.exit(1);
}
const channels = document.channels().length;
const messages = document.messages().length;
const operations = document.operations().length;
console.log(`OK: AsyncAPI ${document.version()}, ${channels} channels, ${messages} messages, ${operations} operations`);
