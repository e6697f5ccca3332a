"""Makes tests/zoo: small transformers of the families tcc must handle, as
torch.onnx really exports them, with ONNX Runtime references.

A one-off generator, not needed to build or test tcc. It needs torch,
transformers, onnxscript (for the dynamo exporter), onnx and onnxruntime:

    python3 -m venv target/zoo-venv
    target/zoo-venv/bin/pip install torch transformers onnxscript onnx onnxruntime
    target/zoo-venv/bin/python tests/zoo/make_zoo.py

Every model has random weights (seeded), tiny sizes, symbolic batch (and seq
for text models), and is exported by the TorchScript exporter (opset 17, and
14 for bert, gpt2 and vit) and the dynamo exporter (opset 18) where that
exporter accepts the model (t5's encoder it does not), and by the dynamo
exporter at opset 23 (where attention becomes the ONNX Attention op) for bert,
distilbert, gpt2 and vit.
Each gets two reference cases at different sizes, padded where the model
takes an attention mask.

Two int8 models come from ONNX Runtime's quantize_dynamic (per-channel s8
weights). `bert-ts17-int8`'s references are made by ONNX Runtime as it runs on
this machine; on a CPU with VNNI its u8 x s8 products are exact, so its
import.txt asks for exact int8 arithmetic (the script checks the CPU).
`vit-ts17-int8` (MatMulInteger and a ConvInteger patch embedding) has its
references made under `valgrind --tool=none`, whose emulated CPU has AVX2 but
no VNNI, so ONNX Runtime takes its vpmaddubsw kernels, whose pair sums
saturate: tcc's default arithmetic. That needs valgrind.
"""
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import (AlbertConfig, AlbertModel, BertConfig, BertModel, DistilBertConfig, DistilBertModel,
                          GPT2Config, GPT2Model, RobertaConfig, RobertaModel, T5Config, T5EncoderModel, ViTConfig,
                          ViTModel)

HERE = os.path.dirname(os.path.abspath(__file__))
V, H, L, NH, F = 96, 16, 2, 2, 32


def families():
    return {
        "bert": BertModel(BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=NH,
                                     intermediate_size=F, max_position_embeddings=64)),
        "distilbert": DistilBertModel(DistilBertConfig(vocab_size=V, dim=H, n_layers=L, n_heads=NH, hidden_dim=F,
                                                       max_position_embeddings=64)),
        "roberta": RobertaModel(RobertaConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=NH,
                                              intermediate_size=F, max_position_embeddings=66)),
        "albert": AlbertModel(AlbertConfig(vocab_size=V, embedding_size=8, hidden_size=H, num_hidden_layers=L,
                                           num_attention_heads=NH, intermediate_size=F, max_position_embeddings=64)),
        "t5enc": T5EncoderModel(T5Config(vocab_size=V, d_model=H, d_kv=8, d_ff=F, num_layers=L, num_heads=NH)),
        "gpt2": GPT2Model(GPT2Config(vocab_size=V, n_embd=H, n_layer=L, n_head=NH, n_positions=64,
                                     bos_token_id=0, eos_token_id=0)),
        "vit": ViTModel(ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=H, num_hidden_layers=L,
                                  num_attention_heads=NH, intermediate_size=F)),
    }


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


