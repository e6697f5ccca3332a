"""Makes tests/zoo/bert-ts17-qdq: bert-ts17 statically quantised by ONNX Runtime in the QDQ
format (QuantizeLinear/DequantizeLinear pairs around each MatMul: u8 activations with a
calibrated scale and zero point, per-channel s8 weights), with ONNX Runtime's outputs on
bert-ts17's reference inputs. A one-off generator, not needed to build or test tcc; it needs
numpy, onnx and onnxruntime (the venv of make_zoo.py's header does):

    target/zoo-venv/bin/python tests/zoo/make_qdq.py

The calibration inputs are bert-ts17's ref_b2_s13 and four seeded random batches.
make_padded_refs.py then adds its padded batch's references, as for every encoder.
"""
import os

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "bert-ts17")
OUT = os.path.join(HERE, "bert-ts17-qdq")


class Reader(CalibrationDataReader):
    def __init__(self):
        z = np.load(os.path.join(SRC, "ref_b2_s13.npz"))
        rng = np.random.default_rng(3)
        first = {n: z[n] for n in ("input_ids", "attention_mask")}
        more = [{"input_ids": rng.integers(3, 96, (2, 13)).astype(np.int64),
                 "attention_mask": np.ones((2, 13), np.int64)} for _ in range(4)]
        self.data = iter([first] + more)

    def get_next(self):
        return next(self.data, None)


def main():
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "model.onnx")
    quantize_static(os.path.join(SRC, "model.onnx"), path, Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    op_types_to_quantize=["MatMul"])
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for case in ("b2_s13", "b3_s21"):
        z = np.load(os.path.join(SRC, f"ref_{case}.npz"))
        feeds = {i.name: z[i.name] for i in sess.get_inputs()}
        out = sess.run(None, feeds)
        np.savez(os.path.join(OUT, f"ref_{case}.npz"), **feeds,
                 **{o.name: v for o, v in zip(sess.get_outputs(), out)})
    print("made", os.path.relpath(OUT, HERE))


if __name__ == "__main__":
    main()
