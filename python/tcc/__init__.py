"""tcc from Python: compile an ONNX transformer into a native library, load it, run it.

    import tcc
    tcc.compile("model.onnx", "model.so")             # the tcc compiler, options as keywords
    m = tcc.load("model.so", threads=2)
    m.inputs      # [TensorInfo(name='input_ids', dtype=dtype('int64'), shape=('batch', 'seq')), ...]
    out = m.run({"input_ids": ids, "attention_mask": mask})     # {name: numpy array}
    hidden, = m.run(None, {"input_ids": ids, "attention_mask": mask})  # onnxruntime's order
    out = m(input_ids=ids, attention_mask=mask)

Runs go through the model library's C API (the `tcc-model` Rust crate underneath):

- Inputs that are C-contiguous numpy arrays of the model's dtype are read in place, with no
  copy. Anything else is converted first, in a copy: lists and other sequences, arrays that
  are not C-contiguous (slices, transposes), and arrays of another dtype of the same kind
  that numpy casts without surprises (int32 token ids for an int64 input, float64 for
  float32). A dtype of another kind (floats for token ids) is a TypeError.
- The GIL is released for the whole run, so other Python threads go on meanwhile.
- Each output is a new numpy array, copied once from the session's buffer.
- A Model may be used from any number of threads at once. It holds `sessions` sessions
  (default 1), each running one call at a time on `threads` threads; a call takes a free
  session, waiting (without the GIL) while all are busy. For concurrent calls, give
  `sessions=N`; for one call at a time on all cores, the default.

Errors: TypeError for a wrong dtype, ValueError for a missing or unknown input name or a
wrong rank or dims (with the model's own message, naming the input), FileNotFoundError for
a library that does not exist, tcc.LoadError for a file that is not a model library,
tcc.RunError for a run refused for another reason (a token id out of range),
tcc.CompileError for a failed compile.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _tcc
from ._tcc import LoadError, RunError

__all__ = [
    "compile",
    "load",
    "Model",
    "TensorInfo",
    "CompileError",
    "LoadError",
    "RunError",
    "compiler",
]
__version__ = _tcc.__version__

PathLike = Union[str, "os.PathLike[str]"]


class TensorInfo(NamedTuple):
    """A model input or output: its name, numpy dtype and shape.

    Each entry of `shape` is an int (a fixed size), a str (a symbol such as "batch", bound
    by the inputs' sizes at each run) or None (an output size computed from several
    symbols, such as past + seq). `tcc_dtype` is tcc's name of the dtype ("f32", "i64";
    "bf16" tensors travel as their uint16 bits).
    """

    name: str
    dtype: np.dtype
    shape: Tuple[Union[int, str, None], ...]
    tcc_dtype: str

    def __repr__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.tcc_dtype}[{dims}]"


def _info(raw) -> TensorInfo:
    name, numpy_dtype, tcc_dtype, dims = raw
    shape = tuple(size if size >= 0 else symbol for size, symbol in dims)
    return TensorInfo(name, np.dtype(numpy_dtype), shape, tcc_dtype)


class Model:
    """A compiled model library, loaded (see `tcc.load`)."""

    def __init__(self, path: PathLike, threads: int = 0, sessions: int = 1,
                 prefix: Optional[str] = None):
        if not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be 0 (the library's default) or more, not {threads!r}")
        if not isinstance(sessions, int) or sessions < 1:
            raise ValueError(f"sessions must be 1 or more, not {sessions!r}")
        self._lib = _tcc.Library(os.fspath(path), threads, sessions, prefix)
        self.inputs: List[TensorInfo] = [_info(i) for i in self._lib.inputs()]
        self.outputs: List[TensorInfo] = [_info(o) for o in self._lib.outputs()]
        self._input_names = [i.name for i in self.inputs]
        self._output_index = {o.name: k for k, o in enumerate(self.outputs)}

    @property
    def path(self) -> Path:
        """The library's path."""
        return Path(self._lib.path)

    @property
    def prefix(self) -> str:
        """The prefix of the library's C functions (PREFIX_run, ...)."""
        return self._lib.prefix

    @property
    def threads(self) -> int:
        """The threads each session runs on."""
        return self._lib.threads

    @property
    def sessions(self) -> int:
        """How many runs can go at once."""
        return self._lib.sessions

    def __repr__(self) -> str:
        ins = ", ".join(map(repr, self.inputs))
        outs = ", ".join(map(repr, self.outputs))
        return f"<tcc.Model {str(self.path)!r} ({ins}) -> ({outs}), {self.sessions} x {self.threads} threads>"

    def _arrays(self, feeds: Mapping[str, Any]) -> List[np.ndarray]:
        if not isinstance(feeds, Mapping):
            raise TypeError(f"the inputs must be a dict of name to array, not {type(feeds).__name__}")
        for name in feeds:
            if name not in self._input_names:
                raise ValueError(f"`{name}` is not an input of the model; its inputs are "
                                 f"{', '.join(self._input_names)}")
        arrays = []
        for info in self.inputs:
            if info.name not in feeds:
                given = ", ".join(feeds) or "nothing"
                raise ValueError(f"the model's input `{info.name}` ({info!r}) is missing; given: {given}")
            arrays.append(_as_input(info, feeds[info.name]))
        return arrays

    def run(self, output_names_or_feeds=None, feeds: Optional[Mapping[str, Any]] = None):
        """Runs the model once.

        run(feeds) returns a dict of output name to array. run(None, feeds) returns the
        outputs as a list in the model's order, and run(["name", ...], feeds) those outputs
        in that order, as onnxruntime's InferenceSession.run does.
        """
        if feeds is None:
            if output_names_or_feeds is None:
                raise TypeError("run() needs the inputs: run(feeds) or run(None, feeds)")
            outputs = self._lib.run(self._arrays(output_names_or_feeds))
            return {o.name: a for o, a in zip(self.outputs, outputs)}
        wanted = output_names_or_feeds
        if wanted is not None:
            if isinstance(wanted, str):
                raise TypeError("output names must be a list of names, not a str")
            wanted = list(wanted)
            for name in wanted:
                if name not in self._output_index:
                    raise ValueError(f"`{name}` is not an output of the model; its outputs are "
                                     f"{', '.join(self._output_index)}")
        outputs = self._lib.run(self._arrays(feeds))
        if wanted is None:
            return list(outputs)
        return [outputs[self._output_index[name]] for name in wanted]

    def __call__(self, **feeds):
        """m(input_ids=..., attention_mask=...): run(feeds), a dict of outputs."""
        return self.run(feeds)


