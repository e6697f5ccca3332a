"""Makes the models of the benchmark at realistic sizes, one per family, with their inputs.

Where tests/zoo holds each family at hidden size 16 (too small to time anything but per-kernel
overhead), this script exports the same families at the sizes a benchmark against ONNX Runtime
should use, with seeded random weights, and writes for each model the inputs of its cases:

    OUTDIR/NAME/model.onnx        the exported model (symbolic batch, and seq for text models)
    OUTDIR/NAME/ref_CASE.npz      one case's inputs only, keyed by the model's ONNX input names
                                  (as scripts/bench/rounds.py, ort_bench.py and `tcc bench`
                                  read them: rounds.py takes `--case CASE` for ref_CASE.npz)
    OUTDIR/NAME/cases.txt         the case names, one a line
    OUTDIR/NAME/info.json         the configuration, the exporter and per case its shapes and
                                  real lengths

| NAME | model | exporter | cases |
| --- | --- | --- | --- |
| gpt2-l4-h256-ts17 | GPT2Model, 4 layers, 256 wide, 4 heads, vocabulary 50257 | TorchScript 17 | b1_s128, b8_s128_padded |
| vit-tiny-ts17 | ViTModel, 224x224, patch 16, 12 layers, 192 wide, 3 heads | TorchScript 17 | b1, b4 |
| vit-small-ts17 | ViTModel, 224x224, patch 16, 12 layers, 384 wide, 6 heads | TorchScript 17 | b1, b4 |
| bert-base-ts17 | BertModel, BERT-base: 12 layers, 768 wide, 12 heads, vocabulary 30522 | TorchScript 17 | b1_s128, b4_s128_padded |
| bert-l4-h256-ts14 | BertModel, 4 layers, 256 wide, 4 heads | TorchScript 14 | b1_s128 |
| distilbert-l4-h256-ts17 | DistilBertModel, 4 layers, 256 wide, 4 heads | TorchScript 17 | b1_s128 |
| roberta-l4-h256-dynamo18 | RobertaModel, 4 layers, 256 wide, 4 heads, vocabulary 50265 | dynamo 18 | b1_s128 |
| t5enc-l4-h256-ts17 | T5EncoderModel, 4 layers, d_model 256, 4 heads of 64, d_ff 1024 | TorchScript 17 | b1_s128 |
| gpt2-cache-l2-h128-ts17 | GPT2LMHeadModel with its KV cache, 2 layers, 128 wide, 2 heads of 64 | TorchScript 17 | prefill_s32, step_p32 |

The encoders and GPT2Model output `last_hidden_state` (as tests/zoo's models: the wrapper takes
`input_ids` and `attention_mask`, ViT `pixel_values`); feed-forward widths are 4 times the
hidden size. The cached GPT-2 is exported as tests/zoo/make_gpt2_cache.py exports it (Optimum's
"text-generation-with-past" signature: `input_ids`, `attention_mask` over past and new tokens,
`position_ids`, `past_key_values.{i}.{key,value}` [batch, 2, past_seq, 64]; outputs `logits` and
`present.{i}.{key,value}`) at these sizes, with that script's vocabulary of 96 and 64
positions, so that its figures are the transformer's and its cache's rather than a vocabulary
projection's.

The cases (inputs seeded by the model's name, so a rerun writes the same arrays):
- `b1_s128`: one sequence of 128 real tokens;
- `bB_s128_padded`: B sequences padded on the right to 128, `attention_mask` 0 on the padding
  and the pad token's id there (1 for RoBERTa, 0 otherwise); GPT-2's batch of 8 has the real
  lengths of minilm-l6's ref_b8_padded (128, 77, 60, 52, 40, 31, 25, 17: 42% real), BERT-base's
  batch of 4 has 128, 77, 40 and 17;
- token ids uniform in [2, V) at real positions; `pixel_values` standard normal (`b1`, `b4`);
- the cached GPT-2: `prefill_s32`, a 32-token prompt at batch 1 on an empty cache (past arrays
  [1, 2, 0, 64], mask of 32 ones, position ids 0..31); `step_p32`, one decoding step after it:
  the argmax of the prefill's last logits as the one new token, the prefill's presents (as
  ONNX Runtime computes them on this model) as the past of 32, a mask of 33 ones and position
  id 32. Both engines read the same arrays from ref_step_p32.npz.

Each model's ONNX Runtime outputs are checked against PyTorch's on every case (the script
fails loudly beyond 1e-4 relative to max(1, max|torch|)); they are not saved: a benchmark
computes its reference with the ONNX Runtime it times.

It needs torch, transformers, onnx, onnxscript (the dynamo exporter) and onnxruntime, e.g. the
venv that tests/zoo/make_zoo.py's header creates (target/zoo-venv):

    target/zoo-venv/bin/python scripts/bench/make_family_models.py target/bench-models
    target/zoo-venv/bin/python scripts/bench/make_family_models.py target/bench-models bert-base-ts17 vit-tiny-ts17
    target/zoo-venv/bin/python scripts/bench/make_family_models.py --list

Then, per model, compile and time it against ONNX Runtime in interleaved rounds (BENCHMARKS.md,
"Every family at realistic sizes"):

    M=target/bench-models; d=bert-base-ts17
    target/release/tcc compile $M/$d/model.onnx -o $M/$d/$d.so
    target/bench-venv/bin/python scripts/bench/rounds.py $M/$d/model.onnx --lib tcc=$M/$d/$d.so \
        $(sed 's/^/--case /' $M/$d/cases.txt) --rounds 5 --runs 20 --threads 2 \
        --python target/bench-venv/bin/python --tcc target/release/tcc

About a minute for all of them on 2 cores (BERT-base's export is a quarter of it), about 780 MB
of models (BERT-base's 415 MB).
"""

