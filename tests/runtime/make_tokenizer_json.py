#!/usr/bin/env python3
"""Writes the tokenizer.json files that hf_tokenizer_ref_test.sh compares with Hugging Face's
tokenizers library, in the shapes those families ship:

  from-tiktoken RANKS OUT FAMILY   a real vocabulary (a .tiktoken rank file from npm's
                                   gpt-tokenizer) as a byte-level BPE tokenizer.json, with its
                                   merges derived from the ranks as transformers' TikTokenConverter
                                   does (how Llama 3's tokenizer.json was made). FAMILY is
                                   gpt2 (ByteLevel regex pre-tokenizer, "a b" merges), llama3
                                   (Split + ByteLevel, ignore_merges, [a, b] merges, specials and
                                   a <|begin_of_text|> template) or qwen2 (NFC, Qwen2's Split)
  metaspace TRAINED OUT FAMILY     a BPE vocabulary the library trained (hf_tokenizer_train.js)
                                   with <unk>, <s>, </s> and the 256 <0xNN> byte tokens first, as
                                   SentencePiece vocabularies are. FAMILY is llama2 (Prepend and
                                   Replace normalizers, no pre-tokenizer, Replace/ByteFallback/
                                   Fuse/Strip decoder) or mistral (a Metaspace pre-tokenizer,
                                   prepend_scheme "first", and a Metaspace decoder)
"""
import base64
import json
import sys


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def bpe(ranks, token, max_rank):
    parts = [bytes([b]) for b in token]
    while True:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best[1]):
                best = (i, r)
        if best is None or best[1] >= max_rank:
            return parts
        i = best[0]
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]


LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
         r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def added(id_, content, special=True, normalized=False):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": normalized, "special": special}


def byte_level(add_prefix_space=False, use_regex=True):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True,
            "use_regex": use_regex}


def template(token, id_):
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": token, "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": token, "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": token, "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {token: {"id": token, "ids": [id_], "tokens": [token]}}}


def bpe_model(vocab, merges, **kw):
    m = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
         "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
         "ignore_merges": False, "vocab": vocab, "merges": merges}
    m.update(kw)
    return m


def from_tiktoken(ranks_path, out, family):
    ranks = {}
    for line in open(ranks_path, "rb"):
        if line.strip():
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    enc = bytes_to_unicode()
    text = lambda b: "".join(enc[x] for x in b)
    vocab = {text(t): r for t, r in sorted(ranks.items(), key=lambda kv: kv[1])}
    merges = []
    for t, r in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(t) > 1:
            a, b = bpe(ranks, t, r)
            merges.append([text(a), text(b)])
    n = max(ranks.values()) + 1
    doc = {"version": "1.0", "truncation": None, "padding": None}
    if family == "gpt2":
        doc["added_tokens"] = [added(n, "<|endoftext|>", normalized=True)]
        doc["normalizer"] = None
        doc["pre_tokenizer"] = byte_level()
        doc["post_processor"] = byte_level()
        doc["decoder"] = byte_level()
        doc["model"] = bpe_model(vocab, [f"{a} {b}" for a, b in merges])
    elif family == "llama3":
        names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                 "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                 "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                 "<|python_tag|>"]
        doc["added_tokens"] = [added(n + i, t) for i, t in enumerate(names)]
        doc["normalizer"] = None
        doc["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3}, "behavior": "Isolated",
             "invert": False},
            byte_level(use_regex=False)]}
        doc["post_processor"] = {"type": "Sequence", "processors": [
            byte_level(True), template("<|begin_of_text|>", n)]}
        doc["decoder"] = byte_level(True)
        doc["model"] = bpe_model(vocab, merges, ignore_merges=True)
    elif family == "qwen2":
        doc["added_tokens"] = [added(n + i, t) for i, t in
                               enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])]
        doc["normalizer"] = {"type": "NFC"}
        doc["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2}, "behavior": "Isolated",
             "invert": False},
            byte_level(use_regex=False)]}
        doc["post_processor"] = byte_level()
        doc["decoder"] = byte_level()
        doc["model"] = bpe_model(vocab, merges)
    else:
        sys.exit(f"unknown family {family}")
    json.dump(doc, open(out, "w"), ensure_ascii=False)


def metaspace(trained_path, out, family):
    t = json.load(open(trained_path))
    old = sorted(t["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for tok, _ in old:
        vocab.setdefault(tok, len(vocab))
    doc = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")]}
    model = bpe_model(vocab, t["model"]["merges"], unk_token="<unk>", fuse_unk=True,
                      byte_fallback=True)
    if family == "llama2":
        doc["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
        doc["pre_tokenizer"] = None
        doc["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    elif family == "mistral":
        doc["normalizer"] = None
        doc["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                                "prepend_scheme": "first", "split": False}
        doc["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"},
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
             "split": False},
            {"type": "Fuse"}]}
    else:
        sys.exit(f"unknown family {family}")
    doc["post_processor"] = template("<s>", 1)
    doc["model"] = model
    json.dump(doc, open(out, "w"), ensure_ascii=False)


if __name__ == "__main__":
    {"from-tiktoken": from_tiktoken, "metaspace": metaspace}[sys.argv[1]](*sys.argv[2:5])