def text_case(rng, b, s):
    ids = rng.integers(3, V, (b, s)).astype(np.int64)
    mask = np.ones((b, s), np.int64)
    mask[-1, s * 2 // 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def image_case(rng, b):
    return {"pixel_values": rng.standard_normal((b, 3, 16, 16)).astype(np.float32)}


def references(path, cases):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for case, feeds in cases.items():
        out = sess.run(None, feeds)
        np.savez(os.path.join(os.path.dirname(path), f"ref_{case}.npz"), **feeds,
                 **{o.name: v for o, v in zip(sess.get_outputs(), out)})


def has_vnni():
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    return " avx512_vnni" in flags or " avx_vnni" in flags


def references_without_vnni(path, cases):
    """ONNX Runtime's outputs as a CPU without VNNI computes them: run under
    valgrind, whose emulated CPU reports AVX2 and no VNNI."""
    import subprocess
    import sys
    import tempfile
    d = os.path.dirname(path)
    for case, feeds in cases.items():
        with tempfile.TemporaryDirectory() as tmp:
            np.savez(os.path.join(tmp, "in.npz"), **feeds)
            code = ("import numpy as np, onnxruntime as ort, sys\n"
                    "so = ort.SessionOptions(); so.intra_op_num_threads = 1\n"
                    "s = ort.InferenceSession(sys.argv[1], so, providers=['CPUExecutionProvider'])\n"
                    "z = dict(np.load(sys.argv[2]))\n"
                    "out = s.run(None, {i.name: z[i.name] for i in s.get_inputs()})\n"
                    "np.savez(sys.argv[3], **z, **{o.name: v for o, v in zip(s.get_outputs(), out)})\n")
            subprocess.run(["valgrind", "--tool=none", "-q", sys.executable, "-c", code, path,
                            os.path.join(tmp, "in.npz"), os.path.join(d, f"ref_{case}.npz")], check=True)


def strip_metadata(path):
    """Drops the exporter's per-node provenance (most of a dynamo export's
    bytes); it does not change what the model computes."""
    m = onnx.load(path)
    for n in m.graph.node:
        del n.metadata_props[:]
        n.doc_string = ""
    for v in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        del v.metadata_props[:]
    onnx.save(m, path)


def export(name, model, exporter, opset):
    d = os.path.join(HERE, f"{name}-{exporter}{opset}")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    rng = np.random.default_rng(7)
    if name == "vit":
        w, names = Image(model).eval(), ["pixel_values"]
        cases = {"b2": image_case(rng, 2), "b3": image_case(rng, 3)}
        axes = {"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch"}}
    else:
        w, names = Text(model).eval(), ["input_ids", "attention_mask"]
        cases = {"b2_s13": text_case(rng, 2, 13), "b3_s21": text_case(rng, 3, 21)}
        axes = {n: {0: "batch", 1: "seq"} for n in names + ["last_hidden_state"]}
    first = next(iter(cases.values()))
    args = tuple(torch.from_numpy(first[n]) for n in names)
    if exporter == "dynamo":
        batch, seq = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("seq", min=2, max=60)
        shapes = {n: ({0: batch} if name == "vit" else {0: batch, 1: seq}) for n in names}
        torch.onnx.export(w, args, path, input_names=names, output_names=["last_hidden_state"],
                          dynamic_shapes=shapes, opset_version=opset, dynamo=True, external_data=False)
    else:
        torch.onnx.export(w, args, path, input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    strip_metadata(path)
    references(path, cases)
    return d, cases


def main(only=None):
    torch.manual_seed(0)
    for name, model in families().items():
        model.eval()
        # Opset 14 (LayerNorm written out in primitive ops) for a few families.
        variants = [("ts", 17), ("dynamo", 18)] + ([("ts", 14)] if name in ("bert", "gpt2", "vit") else [])
        # Opset 23: the dynamo exporter writes scaled_dot_product_attention as ONNX Attention.
        variants += [("dynamo", 23)] if name in ("bert", "distilbert", "gpt2", "vit") else []
        for exporter, opset in variants:
            if only is not None and (exporter, opset) not in only:
                continue
            try:
                d, cases = export(name, model, exporter, opset)
                print("made", os.path.relpath(d, HERE))
            except Exception as e:  # Some exporter/model pairs do not export; say so and go on.
                shutil.rmtree(os.path.join(HERE, f"{name}-{exporter}{opset}"), ignore_errors=True)
                print("skipped", name, exporter, opset, str(e).splitlines()[0][:200])
                continue
            if name in ("bert", "vit") and exporter == "ts" and opset == 17:
                q = d + "-int8"
                os.makedirs(q, exist_ok=True)
                quantize_dynamic(os.path.join(d, "model.onnx"), os.path.join(q, "model.onnx"),
                                 weight_type=QuantType.QInt8, per_channel=True)
                if name == "vit":
                    references_without_vnni(os.path.join(q, "model.onnx"), cases)
                else:
                    references(os.path.join(q, "model.onnx"), cases)
                    if has_vnni():
                        with open(os.path.join(q, "import.txt"), "w") as f:
                            f.write("int8_matmul = exact\n")
                print("made", os.path.relpath(q, HERE))


if __name__ == "__main__":
    import sys
    # `make_zoo.py dynamo23` makes only those variants (the models are the same: one seed).
    main({(a.rstrip("0123456789"), int(a[len(a.rstrip("0123456789")):])) for a in sys.argv[1:]} or None)
