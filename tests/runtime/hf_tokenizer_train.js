// For hf_tokenizer_ref_test.sh: `node hf_tokenizer_train.js NODE_MODULES OUT_JSON FILE...` trains
// a BPE tokenizer with Hugging Face's tokenizers library (its default trainer: up to 30,000
// tokens) on FILE..., split the SentencePiece way (Metaspace: spaces become ▁, which starts each
// word), and saves it as OUT_JSON. make_tokenizer_json.py turns it into a Llama 2 style file.
const path = require('path');
const [modules, out, ...files] = process.argv.slice(2);
const tk = require(path.join(modules, 'tokenizers'));
const tok = new tk.Tokenizer(tk.BPE.empty());
tok.setPreTokenizer(tk.metaspacePreTokenizer('\u2581', 'always', true));
tok.train(files);
tok.save(out);
