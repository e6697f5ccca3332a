"""Turns the raw results of scripts/bench.sh into a markdown report on stdout.

Usage: report.py DIR, where DIR (target/bench) holds what bench.sh wrote:
  machine.txt                       key=value lines: CPU, date, runs, warm-up, threads, ...
  minilm-l6/compile.log             tcc compile's output (its last lines say why it failed)
  minilm-l6/CASE.ort.json           ort_bench.py's line
  minilm-l6/CASE.tcc.txt            tcc bench's output; its last line holds the times
  minilm-l6/CASE.tcc-out.npz        tcc run's outputs, compared with MODELS/minilm-l6/ref_CASE.npz
  families/MODEL/cases.json         make_inputs.py's account of the inputs of tests/zoo/MODEL
                                    (inputs.log says why they could not be made)
  families/MODEL/ref_CASE.npz       those inputs and ONNX Runtime's outputs on them
  families/MODEL/compile.log        tcc compile's output; compile-rp.log with --remove-padding
  families/MODEL/CASE.ort.json      ort_bench.py's line
  families/MODEL/CASE.tcc.txt       tcc bench's output (CASE.tcc-rp.txt: --remove-padding)
  families/MODEL/CASE.tcc-out.npz   tcc run's outputs (CASE.tcc-rp-out.npz: --remove-padding)
  gemm_bench.txt                    crates/codegen's gemm_bench output
  blas.json                         blas_bench.py's line
A missing or unreadable result becomes a row marked missing, with the reason where known.
"""

import json
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

CASES = ["b1_s128", "b1_s512", "b8_padded"]
# The targets: tcc at least as fast as ONNX Runtime on these cases.
SPEED_TARGET_CASES = {"b1_s128", "b1_s512"}
# The GEMM target: at 1024 cubed, at least this fraction of the FMA peak, and level
# with the BLAS, read as at least this fraction of numpy's GFLOP/s.
GEMM_PEAK_TARGET = 0.80
GEMM_BLAS_TARGET = 0.95

# Across families, tcc's outputs are flagged when they are further than this from ONNX
# Runtime's, relative to max(1, max|ORT|) (`tcc run --expected`'s default tolerance).
FAMILY_TOLERANCE = 1e-4

TCC_LINE = re.compile(
    r"^tcc bench: runs=(\d+) threads=(\d+) min=([\d.]+) median=([\d.]+) max=([\d.]+) ms$"
)
PEAK_LINE = re.compile(r"^(\S+) \((\S+), (\d+) lanes\): FMA peak ([\d.]+) GFLOP/s per core")
GEMM_LINE = re.compile(r"^\s+(\d+)\^3\s+(\d+) threads?\s+([\d.]+) GFLOP/s")


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def last_lines(path: Path, n: int = 2) -> str:
    text = read_text(path) or ""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    return " / ".join(lines[-n:]) if lines else "no output"


def read_json(path: Path) -> dict | None:
    text = read_text(path)
    if not text or not text.strip():
        return None
    try:
        return json.loads(text.strip().splitlines()[-1])
    except json.JSONDecodeError:
        return None


def read_json_file(path: Path) -> dict | None:
    """A whole JSON file (read_json reads the last line of a JSON-lines output)."""
    text = read_text(path)
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def max_diff(got_path: Path, ref_path: Path) -> str:
    """The largest |tcc - reference| over the outputs both archives hold, as text."""
    try:
        got, ref = np.load(got_path), np.load(ref_path)
    except OSError:
        return "—"
    worst = None
    for name in got.files:
        if name not in ref.files:
            continue
        a, b = got[name], ref[name]
        if a.shape != b.shape:
            return f"shape {list(a.shape)} ≠ {list(b.shape)}"
        d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))
        worst = d if worst is None else max(worst, d)
    return "—" if worst is None else f"{worst:.1e}"


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def read_tcc(path: Path) -> dict | None:
    """The times of a `tcc bench` output file, from its last line."""
    text = read_text(path)
    if not text or not text.strip():
        return None
    m = TCC_LINE.match(text.strip().splitlines()[-1])
    if not m:
        return None
    return {
        "threads": int(m.group(2)),
        "min": float(m.group(3)),
        "median": float(m.group(4)),
        "max": float(m.group(5)),
    }


