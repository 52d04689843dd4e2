#!/usr/bin/env python3
"""Writes the seed inputs of tests/fuzz/corpus/ (run once; the corpus is committed and grows
with scripts/fuzz.sh --merge). Each seed is a valid input of its reader, so the fuzzer starts
from the accepted paths: python3 tests/fuzz/make_seeds.py [CORPUS_DIR]"""
import base64
import json
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")


def put(name, fname, data):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# JSON: every kind of value, escapes, numbers at the edges.
put("json", "values.json", '{"a":[1,-2.5e3,0,1e308],"s":"x\\u00e9\\n\\"","n":null,"t":true,"o":{}}')
put("json", "nested.json", "[[[[{}]]],[],\"\",-0.0]")

# safetensors: an F32 [2,2], a BF16 [3] and an F16 scalar, with metadata.
def safetensors(tensors, metadata):
    header, blob = {"__metadata__": metadata}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob

put("safetensors", "three.safetensors", safetensors(
    [("w", "F32", [2, 2], struct.pack("<4f", 1, -2, 3.5, 0)),
     ("b", "BF16", [3], struct.pack("<3H", 0x3F80, 0xC000, 0x0000)),
     ("s", "F16", [], struct.pack("<H", 0x3C00))], {"format": "pt"}))
put("safetensors", "empty.safetensors", safetensors([], {}))

# Megatron .idx (version 1, int32 tokens): 3 sequences of 5, 1 and 9 tokens in a 4 KiB .bin.
def idx(lengths, dtype_code=4, size=4):
    pointers, p = [], 0
    for n in lengths:
        pointers.append(p)
        p += n * size
    docs = list(range(len(lengths) + 1))
    return (b"MMIDIDX\x00\x00" + struct.pack("<QB", 1, dtype_code) +
            struct.pack("<QQ", len(lengths), len(docs)) + struct.pack(f"<{len(lengths)}i", *lengths) +
            struct.pack(f"<{len(lengths)}q", *pointers) + struct.pack(f"<{len(docs)}q", *docs))

put("idx", "i32.idx", idx([5, 1, 9]))
put("idx", "u16.idx", idx([7, 3], dtype_code=8, size=2))

# Run configs: every section.
put("run_config", "tiny.toml", """[model]
vocab = 259
hidden = 32
layers = 2
heads = 4
kv_heads = 2
ffn = 64
[training]
steps = 8
global_batch_tokens = 2048
micro_batch_tokens = 256
seed = 3
[optimizer]
lr = 2e-3
warmup_steps = 0
[data]
path = "data"
[checkpoint]
interval = 2
[distributed]
planner = "balanced"
""")
put("run_config", "empty.toml", "# defaults\n")

# A manifest of the harness's step directory (model.safetensors = "abc", sub/part = "a").
def fnv1a64(b):
    h = 0xcbf29ce484222325
    for c in b:
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h

put("manifest", "manifest.json", json.dumps({"step": 2, "files": [
    {"name": "model.safetensors", "bytes": 3, "fnv1a64": str(fnv1a64(b"abc"))},
    {"name": "sub/part", "bytes": 1, "fnv1a64": str(fnv1a64(b"a")), "rank": 0}]}))

# Coordinator requests: a selector byte (0 Register, 1 MetricsReport, 2 CheckpointPart), then the
# protobuf wire bytes.
def varint(v):
    v &= (1 << 64) - 1
    b = b""
    while True:
        c = v & 0x7F
        v >>= 7
        if v:
            b += bytes([c | 0x80])
        else:
            return b + bytes([c])

def field_varint(n, v): return varint(n << 3) + varint(v)
def field_bytes(n, b): return varint(n << 3 | 2) + varint(len(b)) + b
def field_double(n, v): return varint(n << 3 | 1) + struct.pack("<d", v)

put("requests", "register", b"\x00" + field_varint(1, 2) + field_varint(2, 4) +
    field_bytes(3, b"node-1") + field_varint(4, 4242))
timing = field_varint(1, 0) + field_double(2, 0.5) + field_double(3, 3.0)
put("requests", "metrics", b"\x01" + field_varint(1, 1) + field_varint(2, 3) + field_varint(3, 1) +
    field_double(4, 2.5) + field_varint(5, 512) + field_double(6, 0.7) + field_double(7, 2e-3) +
    field_double(8, 12.0) + field_double(9, 10.0) + field_varint(11, 1) + field_bytes(12, timing))
digest = field_bytes(1, b"optimizer-rank-00001.safetensors") + field_varint(2, 64) + \
    field_bytes(3, b"00112233445566ff")
put("requests", "part", b"\x02" + field_varint(1, 1) + field_varint(2, 4) + field_varint(3, 1) +
    field_bytes(4, digest))

# A tiktoken rank file: every byte, then a few merges ("he", "ll", "hell", "hello", " w").
lines = [base64.b64encode(bytes([b])).decode() + f" {b}" for b in range(256)]
for i, t in enumerate([b"he", b"ll", b"hell", b"hello", b" w", b"or", b"orld"]):
    lines.append(base64.b64encode(t).decode() + f" {256 + i}")
put("tiktoken", "small.tiktoken", "\n".join(lines) + "\n")

# tokenizer.json: a byte-level BPE (GPT-2's shape) and a metaspace one with byte fallback and a
# template (Llama 2's), small enough to mutate.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runtime"))
from make_tokenizer_json import bytes_to_unicode  # noqa: E402  GPT-2's byte alphabet

alphabet = bytes_to_unicode()
vocab = {alphabet[b]: b for b in range(256)}
vocab.update({"he": 256, "ll": 257, "hell": 258, "\u0120w": 259})
put("hf_tokenizer", "bytelevel.json", json.dumps({
    "added_tokens": [{"id": 260, "content": "<|endoftext|>", "special": True, "normalized": False}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated"},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": vocab, "merges": ["h e", "l l", "he ll", "\u0120 w"]}},
    ensure_ascii=False))
mvocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for b in range(256):
    mvocab[f"<0x{b:02X}>"] = len(mvocab)
for t in ["\u2581", "h", "i", "hi", "\u2581hi"]:
    mvocab[t] = len(mvocab)
put("hf_tokenizer", "metaspace.json", json.dumps({
    "added_tokens": [{"id": i, "content": c, "special": True, "normalized": False, "lstrip": i == 2}
                     for c, i in [("<unk>", 0), ("<s>", 1), ("</s>", 2)]],
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                      "split": True},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [1]}}},
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": True, "fuse_unk": True,
              "vocab": mvocab, "merges": ["h i", "\u2581 hi"]}}, ensure_ascii=False))