def _as_input(info: TensorInfo, value: Any) -> np.ndarray:
    """The array the library reads for `info`: `value` itself when it is a C-contiguous array
    of the model's dtype, else a converted copy (TypeError where no safe conversion is)."""
    want = info.dtype
    if isinstance(value, np.ndarray):
        array = value
    else:
        try:
            array = np.asarray(value)
        except Exception as e:  # a ragged list, an object numpy cannot read
            raise TypeError(f"input `{info.name}` ({info!r}) cannot be read as an array: {e}") from e
    if array.dtype != want:
        if info.tcc_dtype == "bf16":
            raise TypeError(f"input `{info.name}` is bf16: give its bits as a uint16 array, "
                            f"not {array.dtype}")
        if array.dtype == object or not np.can_cast(array.dtype, want, casting="same_kind"):
            raise TypeError(f"input `{info.name}` is {array.dtype}, but the model takes {info!r} "
                            f"({want}), and {array.dtype} does not convert to it safely")
        array = array.astype(want)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return array


def load(path: PathLike, threads: int = 0, sessions: int = 1, prefix: Optional[str] = None) -> Model:
    """Loads a compiled model library.

    threads: threads per session, the caller's included (0: the library's default,
    TCC_NUM_THREADS or the physical cores). sessions: how many runs may go at once from
    different Python threads. prefix: the prefix of its C functions, only for a library
    with several models linked in.
    """
    return Model(path, threads=threads, sessions=sessions, prefix=prefix)


class CompileError(Exception):
    """tcc could not compile the model; the message is the compiler's."""

    def __init__(self, message: str, stderr: str = "", returncode: Optional[int] = None):
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


_VERSION_LINE = re.compile(r"^tcc \d+\.\d+\.\d+")


def _is_tcc(path: Path) -> bool:
    """Whether `path` is this compiler (not, say, the Tiny C Compiler, also called tcc)."""
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(_VERSION_LINE.match(out.stdout.strip()))


_compiler: Optional[Path] = None


