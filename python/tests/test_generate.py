"""seqmesh.generate and seqmesh.eval (the `seqmesh generate` and `seqmesh eval` commands' own
functions) against independent truths:
  * greedy ids equal those of tests/reference/llama_ref.py's PyTorch Llama (float64) decoding the
    same tiny random GQA model, saved here as a Hugging Face directory by a safetensors writer
    written from the format's spec;
  * top_p -> 0 is greedy, a seed gives the same sample twice, EOS stops generation;
  * eval's loss is the trainer's validation loss on the same documents (Trainer.evaluate), and
    the PyTorch reference's; perplexity is exp(loss); windows of max_length count every
    prediction once; a dataset of another tokenizer is refused;
  * bad inputs are one clear error each (the command line prints them as one line:
    tests/launch/generate_cli_test.sh)."""

import json
import math
import os
import struct

import numpy as np
import pytest
import torch

import llama_ref
import seqmesh

EOS = 257  # the byte tokenizer's
CFG = llama_ref.Config(vocab=259, hidden=48, layers=3, heads=6, kv_heads=2, ffn=80,
                       rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=False)


def write_safetensors(path, tensors):
    """safetensors: u64 little-endian header length, a JSON header {name: {dtype, shape,
    data_offsets}}, then the raw little-endian bytes."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def save_hf(directory, cfg, params, max_positions=64, **extra):
    os.makedirs(directory, exist_ok=True)
    write_safetensors(os.path.join(directory, "model.safetensors"), params)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "vocab_size": cfg.vocab, "hidden_size": cfg.hidden,
              "intermediate_size": cfg.ffn, "num_hidden_layers": cfg.layers,
              "num_attention_heads": cfg.heads, "num_key_value_heads": cfg.kv_heads,
              "rms_norm_eps": cfg.norm_eps, "rope_theta": cfg.rope_theta,
              "tie_word_embeddings": cfg.tie_embeddings, "hidden_act": "silu",
              "max_position_embeddings": max_positions}
    config.update(extra)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    return str(directory)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    """(HF directory, float64 params) of a tiny random GQA model with decisive logits."""
    params = llama_ref.init_params(CFG, torch.Generator().manual_seed(2026))
    params = {k: v.detach().clone() for k, v in params.items()}
    # A sharper lm_head (x8) spreads the logits, so no greedy step is a near-tie that float32
    # rounding could flip (the reference's smallest top-2 gap on this seed is 0.09; seed 2024
    # at x1 had one of 1e-6, which the test's guard refuses).
    params["lm_head.weight"] *= 8
    d = save_hf(tmp_path_factory.mktemp("model") / "hf", CFG, params)
    return d, {k: v.to(torch.float64) for k, v in params.items()}


def reference_greedy(params, prompt, new_tokens, eos=EOS):
    """Greedy decoding with the reference forward over the whole sequence at every step (no
    cache: the independent path). Returns the ids and the smallest top-1/top-2 logit gap."""
    seq, out, gap = list(prompt), [], math.inf
    with torch.no_grad():
        for _ in range(new_tokens):
            t = torch.tensor(seq, dtype=torch.int32)
            logits = llama_ref.forward(CFG, params, t, torch.tensor([0, len(seq)]))[-1]
            top = torch.topk(logits, 2).values
            gap = min(gap, float(top[0] - top[1]))
            nxt = int(torch.argmax(logits))
            out.append(nxt)
            seq.append(nxt)
            if nxt == eos:
                break
    return out, gap


def test_greedy_ids_equal_the_pytorch_reference(random_model):
    model, params = random_model
    prompt = "The quick brown fox"
    got = seqmesh.generate(model, prompt, max_new_tokens=40)
    want, gap = reference_greedy(params, list(prompt.encode()), 40)
    # The reference runs in float64 and seqmesh in float32 (logit errors ~1e-5); exact equality
    # of argmaxes is meaningful only where no step is a near-tie, which this model guarantees.
    assert gap > 1e-3, f"a near-tie ({gap}) in the fixture: choose another seed"
    assert got["prompt_ids"] == list(prompt.encode())
    assert got["ids"] == want
    assert got["stop"] == ("eos" if want[-1] == EOS else "max_new_tokens")
    assert got["new_tokens"] == len(want) and got["prompt_tokens"] == len(prompt)
    assert got["text"] == bytes(i for i in want if i < 256).decode("utf-8", "replace")
    assert got["decode_tokens_per_s"] > 0 and got["prefill_tokens_per_s"] > 0
    assert got["tokenizer"] == "byte"


def test_top_p_toward_zero_is_greedy_and_a_seed_repeats(random_model):
    model, _ = random_model
    greedy = seqmesh.generate(model, "hello", max_new_tokens=24)["ids"]
    nucleus = seqmesh.generate(model, "hello", max_new_tokens=24, temperature=1.5, top_p=1e-6,
                               seed=9)["ids"]
    assert nucleus == greedy
    a = seqmesh.generate(model, "hello", max_new_tokens=24, temperature=1.5, top_p=0.95,
                         top_k=50, seed=7)
    b = seqmesh.generate(model, "hello", max_new_tokens=24, temperature=1.5, top_p=0.95,
                         top_k=50, seed=7)
    assert a["ids"] == b["ids"]
    c = seqmesh.generate(model, "hello", max_new_tokens=24, temperature=1.5, top_p=0.95,
                         top_k=50, seed=8)
    assert c["ids"] != a["ids"] and a["ids"] != greedy


def test_generation_stops_at_eos(tmp_path):
    # EOS's lm_head row made large (50 x a random sign vector): its logit swings far above or
    # below the others, so greedy reaches EOS within a few tokens (on this seed the second).
    params = llama_ref.init_params(CFG, torch.Generator().manual_seed(5))
    params = {k: v.detach().clone() for k, v in params.items()}
    params["lm_head.weight"][EOS] = 50.0 * torch.sign(torch.randn(CFG.hidden))
    d = save_hf(tmp_path / "eos", CFG, params)
    p64 = {k: v.to(torch.float64) for k, v in params.items()}
    want, gap = reference_greedy(p64, list(b"abc"), 30)
    assert want[-1] == EOS and len(want) < 30 and gap > 1e-3
    got = seqmesh.generate(d, "abc", max_new_tokens=30)
    assert got["ids"] == want and got["stop"] == "eos"
    assert got["text"] == bytes(want[:-1]).decode("utf-8", "replace")  # EOS has no text


def read_indexed(prefix):
    """The documents of a Megatron .bin/.idx (MMIDIDX v1: dtype code, counts, sizes, pointers)."""
    with open(prefix + ".idx", "rb") as f:
        raw = f.read()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    code = raw[17]
    count = struct.unpack_from("<Q", raw, 18)[0]
    sizes = np.frombuffer(raw, dtype="<i4", count=count, offset=34)
    pointers = np.frombuffer(raw, dtype="<i8", count=count, offset=34 + 4 * count)
    dtype = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 8: np.uint16}[code]
    data = np.fromfile(prefix + ".bin", dtype=dtype)
    item = np.dtype(dtype).itemsize
    return [data[p // item:p // item + s].astype(np.int64) for p, s in zip(pointers, sizes)]


def reference_loss(cfg, params, docs, window=None):
    """Mean next-token loss; with `window`, each document read in windows of that many tokens,
    each a fresh context whose last token predicts the next window's first."""
    total, count = 0.0, 0
    with torch.no_grad():
        for d in docs:
            for s in range(0, len(d), window or len(d)):
                w = torch.tensor(d[s:s + (window or len(d))], dtype=torch.int32)
                targets = torch.tensor(d[s + 1:s + 1 + len(w)]).long()
                if len(targets) == 0:
                    continue
                logits = llama_ref.forward(cfg, params, w, torch.tensor([0, len(w)]))
                total += float(torch.nn.functional.cross_entropy(
                    logits[:len(targets)], targets, reduction="sum"))
                count += len(targets)
    return total / count


