"""seqmesh.prep with a tokenizer and chat data: the same files as the command line writes (ids,
loss mask, the dataset's card), and a chat dataset trains."""

import importlib.util
import json
import pathlib
import struct

import pytest

import seqmesh

ROOT = pathlib.Path(__file__).resolve().parents[2]


def files_module():
    spec = importlib.util.spec_from_file_location(
        "prep_tokenizer_files", ROOT / "tests" / "launch" / "prep_tokenizer_files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sequences(prefix):
    idx = open(f"{prefix}.idx", "rb").read()
    dtype = idx[17]
    (count,) = struct.unpack_from("<Q", idx, 18)
    lengths = struct.unpack_from(f"<{count}i", idx, 34)
    pointers = struct.unpack_from(f"<{count}q", idx, 34 + 4 * count)
    fmt = {8: "H", 4: "i", 1: "B"}[dtype]
    data = open(f"{prefix}.bin", "rb").read()
    return [list(struct.unpack_from(f"<{n}{fmt}", data, p)) for n, p in zip(lengths, pointers)]


def test_prep_chat_writes_tokens_mask_and_card(tmp_path, tiny):
    tok = tmp_path / "tok"
    tok.mkdir()
    files_module().make_llama3_chat(str(tok))
    data = tmp_path / "chat.jsonl"
    with open(data, "w") as f:
        for i in range(40):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"question {i}"},
                                             {"role": "assistant", "content": f"answer {i}"}]})
                    + "\n")
    out = seqmesh.prep(data, tmp_path / "sft", tokenizer=tok, chat=True, threads=2)
    ids, mask = sequences(out), sequences(f"{out}.loss_mask")
    assert len(ids) == 40 and [len(s) for s in ids] == [len(m) for m in mask]
    first = bytes(t for t, m in zip(ids[0], mask[0]) if m and t < 256).decode()
    assert first == "answer 0"  # the assistant's words, and its <|eot_id|> (260)
    assert ids[0][-1] == 260 and mask[0][-1] == 1 and sum(mask[0]) == len("answer 0") + 1
    card = json.load(open(f"{out}.dataset.json"))
    assert card["loss_mask"] and card["chat_format"] == "llama3"
    assert card["trained_tokens"] == sum(sum(m[1:]) for m in mask)
    with pytest.raises(seqmesh.Error, match="--chat-template 'gemma' is not one of auto"):
        seqmesh.prep(data, tmp_path / "bad", tokenizer=tok, chat=True, chat_template="gemma")
    trainer = seqmesh.Trainer(tiny("chat", steps=1, **{"data.path": out, "model.vocab": 261}),
                              quiet=True)
    trainer.train()
