"""Makes tests/zoo/gpt2-cache-ts17 and gpt2-cache-dynamo18: the zoo's GPT-2
with a language-model head, exported with its key/value cache, with ONNX
Runtime references that form one greedy generation sequence.

A one-off generator, not needed to build or test tcc. It needs what
make_zoo.py needs (torch, transformers, onnxscript for the dynamo exporter,
onnx and onnxruntime) and imports that script's helpers:

    python3 -m venv target/zoo-venv
    target/zoo-venv/bin/pip install torch transformers onnxscript onnx onnxruntime
    target/zoo-venv/bin/python tests/zoo/make_gpt2_cache.py

The model is GPT2LMHeadModel with make_zoo.py's gpt2 configuration (hidden 16,
two layers, two heads of 8, vocabulary 96, 64 positions); its transformer has
the weights make_zoo.py gives gpt2 (the same seed; the script says whether it
matches gpt2-ts17's references) and its head is tied to the token embedding.
Its inputs and outputs are those of Optimum's gpt2 "text-generation-with-past"
export: inputs `input_ids` [batch, seq], `attention_mask` [batch, total_seq]
(past and new tokens), `position_ids` [batch, seq] and, per layer i,
`past_key_values.{i}.key` and `.value` [batch, 2, past_seq, 8]; outputs
`logits` [batch, seq, 96] and `present.{i}.key` and `.value`
[batch, 2, past_seq + seq, 8]. The caller computes the position ids from the
mask as Optimum's ORTModelForCausalLM does (cumsum(mask) - 1, 1 where the mask
is 0, the last seq columns). A small wrapper takes the past as flat tensors,
builds the DynamicCache the installed transformers wants, and returns the
presents flat.

The TorchScript exporter (opset 17) traces it with a past of 3 tokens and a
prompt of 4, so that neither is specialised; it names the presents' length
total_seq, as the mask's. The dynamo exporter (opset 18) gets dims batch, seq,
past_seq (from 0) and total_seq (the mask's length: torch.export cannot
declare it past_seq + seq) and names the presents' length `past_seq + seq`
itself. Where the dynamo exporter fails the script says so and goes on.

References (`ref_<case>.npz`, inputs and outputs keyed by ONNX names, made by
ONNX Runtime on each exported model) are one greedy generation: `prefill` (a
7-token prompt, batch 1, an empty past: past arrays of shape [1, 2, 0, 8]),
then `step1`, `step2` and `step3`, each feeding one token, the argmax of the
previous case's last logits row, with the previous case's `present.*` as
`past_key_values.*` and the mask one longer. `b2_prefill` is a batch of two
5-token prompts on an empty past. The script checks that each case's last
logits and presents equal (within 1e-5) those ONNX Runtime gives for the whole
sequence so far fed at once on an empty past, that each row of `b2_prefill`
equals that row fed alone, that ONNX Runtime agrees with PyTorch, and that
the saved files load back with the same shapes, dtypes and values; it fails
loudly otherwise.
"""
import collections
import inspect
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from transformers import DynamicCache, GPT2LMHeadModel

sys.dont_write_bytecode = True  # no __pycache__ in tests/zoo from importing make_zoo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_zoo import HERE, H, L, NH, V, families, strip_metadata  # noqa: E402

HD = H // NH  # head size
TOL = 1e-5
INPUTS = ["input_ids", "attention_mask", "position_ids"] + [
    f"past_key_values.{i}.{kv}" for i in range(L) for kv in ("key", "value")]
OUTPUTS = ["logits"] + [f"present.{i}.{kv}" for i in range(L) for kv in ("key", "value")]


def model():
    """GPT2LMHeadModel whose transformer is make_zoo.py's gpt2 (same seed)."""
    torch.manual_seed(0)
    base = families()["gpt2"]
    lm = GPT2LMHeadModel(base.config).eval()
    lm.transformer.load_state_dict(base.state_dict())
    lm.tie_weights()
    assert lm.lm_head.weight.data_ptr() == lm.transformer.wte.weight.data_ptr(), "lm_head is not tied to wte"
    # Says whether the transformer is gpt2-ts17's: it is when torch and transformers initialise as they did
    # for make_zoo.py.
    ref = os.path.join(HERE, "gpt2-ts17", "ref_b2_s13.npz")
    if os.path.exists(ref):
        z = np.load(ref)
        with torch.no_grad():
            h = lm.transformer(input_ids=torch.from_numpy(z["input_ids"]),
                               attention_mask=torch.from_numpy(z["attention_mask"])).last_hidden_state.numpy()
        err = np.abs(h - z["last_hidden_state"])[z["attention_mask"].astype(bool)].max()
        print(f"transformer vs gpt2-ts17's ref_b2_s13: max |diff| {err:.1e}",
              "(the same weights)" if err < 1e-5 else "(NOT the same weights as gpt2-ts17)")
    return lm