def compiler() -> Path:
    """The tcc compiler `compile` runs: $TCC_COMPILER if set; else `tcc` beside this Python
    (the environment's bin/, where scripts/setup.sh puts it); else the release build of the
    checkout this package was built from (target/release/tcc); else a `tcc` on PATH that
    answers `--version` as this compiler does."""
    global _compiler
    if _compiler is not None:
        return _compiler
    explicit = os.environ.get("TCC_COMPILER")
    if explicit:
        if not _is_tcc(Path(explicit)):
            raise CompileError(f"TCC_COMPILER={explicit} is not the tcc compiler "
                               f"(`{explicit} --version` did not answer `tcc X.Y.Z`)")
        _compiler = Path(explicit)
        return _compiler
    candidates = [
        Path(sys.prefix) / "bin" / "tcc",
        Path(_tcc.SOURCE_DIR) / "target" / "release" / "tcc",
    ]
    on_path = shutil.which("tcc")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and _is_tcc(candidate):
            _compiler = candidate.resolve()
            return _compiler
    raise CompileError(
        "the tcc compiler was not found: set TCC_COMPILER to its path, or build it "
        "(`bash scripts/setup.sh` in the tcc checkout puts it in the environment it makes); "
        f"looked at {', '.join(map(str, candidates))}")


_options: Optional[Dict[str, bool]] = None


def _compile_options() -> Dict[str, bool]:
    """The long options of `tcc compile`, read from its --help: name -> takes a value."""
    global _options
    if _options is None:
        out = subprocess.run([str(compiler()), "compile", "--help"], capture_output=True,
                             text=True, check=True)
        found = {}
        for m in re.finditer(r"^\s+(?:-\w, )?--([a-z0-9-]+)(\[?[=\s]<[^>]+>)?", out.stdout, re.M):
            found[m.group(1)] = bool(m.group(2))
        _options = found
    return _options


def _arguments(options: Mapping[str, Any]) -> List[str]:
    """Command-line arguments for keyword options: `target_cpu="x86-64-v3"` is
    `--target-cpu x86-64-v3`, `one_form=True` is `--one-form` (False leaves it out),
    `hint={"seq": 4096}` is `--hint seq=4096`, a list repeats the option
    (`disable_pass=["egraph"]`), and `remove_padding=True` or `="NAME"` is
    `--remove-padding[=NAME]`."""
    known = _compile_options()
    args: List[str] = []
    for key, value in options.items():
        flag = key.replace("_", "-")
        if flag not in known or flag in ("help", "version", "output"):
            names = sorted(k.replace("-", "_") for k in known if k not in ("help", "version", "output"))
            raise TypeError(f"compile() got an unexpected keyword argument {key!r}; "
                            f"the options are: {', '.join(names)}")
        if value is None or value is False:
            continue
        takes_value = known[flag]
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, Mapping):
                v = ",".join(f"{k}={x}" for k, x in v.items())
            if v is True:
                if flag == "remove-padding" or not takes_value:
                    args.append(f"--{flag}")
                    continue
                raise TypeError(f"compile() option {key!r} takes a value, not True")
            if not takes_value:
                raise TypeError(f"compile() option {key!r} is a switch: give True or False, not {v!r}")
            if flag == "remove-padding":
                args.append(f"--{flag}={v}")
            else:
                args.extend([f"--{flag}", os.fspath(v) if isinstance(v, os.PathLike) else str(v)])
    return args


def compile(model: PathLike, output: PathLike, *, verbose: bool = False, **options) -> Path:
    """Compiles the ONNX model `model` into the shared library `output` (and its C header
    beside it), as `tcc compile MODEL -o OUTPUT` does; returns the output path.

    Every option of `tcc compile` is a keyword argument (see `tcc compile --help`), its
    dashes as underscores: target_cpu="x86-64-v3", prefix="bert", hint={"seq": 4096},
    remove_padding=True, quantize="int8", calibrate="cases.npz", min_cosine=0.995,
    no_reassociate=True, one_form=True, int8_matmul="exact", disable_pass=["egraph"],
    emit="ir" (then `output` receives the IR text), ... An unknown keyword is a TypeError.

    The compiler's progress and reports go to stderr when verbose is true; on failure a
    CompileError carries its message (and .stderr, all it printed). The output is written
    whole or not at all.
    """
    args = [str(compiler()), "compile", os.fspath(model), "-o", os.fspath(output)] + _arguments(options)
    result = subprocess.run(args, capture_output=True, text=True)
    if verbose and result.stderr:
        sys.stderr.write(result.stderr)
    if result.returncode != 0:
        lines = result.stderr.splitlines()
        start = next((k for k, line in enumerate(lines) if line.startswith("error:")), None)
        message = "\n".join(lines[start:]) if start is not None else result.stderr.strip()
        if message.startswith("error: "):
            message = message[len("error: "):]
        raise CompileError(message or f"tcc exited with code {result.returncode}",
                           stderr=result.stderr, returncode=result.returncode)
    return Path(output)
