"""Adds a padded batch's references, ref_b4_padded.npz, to every encoder of tests/zoo:
four sequences of 13, 7, 3 and 1 real tokens padded to 13 on the right (the pad token's id at
the padded positions: 1 for RoBERTa, 0 for the others), and ONNX Runtime's outputs on them.
Padding elimination (`tcc compile --remove-padding`) is checked against them at the real
positions; the other tests check every position. Needs numpy and onnxruntime only:

    python3 tests/zoo/make_padded_refs.py
"""
import os

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
FAMILIES = ("bert-", "distilbert-", "roberta-", "albert-")
LENGTHS = [13, 7, 3, 1]


def main():
    for name in sorted(os.listdir(HERE)):
        path = os.path.join(HERE, name, "model.onnx")
        if not name.startswith(FAMILIES) or not os.path.isfile(path):
            continue
        rng = np.random.default_rng(sum(map(ord, name)))
        b, s = len(LENGTHS), max(LENGTHS)
        mask = np.array([[1] * n + [0] * (s - n) for n in LENGTHS], dtype=np.int64)
        pad = 1 if name.startswith("roberta-") else 0
        ids = np.where(mask == 1, rng.integers(2, 96, size=(b, s)), pad).astype(np.int64)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feeds = {}
        for i in sess.get_inputs():
            feeds[i.name] = {"input_ids": ids, "attention_mask": mask}.get(
                i.name, np.zeros((b, s), dtype=np.int64))
        out = sess.run(None, feeds)
        np.savez(os.path.join(HERE, name, "ref_b4_padded.npz"), **feeds,
                 **{o.name: v for o, v in zip(sess.get_outputs(), out)})
        print(name, [o.name for o in sess.get_outputs()])


if __name__ == "__main__":
    main()