import argparse
import inspect
import json
import os
import sys
import time
import zlib

import numpy as np
import onnx
import onnxruntime as ort
import torch
from transformers import (BertConfig, BertModel, DistilBertConfig, DistilBertModel, DynamicCache, GPT2Config,
                          GPT2LMHeadModel, GPT2Model, RobertaConfig, RobertaModel, T5Config, T5EncoderModel,
                          ViTConfig, ViTModel)

# minilm-l6's ref_b8_padded real lengths (of 128), the padded batches' spread.
B8_LENGTHS = [128, 77, 60, 52, 40, 31, 25, 17]
B4_LENGTHS = [128, 77, 40, 17]
TOL = 1e-4


def text(batch, seq, lengths=None):
    """A text case: `batch` sequences of `seq` positions, `lengths` real (all by default)."""
    lengths = lengths or [seq] * batch
    suffix = "_padded" if any(n < seq for n in lengths) else ""
    return (f"b{batch}_s{seq}{suffix}", {"batch": batch, "seq": seq, "lengths": lengths})


def image(batch):
    return (f"b{batch}", {"batch": batch})


# name: (family, exporter, opset, model constructor, cases)
MODELS = {
    "gpt2-l4-h256-ts17": (
        "gpt2", "ts", 17,
        lambda: GPT2Model(GPT2Config(vocab_size=50257, n_embd=256, n_layer=4, n_head=4, n_inner=1024,
                                     n_positions=1024)),
        [text(1, 128), text(8, 128, B8_LENGTHS)]),
    "vit-tiny-ts17": (
        "vit", "ts", 17,
        lambda: ViTModel(ViTConfig(image_size=224, patch_size=16, num_channels=3, hidden_size=192,
                                   num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
                         add_pooling_layer=False),
        [image(1), image(4)]),
    "vit-small-ts17": (
        "vit", "ts", 17,
        lambda: ViTModel(ViTConfig(image_size=224, patch_size=16, num_channels=3, hidden_size=384,
                                   num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
                         add_pooling_layer=False),
        [image(1), image(4)]),
    "bert-base-ts17": (
        "bert", "ts", 17,
        lambda: BertModel(BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                                     num_attention_heads=12, intermediate_size=3072,
                                     max_position_embeddings=512), add_pooling_layer=False),
        [text(1, 128), text(4, 128, B4_LENGTHS)]),
    "bert-l4-h256-ts14": (
        "bert", "ts", 14,
        lambda: BertModel(BertConfig(vocab_size=30522, hidden_size=256, num_hidden_layers=4,
                                     num_attention_heads=4, intermediate_size=1024,
                                     max_position_embeddings=512), add_pooling_layer=False),
        [text(1, 128)]),
    "distilbert-l4-h256-ts17": (
        "distilbert", "ts", 17,
        lambda: DistilBertModel(DistilBertConfig(vocab_size=30522, dim=256, n_layers=4, n_heads=4,
                                                 hidden_dim=1024, max_position_embeddings=512)),
        [text(1, 128)]),
    "roberta-l4-h256-dynamo18": (
        "roberta", "dynamo", 18,
        lambda: RobertaModel(RobertaConfig(vocab_size=50265, hidden_size=256, num_hidden_layers=4,
                                           num_attention_heads=4, intermediate_size=1024,
                                           max_position_embeddings=514, pad_token_id=1),
                             add_pooling_layer=False),
        [text(1, 128)]),
    "t5enc-l4-h256-ts17": (
        "t5enc", "ts", 17,
        lambda: T5EncoderModel(T5Config(vocab_size=32128, d_model=256, d_kv=64, d_ff=1024, num_layers=4,
                                        num_heads=4)),
        [text(1, 128)]),
    "gpt2-cache-l2-h128-ts17": (
        "gpt2-cache", "ts", 17,
        lambda: GPT2LMHeadModel(GPT2Config(vocab_size=96, n_embd=128, n_layer=2, n_head=2, n_positions=64,
                                           bos_token_id=0, eos_token_id=0)),
        None),  # its cases depend on one another: see cached()
}
PAD_IDS = {"roberta": 1}


def seed(name):
    return zlib.crc32(name.encode())


def strip_metadata(path):
    """Drops the exporter's per-node provenance (as tests/zoo/make_zoo.py does); it does not
    change what the model computes."""
    m = onnx.load(path)
    for n in m.graph.node:
        del n.metadata_props[:]
        n.doc_string = ""
    for v in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        del v.metadata_props[:]
    onnx.save(m, path)


class Text(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class Image(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        return self.m(pixel_values=pixel_values).last_hidden_state


class Cached(torch.nn.Module):
    """GPT2LMHeadModel with flat past and present tensors (tests/zoo/make_gpt2_cache.py's
    wrapper, for any number of layers)."""

    def __init__(self, m):
        super().__init__()
        self.m = m
        self.layers = m.config.n_layer
        self.cache_kw = "cache" if "cache" in inspect.signature(m.forward).parameters else "past_key_values"

    def forward(self, input_ids, attention_mask, position_ids, *past):
        kv = [(past[2 * i], past[2 * i + 1]) for i in range(self.layers)]
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


def text_feeds(rng, vocab, pad, batch, seq, lengths):
    mask = np.array([[1] * n + [0] * (seq - n) for n in lengths], dtype=np.int64)
    ids = np.where(mask == 1, rng.integers(2, vocab, size=(batch, seq)), pad).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask}


def check(name, case, sess, w, feeds):
    """ONNX Runtime's outputs against PyTorch's; returns ONNX Runtime's."""
    names = [i.name for i in sess.get_inputs()]
    got = sess.run(None, {n: feeds[n] for n in names})
    with torch.no_grad():
        want = w(*(torch.from_numpy(feeds[n]) for n in names))
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    for o, g, t in zip(sess.get_outputs(), got, want):
        t = t.numpy()
        err = float(np.max(np.abs(g - t))) / max(1.0, float(np.max(np.abs(t)))) if t.size else 0.0
        if g.shape != t.shape or not err <= TOL:
            raise SystemExit(f"FAILED: {name} {case}: ONNX Runtime's {o.name} {g.shape} is not PyTorch's "
                             f"{t.shape}: relative max |diff| {err:.2e}")
    return dict(zip([o.name for o in sess.get_outputs()], got))


def export_plain(name, d, family, exporter, opset, model, cases):
    """An encoder, GPT2Model or ViT: returns {case: inputs}."""
    rng = np.random.default_rng(seed(name))
    path = os.path.join(d, "model.onnx")
    if family == "vit":
        w, names = Image(model).eval(), ["pixel_values"]
        size = model.config.image_size
        example = (torch.randn(2, 3, size, size),)
        axes = {"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch"}}
    else:
        w, names = Text(model).eval(), ["input_ids", "attention_mask"]
        # Batch 2, seq 16, one row padded: neither axis is 1 nor specialised.
        f = text_feeds(np.random.default_rng(0), 96, PAD_IDS.get(family, 0), 2, 16, [16, 9])
        example = tuple(torch.from_numpy(f[n]) for n in names)
        axes = {n: {0: "batch", 1: "seq"} for n in names + ["last_hidden_state"]}
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=64)
        seq = torch.export.Dim("seq", min=2, max=model.config.max_position_embeddings - 2)
        shapes = {n: ({0: batch} if family == "vit" else {0: batch, 1: seq}) for n in names}
        torch.onnx.export(w, example, path, input_names=names, output_names=["last_hidden_state"],
                          dynamic_shapes=shapes, opset_version=opset, dynamo=True, external_data=False)
    else:
        torch.onnx.export(w, example, path, input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    strip_metadata(path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = {}
    for case, spec in cases:
        if family == "vit":
            size = model.config.image_size
            feeds = {"pixel_values": rng.standard_normal((spec["batch"], 3, size, size)).astype(np.float32)}
        else:
            feeds = text_feeds(rng, model.config.vocab_size, PAD_IDS.get(family, 0), spec["batch"], spec["seq"],
                               spec["lengths"])
        check(name, case, sess, w, feeds)
        out[case] = (feeds, spec)
    return out


def cached(name, d, model, prompt=32):
    """The cached GPT-2: `prefill_s32` on an empty cache, then `step_p32`, one token after it with
    ONNX Runtime's presents as the past. Returns {case: inputs}."""
    cfg = model.config
    layers, heads, hd = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head
    past_names = [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    inputs = ["input_ids", "attention_mask", "position_ids"] + past_names
    outputs = ["logits"] + [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    w = Cached(model).eval()
    path = os.path.join(d, "model.onnx")

    def feeds(ids, mask, past):
        pos = np.cumsum(mask, axis=1) - 1  # position ids from the mask, as Optimum computes them
        pos[mask == 0] = 1
        return {"input_ids": ids, "attention_mask": mask, "position_ids": pos[:, -ids.shape[1]:].astype(np.int64),
                **dict(zip(past_names, past))}

    # Traced with a past of 3 and a prompt of 4 at batch 2, so that no axis is specialised.
    rng = np.random.default_rng(0)
    f = feeds(rng.integers(2, cfg.vocab_size, (2, 4)).astype(np.int64), np.ones((2, 7), np.int64),
              [rng.standard_normal((2, heads, 3, hd)).astype(np.float32) for _ in past_names])
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total_seq"},
            "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    axes.update({n: {0: "batch", 2: "past_seq"} for n in past_names})
    axes.update({n: {0: "batch", 2: "total_seq"} for n in outputs[1:]})
    torch.onnx.export(w, tuple(torch.from_numpy(f[n]) for n in inputs), path, input_names=inputs,
                      output_names=outputs, dynamic_axes=axes, opset_version=17, dynamo=False)
    strip_metadata(path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed(name))
    ids = rng.integers(2, cfg.vocab_size, (1, prompt)).astype(np.int64)
    pre = feeds(ids, np.ones((1, prompt), np.int64), [np.zeros((1, heads, 0, hd), np.float32) for _ in past_names])
    out = check(name, "prefill", sess, w, pre)
    token = out["logits"][:, -1].argmax(-1).astype(np.int64)[:, None]
    step = feeds(token, np.ones((1, prompt + 1), np.int64), [out[n] for n in outputs[1:]])
    check(name, "step", sess, w, step)
    return {f"prefill_s{prompt}": (pre, {"batch": 1, "seq": prompt, "past": 0}),
            f"step_p{prompt}": (step, {"batch": 1, "seq": 1, "past": prompt})}


def make(outdir, name):
    family, exporter, opset, build, cases = MODELS[name]
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    start = time.time()
    torch.manual_seed(seed(name))
    model = build().eval()
    if family == "gpt2-cache":
        made = cached(name, d, model)
    else:
        made = export_plain(name, d, family, exporter, opset, model, cases)
    for case, (feeds, _) in made.items():
        np.savez(os.path.join(d, f"ref_{case}.npz"), **feeds)
    with open(os.path.join(d, "cases.txt"), "w") as f:
        f.write("".join(f"{c}\n" for c in made))
    info = {"name": name, "model": type(model).__name__, "exporter": exporter, "opset": opset,
            "parameters": sum(p.numel() for p in model.parameters()),
            "config": {k: v for k, v in model.config.to_diff_dict().items()
                       if isinstance(v, (int, float, str, bool))},
            "cases": {c: {**spec, "shapes": {k: list(v.shape) for k, v in feeds.items()}}
                      for c, (feeds, spec) in made.items()}}
    with open(os.path.join(d, "info.json"), "w") as f:
        json.dump(info, f, indent=1)
    mb = os.path.getsize(os.path.join(d, "model.onnx")) / 2**20
    print(f"made {name}: {info['parameters'] / 1e6:.1f} M parameters, {mb:.0f} MB, cases {' '.join(made)}, "
          f"{time.time() - start:.0f} s", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir", nargs="?")
    p.add_argument("models", nargs="*", help=f"some of: {' '.join(MODELS)} (default: all)")
    p.add_argument("--list", action="store_true", help="print the model names and exit")
    a = p.parse_args()
    if a.list:
        print("\n".join(MODELS))
        return
    if not a.outdir:
        p.error("the output directory is needed")
    unknown = [m for m in a.models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {' '.join(unknown)}; known: {' '.join(MODELS)}")
    torch.set_num_threads(2)
    for name in a.models or MODELS:
        make(a.outdir, name)


if __name__ == "__main__":
    sys.exit(main())
