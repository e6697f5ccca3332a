"""Makes the inputs of the cross-family benchmark for one model, with ONNX Runtime's outputs.

Usage: make_inputs.py MODEL.onnx OUTDIR [--seq S] [--batch B] [--lengths-like REF.npz]

For a model with a sequence axis (a text model: input_ids, attention_mask, ...) it writes
  OUTDIR/ref_b1_sN.npz          one sequence of N tokens, every one real;
  OUTDIR/ref_bB_sN_padded.npz   B sequences padded on the right to N tokens, their lengths
                                spread as the attention_mask of REF.npz (minilm-l6's
                                ref_b8_padded: 128, 77, 60, ... of 128) scaled to N;
                                only for a model that takes an attention_mask;
and for one without (ViT: pixel_values [batch, 3, 16, 16]) OUTDIR/ref_b1.npz and
OUTDIR/ref_bB.npz. N is S (128) if the model runs at that length, else the longest length
it runs at: the tests/zoo models have 64 position embeddings (RoBERTa 66 with its offset of
2), and a longer input would be a benchmark of something the model cannot do. The length is
found by running the model in ONNX Runtime (it refuses a position beyond the table), and the
report says which length was used and why.

Each archive holds the inputs keyed by the model's ONNX input names (read from ONNX Runtime)
and ONNX Runtime's outputs on them, like the ref_CASE.npz archives of tests/zoo: token ids
uniform in [2, V) (V the vocabulary size, the largest id ONNX Runtime accepts plus one; 0
and 1 are special tokens in these vocabularies), the pad token's id at padded positions (1
for RoBERTa, 0 for the others, as tests/zoo/make_padded_refs.py does), attention_mask 1 for
real tokens and 0 for padding, zeros for any other integer input (token_type_ids), standard
normal values for a float input (pixel_values). Random values are seeded by the model's
directory name, so a rerun makes the same inputs.

Prints the case names to stdout, one a line, and writes OUTDIR/cases.json for the report:
the length used and why, the vocabulary size, and per case its input shapes and real lengths.
Needs numpy and onnxruntime only.
"""

import argparse
import json
import re
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

# The pad token's id by family (the model directory's name before its first `-`); 0 if absent.
PAD_IDS = {"roberta": 1}
# The largest token id tried when looking for the vocabulary size.
MAX_ID = 2**31 - 1

INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
               "tensor(double)": np.float64}


class Model:
    def __init__(self, path: Path):
        options = ort.SessionOptions()
        # The probes below fail on purpose; ONNX Runtime would log each failure as an error.
        options.log_severity_level = 4
        self.session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = self.session.get_inputs()
        self.outputs = self.session.get_outputs()
        # A symbolic axis other than the first is the sequence axis.
        self.text = any(
            not isinstance(d, int) for i in self.inputs for d in list(i.shape)[1:]
        )
        self.has_mask = any(i.name == "attention_mask" for i in self.inputs)
        self.has_ids = any(i.name == "input_ids" for i in self.inputs)

    def feeds(self, rng, batch: int, seq: int, lengths: list[int], vocab: int, pad: int,
              ids: np.ndarray | None = None) -> dict:
        """The model's inputs for `batch` sequences of `seq` positions, `lengths` real."""
        mask = np.zeros((batch, seq), dtype=np.int64)
        for row, n in enumerate(lengths):
            mask[row, :n] = 1
        feeds = {}
        for spec in self.inputs:
            shape = [
                d if isinstance(d, int) else (batch if axis == 0 else seq)
                for axis, d in enumerate(spec.shape)
            ]
            if spec.type in INT_TYPES:
                dtype = INT_TYPES[spec.type]
                if spec.name == "input_ids":
                    if ids is None:
                        ids = rng.integers(2, vocab, size=shape)
                    value = np.where(mask == 1, ids, pad)
                elif spec.name == "attention_mask":
                    value = mask
                else:
                    value = np.zeros(shape)
                feeds[spec.name] = np.asarray(value).astype(dtype)
            elif spec.type in FLOAT_TYPES:
                feeds[spec.name] = rng.standard_normal(shape).astype(FLOAT_TYPES[spec.type])
            else:
                raise SystemExit(f"error: input `{spec.name}` has type {spec.type}, "
                                 "which this script does not make")
        return feeds

    def error(self, feeds: dict) -> str | None:
        """None if ONNX Runtime runs the model on `feeds`, else its error's first line."""
        try:
            self.session.run(None, feeds)
            return None
        except Exception as e:  # onnxruntime raises its own exception types
            return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def vocab_size(model: Model, rng, pad: int) -> int:
    """The largest token id ONNX Runtime accepts, plus one: it refuses a Gather index beyond
    the embedding table, so a bisection over one-token inputs finds the table's rows."""
    def runs(i: int) -> bool:
        feeds = model.feeds(rng, 1, 1, [1], i + 1, pad, ids=np.full((1, 1), i))
        return model.error(feeds) is None

    if not runs(2):
        raise SystemExit("error: ONNX Runtime does not run the model on token id 2")
    if runs(MAX_ID):
        raise SystemExit(f"error: ONNX Runtime accepts token id {MAX_ID}: no vocabulary size "
                         "to draw the ids from")
    lo, hi = 2, MAX_ID  # runs(lo), not runs(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if runs(mid) else (lo, mid)
    return hi