class Cached(torch.nn.Module):
    """Flat tensors in and out; inside, whatever cache the installed
    transformers wants (a DynamicCache here, legacy tuples before it)."""

    def __init__(self, m):
        super().__init__()
        self.m = m
        params = inspect.signature(m.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"

    def forward(self, input_ids, attention_mask, position_ids, *past):
        kv = [(past[2 * i], past[2 * i + 1]) for i in range(L)]
        if hasattr(DynamicCache, "from_legacy_cache"):
            cache = DynamicCache.from_legacy_cache(tuple(kv))
        else:
            cache = DynamicCache(kv, config=self.m.config)
        out = self.m(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                     use_cache=True, **{self.cache_kw: cache})
        present = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        if hasattr(present, "layers"):
            present = [(layer.keys, layer.values) for layer in present.layers]
        elif hasattr(present, "to_legacy_cache"):
            present = present.to_legacy_cache()
        return (out.logits,) + tuple(t for k, v in present for t in (k, v))


def positions(mask, seq):
    """Position ids of the last seq tokens, from the mask, as Optimum's
    ORTModelForCausalLM computes them."""
    pos = np.cumsum(mask, axis=1) - 1
    pos[mask == 0] = 1
    return pos[:, -seq:].astype(np.int64)


def feeds(ids, mask, past):
    f = {"input_ids": ids, "attention_mask": mask, "position_ids": positions(mask, ids.shape[1])}
    f.update(zip(INPUTS[3:], past))
    return f


def empty_past(b):
    return [np.zeros((b, NH, 0, HD), np.float32) for _ in range(2 * L)]


def torch_run(w, f):
    with torch.no_grad():
        return [t.numpy() for t in w(*(torch.from_numpy(f[n]) for n in INPUTS))]


def export(w, exporter, opset):
    d = os.path.join(HERE, f"gpt2-cache-{exporter}{opset}")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    # A non-empty past (3) and a prompt (4) longer than one token, so neither is specialised.
    rng = np.random.default_rng(0)
    past = [rng.standard_normal((2, NH, 3, HD)).astype(np.float32) for _ in range(2 * L)]
    f = feeds(rng.integers(3, V, (2, 4)).astype(np.int64), np.ones((2, 7), np.int64), past)
    args = tuple(torch.from_numpy(f[n]) for n in INPUTS)
    if exporter == "dynamo":
        batch, seq = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("seq", min=1, max=64)
        past_seq = torch.export.Dim("past_seq", min=0, max=63)
        # Shaped as forward's arguments (the past is one *args tuple). The mask's length cannot be declared
        # past_seq + seq (torch.export derives dims from one root only), so it is a dim of its own; the
        # presents come out as the exporter's own `past_seq + seq`.
        total_seq = torch.export.Dim("total_seq", min=1, max=127)
        shapes = ({0: batch, 1: seq}, {0: batch, 1: total_seq}, {0: batch, 1: seq},
                  tuple({0: batch, 2: past_seq} for _ in range(2 * L)))
        torch.onnx.export(w, args, path, input_names=INPUTS, output_names=OUTPUTS, dynamic_shapes=shapes,
                          opset_version=opset, dynamo=True, external_data=False)
    else:
        axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total_seq"},
                "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
        axes.update({n: {0: "batch", 2: "past_seq"} for n in INPUTS[3:]})
        axes.update({n: {0: "batch", 2: "total_seq"} for n in OUTPUTS[1:]})
        torch.onnx.export(w, args, path, input_names=INPUTS, output_names=OUTPUTS, dynamic_axes=axes,
                          opset_version=opset, dynamo=False)
    strip_metadata(path)
    check_signature(path)
    return d, path


def check_signature(path):
    """The inputs and outputs in order, with their symbolic dims kept."""
    m = onnx.load(path)
    onnx.checker.check_model(m)
    got = [i.name for i in m.graph.input], [o.name for o in m.graph.output]
    if got != (INPUTS, OUTPUTS):
        raise SystemExit(f"{path}: inputs/outputs {got}, expected {(INPUTS, OUTPUTS)}")
    want = {"input_ids": ["batch", "seq"], "attention_mask": ["batch", "total_seq"], "position_ids": ["batch", "seq"],
            **{n: ["batch", NH, "past_seq", HD] for n in INPUTS[3:]}, "logits": ["batch", "seq", V]}
    for v in list(m.graph.input) + list(m.graph.output):
        shape = shape_of(v)
        ok = shape == want[v.name] if v.name in want else (
            shape[0] == "batch" and shape[1] == NH and isinstance(shape[2], str) and shape[3] == HD)
        if not ok:
            raise SystemExit(f"{path}: {v.name} has shape {shape}")


def shape_of(v):
    return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]