def test_eval_is_the_trainers_validation_loss_and_the_reference(tiny, dataset, tmp_path):
    # A trained model (a few steps), so the loss is not that of a random model.
    trainer = seqmesh.Trainer(tiny("eval", steps=3, **{"training.micro_batch_tokens": 1024}),
                              quiet=True)
    trainer.train()
    model = trainer.save(str(tmp_path / "hf"))
    docs = read_indexed(dataset)
    assert len(docs) == 60
    validation = trainer.evaluate([d.astype(np.int32) for d in docs])
    got = seqmesh.eval(model, dataset)
    assert got["documents"] == 60
    assert got["tokens"] == sum(len(d) - 1 for d in docs)
    # Different packings (eval packs up to the longest document, the trainer its micro-batches)
    # may pick other GEMM tiles: token losses agree to float32 reassociation, and their mean over
    # 27K tokens much closer (measured: 6e-10 relative to the trainer, 1e-9 to the float64
    # reference).
    assert got["loss"] == pytest.approx(validation, rel=1e-7)
    assert got["perplexity"] == pytest.approx(math.exp(got["loss"]), rel=1e-12)
    params = {k: torch.from_numpy(np.array(v)).to(torch.float64)
              for k, v in trainer.model.parameters().items()}
    # The trainer's model (conftest.tiny_overrides: untied, GQA 4/2 heads).
    cfg = llama_ref.Config(vocab=259, hidden=32, layers=2, heads=4, kv_heads=2, ffn=64)
    want = reference_loss(cfg, params, docs)
    assert got["loss"] == pytest.approx(want, rel=1e-7)

    # Windows of 100 tokens: every prediction still counted once (a window's last token predicts
    # the next window's first), each window a fresh context, so the loss differs: the
    # reference's, read in the same windows.
    windowed = seqmesh.eval(model, dataset, max_length=100)
    assert windowed["tokens"] == got["tokens"] and windowed["max_length"] == 100
    assert windowed["loss"] != got["loss"]
    assert windowed["loss"] == pytest.approx(reference_loss(cfg, params, docs, window=100),
                                             rel=1e-7)


