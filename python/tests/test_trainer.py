"""The Trainer from Python against the command line, PyTorch and itself: the same run bit for
bit as `seqmesh train`, parameter views that are the parameters, gradients that are PyTorch's,
steps on the script's own documents, checkpoints that load back, and the GIL released."""

import json
import os
import subprocess
import threading
import time

import numpy as np
import pytest

import seqmesh


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_cli_train(config, tmp_path):
    config_file = tmp_path / "cli.toml"
    config_file.write_text(config.to_toml())
    done = subprocess.run([seqmesh._binary(), "train", "--config", str(config_file)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr


def final_files(run_dir, step):
    d = os.path.join(run_dir, f"step-{step:08d}")
    return {name: open(os.path.join(d, name), "rb").read()
            for name in ("model.safetensors", "optimizer-rank-00000.safetensors")}


def test_a_python_run_is_bitwise_the_command_line(tiny, tmp_path):
    cli = tiny("cli", steps=6)
    run_cli_train(cli, tmp_path)
    py = tiny("py", steps=6)
    trainer = seqmesh.Trainer(py, quiet=True)
    got = trainer.train()
    want = records(cli.metrics_path)
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(got, want):
        for key in ("step", "loss", "grad_norm", "lr", "tokens", "cut_sequences"):
            assert a[key] == b[key], (key, a, b)
    assert records(py.metrics_path)[-1]["loss"] == want[-1]["loss"]
    assert final_files(py.checkpoint.dir, 6) == final_files(cli.checkpoint.dir, 6)

    # step() by step() is train(): the same losses.
    stepped = seqmesh.Trainer(tiny("stepped", steps=6), quiet=True)
    assert [stepped.step()["loss"] for _ in range(6)] == [r["loss"] for r in want]
    assert stepped.done and stepped.step_count == 6


def test_parameters_are_zero_copy_views(tiny):
    trainer = seqmesh.Trainer(tiny(with_data=False, steps=4), quiet=True)
    params = trainer.model.parameters()
    again = trainer.model.parameters()
    assert "lm_head.weight" in params and "model.embed_tokens.weight" in params
    for name, array in params.items():
        assert array.dtype == np.float32 and array.flags.writeable
        assert np.shares_memory(array, again[name]), name
    tokens = np.arange(1, 40, dtype=np.int32)
    before = trainer.model.forward(tokens)
    assert before.shape == (39, 259) and np.abs(before).max() > 0
    # A write through numpy is what the next forward uses: a zero head gives zero logits and the
    # uniform loss ln(vocab).
    params["lm_head.weight"][:] = 0
    assert np.all(trainer.model.forward(tokens) == 0)
    assert trainer.model.loss(tokens) == pytest.approx(np.log(259), rel=1e-6)
    # ... and the next step: with a zero head the embedding and layers get no gradient.
    trainer.step([tokens])
    grads = trainer.model.gradients()
    assert np.all(grads["model.embed_tokens.weight"] == 0)
    assert np.abs(grads["lm_head.weight"]).max() > 0
    # The views stay valid after the trainer object is dropped by the script.
    head = params["lm_head.weight"]
    del trainer, params
    assert np.isfinite(head).all()


def test_gradients_match_pytorch(tiny):
    torch = pytest.importorskip("torch")  # Debian's python3-torch (scripts/install-deps.sh)
    import llama_ref

    trainer = seqmesh.Trainer(tiny(with_data=False, steps=2, **{"training.grad_clip": 1e9}),
                              quiet=True)
    rng = np.random.default_rng(7)
    docs = [rng.integers(0, 259, size=n, dtype=np.int32) for n in (50, 17, 90)]
    before = {k: v.copy() for k, v in trainer.model.parameters().items()}
    trainer.step(docs)
    grads = trainer.model.gradients()

    m = trainer.config.model
    cfg = llama_ref.Config(vocab=m.vocab, hidden=m.hidden, layers=m.layers, heads=m.heads,
                           kv_heads=m.kv_heads, ffn=m.ffn, rope_theta=m.rope_theta,
                           norm_eps=m.norm_eps, tie_embeddings=m.tie_embeddings)
    params = {k: torch.from_numpy(v).requires_grad_(True) for k, v in before.items()}
    tokens = torch.from_numpy(np.concatenate(docs))
    cu = torch.tensor(np.cumsum([0] + [len(d) for d in docs]), dtype=torch.int32)
    targets = torch.full_like(tokens, llama_ref.IGNORE_INDEX)
    for d in range(len(docs)):
        targets[cu[d]:cu[d + 1] - 1] = tokens[cu[d] + 1:cu[d + 1]]
    normalizer = float(sum(len(d) - 1 for d in docs))
    loss = llama_ref.loss_fn(llama_ref.forward(cfg, params, tokens, cu), targets, normalizer)
    loss.backward()
    assert set(grads) == set(params)
    for name, p in params.items():
        want = p.grad.numpy()
        # float32 on both sides, summed in different orders: relative to the tensor's scale.
        scale = np.abs(want).max()
        assert np.abs(grads[name] - want).max() <= 2e-4 * scale + 1e-7, name


def test_lora_gradients_match_pytorch_and_the_base_stays_frozen(tiny, tmp_path):
    """LoRA's adapter gradients against PyTorch autograd in float64 through the same weights
    (W + (alpha / r) B A), with B moved off zero first; the base tensors have no gradients and do
    not change; save(path) writes PEFT's two files."""
    torch = pytest.importorskip("torch")  # Debian's python3-torch (scripts/install-deps.sh)
    import llama_ref

    targets = ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
    trainer = seqmesh.Trainer(tiny(with_data=False, steps=2, **{
        "training.grad_clip": 1e9, "lora.rank": 3, "lora.alpha": 6.0, "lora.targets": targets}),
        quiet=True)
    params = trainer.model.parameters()
    adapters = {k: v for k, v in params.items() if ".lora_" in k}
    assert len(adapters) == 2 * 2 * len(targets)  # 2 layers, A and B per target
    rng = np.random.default_rng(3)
    for k, v in adapters.items():
        if ".lora_B." in k:
            v[:] = rng.normal(0, 0.1, size=v.shape)
    before = {k: v.copy() for k, v in params.items()}
    docs = [rng.integers(0, 259, size=n, dtype=np.int32) for n in (50, 17, 90)]
    trainer.step(docs)
    grads = trainer.model.gradients()
    assert set(grads) == set(adapters)  # no gradient for any base tensor
    after = trainer.model.parameters()
    for k in params:
        if ".lora_" not in k:
            assert np.array_equal(after[k], before[k]), k  # frozen
    assert not np.array_equal(after[next(iter(adapters))], before[next(iter(adapters))])

    m = trainer.config.model
    cfg = llama_ref.Config(vocab=m.vocab, hidden=m.hidden, layers=m.layers, heads=m.heads,
                           kv_heads=m.kv_heads, ffn=m.ffn, rope_theta=m.rope_theta,
                           norm_eps=m.norm_eps, tie_embeddings=m.tie_embeddings)
    t64 = {k: torch.from_numpy(v).double().requires_grad_(".lora_" in k)
           for k, v in before.items()}
    weights = {}
    for k, w in t64.items():
        if ".lora_" in k:
            continue
        a = t64.get(k.replace(".weight", ".lora_A.weight"))
        weights[k] = w if a is None else w + 2.0 * t64[k.replace(".weight", ".lora_B.weight")] @ a
    tokens = torch.from_numpy(np.concatenate(docs))
    cu = torch.tensor(np.cumsum([0] + [len(d) for d in docs]), dtype=torch.int32)
    tgt = torch.full_like(tokens, llama_ref.IGNORE_INDEX)
    for d in range(len(docs)):
        tgt[cu[d]:cu[d + 1] - 1] = tokens[cu[d] + 1:cu[d + 1]]
    normalizer = float(sum(len(d) - 1 for d in docs))
    llama_ref.loss_fn(llama_ref.forward(cfg, weights, tokens, cu), tgt, normalizer).backward()
    for k in adapters:
        want = t64[k].grad.numpy()
        # float32 against float64: relative to the tensor's scale.
        assert np.abs(grads[k] - want).max() <= 2e-4 * np.abs(want).max() + 1e-9, k

    trainer.save(tmp_path / "adapter")
    assert sorted(os.listdir(tmp_path / "adapter")) == ["adapter_config.json",
                                                        "adapter_model.safetensors"]


def test_steps_on_the_scripts_own_documents(tiny):
    trainer = seqmesh.Trainer(tiny(with_data=False, steps=3), quiet=True)
    tok = seqmesh.Tokenizer()
    docs = [tok.encode("hello world, " * 15), [1, 2, 3, 4, 5], np.arange(300, dtype=np.int64) % 7]
    record = trainer.step(docs)
    assert record["step"] == 1 and record["tokens"] == sum(len(d) for d in docs)
    assert record["cut_sequences"] == 1  # 300 tokens > training.micro_batch_tokens = 256
    assert np.isfinite(record["loss"]) and record["grad_norm"] > 0
    # evaluate() on one document is the model's loss on it.
    one = [tok.encode("the quick brown fox")]
    assert trainer.evaluate(one) == pytest.approx(trainer.model.loss(one[0]), rel=1e-5)
    assert np.isnan(trainer.evaluate())  # no dataset, no validation set
    with pytest.raises(seqmesh.Error, match="no dataset"):
        trainer.step()
    assert trainer.step_count == 1


def test_save_and_load(tiny, tmp_path):
    trainer = seqmesh.Trainer(tiny("a", steps=4), quiet=True)
    trainer.train(steps=2)
    checkpoint = trainer.save()
    assert os.path.exists(os.path.join(checkpoint, "manifest.json"))
    hf = trainer.save(tmp_path / "hf")
    assert os.path.exists(os.path.join(hf, "config.json"))
    want = {k: v.copy() for k, v in trainer.model.parameters().items()}

    other = seqmesh.Trainer(tiny("b", steps=4), quiet=True)
    other.load(checkpoint)
    assert other.step_count == 2
    for k, v in other.model.parameters().items():
        assert np.array_equal(v, want[k]), k
    # The loaded run continues as the original does.
    assert other.step()["loss"] == trainer.step()["loss"]

    third = seqmesh.Trainer(tiny("c", steps=4), quiet=True)
    third.load(hf)
    assert third.step_count == 0  # weights only
    for k, v in third.model.parameters().items():
        assert np.array_equal(v, want[k]), k
    with pytest.raises(FileNotFoundError):
        third.load(tmp_path / "nowhere")


def test_the_gil_is_released_during_a_step(tiny):
    trainer = seqmesh.Trainer(tiny(with_data=False, steps=50, **{"model.hidden": 128,
                                                                  "model.ffn": 512}), quiet=True)
    docs = [np.arange(256, dtype=np.int32) % 259] * 8
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    start = time.monotonic()
    trainer.step(docs)
    end = time.monotonic()
    stop.set()
    t.join()
    during = [x for x in ticks if start < x < end]
    # Held, the GIL would let the counter run at most at the step's start and end.
    assert end - start > 0.05 and len(during) >= 10, (end - start, len(during))


def test_init_from_a_hugging_face_directory(tiny, tmp_path):
    source = seqmesh.Trainer(tiny("src", steps=2), quiet=True)
    source.train()
    hf = source.save(tmp_path / "hf")
    # init_from's config.json sets the model, whatever the config says.
    started = seqmesh.Trainer(tiny("dst", steps=2, **{"model.hidden": 64}), init_from=hf,
                              quiet=True)
    assert started.config.model.hidden == 32 and started.step_count == 0
    for k, v in started.model.parameters().items():
        assert np.array_equal(v, source.model.parameters()[k]), k


def test_synth_makes_a_dataset_a_trainer_reads(tiny, tmp_path):
    prefix = seqmesh.synth("passkey", "github-like", count=12, max_length=200,
                           output=tmp_path / "passkey", min_length=100, seed=4)
    assert os.path.getsize(prefix + ".idx") > 0 and os.path.getsize(prefix + ".bin") > 0
    trainer = seqmesh.Trainer(tiny("pk", steps=1, **{"data.path": prefix,
                                                     "data.validation_fraction": 0.0}),
                              quiet=True)
    record = trainer.step()
    assert record["tokens"] > 0 and np.isfinite(record["loss"])
    tok = seqmesh.Tokenizer()
    assert tok.decode(tok.encode("passkey 123")) == "passkey 123"
    with pytest.raises(ValueError, match="task must be"):
        seqmesh.synth("nope", "github-like", 1, 200, tmp_path / "x")