def longest(model: Model, rng, want: int, vocab: int, pad: int) -> tuple[int, str]:
    """The sequence length to use, and why: `want` if ONNX Runtime runs the model at it, else
    the longest length below it that it runs at (bisection: position tables end somewhere)."""
    def error(s: int) -> str | None:
        return model.error(model.feeds(rng, 1, s, [s], vocab, pad))

    first = error(want)
    if first is None:
        return want, f"s{want} as asked"
    if error(1) is not None:
        raise SystemExit(f"error: ONNX Runtime does not run the model on one token: {error(1)}")
    lo, hi = 1, want  # runs at lo, not at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if error(mid) is None else (lo, mid)
    why = error(hi)
    # "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned while running
    # Gather node. Name:'...' Status Message: ..." says which node failed and why; keep that.
    if m := re.search(r"running (\w+) node\. Name:'([^']*)' Status Message: (.*)", why):
        why = f"{m.group(1)} `{m.group(2)}`: {m.group(3).split(' was false. ')[-1]}"
    if len(why) > 200:
        why = why[:197] + "..."
    return lo, (f"s{lo}, the longest the model runs at (not s{want}): ONNX Runtime fails "
                f"from s{hi} on ({why})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("outdir")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lengths-like", help="an npz whose attention_mask gives the padded "
                        "batch's real lengths (scaled to the length used)")
    args = parser.parse_args()
    if args.seq < 1 or args.batch < 1:
        parser.error("--seq and --batch must be at least 1")

    path = Path(args.model)
    name = path.parent.name
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    # The probes draw from their own generator, so the inputs do not depend on how many ran.
    probe = np.random.default_rng(0)
    model = Model(path)
    pad = PAD_IDS.get(name.split("-")[0], 0)
    info = {"model": name, "inputs": [i.name for i in model.inputs],
            "outputs": [o.name for o in model.outputs], "cases": []}

    cases = []  # (name, batch, seq, lengths)
    if model.text:
        vocab = vocab_size(model, probe, pad) if model.has_ids else 2
        seq, why = longest(model, probe, args.seq, vocab, pad)
        info.update(seq=seq, seq_note=why, vocab=vocab, pad_id=pad)
        cases.append((f"b1_s{seq}", 1, seq, [seq]))
        if model.has_mask:
            if not args.lengths_like:
                parser.error("--lengths-like is needed for a model with an attention_mask")
            like = np.load(args.lengths_like)["attention_mask"]
            # The reference's lengths as fractions of its length, at this length (at least 1).
            real = like.sum(axis=1)
            spread = [max(1, int(np.floor(n * seq / like.shape[1] + 0.5))) for n in real]
            spread = [spread[i % len(spread)] for i in range(args.batch)]
            cases.append((f"b{args.batch}_s{seq}_padded", args.batch, seq, spread))
    else:
        vocab = None
        cases += [("b1", 1, 0, [0]), (f"b{args.batch}", args.batch, 0, [0] * args.batch)]

    for case, batch, seq, lengths in cases:
        feeds = model.feeds(rng, batch, seq, lengths, vocab or 2, pad)
        try:
            outputs = model.session.run(None, feeds)
        except Exception as e:
            raise SystemExit(f"error: ONNX Runtime fails on {case}: {e}")
        np.savez(out / f"ref_{case}.npz", **feeds,
                 **{o.name: v for o, v in zip(model.outputs, outputs)})
        entry = {"name": case, "shapes": {k: list(v.shape) for k, v in feeds.items()}}
        if model.text:
            entry["lengths"] = [int(n) for n in lengths]
            entry["real_fraction"] = sum(lengths) / (batch * seq)
        info["cases"].append(entry)
        print(case)
    (out / "cases.json").write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