def test_eval_refuses_a_dataset_of_another_tokenizer(random_model, dataset, tmp_path):
    model, _ = random_model
    other = tmp_path / "with_tokenizer"
    os.makedirs(other)
    for f in ("config.json", "model.safetensors"):
        os.link(os.path.join(model, f), other / f)
    # A tokenizer.json of the model: the byte dataset was not made with it (kind and hash differ).
    (other / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {}}}))
    with pytest.raises(seqmesh.Error, match="was tokenized with the byte tokenizer .*but --model "
                       ".* ships tokenizer.json"):
        seqmesh.eval(str(other), dataset)


def test_bad_inputs_are_one_clear_error(random_model, tmp_path):
    model, params = random_model
    with pytest.raises(FileNotFoundError, match="the model directory '.*nowhere' does not exist"):
        seqmesh.generate(str(tmp_path / "nowhere"), "hi")
    empty = tmp_path / "empty"
    os.makedirs(empty)
    with pytest.raises(seqmesh.Error, match="has no config.json"):
        seqmesh.generate(str(empty), "hi")
    # max_position_embeddings = 64
    with pytest.raises(seqmesh.Error, match="the prompt is 70 tokens, but the model in .* holds "
                       "max_position_embeddings = 64: shorten the prompt"):
        seqmesh.generate(model, "x" * 70)
    with pytest.raises(seqmesh.Error, match=r"the prompt \(60 tokens\) and --max-new-tokens 10 "
                       "exceed the model's max_position_embeddings = 64: pass --max-new-tokens 4"):
        seqmesh.generate(model, "x" * 60, max_new_tokens=10)
    with pytest.raises(seqmesh.Error, match="the tokenizer '.*missing.json' does not exist"):
        seqmesh.generate(model, "hi", tokenizer=str(tmp_path / "missing.json"))
    with pytest.raises(seqmesh.Error, match="the prompt is empty"):
        seqmesh.generate(model, "")
    with pytest.raises(seqmesh.Error, match="top_p must be in"):
        seqmesh.generate(model, "hi", temperature=1.0, top_p=0.0)
    # No tokenizer in the directory and a vocab that is not the byte tokenizer's.
    cfg = llama_ref.Config(vocab=300, hidden=48, layers=1, heads=6, kv_heads=2, ffn=80)
    p = llama_ref.init_params(cfg, torch.Generator().manual_seed(1))
    d = save_hf(tmp_path / "v300", cfg, {k: v.detach() for k, v in p.items()})
    with pytest.raises(seqmesh.Error, match="has no tokenizer .* vocab_size 300 is not the byte "
                       "tokenizer's 259: pass --tokenizer PATH"):
        seqmesh.generate(d, "hi")
    # ... where --tokenizer byte works (its 259 ids fit the model's 300).
    assert len(seqmesh.generate(d, "hi", max_new_tokens=3, tokenizer="byte")["ids"]) <= 3
    with pytest.raises(seqmesh.Error, match="the dataset '.*nodata' does not exist"):
        seqmesh.eval(model, str(tmp_path / "nodata"))
