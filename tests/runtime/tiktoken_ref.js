// For tiktoken_ref_test.sh: `node tiktoken_ref.js NODE_MODULES ENCODING DOC...` prints each
// document's ids under npm's gpt-tokenizer (a port of OpenAI's tiktoken) as one JSON array per
// line; special-token text is encoded as ordinary text, as tiktoken's encode_ordinary does.
const fs = require('fs');
const path = require('path');
const [modules, encoding, ...docs] = process.argv.slice(2);
const enc = require(path.join(modules, 'gpt-tokenizer', 'cjs', 'encoding', encoding));
let seconds = 0;
for (const doc of docs) {
  const text = fs.readFileSync(doc, 'utf8');
  const t0 = process.hrtime.bigint();
  const ids = enc.encode(text, { disallowedSpecial: new Set() });
  seconds += Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(JSON.stringify(ids) + '\n');
}
// With TOKENIZER_TIME set: the seconds spent encoding, to stderr (as tokenizer_tool writes them).
if (process.env.TOKENIZER_TIME) process.stderr.write(`encode_seconds ${seconds}\n`);
