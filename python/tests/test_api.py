"""tcc's Python API on compiled libraries: compile, load, the interface, the forms of run,
results against ONNX Runtime's, inputs read in place or converted."""

import subprocess
import sys

import numpy as np
import onnxruntime as ort

import tcc
from tcc_test_support import REPO, TINY, close, shared


def test_the_package_imports_and_says_its_version():
    assert tcc.__version__.count(".") == 2
    for name in tcc.__all__:
        assert hasattr(tcc, name), name
    assert issubclass(tcc.RunError, RuntimeError)
    assert issubclass(tcc.LoadError, OSError)


def test_the_compiler_is_this_one():
    out = subprocess.run([str(tcc.compiler()), "--version"], capture_output=True, text=True)
    assert out.stdout.startswith("tcc "), out.stdout


def test_compile_writes_the_library_and_its_header(libs):
    so = tcc.compile(TINY / "model.onnx", libs / "enc.so", prefix="enc",
                     target_cpu="x86-64-v3", hint={"seq": 64})
    assert so == libs / "enc.so" and so.is_file()
    assert "enc_run" in (libs / "enc.h").read_text()
    m = tcc.load(so)
    assert m.prefix == "enc"


def test_compile_emits_the_optimised_ir(libs):
    ir = tcc.compile(TINY / "model.onnx", libs / "tiny.ir", emit="ir", no_reassociate=True)
    text = ir.read_text()
    assert "attention" in text and "layer_norm" in text, text[:500]


def test_compile_prints_its_progress_only_when_asked(libs, capsys):
    tcc.compile(TINY / "model.onnx", libs / "quiet.so")
    assert capsys.readouterr().err == ""
    tcc.compile(TINY / "model.onnx", libs / "loud.so", verbose=True, time_passes=True)
    err = capsys.readouterr().err
    assert "egraph" in err, err


def test_the_interface_has_names_numpy_dtypes_and_symbolic_shapes(tiny_so):
    m = tcc.load(tiny_so, threads=1)
    assert [i.name for i in m.inputs] == ["input_ids", "attention_mask"]
    for i in m.inputs:
        assert i.dtype == np.int64 and i.shape == ("batch", "seq") and i.tcc_dtype == "i64"
    (out,) = m.outputs
    assert (out.name, out.dtype, out.shape) == ("last_hidden_state", np.float32, ("batch", "seq", 32))
    assert repr(out) == "last_hidden_state: f32[batch, seq, 32]"
    assert m.threads == 1 and m.sessions == 1 and m.path == tiny_so
    assert "tiny.so" in repr(m)


def test_every_form_of_run_gives_onnx_runtime_outputs(tiny_so, tiny_case):
    inputs, expected = tiny_case
    m = tcc.load(tiny_so, threads=2)
    as_dict = m.run(inputs)
    assert list(as_dict) == ["last_hidden_state"]
    close(as_dict["last_hidden_state"], expected)
    (as_list,) = m.run(None, inputs)
    (named,) = m.run(["last_hidden_state"], inputs)
    called = m(**inputs)["last_hidden_state"]
    for other in (as_list, named, called):
        np.testing.assert_array_equal(other, as_dict["last_hidden_state"])


def test_minilm_matches_onnx_runtime_references(minilm_so):
    m = tcc.load(minilm_so, threads=2)
    for case in ("sentences", "b3_s17", "b8_padded"):
        ref = np.load(shared("models", "minilm-l6", f"ref_{case}.npz"))
        feeds = {i.name: ref[i.name] for i in m.inputs}
        (hidden,) = m.run(None, feeds)
        close(hidden, ref["last_hidden_state"])


def test_switching_from_onnxruntime_is_one_line(minilm_so):
    model = shared("models", "minilm-l6", "model.onnx")
    ref = np.load(shared("models", "minilm-l6", "ref_b3_s17.npz"))
    feeds = {k: ref[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    want = session.run(None, feeds)
    session = tcc.load(minilm_so)  # the one line that changes
    got = session.run(None, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        close(g, w)


def test_outputs_are_new_writable_arrays(tiny_so, tiny_case):
    inputs, _ = tiny_case
    m = tcc.load(tiny_so, threads=1)
    first = m.run(inputs)["last_hidden_state"]
    kept = first.copy()
    assert first.flags.writeable and first.flags.c_contiguous
    first[...] = 0  # writing to a result touches nothing of the library's
    second = m.run(inputs)["last_hidden_state"]
    np.testing.assert_array_equal(second, kept)


def test_right_arrays_are_read_in_place_and_others_converted(tiny_so, tiny_case):
    inputs, expected = tiny_case
    m = tcc.load(tiny_so, threads=1)
    info = m.inputs[0]
    ids = inputs["input_ids"]
    assert tcc._as_input(info, ids) is ids  # C-contiguous int64: no copy
    # Converted copies: int32 ids, a Fortran-order array, nested lists.
    as_i32 = ids.astype(np.int32)
    converted = tcc._as_input(info, as_i32)
    assert converted.dtype == np.int64 and converted is not as_i32
    fortran = np.asfortranarray(ids)
    assert tcc._as_input(info, fortran).flags.c_contiguous
    for feeds in (
        {k: v.astype(np.int32) for k, v in inputs.items()},
        {k: np.asfortranarray(v) for k, v in inputs.items()},
        {k: v.tolist() for k, v in inputs.items()},
    ):
        close(m.run(feeds)["last_hidden_state"], expected)
    # A strided view (every other sequence) is copied and gives those sequences' outputs.
    view = {k: v[::2] for k, v in inputs.items()}
    close(m.run(view)["last_hidden_state"], expected[::2])


def test_an_empty_batch_runs(tiny_so):
    m = tcc.load(tiny_so, threads=1)
    empty = np.zeros((0, 5), dtype=np.int64)
    out = m.run({"input_ids": empty, "attention_mask": empty})["last_hidden_state"]
    assert out.shape == (0, 5, 32)


def test_the_package_runs_in_a_fresh_interpreter(tiny_so):
    code = ("import tcc, numpy as np; m = tcc.load(%r); "
            "x = np.ones((1, 4), np.int64); "
            "print(m.run(None, {'input_ids': x, 'attention_mask': x})[0].shape)") % str(tiny_so)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 4, 32)"
