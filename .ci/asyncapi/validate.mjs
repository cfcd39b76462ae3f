#!/usr/bin/env node
// Validates an AsyncAPI document for CI: `node .ci/asyncapi/validate.mjs docs/asyncapi.yaml`.
//
// 1. The AsyncAPI parser: the document against the official JSON Schema of its version,
//    every `$ref` resolved (the relative `./schemas/*.json` ones from the document's own
//    folder) and the schemas in it parsed, then the parser's rules (an operation's
//    channel and messages exist and belong together, channel parameters, servers, ...).
// 2. Two rules of the AsyncAPI 3.0 specification that the parser does not check:
//    - a reply's `messages` are messages of the reply's channel, and a reply that gives
//      an `address` names a channel whose own address is null;
//    - each message example is valid against its message's `headers` and `payload`. An
//      example named `fault-invalid_payload-…` may break its data's schema, since that is
//      what it shows; whether it does is printed, not hidden.
//
// Every diagnostic is printed with its severity, rule, path and place: errors, warnings,
// information and hints alike. The exit status is 1 when there is any error, 2 when the
// document cannot be read, 0 otherwise.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';

import { Parser, DiagnosticSeverity } from '@asyncapi/parser';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import yaml from 'js-yaml';

const SEVERITY_NAMES = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

// The examples that show a payload failing its schema may break it.
const MAY_BREAK_THE_SCHEMA = /^fault-invalid_payload-/;

// The integer formats that schemars writes for Rust's integer types, checked as ranges
// (JSON Schema defines none of them; a format nobody defines is reported, not skipped).
const INTEGER_FORMATS = {
  int8: [-(2 ** 7), 2 ** 7 - 1],
  int16: [-(2 ** 15), 2 ** 15 - 1],
  int32: [-(2 ** 31), 2 ** 31 - 1],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint8: [0, 2 ** 8 - 1],
  uint16: [0, 2 ** 16 - 1],
  uint32: [0, 2 ** 32 - 1],
  uint64: [0, 2n ** 64n - 1n],
  uint: [0, 2n ** 64n - 1n],
};

/** An ajv instance with the standard formats and schemars' integer formats, whose
 * warnings (an unknown format, ...) become diagnostics at `at`. */
function newAjv(found, at) {
  const ajv = new Ajv({
    allErrors: true,
    strict: false,
    logger: {
      log: () => {},
      warn: (...args) =>
        found.push({
          severity: DiagnosticSeverity.Warning,
          code: 'warren-example-schema-warning',
          path: at,
          message: args.join(' '),
        }),
      error: (...args) =>
        found.push({
          severity: DiagnosticSeverity.Error,
          code: 'warren-example-schema-error',
          path: at,
          message: args.join(' '),
        }),
    },
  });
  addFormats(ajv);
  for (const [name, [minimum, maximum]] of Object.entries(INTEGER_FORMATS)) {
    ajv.addFormat(name, {
      type: 'number',
      // Beyond 2^53 a JSON number is not exact; BigInt compares what was parsed.
      validate: (value) =>
        Number.isInteger(value) && BigInt(value) >= BigInt(minimum) && BigInt(value) <= BigInt(maximum),
    });
  }
  return ajv;
}

function usage() {
  console.error('usage: node .ci/asyncapi/validate.mjs <asyncapi document>');
  process.exit(2);
}

/** A diagnostic's path as `operations["orders.receive.dev.warren.orders.get.v1"].reply`:
 * a key that is not a plain name (operation ids have dots) in brackets and quotes. */
function formatPath(segments) {
  const text = (segments ?? [])
    .map((segment, index) => {
      if (typeof segment === 'number' || /^\d+$/.test(String(segment))) {
        return `[${segment}]`;
      }
      if (!/^[A-Za-z_$][\w$-]*$/.test(String(segment))) {
        return `[${JSON.stringify(String(segment))}]`;
      }
      return index === 0 ? String(segment) : `.${segment}`;
    })
    .join('');
  return text || '(document)';
}

/** `file:line:column` of a diagnostic, 1-based, when the parser gave one. */
function formatPlace(diagnostic, documentPath) {
  const file = diagnostic.source ? path.relative(process.cwd(), diagnostic.source) : documentPath;
  const start = diagnostic.range?.start;
  return start ? `${file}:${start.line + 1}:${start.character + 1}` : file;
}

function print(diagnostic, documentPath) {
  const severity = SEVERITY_NAMES[diagnostic.severity] ?? `severity ${diagnostic.severity}`;
  console.log(
    `${severity.padEnd(7)} ${diagnostic.code} at ${formatPath(diagnostic.path)} ` +
      `(${formatPlace(diagnostic, documentPath)})\n        ${diagnostic.message}`,
  );
}

/** The value at a local JSON pointer (`#/a/b`) of `root`, or undefined. */
function resolvePointer(root, reference) {
  if (typeof reference !== 'string' || !reference.startsWith('#/')) {
    return undefined;
  }
  let value = root;
  for (const raw of reference.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
    if (value === null || typeof value !== 'object' || !(key in value)) {
      return undefined;
    }
    value = value[key];
  }
  return value;
}

