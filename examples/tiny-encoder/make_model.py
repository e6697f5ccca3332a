#!/usr/bin/env python3
"""One-off generator of the tiny-encoder example: model.onnx, inputs.npz, expected.npz.

Not needed at run time or by the tests: its outputs are committed. Run it again
only to change the example, in a virtual environment with the `onnx`, `numpy`
and `onnxruntime` packages:

    python3 -m venv target/example-venv
    target/example-venv/bin/pip install onnx numpy onnxruntime
    target/example-venv/bin/python examples/tiny-encoder/make_model.py

The model is one BERT-style transformer encoder block written node by node the
way the torch.onnx TorchScript exporter writes it at opset 17: token and
position embeddings, LayerNormalization, two-head self-attention whose head
split is a Shape/Gather/Unsqueeze/Concat/Reshape chain, an additive attention
mask built from `attention_mask`, Softmax, an Erf GELU feed-forward layer and
residual connections. Batch and sequence length are symbolic (`batch`, `seq`).
Weights are random but seeded, so the files are the same on every run.
"""

import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

VOCAB = 100
MAX_POS = 64
HIDDEN = 32
HEADS = 2
HEAD_DIM = HIDDEN // HEADS
FFN = 64
EPS = 1e-12

HERE = os.path.dirname(os.path.abspath(__file__))


def parameter_count():
    """The number of weights, from the architecture alone."""
    embeddings = VOCAB * HIDDEN + MAX_POS * HIDDEN + 2 * HIDDEN
    attention = 4 * (HIDDEN * HIDDEN + HIDDEN) + 2 * HIDDEN
    ffn = HIDDEN * FFN + FFN + FFN * HIDDEN + HIDDEN + 2 * HIDDEN
    return embeddings + attention + ffn