def minilm_section(d: Path, machine: dict) -> list[str]:
    compile_ok = (d / "minilm-l6" / "minilm-l6.so").exists()
    compile_reason = None if compile_ok else last_lines(d / "minilm-l6" / "compile.log")
    threads = machine.get("threads", "2")
    lines = [
        f"### minilm-l6, {threads} threads (median of {machine.get('runs', '?')} runs after "
        f"{machine.get('warmup', '?')} warm-up runs)",
        "",
        "| case | inputs | ONNX Runtime median ms (min–max) | tcc median ms (min–max) "
        "| tcc / ORT | target | tcc without e-graph, median ms | its / ORT "
        "| tcc max abs diff vs reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for case in CASES:
        ort = read_json(d / "minilm-l6" / f"{case}.ort.json")
        tcc = read_tcc(d / "minilm-l6" / f"{case}.tcc.txt")
        inputs = (
            ", ".join(f"{k} {v}" for k, v in sorted(ort["inputs"].items()) if k == "input_ids")
            if ort
            else "—"
        )
        ort_cell = (
            f"{ms(ort['median_ms'])} ({ms(ort['min_ms'])}–{ms(ort['max_ms'])})"
            if ort
            else "missing"
        )
        if tcc:
            tcc_cell = f"{ms(tcc['median'])} ({ms(tcc['min'])}–{ms(tcc['max'])})"
        elif not compile_ok:
            tcc_cell = "missing (tcc compile failed)"
        else:
            tcc_cell = "missing (tcc bench failed)"
            notes.append(
                f"- tcc bench on {case}: "
                + last_lines(d / "minilm-l6" / f"{case}.tcc.log")
            )
        if not ort:
            notes.append(
                f"- ONNX Runtime on {case}: " + last_lines(d / "minilm-l6" / f"{case}.ort.log")
            )
        ratio = tcc["median"] / ort["median_ms"] if tcc and ort else None
        if case in SPEED_TARGET_CASES:
            target = "tcc/ORT ≤ 0.8: " + (
                "—" if ratio is None else ("met" if ratio <= 0.8 else "not met")
            )
        else:
            target = "(none)"
        plain = read_tcc(d / "minilm-l6" / f"{case}.tcc-plain.txt")
        plain_cell = ms(plain["median"]) if plain else "missing"
        plain_ratio = (
            f"{plain['median'] / ort['median_ms']:.2f}" if plain and ort else "—"
        )
        diff = max_diff(
            d / "minilm-l6" / f"{case}.tcc-out.npz",
            Path(machine.get("models", "")) / "minilm-l6" / f"ref_{case}.npz",
        )
        lines.append(
            f"| {case} | {inputs} | {ort_cell} | {tcc_cell} | "
            f"{'—' if ratio is None else f'{ratio:.2f}'} | {target} | {plain_cell} | "
            f"{plain_ratio} | {diff} |"
        )
        if tcc and str(tcc["threads"]) != str(threads):
            notes.append(f"- tcc ran {case} on {tcc['threads']} threads, not {threads}.")
    if compile_reason:
        notes.insert(0, f"- `tcc compile` of minilm-l6 failed: {compile_reason}")
    explain = [
        l for l in (read_text(d / "minilm-l6" / "compile.log") or "").splitlines()
        if l.startswith("tcc explain:")
    ]
    if explain:
        notes.insert(0, f"- the optimiser on minilm-l6: `{explain[-1]}`")
    if notes:
        lines += ["", *notes]
    return lines


def relative_diff(got_path: Path, ref_path: Path, real_only: bool = False) -> str:
    """The largest |tcc - ONNX Runtime| over the outputs both archives hold, relative to
    max(1, max|ONNX Runtime|) per output, as text, flagged beyond FAMILY_TOLERANCE. With
    real_only, only the real tokens' rows (attention_mask 1) of outputs laid out [batch, seq,
    ...] count: --remove-padding writes zeros at the padded positions."""
    try:
        got, ref = np.load(got_path), np.load(ref_path)
    except (OSError, ValueError, zipfile.BadZipFile):
        return "missing (tcc run failed)"
    mask = ref["attention_mask"] == 1 if real_only and "attention_mask" in ref.files else None
    worst = None
    for name in got.files:
        if name not in ref.files:
            continue
        a, b = got[name].astype(np.float64), ref[name].astype(np.float64)
        if a.shape != b.shape:
            return f"shape {list(a.shape)} ≠ {list(b.shape)}"
        if mask is not None and a.shape[: mask.ndim] == mask.shape:
            a, b = a[mask], b[mask]
        scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
        d = float(np.max(np.abs(a - b), initial=0.0)) / scale
        worst = d if worst is None else max(worst, d)
    if worst is None:
        return "— (no output in common)"
    return f"{worst:.1e}" + (f" **> {FAMILY_TOLERANCE:.0e}**" if worst > FAMILY_TOLERANCE else "")


def ms_range(median: float, low: float, high: float) -> str:
    """A median (min–max) in milliseconds, to the µs `tcc bench` prints."""
    return f"{ms(median)} ({ms(low)}–{ms(high)})"


def families_section(d: Path, machine: dict) -> list[str]:
    models = machine.get("families", "").split()
    threads = machine.get("threads", "2")
    lines = [
        f"### Across families: tests/zoo, {threads} threads (median of "
        f"{machine.get('runs', '?')} runs after {machine.get('warmup', '?')} warm-up runs)",
        "",
    ]
    if not models:
        return lines + ["No model was benchmarked across families (FAMILIES was empty)."]
    lines += [
        "| model | case | inputs | ONNX Runtime median ms (min–max) | tcc median ms (min–max) "
        "| ORT / tcc | tcc `--remove-padding` median ms (min–max) | ORT / `--remove-padding` "
        "| tcc max diff vs ORT "
        "| `--remove-padding` max diff vs ORT (real tokens) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for model in models:
        m = d / "families" / model
        info = read_json_file(m / "cases.json")
        if info is None:
            lines.append(f"| {model} | — | missing | missing | missing |" + " — |" * 5)
            notes.append(f"- {model}: no inputs: {last_lines(m / 'inputs.log')}")
            continue
        if "seq" in info:
            padded = [c for c in info["cases"] if "_padded" in c["name"]]
            note = f"- {model}: {info['seq_note']}; token ids in [2, {info['vocab']})"
            if padded:
                note += (
                    f"; padded batch lengths {', '.join(map(str, padded[0]['lengths']))} of "
                    f"{info['seq']} ({100 * padded[0]['real_fraction']:.0f}% real tokens)"
                )
            notes.append(note + ".")
        compiled = (m / f"{model}.so").exists()
        if not compiled:
            notes.append(f"- `tcc compile` of {model} failed: {last_lines(m / 'compile.log')}")
        rp_log = read_text(m / "compile-rp.log") or ""
        rp_compiled = (m / f"{model}-rp.so").exists()
        rp_refused = "cannot remove padding" in rp_log
        if rp_refused:
            reason = next(
                (l.strip() for l in rp_log.splitlines() if "cannot remove padding" in l),
                last_lines(m / "compile-rp.log"),
            )
            reason = reason.split("cannot remove padding:", 1)[-1].strip()
            notes.append(f"- tcc refuses `--remove-padding` for {model}: {reason}")
        elif rp_log and not rp_compiled:
            notes.append(
                f"- `tcc compile --remove-padding` of {model} failed: "
                + last_lines(m / "compile-rp.log")
            )
        for case in info["cases"]:
            name = case["name"]
            padded = "_padded" in name
            first = info["inputs"][0] if info["inputs"] else None
            inputs = f"{first} {case['shapes'][first]}" if first else "—"
            if padded:
                inputs += f", {100 * case['real_fraction']:.0f}% real"
            ort = read_json(m / f"{name}.ort.json")
            tcc = read_tcc(m / f"{name}.tcc.txt")
            ref = m / f"ref_{name}.npz"
            if not ort:
                notes.append(
                    f"- ONNX Runtime on {model} {name}: " + last_lines(m / f"{name}.ort.log")
                )
            ort_cell = (
                ms_range(ort["median_ms"], ort["min_ms"], ort["max_ms"]) if ort else "missing"
            )
            if tcc:
                tcc_cell = ms_range(tcc["median"], tcc["min"], tcc["max"])
            elif not compiled:
                tcc_cell = "missing (tcc compile failed)"
            else:
                tcc_cell = "missing (tcc bench failed)"
                notes.append(
                    f"- tcc bench on {model} {name}: " + last_lines(m / f"{name}.tcc.log")
                )
            ratio = f"{ort['median_ms'] / tcc['median']:.2f}" if tcc and ort else "—"
            diff = relative_diff(m / f"{name}.tcc-out.npz", ref) if compiled else "—"
            if compiled and diff.startswith("missing"):
                notes.append(
                    f"- tcc run on {model} {name}: " + last_lines(m / f"{name}.tcc-run.log")
                )
            rp_cell, rp_ratio, rp_diff = "", "", ""
            if padded:
                rp = read_tcc(m / f"{name}.tcc-rp.txt")
                rp_ratio = f"{ort['median_ms'] / rp['median']:.2f}" if rp and ort else "—"
                if rp:
                    rp_cell = ms_range(rp["median"], rp["min"], rp["max"])
                elif rp_refused:
                    rp_cell = "refused"
                elif not rp_compiled:
                    rp_cell = "missing (tcc compile failed)"
                else:
                    rp_cell = "missing (tcc bench failed)"
                    notes.append(
                        f"- tcc bench (--remove-padding) on {model} {name}: "
                        + last_lines(m / f"{name}.tcc-rp.log")
                    )
                if rp_compiled:
                    rp_diff = relative_diff(m / f"{name}.tcc-rp-out.npz", ref, real_only=True)
                    if rp_diff.startswith("missing"):
                        notes.append(
                            f"- tcc run (--remove-padding) on {model} {name}: "
                            + last_lines(m / f"{name}.tcc-rp-run.log")
                        )
                else:
                    rp_diff = "—"
            lines.append(
                f"| {model} | {name} | {inputs} | {ort_cell} | {tcc_cell} | {ratio} | "
                f"{rp_cell} | {rp_ratio} | {diff} | {rp_diff} |"
            )
            for t in (tcc, read_tcc(m / f"{name}.tcc-rp.txt")):
                if t and str(t["threads"]) != str(threads):
                    notes.append(
                        f"- tcc ran {model} {name} on {t['threads']} threads, not {threads}."
                    )
    lines += [
        "",
        "ORT / tcc above 1: tcc is faster. The inputs are scripts/bench/make_inputs.py's "
        "(seeded): token ids uniform in the vocabulary, the pad id at padded positions, pixel "
        "values standard normal; the reference is ONNX Runtime's outputs on them. Max diff: the "
        "largest |tcc - ONNX Runtime| over the outputs, relative to max(1, max|ONNX Runtime|), "
        f"flagged beyond {FAMILY_TOLERANCE:.0e}; with `--remove-padding`, at the real tokens "
        "only (the padded positions' outputs are zeros).",
    ]
    if notes:
        lines += ["", *notes]
    return lines


def gemm_section(d: Path) -> list[str]:
    text = read_text(d / "gemm_bench.txt") or ""
    paths = []  # (name, cpu, lanes, peak, {(size, threads): gflops})
    for line in text.splitlines():
        if m := PEAK_LINE.match(line):
            paths.append((m.group(1), m.group(2), int(m.group(3)), float(m.group(4)), {}))
        elif (m := GEMM_LINE.match(line)) and paths:
            paths[-1][4][(int(m.group(1)), int(m.group(2)))] = float(m.group(3))
    blas = read_json(d / "blas.json")
    numpy = {(r["size"], r["threads"]): r["gflops"] for r in blas["results"]} if blas else {}

    lines = [
        "### f32 GEMM, N x N x N (GFLOP/s = 2 N³ / best time)",
        "",
    ]
    if not paths:
        lines.append(
            "tcc's GEMM and the FMA peak: missing (gemm_bench did not run: "
            + last_lines(d / "gemm_bench.build.log")
            + " / "
            + last_lines(d / "gemm_bench.log")
            + ")."
        )
        lines.append("")
    for name, cpu, lanes, peak, _ in paths:
        lines.append(
            f"- tcc `{name}` path ({cpu}, {lanes} f32 lanes): measured FMA peak "
            f"**{peak:.1f} GFLOP/s per core**."
        )
    if blas:
        for pool in blas["blas"]:
            lines.append(
                f"- numpy {blas['numpy']}: {pool.get('internal_api')} {pool.get('version')} "
                f"({pool.get('prefix')}), threading {pool.get('threading_layer')}, kernel "
                f"architecture **{pool.get('architecture')}** (threadpoolctl)"
                + (f"; environment {blas['env']}" if blas.get("env") else "")
                + "."
            )
    else:
        lines.append(
            "- numpy's BLAS: missing (" + last_lines(d / "blas.log") + ")."
        )
    lines += [
        "",
        "| N | threads | peak (threads × core) | "
        + " | ".join(f"tcc {name} | % of peak" for name, *_ in paths)
        + (" | " if paths else "")
        + "numpy | tcc/numpy | target (1024: ≥ 80% of peak; ≥ 0.95 × numpy) |",
        "|---|---|---|" + "---|---|" * len(paths) + "---|---|---|",
    ]
    for size in (256, 512, 1024):
        for threads in (1, 2):
            cells = [str(size), str(threads)]
            host_peak = paths[0][3] * threads if paths else None
            cells.append("—" if host_peak is None else f"{host_peak:.1f}")
            for _, _, _, peak, rows in paths:
                g = rows.get((size, threads))
                cells.append("missing" if g is None else f"{g:.1f}")
                cells.append("—" if g is None else f"{100 * g / (peak * threads):.1f}%")
            n = numpy.get((size, threads))
            cells.append("missing" if n is None else f"{n:.1f}")
            first = paths[0][4].get((size, threads)) if paths else None
            cells.append("—" if first is None or n is None else f"{first / n:.2f}")
            if size == 1024 and first is not None and host_peak:
                peak_ok = first / host_peak >= GEMM_PEAK_TARGET
                cell = "peak: " + ("met" if peak_ok else "not met")
                if n is not None:
                    cell += "; BLAS: " + ("met" if first / n >= GEMM_BLAS_TARGET else "not met")
                cells.append(cell)
            else:
                cells.append("")
            lines.append("| " + " | ".join(cells) + " |")
    if paths:
        lines += [
            "",
            f"tcc/numpy and the target use the `{paths[0][0]}` path; its peak is the one in the "
            "peak column.",
        ]
    return lines


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: report.py DIR")
    d = Path(sys.argv[1])
    machine = {}
    for line in (read_text(d / "machine.txt") or "").splitlines():
        key, _, value = line.partition("=")
        machine[key] = value
    ort = next(
        (
            j
            for p in [*(d / "minilm-l6" / f"{c}.ort.json" for c in CASES),
                      *sorted(d.glob("families/*/*.ort.json"))]
            if (j := read_json(p))
        ),
        None,
    )
    out = [
        f"## tcc benchmarks: {machine.get('cpu', 'unknown CPU')}, {machine.get('date', '?')}",
        "",
        f"One machine's figures: {machine.get('cpu', '?')} ({machine.get('cpu_id', '?')}; "
        f"{machine.get('cpu_flags', '?')}), {machine.get('logical_cpus', '?')} "
        f"logical CPUs, Linux {machine.get('kernel', '?')}; {machine.get('tcc', 'tcc')} at "
        f"commit {machine.get('commit', '?')}"
        + (f"; ONNX Runtime {ort['version']}" if ort else "")
        + ".",
        "",
        *minilm_section(d, machine),
        "",
        *families_section(d, machine),
        "",
        *gemm_section(d),
    ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