/** The specification's rules on replies, read from the document as written. */
function checkReplies(written) {
  const found = [];
  const error = (pathSegments, code, message) =>
    found.push({ severity: DiagnosticSeverity.Error, code, path: pathSegments, message });
  for (const [operationId, operation] of Object.entries(written.operations ?? {})) {
    const reply = operation?.reply;
    if (!reply || typeof reply !== 'object') {
      continue;
    }
    const replyPath = ['operations', operationId, 'reply'];
    const channelReference = reply.channel?.$ref;
    if (channelReference === undefined) {
      if (reply.address === undefined) {
        error(replyPath, 'warren-reply-has-a-destination', 'A reply has neither a channel nor an address.');
      }
      continue;
    }
    const channel = resolvePointer(written, channelReference);
    if (channel === undefined) {
      // The parser reports the broken reference itself.
      continue;
    }
    if (reply.address !== undefined && channel.address !== undefined && channel.address !== null) {
      error(
        [...replyPath, 'channel'],
        'warren-reply-address-channel-null',
        `The reply gives an address, so its channel's address must be null or absent; ` +
          `${channelReference} has the address ${JSON.stringify(channel.address)}.`,
      );
    }
    (reply.messages ?? []).forEach((message, index) => {
      const reference = message?.$ref;
      if (typeof reference !== 'string' || !reference.startsWith(`${channelReference}/messages/`)) {
        error(
          [...replyPath, 'messages', index],
          'warren-reply-messages-from-reply-channel',
          `A reply's messages must be messages of its channel (${channelReference}); ` +
            `this one is ${JSON.stringify(reference ?? message)}.`,
        );
      }
    });
  }
  return found;
}

/** Each message example against its message's headers and payload schemas. */
function checkExamples(document) {
  const found = [];
  for (const message of document.allMessages()) {
    const examples = message.examples().all();
    if (examples.length === 0) {
      continue;
    }
    const messageId = message.id();
    const messagePath = ['components', 'messages', messageId];
    for (const part of ['headers', 'payload']) {
      const schema = part === 'headers' ? message.headers()?.json() : message.payload()?.json();
      if (schema === undefined) {
        continue;
      }
      // One validator per schema: the data schemas carry their own `$id`s.
      let validate;
      try {
        validate = newAjv(found, [...messagePath, part]).compile(schema);
      } catch (compileError) {
        found.push({
          severity: DiagnosticSeverity.Error,
          code: 'warren-example-schema-compiles',
          path: [...messagePath, part],
          message: `The ${part} schema of ${messageId} does not compile: ${compileError.message}`,
        });
        continue;
      }
      examples.forEach((example, index) => {
        const value = part === 'headers' ? example.headers() : example.payload();
        if (value === undefined || validate(value)) {
          return;
        }
        const name = example.name() ?? `#${index}`;
        const problems = validate.errors
          .map((problem) => `${problem.instancePath || '/'} ${problem.message}`)
          .join('; ');
        const expected = part === 'payload' && MAY_BREAK_THE_SCHEMA.test(name);
        found.push({
          severity: expected ? DiagnosticSeverity.Information : DiagnosticSeverity.Error,
          code: 'warren-example-matches-its-message',
          path: [...messagePath, 'examples', index, part],
          message: expected
            ? `Example ${name} breaks the payload schema, as an invalid_payload example may: ${problems}`
            : `Example ${name} does not match the ${part} schema of ${messageId}: ${problems}`,
        });
      });
    }
  }
  return found;
}

async function main() {
  const [documentArgument] = process.argv.slice(2);
  if (!documentArgument) {
    usage();
  }
  const documentPath = path.relative(process.cwd(), path.resolve(documentArgument));
  let text;
  try {
    text = await readFile(documentArgument, 'utf8');
  } catch (readError) {
    console.error(`asyncapi: cannot read ${documentArgument}: ${readError.message}`);
    process.exit(2);
  }

  const parser = new Parser();
  // `source` is the document's absolute path: relative $refs resolve from its folder.
  const { document, diagnostics } = await parser.parse(text, {
    source: path.resolve(documentArgument),
  });
  const all = [...diagnostics];
  if (document) {
    let written;
    try {
      written = yaml.load(text);
    } catch (yamlError) {
      console.error(`asyncapi: cannot read ${documentArgument} as YAML: ${yamlError.message}`);
      process.exit(2);
    }
    all.push(...checkReplies(written), ...checkExamples(document));
  } else if (!diagnostics.some((diagnostic) => diagnostic.severity === DiagnosticSeverity.Error)) {
    all.push({
      severity: DiagnosticSeverity.Error,
      code: 'asyncapi-parse',
      path: [],
      message: 'The parser returned no document and no error.',
    });
  }

  all.sort((a, b) => a.severity - b.severity);
  for (const diagnostic of all) {
    print(diagnostic, documentPath);
  }
  const count = (severity) => all.filter((diagnostic) => diagnostic.severity === severity).length;
  const errors = count(DiagnosticSeverity.Error);
  const parsed = document ? `AsyncAPI ${document.version()}` : 'not parsed';
  console.log(
    `asyncapi: ${documentPath} (${parsed}): ${errors} error(s), ` +
      `${count(DiagnosticSeverity.Warning)} warning(s), ` +
      `${count(DiagnosticSeverity.Information)} info, ${count(DiagnosticSeverity.Hint)} hint(s)`,
  );
  process.exit(errors > 0 ? 1 : 0);
}

await main();
