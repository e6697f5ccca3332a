"""Adds a left-padded batch's references, ref_b3_left.npz, to every GPT-2 of tests/zoo without
a cache: three sequences of 9, 5 and 1 real tokens padded to 9 on the left (as batched
generation pads), and ONNX Runtime's outputs on them. The padded rows see only padding: with
the dynamo exporter's finfo.min mask, each weighs every key equally, which tcc's causal
attention keeps (`causal_min`). Needs numpy and onnxruntime only:

    python3 tests/zoo/make_left_padded_refs.py
"""
import os

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
LENGTHS = [9, 5, 1]


def main():
    for name in sorted(os.listdir(HERE)):
        path = os.path.join(HERE, name, "model.onnx")
        if not name.startswith("gpt2-") or "cache" in name or not os.path.isfile(path):
            continue
        rng = np.random.default_rng(sum(map(ord, name)) + 1)
        b, s = len(LENGTHS), max(LENGTHS)
        mask = np.array([[0] * (s - n) + [1] * n for n in LENGTHS], dtype=np.int64)
        ids = np.where(mask == 1, rng.integers(2, 96, size=(b, s)), 0).astype(np.int64)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        if "attention_mask" not in names:
            continue
        feeds = {n: {"input_ids": ids, "attention_mask": mask}[n] for n in names}
        out = sess.run(None, feeds)
        np.savez(os.path.join(HERE, name, "ref_b3_left.npz"), **feeds,
                 **{o.name: v for o, v in zip(sess.get_outputs(), out)})
        print(name, [o.name for o in sess.get_outputs()])


if __name__ == "__main__":
    main()
