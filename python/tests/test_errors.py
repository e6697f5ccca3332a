"""Every error of the Python API: the exception type the package documents and a message
that names what is at fault."""

import os

import numpy as np
import pytest

import tcc
from tcc_test_support import TINY


@pytest.fixture(scope="module")
def model(tiny_so):
    return tcc.load(tiny_so, threads=1)


def feeds(batch=2, seq=5, **override):
    x = np.ones((batch, seq), dtype=np.int64)
    base = {"input_ids": x, "attention_mask": x}
    base.update(override)
    return base


def raises(kind, fn, *names):
    with pytest.raises(kind) as info:
        fn()
    message = str(info.value)
    for name in names:
        assert name in message, f"{message!r} does not name {name!r}"
    return message


def test_a_wrong_dtype_is_a_type_error(model):
    raises(TypeError, lambda: model.run(feeds(input_ids=np.ones((2, 5), np.float32))),
           "input_ids", "float32", "i64[batch, seq]")
    raises(TypeError, lambda: model.run(feeds(attention_mask=np.array([["a"] * 5] * 2))),
           "attention_mask")
    raises(TypeError, lambda: model.run(feeds(input_ids=np.empty((2, 5), dtype=object))),
           "input_ids")
    raises(TypeError, lambda: model.run(feeds(input_ids=[[1, 2], [3]])), "input_ids")


def test_wrong_ranks_dims_and_names_are_value_errors(model):
    raises(ValueError, lambda: model.run(feeds(input_ids=np.ones(5, np.int64))),
           "input_ids", "[5]", "i64[batch, seq]")
    raises(ValueError, lambda: model.run(feeds(attention_mask=np.ones((3, 5), np.int64))),
           "attention_mask", "`batch` is 3 here but 2 in input `input_ids`")
    raises(ValueError, lambda: model.run({"input_ids": np.ones((1, 2), np.int64)}),
           "attention_mask", "missing", "input_ids")
    raises(ValueError, lambda: model.run(feeds(token_type_ids=np.ones((2, 5), np.int64))),
           "token_type_ids", "not an input", "input_ids, attention_mask")
    raises(ValueError, lambda: model.run(["pooler_output"], feeds()), "pooler_output",
           "last_hidden_state")


def test_wrong_calls_are_type_errors(model):
    raises(TypeError, lambda: model.run(), "run(feeds)")
    raises(TypeError, lambda: model.run([np.ones((1, 1))]), "dict")
    raises(TypeError, lambda: model.run("last_hidden_state", feeds()), "list")


def test_a_token_id_out_of_range_is_a_run_error_and_the_model_still_works(model):
    bad = feeds(input_ids=np.full((2, 5), 10**9, np.int64))
    raises(tcc.RunError, lambda: model.run(bad), "out of range")
    assert model.run(feeds())["last_hidden_state"].shape == (2, 5, 32)


def test_files_that_are_not_model_libraries(tmp_path, tiny_so):
    raises(FileNotFoundError, lambda: tcc.load(tmp_path / "missing.so"), "missing.so")
    text = tmp_path / "text.so"
    text.write_text("not a library")
    raises(tcc.LoadError, lambda: tcc.load(text), "text.so", "ELF")
    raises(tcc.LoadError, lambda: tcc.load(tmp_path), "directory")
    cut = tmp_path / "cut.so"
    cut.write_bytes(tiny_so.read_bytes()[:5000])
    raises(tcc.LoadError, lambda: tcc.load(cut), "cut.so")
    raises(tcc.LoadError, lambda: tcc.load(tiny_so, prefix="other"), "other_session_create")


def test_bad_load_options(tiny_so):
    raises(ValueError, lambda: tcc.load(tiny_so, threads=-1), "threads")
    raises(ValueError, lambda: tcc.load(tiny_so, sessions=0), "sessions")


def test_compile_errors_carry_the_compilers_message(tmp_path):
    raises(tcc.CompileError, lambda: tcc.compile(tmp_path / "none.onnx", tmp_path / "x.so"),
           "none.onnx", "does not exist")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage")
    message = raises(tcc.CompileError, lambda: tcc.compile(garbage, tmp_path / "g.so"), "garbage.onnx")
    assert not message.startswith("error:")
    assert not (tmp_path / "g.so").exists(), "a failed compile leaves no output"
    raises(tcc.CompileError,
           lambda: tcc.compile(TINY / "model.onnx", tmp_path / "c.so", target_cpu="no-such-cpu"),
           "no-such-cpu")
    try:
        tcc.compile(tmp_path / "none.onnx", tmp_path / "x.so")
    except tcc.CompileError as e:
        assert e.returncode != 0 and "error:" in e.stderr


def test_unknown_or_misused_compile_options_are_type_errors(tmp_path):
    raises(TypeError, lambda: tcc.compile(TINY / "model.onnx", tmp_path / "x.so", bogus=1),
           "bogus", "target_cpu", "hint")
    raises(TypeError, lambda: tcc.compile(TINY / "model.onnx", tmp_path / "x.so", one_form="yes"),
           "one_form")
    raises(TypeError, lambda: tcc.compile(TINY / "model.onnx", tmp_path / "x.so", target_cpu=True),
           "target_cpu")


def test_a_missing_compiler_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(tcc, "_compiler", None)
    monkeypatch.setenv("TCC_COMPILER", "/bin/true")
    raises(tcc.CompileError, lambda: tcc.compile(TINY / "model.onnx", tmp_path / "x.so"),
           "TCC_COMPILER=/bin/true", "not the tcc compiler")
    monkeypatch.setattr(tcc, "_compiler", None)