def close(what, a, b):
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    if a.shape != b.shape or not err <= TOL:
        raise SystemExit(f"FAILED: {what}: shapes {a.shape} {b.shape}, max |diff| {err}")
    return err


def references(path, w):
    """One greedy generation (prefill on an empty past, three steps) and a
    batch-2 prefill, by ONNX Runtime, checked; written as ref_<case>.npz."""
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == INPUTS
    run = lambda f: dict(zip(OUTPUTS, sess.run(OUTPUTS, f)))  # noqa: E731
    rng = np.random.default_rng(7)
    prompt = rng.integers(3, V, (1, 7)).astype(np.int64)
    cases = {}
    f = feeds(prompt, np.ones((1, 7), np.int64), empty_past(1))
    seq = prompt
    worst = 0.0
    for case in ["prefill", "step1", "step2", "step3"]:
        try:
            out = run(f)
        except Exception as e:
            raise SystemExit(f"FAILED: ONNX Runtime does not run {case} (past of {f[INPUTS[3]].shape[2]}): {e}")
        cases[case] = (f, out)
        total = seq.shape[1]
        assert out["logits"].shape == (1, f["input_ids"].shape[1], V)
        for n in OUTPUTS[1:]:
            assert out[n].shape == (1, NH, total, HD), (case, n, out[n].shape)
        # The whole sequence at once on an empty past must give the same last logits and presents.
        full = run(feeds(seq, np.ones((1, total), np.int64), empty_past(1)))
        worst = max(worst, close(f"{case}: last logits vs whole sequence", out["logits"][:, -1], full["logits"][:, -1]))
        for n in OUTPUTS[1:]:
            worst = max(worst, close(f"{case}: {n} vs whole sequence", out[n], full[n]))
        for n, t in zip(OUTPUTS, torch_run(w, f)):
            worst = max(worst, close(f"{case}: {n} vs PyTorch", out[n], t))
        token = out["logits"][:, -1].argmax(-1).astype(np.int64)[:, None]
        seq = np.concatenate([seq, token], axis=1)
        f = feeds(token, np.ones((1, seq.shape[1]), np.int64), [out[n] for n in OUTPUTS[1:]])
    print("greedy sequence", seq[0].tolist(), "(prompt of 7, then 3 steps and the next token)")
    # A batch of two on an empty past: each row as it is alone.
    b2 = rng.integers(3, V, (2, 5)).astype(np.int64)
    f = feeds(b2, np.ones((2, 5), np.int64), empty_past(2))
    out = run(f)
    cases["b2_prefill"] = (f, out)
    for r in range(2):
        alone = run(feeds(b2[r:r + 1], np.ones((1, 5), np.int64), empty_past(1)))
        for n in OUTPUTS:
            worst = max(worst, close(f"b2_prefill: row {r} {n} vs alone", out[n][r:r + 1], alone[n]))
    for n, t in zip(OUTPUTS, torch_run(w, f)):
        worst = max(worst, close(f"b2_prefill: {n} vs PyTorch", out[n], t))
    print(f"  checks passed, largest difference {worst:.2e}")
    d = os.path.dirname(path)
    for case, (f, out) in cases.items():
        file = os.path.join(d, f"ref_{case}.npz")
        np.savez(file, **f, **out)
        back = np.load(file)
        want = {**f, **out}
        if sorted(back.files) != sorted(want):
            raise SystemExit(f"FAILED: {file} holds {back.files}")
        for n, a in want.items():
            if back[n].shape != a.shape or back[n].dtype != a.dtype or not np.array_equal(back[n], a):
                raise SystemExit(f"FAILED: {file}: {n} reads back as {back[n].dtype}{back[n].shape}, "
                                 f"written {a.dtype}{a.shape}")
    return cases


def describe(path):
    m = onnx.load(path)
    print("  opset", [(o.domain or "ai.onnx", o.version) for o in m.opset_import], f"{os.path.getsize(path)} bytes")
    for v in m.graph.input:
        print("  in ", v.name, onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type), shape_of(v))
    for v in m.graph.output:
        print("  out", v.name, onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type), shape_of(v))
    print("  ops", dict(sorted(collections.Counter(n.op_type for n in m.graph.node).items())))


def main():
    lm = model()
    w = Cached(lm).eval()
    for exporter, opset in [("ts", 17), ("dynamo", 18)]:
        name = f"gpt2-cache-{exporter}{opset}"
        try:
            d, path = export(w, exporter, opset)
        except Exception as e:  # The dynamo exporter may not take the model: say so and go on.
            shutil.rmtree(os.path.join(HERE, name), ignore_errors=True)
            if exporter == "ts":
                raise
            print("skipped", name, str(e).splitlines()[0][:300])
            continue
        references(path, w)  # Fails loudly (SystemExit) when a check does not hold.
        print("made", name)
        describe(path)


if __name__ == "__main__":
    main()