def build():
    rng = np.random.default_rng(20240611)
    inits = []
    nodes = []
    counter = [0]

    def weight(name, shape, scale=0.2, offset=0.0):
        w = (rng.standard_normal(shape) * scale + offset).astype(np.float32)
        inits.append(numpy_helper.from_array(w, name))
        return name

    def fresh(prefix):
        counter[0] += 1
        return f"/{prefix}_{counter[0]}"

    def node(op, inputs, prefix=None, **attrs):
        out = fresh(prefix or op)
        nodes.append(helper.make_node(op, inputs, [out], name=out + "/" + op, **attrs))
        return out

    def const(value, dtype=np.int64):
        """A Constant node, as torch writes small constants."""
        out = fresh("Constant")
        arr = np.array(value, dtype=dtype)
        nodes.append(
            helper.make_node(
                "Constant", [], [out], name=out + "/Constant",
                value=numpy_helper.from_array(arr, out + "_value"),
            )
        )
        return out

    def linear(x, prefix, n_in, n_out):
        w = weight(f"{prefix}.weight", (n_in, n_out))
        b = weight(f"{prefix}.bias", (n_out,), scale=0.05)
        return node("Add", [node("MatMul", [x, w]), b])

    def layer_norm(x, prefix):
        g = weight(f"{prefix}.weight", (HIDDEN,), scale=0.1, offset=1.0)
        b = weight(f"{prefix}.bias", (HIDDEN,), scale=0.05)
        return node("LayerNormalization", [x, g, b], axis=-1, epsilon=EPS)

    # Embeddings: token embedding plus position embedding of Range(0, seq).
    word = weight("embeddings.word_embeddings.weight", (VOCAB, HIDDEN), scale=0.5)
    pos = weight("embeddings.position_embeddings.weight", (MAX_POS, HIDDEN), scale=0.5)
    tok = node("Gather", [word, "input_ids"], axis=0)
    ids_shape = node("Shape", ["input_ids"])
    seq = node("Gather", [ids_shape, const(1)], axis=0)
    pos_ids = node("Range", [const(0), seq, const(1)])
    pos_ids = node("Unsqueeze", [pos_ids, const([0])])
    pos_emb = node("Gather", [pos, pos_ids], axis=0)
    h = layer_norm(node("Add", [tok, pos_emb]), "embeddings.LayerNorm")

    # The additive mask: (1 - mask[:, None, None, :]) * finfo(f32).min.
    m = node("Unsqueeze", ["attention_mask", const([1, 2])])
    m = node("Cast", [m], to=TensorProto.FLOAT)
    m = node("Sub", [const(1.0, np.float32), m])
    m = node("Mul", [m, const(np.finfo(np.float32).min, np.float32)])

    # Self-attention with the head split written as torch writes it.
    def heads(x):
        shape = node("Shape", [x])
        b = node("Unsqueeze", [node("Gather", [shape, const(0)], axis=0), const([0])])
        s = node("Unsqueeze", [node("Gather", [shape, const(1)], axis=0), const([0])])
        new_shape = node("Concat", [b, s, const([HEADS]), const([HEAD_DIM])], axis=0)
        return node("Reshape", [x, new_shape])

    q = heads(linear(h, "attention.self.query", HIDDEN, HIDDEN))
    k = heads(linear(h, "attention.self.key", HIDDEN, HIDDEN))
    v = heads(linear(h, "attention.self.value", HIDDEN, HIDDEN))
    q = node("Transpose", [q], perm=[0, 2, 1, 3])
    k = node("Transpose", [k], perm=[0, 2, 3, 1])
    v = node("Transpose", [v], perm=[0, 2, 1, 3])
    scores = node("Div", [node("MatMul", [q, k]), const(float(np.sqrt(HEAD_DIM)), np.float32)])
    probs = node("Softmax", [node("Add", [scores, m])], axis=-1)
    ctx = node("Transpose", [node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    shape = node("Shape", [ctx])
    b = node("Unsqueeze", [node("Gather", [shape, const(0)], axis=0), const([0])])
    s = node("Unsqueeze", [node("Gather", [shape, const(1)], axis=0), const([0])])
    ctx = node("Reshape", [ctx, node("Concat", [b, s, const([HIDDEN])], axis=0)])
    attn = linear(ctx, "attention.output.dense", HIDDEN, HIDDEN)
    h = layer_norm(node("Add", [attn, h]), "attention.output.LayerNorm")

    # Feed-forward with the exact (Erf) GELU: x * 0.5 * (1 + erf(x / sqrt(2))).
    x = linear(h, "intermediate.dense", HIDDEN, FFN)
    e = node("Erf", [node("Div", [x, const(float(np.sqrt(2.0)), np.float32)])])
    g = node("Mul", [node("Mul", [x, node("Add", [e, const(1.0, np.float32)])]), const(0.5, np.float32)])
    y = linear(g, "output.dense", FFN, HIDDEN)
    out = layer_norm(node("Add", [y, h]), "output.LayerNorm")
    nodes.append(helper.make_node("Identity", [out], ["last_hidden_state"], name="/output/Identity"))

    graph = helper.make_graph(
        nodes,
        "tiny-encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", HIDDEN])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        producer_name="tcc-examples",
        producer_version="1",
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    n_weights = sum(int(np.prod(i.dims)) for i in inits)
    assert n_weights == parameter_count(), (n_weights, parameter_count())
    return model


def main():
    model = build()
    path = os.path.join(HERE, "model.onnx")
    onnx.save(model, path)

    # Two sequences of 7 tokens; the second is padded after 5 real tokens.
    rng = np.random.default_rng(7)
    input_ids = rng.integers(1, VOCAB, size=(2, 7), dtype=np.int64)
    attention_mask = np.ones((2, 7), dtype=np.int64)
    attention_mask[1, 5:] = 0
    input_ids[1, 5:] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    np.savez(os.path.join(HERE, "inputs.npz"), **inputs)

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (hidden,) = sess.run(["last_hidden_state"], inputs)
    np.savez(os.path.join(HERE, "expected.npz"), **inputs, last_hidden_state=hidden)

    print(f"wrote {path}: {os.path.getsize(path)} bytes, {len(model.graph.node)} nodes")
    print(f"parameters: {parameter_count()} ({4 * parameter_count()} bytes of f32)")
    print(f"last_hidden_state {hidden.shape}, max |x| {np.abs(hidden).max():.4f}")


if __name__ == "__main__":
    main()
