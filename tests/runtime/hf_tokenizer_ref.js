// For hf_tokenizer_ref_test.sh: `node hf_tokenizer_ref.js NODE_MODULES TOKENIZER_JSON DOC...`
// prints each document's ids under Hugging Face's tokenizers library (npm tokenizers@0.23.2, its
// Node binding) as one JSON array per line, encoded without the post-processor's special tokens
// (add_special_tokens = false), as seqmesh's Encode is. With TOKENIZER_DECODED=FILE it also
// writes decode(ids, skip_special_tokens = true) per line as a JSON string; with TOKENIZER_TIME,
// the seconds spent encoding to stderr (as tokenizer_tool writes them).
const fs = require('fs');
const path = require('path');
const [modules, file, ...docs] = process.argv.slice(2);
const { Tokenizer } = require(path.join(modules, 'tokenizers'));
(async () => {
  const tok = Tokenizer.fromFile(file);
  const decoded = [];
  let seconds = 0;
  const out = [];
  for (const doc of docs) {
    const text = fs.readFileSync(doc, 'utf8');
    const t0 = process.hrtime.bigint();
    const ids = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
    seconds += Number(process.hrtime.bigint() - t0) / 1e9;
    out.push(JSON.stringify(ids));
    if (process.env.TOKENIZER_DECODED) decoded.push(JSON.stringify(await tok.decode(ids, true)));
  }
  process.stdout.write(out.join('\n') + '\n');
  if (process.env.TOKENIZER_DECODED)
    fs.writeFileSync(process.env.TOKENIZER_DECODED, decoded.join('\n') + '\n');
  if (process.env.TOKENIZER_TIME) process.stderr.write(`encode_seconds ${seconds}\n`);
})().catch((e) => {
  process.stderr.write(`hf_tokenizer_ref.js: ${e}\n`);
  process.exit(1);
});
