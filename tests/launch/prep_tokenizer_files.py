"""Files for prep_tokenizer_test.sh.

  make-bytelevel OUT VOCAB   a GPT-2 shaped tokenizer.json: the 256 byte-level characters, the
                             merges "a b" -> "ab" and "Ġ t" -> "Ġt", filler tokens up to VOCAB - 1
                             ids, and <|endoftext|> (special) as the last id
  make-llama OUT_DIR         a Llama 2 shaped tokenizer.json (metaspace, byte fallback, the
                             template "<s> $A") with a tokenizer_config.json naming <s> and </s>
  make-llama3-chat OUT_DIR   a Llama 3 shaped directory: the 256 byte-level characters, then
                             <|begin_of_text|> 256, <|end_of_text|> 257, <|start_header_id|> 258,
                             <|end_header_id|> 259, <|eot_id|> 260 (special), the template
                             "<|begin_of_text|> $A", and a tokenizer_config.json whose
                             chat_template is Llama 3's
  to-bf16 IN OUT              the F32 safetensors file IN with every tensor rounded to BF16
                             (nearest even) as OUT, metadata kept
  read PREFIX                prints the dataset's dtype code, then each sequence's ids as a JSON
                             array, one per line (Megatron's .idx/.bin, read independently of
                             seqmesh's reader)
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runtime"))
from make_tokenizer_json import bytes_to_unicode  # noqa: E402  GPT-2's byte alphabet


def make_bytelevel(out, vocab_size):
    alphabet = bytes_to_unicode()
    vocab = {alphabet[b]: b for b in range(256)}
    vocab["ab"] = 256
    vocab["\u0120t"] = 257
    while len(vocab) < vocab_size - 1:
        vocab[f"<filler{len(vocab)}>"] = len(vocab)
    eot = vocab_size - 1
    doc = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False,
                          "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "vocab": vocab, "merges": ["a b", "\u0120 t"]},
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)


def make_llama(out_dir):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for t in ["\u2581", "h", "i", "hi", "\u2581hi"]:
        vocab[t] = len(vocab)
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for c, i in [("<unk>", 0), ("<s>", 1),
                                                                 ("</s>", 2)]]
    doc = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "vocab": vocab,
                  "merges": ["h i", "\u2581 hi"]},
    }
    with open(f"{out_dir}/tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    with open(f"{out_dir}/tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}, f)


def make_llama3_chat(out_dir):
    alphabet = bytes_to_unicode()
    vocab = {alphabet[b]: b for b in range(256)}
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
             "<|eot_id|>"]
    added = [{"id": 256 + i, "content": n, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for i, n in enumerate(names)]
    doc = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
            "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [256],
                                                     "tokens": ["<|begin_of_text|>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": []},
    }
    with open(f"{out_dir}/tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    template = ("{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + "
                "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
                "'<|eot_id|>' }}{%- endfor %}")
    with open(f"{out_dir}/tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                   "chat_template": template}, f)


def read(prefix):
    idx = open(prefix + ".idx", "rb").read()
    assert idx[:9] == b"MMIDIDX\x00\x00", "bad magic"
    (version,) = struct.unpack_from("<Q", idx, 9)
    assert version == 1
    dtype = idx[17]
    count, _ = struct.unpack_from("<QQ", idx, 18)
    lengths = struct.unpack_from(f"<{count}i", idx, 34)
    pointers = struct.unpack_from(f"<{count}q", idx, 34 + 4 * count)
    fmt, size = {8: ("H", 2), 4: ("i", 4), 1: ("B", 1)}[dtype]
    data = open(prefix + ".bin", "rb").read()
    print(dtype)
    for n, p in zip(lengths, pointers):
        print(json.dumps(list(struct.unpack_from(f"<{n}{fmt}", data, p))).replace(" ", ""))


def to_bf16(src, dst):
    import numpy as np
    raw = open(src, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out, blobs, offset = {}, [], 0
    for name, e in header.items():
        if name == "__metadata__":
            out[name] = e
            continue
        b, end = e["data_offsets"]
        bits = np.frombuffer(data[b:end], dtype="<f4").view("<u4")
        bf16 = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").tobytes()
        out[name] = {"dtype": "BF16", "shape": e["shape"],
                     "data_offsets": [offset, offset + len(bf16)]}
        blobs.append(bf16)
        offset += len(bf16)
    h = json.dumps(out).encode()
    h += b" " * (-len(h) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make-bytelevel":
        make_bytelevel(sys.argv[2], int(sys.argv[3]))
    elif cmd == "make-llama":
        make_llama(sys.argv[2])
    elif cmd == "make-llama3-chat":
        make_llama3_chat(sys.argv[2])
    elif cmd == "to-bf16":
        to_bf16(sys.argv[2], sys.argv[3])
    elif cmd == "read":
        read(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
