"""Our TensorRT code against the REAL TensorRT 10 Python API, without a GPU or TensorRT's native libraries.

``scripts/tensorrt_api_stubs.sh`` puts NVIDIA's real pybind11 bindings (PyPI wheel tensorrt-cu12-bindings) in
``.cache/tensorrt-api`` over stub libnvinfer/libnvonnxparser/libnvinfer_plugin libraries, so the real classes, enums
and signatures can be imported (but no TensorRT object can be created: the stubs return NULL). The checks run in a
subprocess (this file run as a script) so this pytest process never has a ``tensorrt`` module:

a. a static scan (ast) of the TensorRT code: every ``trt.X`` chain exists; every call, read and assignment on a
   variable holding a TensorRT object exists on its real class, calls fit a pybind overload (positional count,
   keyword names), assignments go to writable properties, reads are properties (not uncalled methods);
b. ``make_entropy_calibrator`` subclasses the real ``IInt8EntropyCalibrator2`` and follows the calibrator protocol
   of TensorRT's C++ trampoline (python/src/infer/pyInt8.cpp);
c. the stand-in ``FakeTRT`` of tests/backends/test_tensorrt_code.py offers only real names with real parameter names;
d. the enum members and data types we use exist and ``_torch_dtype`` maps the real ``DataType`` values.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STUBS = REPO / ".cache" / "tensorrt-api"
HINT = "real TensorRT bindings not prepared: run `bash scripts/tensorrt_api_stubs.sh` (needs pip + a C compiler)"
READY = any(STUBS.glob("ready-*"))

SCANNED = (
    "realtime/backends/tensorrt_backend.py",
    "realtime/backends/calibration.py",
    "realtime/backends/engine_cache.py",
    "realtime/backends/build_engine.py",
    "realtime/backends/select.py",
    "realtime/backends/torch2trt_backend.py",
)
# Variables (and attributes: self.context, r.engine) named like this hold objects of this real class.
CLASS_OF_NAME = {
    "builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser", "config": "IBuilderConfig",
    "profile": "IOptimizationProfile", "runtime": "Runtime", "engine": "ICudaEngine",
    "context": "IExecutionContext", "inp": "ITensor", "logger": "ILogger",
}
# Distinct members the scan must find per class (floors below what today's code uses), so that it cannot pass by
# no longer seeing the TensorRT code. "trt.*" counts module-level names, enum members and constructors.
MIN_MEMBERS = {
    "Builder": 3, "INetworkDefinition": 2, "OnnxParser": 2, "IBuilderConfig": 3, "IOptimizationProfile": 1,
    "Runtime": 1, "ICudaEngine": 5, "IExecutionContext": 3, "ITensor": 1, "trt.*": 10,
}
# TensorRT's calibrator protocol: the methods a Python calibrator must override (pyInt8.cpp trampoline).
CALIBRATOR_METHODS = {"get_batch_size", "get_batch", "read_calibration_cache", "write_calibration_cache"}
# Deprecated uses we accept (anything else deprecated fails the test):
# - implicit INT8 calibration (deprecated in 10.1, removed in 11): used only while has_implicit_int8(); without it
#   tensorrt_backend builds from a Q/DQ ONNX;
# - the weak-typing precision flags FP16/INT8 (deprecated in 10.12, "superseded by strong typing"): still honoured
#   by every TensorRT 10 release; strong typing would need an FP16 ONNX graph (open item for TensorRT 11).
ALLOWED_DEPRECATED = {
    "IBuilderConfig.int8_calibrator", "IBuilderConfig.set_calibration_profile", "trt.IInt8EntropyCalibrator2",
    "trt.BuilderFlag.FP16", "trt.BuilderFlag.INT8",
}

# torch2trt() parameters in NVIDIA-AI-IOT/torch2trt master, torch2trt/torch2trt.py @ 4e820ae31b4e (2024-05-03);
# it also takes **kwargs, so a misspelt keyword would be swallowed silently rather than rejected.
TORCH2TRT_PARAMS = {
    "module", "inputs", "input_names", "output_names", "log_level", "fp16_mode", "max_workspace_size",
    "strict_type_constraints", "keep_network", "int8_mode", "int8_calib_dataset", "int8_calib_algorithm", "use_onnx",
    "default_device_type", "dla_core", "gpu_fallback", "device_types", "min_shapes", "max_shapes", "opt_shapes",
    "onnx_opset", "max_batch_size", "avg_timing_iterations",
}

# A snippet with one API mistake per marked line: the scan must flag exactly those lines (it can fail).
BROKEN_SNIPPET = '''
def f(onnx):
    import tensorrt as trt
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0, 1)  # BAD: too many arguments
    config = builder.create_builder_config()
    config.max_workspace_size = 1 << 30  # BAD: removed in TensorRT 10
    config.set_memory_pool_limit(pool=trt.MemoryPoolType.WORKSPACE, size=1)  # BAD: the keyword is pool_size
    parser = trt.OnnxParser(network)  # BAD: needs the logger too
    parser.num_errors = 0  # BAD: read-only property
    n = network.num_inputs()  # BAD: a property, not a method
    engine = trt.Runtime(logger).deserialize_cuda_engine(b"")
    engine.get_binding_index("x")  # BAD: removed in TensorRT 10
    context = engine.create_execution_context()
    context.execute_async_v2([], 0)  # BAD: removed in TensorRT 10
    ok = context.set_input_shape  # BAD: a method read without calling it (always truthy)
    trt.Logger.VERBOSE_PLUS  # BAD: no such enum member
    trt.BuilderFlag.FP16
    profile = builder.create_optimization_profile()
    profile.set_shape("x", (1,), (1,), (1,))
    return n, ok
'''


# ============================================================================ subprocess side: real bindings


def _signatures(func, name: str) -> list[tuple[list[tuple[str, str]], str]]:
    """Overloads of a pybind function from its __doc__ (or inspect for Python ones): [(params, return type)].

    Each param is (name, kind) with kind in {"pos", "pos_only", "kw_only", "opt", "pos_only_opt", "kw_only_opt",
    "*", "**"}. The first param is ``self`` for methods.
    """
    if inspect.isfunction(func) or inspect.ismethod(func):
        params = []
        for p in inspect.signature(func).parameters.values():
            opt = "_opt" if p.default is not inspect.Parameter.empty else ""
            kind = {p.POSITIONAL_ONLY: "pos_only" + opt, p.POSITIONAL_OR_KEYWORD: ("opt" if opt else "pos"),
                    p.KEYWORD_ONLY: "kw_only" + opt, p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}[p.kind]
            params.append((p.name, kind))
        return [(params, "")]
    doc = getattr(func, "__doc__", None) or ""
    out = []
    for line in doc.splitlines():
        m = re.match(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\)(?: -> (.*))?$", line.strip())
        if not m or m.group(1) == "*args, **kwargs":
            continue
        params, mode = [], "pos"
        parts = _split_params(m.group(1))
        if "/" in parts:
            cut = parts.index("/")
            parts = [p + "\x00pos_only" if i < cut else p for i, p in enumerate(parts) if p != "/"]
        for part in parts:
            part, _, forced = part.partition("\x00")
            if part == "*":
                mode = "kw_only"
                continue
            if part.startswith("**"):
                params.append((part[2:].split(":")[0].strip(), "**"))
                continue
            if part.startswith("*"):
                params.append((part[1:].split(":")[0].strip(), "*"))
                mode = "kw_only"
                continue
            pname = re.split(r"[:=]", part, maxsplit=1)[0].strip()
            has_default = "=" in _top_level(part)
            kind = forced or mode
            params.append((pname, (kind + "_opt" if kind != "pos" else "opt") if has_default else kind))
        out.append((params, (m.group(2) or "").strip()))
    return out


def _top_level(text: str) -> str:
    """``text`` with everything inside brackets removed (to find a parameter's own '=')."""
    depth, keep = 0, []
    for ch in text:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif depth == 0:
            keep.append(ch)
    return "".join(keep)


def _split_params(text: str) -> list[str]:
    depth, cur, parts = 0, [], []
    for ch in text:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _fits(params: list[tuple[str, str]], n_pos: int, keywords: list[str | None]) -> bool:
    """Whether a call with ``n_pos`` positional args and these keyword names fits one overload's params."""
    positional = [n for n, k in params if k in ("pos", "opt", "pos_only", "pos_only_opt")]
    if n_pos > len(positional) and not any(k == "*" for _, k in params):
        return False
    filled = set(positional[:n_pos])
    kinds = dict(params)
    for kw in keywords:
        if kw is None:  # **mapping: names unknown statically
            continue
        if kw in filled:
            return False
        if kinds.get(kw) in ("pos", "opt", "kw_only", "kw_only_opt"):
            filled.add(kw)
        elif not any(k == "**" for _, k in params):
            return False
    required = [n for n, k in params if k in ("pos", "pos_only", "kw_only")]
    return all(n in filled for n in required)


def _bound(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return params[1:] if params and params[0][0] == "self" else params


def _deprecated(owner, attr: str) -> bool:
    """Whether TensorRT's docs mark ``owner.attr`` "[DEPRECATED]": a method's or class's own doc, an enum member's
    entry in its enum's doc, a property's ``:ivar`` entry in its class's doc."""
    member = getattr(owner, attr)
    if inspect.isclass(owner) and attr in getattr(owner, "__members__", {}):  # enum member
        sections = re.split(r"^\s*([A-Z][A-Z0-9_]*) :", owner.__doc__ or "", flags=re.M)
        text = dict(zip(sections[1::2], sections[2::2], strict=True)).get(attr, "")
    elif isinstance(inspect.getattr_static(owner, attr, None), property):
        m = re.search(rf":ivar {re.escape(attr)}:(.*?)(?=:ivar |\Z)", owner.__doc__ or "", flags=re.S)
        return bool(m) and "[DEPRECATED]" in m.group(1)
    elif inspect.isclass(member):  # the class's own description, not its members' entries
        text = re.split(r":ivar |:arg ", member.__doc__ or "")[0]
    else:
        text = getattr(member, "__doc__", None) or ""
    return any(line.strip().startswith("[DEPRECATED]") for line in text.splitlines())


class _Scanner(ast.NodeVisitor):
    """Checks one source file's TensorRT uses against the real module ``trt``."""

    def __init__(self, trt, filename: str) -> None:
        self.trt = trt
        self.filename = filename
        self.problems: list[str] = []
        self.uses: list[dict] = []
        self.skipped: list[str] = []  # uses of the variable names outside TensorRT code (not TensorRT objects)
        self.aliases: set[str] = set()
        self.trt_scope = False
        self.parents: dict[int, ast.AST] = {}
        self.chain_deprecated = False  # set by resolve(): the last link of the chain is marked deprecated

    # ---------------------------------------------------------------- helpers
    def problem(self, node: ast.AST, text: str) -> None:
        self.problems.append(f"{self.filename}:{node.lineno}: {text}")

    def use(self, node: ast.AST, cls: str, member: str, how: str, deprecated: bool = False) -> None:
        self.uses.append({"file": self.filename, "line": node.lineno, "class": cls, "member": member, "how": how,
                          "deprecated": deprecated})

    def typed_class(self, expr: ast.AST):
        """The real class a receiver expression holds, by its (attribute) name; None when not a TensorRT object."""
        name = expr.id if isinstance(expr, ast.Name) else expr.attr if isinstance(expr, ast.Attribute) else None
        if name in CLASS_OF_NAME and self.trt_scope:
            return getattr(self.trt, CLASS_OF_NAME[name])
        return None

    def trt_chain(self, node: ast.AST) -> list[str] | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.aliases:
            return parts[::-1]
        return None

    @staticmethod
    def imports_trt(node: ast.AST) -> bool:
        for n in ast.walk(node):
            if isinstance(n, ast.Import) and any(a.name == "tensorrt" for a in n.names):
                return True
            if isinstance(n, ast.ImportFrom) and n.module == "tensorrt":
                return True
        return False

    # ---------------------------------------------------------------- traversal
    def scan(self, tree: ast.Module) -> None:
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[id(child)] = parent
        for n in ast.walk(tree):
            if isinstance(n, ast.Import):
                self.aliases |= {a.asname or a.name for a in n.names if a.name == "tensorrt"}
        self.aliases = self.aliases or {"trt"}
        self.visit(tree)

    def _scoped(self, node: ast.AST) -> None:
        outer = self.trt_scope
        self.trt_scope = outer or self.imports_trt(node)
        self.generic_visit(node)
        self.trt_scope = outer

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        outer = self.trt_scope
        self.trt_scope = outer or self.imports_trt(node)
        for base in node.bases:
            chain = self.trt_chain(base)
            if chain and self.trt_scope:
                base_cls = self.resolve(base, chain)
                if inspect.isclass(base_cls):
                    self.check_subclass(node, base_cls)
        self.generic_visit(node)
        self.trt_scope = outer

    visit_FunctionDef = _scoped

    def check_subclass(self, node: ast.ClassDef, base) -> None:
        """A Python subclass of a TensorRT interface: its public methods override real ones with the same arity."""
        for item in node.body:
            if not isinstance(item, ast.FunctionDef) or item.name.startswith("_"):
                continue
            real = getattr(base, item.name, None)
            if real is None:
                self.problem(item, f"{node.name}.{item.name} overrides nothing in trt.{base.__name__}")
                continue
            n_args = len(item.args.args)
            sigs = _signatures(real, item.name)
            # TensorRT calls the override with as many positional args as the base method has (self included).
            counts = [len([p for p in ps if p[1] not in ("*", "**")]) for ps, _ in sigs]
            if sigs and not any(n == n_args or (item.args.vararg is not None and n >= n_args) for n in counts):
                self.problem(item, f"{node.name}.{item.name} takes {n_args} args, trt.{base.__name__}."
                                   f"{item.name} is called with {counts}")
            self.use(item, base.__name__, item.name, "override", _deprecated(base, item.name))

    def resolve(self, node: ast.AST, chain: list[str]):
        obj, path = self.trt, "trt"
        self.chain_deprecated = False
        for part in chain:
            if not hasattr(obj, part):
                self.problem(node, f"{path}.{part} does not exist in TensorRT {self.trt.__version__}")
                return None
            self.chain_deprecated = _deprecated(obj, part)
            obj, path = getattr(obj, part), f"{path}.{part}"
        return obj

    def visit_Call(self, node: ast.Call) -> None:
        n_pos = len([a for a in node.args if not isinstance(a, ast.Starred)])
        starred = any(isinstance(a, ast.Starred) for a in node.args)
        keywords = [k.arg for k in node.keywords]
        func = node.func
        if isinstance(func, ast.Attribute):
            chain = self.trt_chain(func)
            cls = self.typed_class(func.value)
            if chain is not None:
                self.check_trt_call(node, func, chain, n_pos, keywords, starred)
                for child in (*node.args, *node.keywords):
                    self.visit(child)
                return
            if cls is not None:
                self.check_member(node, cls, func.attr, "call", n_pos, keywords, starred)
                self.visit(func.value)
                for child in (*node.args, *node.keywords):
                    self.visit(child)
                return
        self.generic_visit(node)

    def check_trt_call(self, node, func, chain, n_pos, keywords, starred) -> None:
        obj = self.resolve(func, chain)
        if obj is None:
            return
        deprecated = self.chain_deprecated
        parent = self.resolve(func.value, chain[:-1]) if len(chain) > 1 else self.trt
        self.chain_deprecated = deprecated
        name = ".".join(chain)
        if inspect.isclass(obj):  # a constructor
            sigs = [(_bound(ps), ret) for ps, ret in _signatures(obj.__init__, "__init__")]
        else:  # a function, or a method called through its class with an explicit self (then self stays)
            sigs = _signatures(obj, chain[-1])
            if not inspect.isclass(parent) or isinstance(inspect.getattr_static(parent, chain[-1]), staticmethod):
                sigs = [(_bound(ps), ret) for ps, ret in sigs]
        self.use(node, "trt.*", name, "call", self.chain_deprecated)
        if not sigs:
            self.problem(node, f"trt.{name}: no signature found in its docstring")
        elif not starred and not any(_fits(ps, n_pos, keywords) for ps, _ in sigs):
            self.problem(node, f"trt.{name}(...) with {n_pos} positional args and keywords {keywords} fits none of "
                               f"{[[p for p, _ in ps] for ps, _ in sigs]}")
        self.check_return_type(node, sigs, obj if inspect.isclass(obj) else None)

    def check_member(self, node, cls, attr, how, n_pos=0, keywords=(), starred=False) -> None:
        label = f"{cls.__name__}.{attr}"
        static = inspect.getattr_static(cls, attr, None)
        if static is None:
            self.problem(node, f"{label} does not exist in TensorRT {self.trt.__version__}")
            return
        is_prop = isinstance(static, property)
        member = getattr(cls, attr)
        self.use(node, cls.__name__, attr, how, _deprecated(cls, attr))
        if how == "call":
            if is_prop:
                self.problem(node, f"{label} is a property, not a method: read it, do not call it")
                return
            sigs = [(_bound(ps), ret) for ps, ret in _signatures(member, attr)]
            if not sigs:
                self.problem(node, f"{label}: no signature found in its docstring")
            elif not starred and not any(_fits(ps, n_pos, list(keywords)) for ps, _ in sigs):
                self.problem(node, f"{label}(...) with {n_pos} positional args and keywords {list(keywords)} fits "
                                   f"none of {[[p for p, _ in ps] for ps, _ in sigs]}")
            else:
                self.check_return_type(node, sigs)
        elif how == "write":
            if not is_prop or static.fset is None:
                self.problem(node, f"{label} is not a writable property")
        elif not is_prop and callable(member):
            self.problem(node, f"{label} is a method read without calling it")

    def check_return_type(self, node: ast.Call, sigs, cls=None) -> None:
        """``x = <call>`` where x's name says which class it holds: the call must return that class."""
        parent = self.parents.get(id(node))
        if not isinstance(parent, ast.Assign) or len(parent.targets) != 1:
            return
        want = self.typed_class(parent.targets[0])
        if want is None:
            return
        got = {cls.__name__} if cls is not None else {ret.rsplit(".", 1)[-1] for _, ret in sigs if ret}

        def holds(name: str) -> bool:
            real = getattr(self.trt, name, None)
            return inspect.isclass(real) and issubclass(real, want)

        if got and not any(holds(g) for g in got):
            self.problem(node, f"assigned to a {want.__name__} variable but returns {sorted(got)}")
        self.use(node, want.__name__, "<returned by call>", "type", False)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = self.trt_chain(node)
        parent = self.parents.get(id(node))
        if chain is not None:
            if not (isinstance(parent, ast.Attribute) and parent.value is node):  # the outermost link only
                obj = self.resolve(node, chain)
                if obj is not None:
                    self.use(node, "trt.*", ".".join(chain), "read", self.chain_deprecated)
            return
        cls = self.typed_class(node.value)
        if cls is not None:
            self.check_member(node, cls, node.attr, "write" if isinstance(node.ctx, ast.Store) else "read")
        elif (isinstance(node.value, ast.Name) and node.value.id in CLASS_OF_NAME and not self.trt_scope):
            self.skipped.append(f"{self.filename}:{node.lineno}: {node.value.id}.{node.attr}")
        self.generic_visit(node)


def scan_source(trt, source: str, filename: str) -> tuple[list[str], list[dict], list[str]]:
    scanner = _Scanner(trt, filename)
    scanner.scan(ast.parse(source, filename))
    return scanner.problems, scanner.uses, scanner.skipped


def check_scan(trt) -> dict:
    problems, uses, skipped = [], [], []
    for rel in SCANNED:
        p, u, s = scan_source(trt, (REPO / rel).read_text(), rel)
        problems += p
        uses += u
        skipped += s
    members: dict[str, set[str]] = {}
    for u in uses:
        if u["how"] != "type":
            members.setdefault(u["class"], set()).add(u["member"])
    deprecated = sorted({f"{u['class'].replace('trt.*', 'trt')}.{u['member']}" for u in uses if u["deprecated"]})
    bad_problems, _, _ = scan_source(trt, BROKEN_SNIPPET, "snippet")
    bad_lines = sorted(int(p.split(":")[1]) for p in bad_problems)
    want_lines = [i + 1 for i, line in enumerate(BROKEN_SNIPPET.splitlines()) if "# BAD" in line]
    return {
        "problems": problems, "n_uses": len(uses), "skipped": skipped, "deprecated": deprecated,
        "members": {k: sorted(v) for k, v in members.items()},
        "sites": {k: sum(1 for u in uses if u["class"] == k and u["how"] != "type") for k in members},
        "return_type_checks": sum(1 for u in uses if u["how"] == "type"),
        "negative_control": {"flagged_lines": sorted(set(bad_lines)), "expected_lines": want_lines,
                             "problems": bad_problems},
    }


def check_calibrator(trt, tmp: Path) -> dict:
    """make_entropy_calibrator on the real base class, driven the way TensorRT's C++ trampoline drives it."""
    import numpy as np
    import torch

    from realtime.backends import calibration

    problems: list[str] = []
    data = np.random.default_rng(0).standard_normal((5, 3, 16, 12)).astype(np.float16)
    batches = calibration.CalibrationBatches(data, batch_size=2)
    cache = Path(tempfile.mkdtemp(dir=tmp)) / "calib" / "x.cache"
    cal = calibration.make_entropy_calibrator(batches, cache, device="cpu")
    if not isinstance(cal, trt.IInt8EntropyCalibrator2) or not isinstance(cal, trt.IInt8Calibrator):
        problems.append(f"calibrator is a {type(cal).__mro__}, not a trt.IInt8EntropyCalibrator2")
    # These two go through the real C++ virtuals (pybind trampoline -> our Python override).
    size = trt.IInt8Calibrator.get_batch_size(cal)
    if size != 2:
        problems.append(f"trt.IInt8Calibrator.get_batch_size(cal) = {size!r}, want 2")
    algo = trt.IInt8Calibrator.get_algorithm(cal)
    if algo != trt.CalibrationAlgoType.ENTROPY_CALIBRATION_2:
        problems.append(f"algorithm {algo}")
    # get_batch: the trampoline casts the result to std::vector<size_t> and copies nbBindings pointers; None or []
    # ends calibration (pyInt8.cpp).
    fed = 0
    names = ["pixel_values"]
    while True:
        ptrs = cal.get_batch(names)
        if ptrs is None or len(ptrs) == 0:
            break
        if not (isinstance(ptrs, list) and len(ptrs) == len(names) and all(type(p) is int and p > 0 for p in ptrs)):
            problems.append(f"get_batch returned {ptrs!r}: want one int device pointer per input name")
            break
        if ptrs[0] != cal.device_buffer.data_ptr():
            problems.append("get_batch pointer is not the calibrator's buffer")
        if not torch.equal(cal.device_buffer, torch.from_numpy(batches.batch(fed))):
            problems.append(f"batch {fed}: buffer does not hold the calibration batch")
        fed += 1
        if fed > len(batches) + 1:
            problems.append("get_batch never ends")
            break
    if fed != len(batches):
        problems.append(f"fed {fed} batches, want {len(batches)}")
    if cal.get_batch(names) not in (None, []):
        problems.append("get_batch after the end did not return None")
    # read/write cache: None (no cache) -> TensorRT writes a memoryview -> read returns a buffer with those bytes.
    if cal.read_calibration_cache() is not None:
        problems.append("read_calibration_cache returned data before any cache was written")
    table = b"TRT-100161-EntropyCalibration2\npixel_values: 3c010a14\n"
    cal.write_calibration_cache(memoryview(table))  # what the trampoline passes
    back = cal.read_calibration_cache()
    if back is None or bytes(memoryview(back)) != table or cache.read_bytes() != table:
        problems.append("calibration cache did not round-trip")
    again = calibration.make_entropy_calibrator(batches, cache, device="cpu")
    if again.read_calibration_cache() != table:
        problems.append("a new calibrator does not reuse the cache file")
    return {"problems": problems, "batches_fed": fed, "batch_size": size, "algorithm": str(algo)}


def _param_names(func) -> list[str]:
    return [p for p in inspect.signature(func).parameters if p != "self"]


def check_fake(trt) -> dict:
    """Every method / class attribute of the FakeTRT stand-in exists on the real class with the same params."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_test_tensorrt_code", REPO / "tests" / "backends" / "test_tensorrt_code.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fake = module.FakeTRT()
    mod = fake.mod
    builder = mod.Builder(mod.Logger(mod.Logger.WARNING))
    network = builder.create_network(0)
    pairs = {
        "Logger": (mod.Logger, trt.Logger), "MemoryPoolType": (mod.MemoryPoolType, trt.MemoryPoolType),
        "BuilderFlag": (mod.BuilderFlag, trt.BuilderFlag), "Builder": (mod.Builder, trt.Builder),
        "OnnxParser": (mod.OnnxParser, trt.OnnxParser), "Network": (type(network), trt.INetworkDefinition),
        "Config": (type(builder.create_builder_config()), trt.IBuilderConfig),
        "Profile": (type(builder.create_optimization_profile()), trt.IOptimizationProfile),
        "Input": (type(network.get_input(0)), trt.ITensor),
        "IInt8EntropyCalibrator2": (mod.IInt8EntropyCalibrator2, trt.IInt8EntropyCalibrator2),
    }
    constructible = {"Logger", "Builder", "OnnxParser", "IInt8EntropyCalibrator2"}  # created by users in real TRT
    problems, checked, recording = [], [], []
    for label, (fake_cls, real_cls) in pairs.items():
        for attr, value in vars(fake_cls).items():
            if attr.startswith("__") and attr != "__init__":
                continue
            where = f"FakeTRT {label}.{attr} vs trt.{real_cls.__name__}"
            if attr == "__init__":
                if label not in constructible:
                    continue
                sigs = [_bound(ps) for ps, _ in _signatures(real_cls.__init__, "__init__")]
            elif not hasattr(real_cls, attr):
                problems.append(f"{where}: no such member in TensorRT {trt.__version__}")
                continue
            elif not callable(value):
                checked.append(f"{label}.{attr}")
                continue
            else:
                static = inspect.getattr_static(real_cls, attr)
                if isinstance(static, property):
                    problems.append(f"{where}: a property in TensorRT, a method in the stand-in")
                    continue
                sigs = [_bound(ps) for ps, _ in _signatures(getattr(real_cls, attr), attr)]
            names = _param_names(value)
            ok = any([n for n, _ in ps[: len(names)]] == names
                     and all(k.endswith("opt") or k in ("*", "**") for _, k in ps[len(names):]) for ps in sigs)
            if not ok:
                problems.append(f"{where}: stand-in params {names}, real overloads {[[n for n, _ in ps] for ps in sigs]}")
            checked.append(f"{label}.{attr}({', '.join(names)})")
        # Instance attributes: those that mimic the API must be real properties; the rest are the stand-in's records.
        instance = {"Network": network, "Input": network.get_input(0), "Config": builder.create_builder_config(),
                    "Profile": builder.create_optimization_profile(), "Builder": builder}.get(label)
        for attr in vars(instance) if instance is not None else ():
            static = inspect.getattr_static(real_cls, attr, None)
            if static is None:
                recording.append(f"{label}.{attr}")
            elif not isinstance(static, property):
                problems.append(f"FakeTRT {label}.{attr} is data, trt.{real_cls.__name__}.{attr} is not a property")
            else:
                checked.append(f"{label}.{attr}")
    return {"problems": problems, "checked": checked, "recording_only": recording}


def check_enums(trt) -> dict:
    import torch

    from realtime.backends import tensorrt_backend
    from realtime.errors import BackendUnavailable

    problems = []
    enums = {"Logger.WARNING": trt.ILogger.Severity, "TensorIOMode.INPUT": trt.TensorIOMode,
             "TensorIOMode.OUTPUT": trt.TensorIOMode, "BuilderFlag.FP16": trt.BuilderFlag,
             "BuilderFlag.INT8": trt.BuilderFlag, "MemoryPoolType.WORKSPACE": trt.MemoryPoolType}
    for path, enum in enums.items():
        obj = trt
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if not isinstance(obj, enum):
            problems.append(f"trt.{path} is {obj!r}, not a {enum.__name__}")
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int8": torch.int8,
              "int32": torch.int32, "int64": torch.int64, "bool": torch.bool}
    for name, want in dtypes.items():
        value = getattr(trt, name, None)
        if not isinstance(value, trt.DataType):
            problems.append(f"trt.{name} is {value!r}, not a DataType")
        elif tensorrt_backend._torch_dtype(value) != want:
            problems.append(f"_torch_dtype(trt.{name}) = {tensorrt_backend._torch_dtype(value)}, want {want}")
    unsupported = [d for d in trt.DataType.__members__.values() if all(d != getattr(trt, n) for n in dtypes)]
    for d in unsupported:
        try:
            tensorrt_backend._torch_dtype(d)
            problems.append(f"_torch_dtype({d}) should raise BackendUnavailable")
        except BackendUnavailable:
            pass
    if not tensorrt_backend.has_implicit_int8():
        problems.append("has_implicit_int8() is False with TensorRT 10")
    # Values our code takes apart: Dims (engine/tensor shapes) iterate to ints; parser errors print their message.
    if tuple(int(d) for d in trt.Dims((-1, 3, 256, 192)))[1:] != (3, 256, 192):
        problems.append("trt.Dims does not iterate to its dimensions")
    if "__str__" not in vars(trt.ParserError):
        problems.append("trt.ParserError has no __str__: str(parser.get_error(i)) would not show the message")
    return {"problems": problems, "enums": sorted(enums), "dtypes": sorted(dtypes),
            "unsupported_dtypes": [str(d) for d in unsupported]}


def run_checks(tmp: Path) -> dict:
    sys.path[:0] = [str(STUBS / "site"), str(REPO)]
    import tensorrt_bindings as trt

    sys.modules["tensorrt"] = trt  # our code does `import tensorrt as trt`
    report = {"version": trt.__version__}
    for name, check in (("scan", lambda: check_scan(trt)), ("calibrator", lambda: check_calibrator(trt, tmp)),
                        ("fake", lambda: check_fake(trt)), ("enums", lambda: check_enums(trt))):
        try:
            report[name] = check()
        except Exception as exc:  # reported to the pytest side as that check's failure
            import traceback

            report[name] = {"problems": [f"{type(exc).__name__}: {exc}"], "traceback": traceback.format_exc()}
    return report


# ================================================================================ pytest side

needs_bindings = pytest.mark.skipif(not READY, reason=HINT)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(STUBS / "lib"), env.get("LD_LIBRARY_PATH")]))
    out = tmp_path_factory.mktemp("trt_api")
    proc = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (out / "report.json").write_text(json.dumps(result, indent=1))
    print(f"real TensorRT API report: {out / 'report.json'}")
    return result


def _no_problems(section: dict) -> None:
    assert not section["problems"], "\n".join(section["problems"]) + "\n" + section.get("traceback", "")


@needs_bindings
def test_pytest_process_has_no_tensorrt_module(report):
    assert report["version"].startswith("10.")
    assert "tensorrt" not in sys.modules and "tensorrt_bindings" not in sys.modules


@needs_bindings
def test_scan_catches_api_mistakes(report):
    control = report["scan"]["negative_control"]
    assert control["flagged_lines"] == control["expected_lines"], "\n".join(control["problems"])


@needs_bindings
def test_code_uses_only_the_real_tensorrt_api(report):
    scan = report["scan"]
    _no_problems(scan)
    for cls, minimum in MIN_MEMBERS.items():
        found = scan["members"].get(cls, [])
        assert len(found) >= minimum, f"scan found only {found} for {cls}; it no longer sees the TensorRT code"
    assert set(scan["members"].get("IInt8EntropyCalibrator2", [])) == CALIBRATOR_METHODS
    assert scan["return_type_checks"] >= 8
    unexpected = set(scan["deprecated"]) - ALLOWED_DEPRECATED
    assert not unexpected, f"deprecated TensorRT API used: {sorted(unexpected)}"
    print({k: (len(v), scan["sites"][k]) for k, v in scan["members"].items()}, scan["n_uses"], "uses")


@needs_bindings
def test_entropy_calibrator_follows_the_real_protocol(report):
    section = report["calibrator"]
    _no_problems(section)
    assert section["batches_fed"] == 3 and section["batch_size"] == 2


@needs_bindings
def test_fake_trt_offers_only_the_real_api(report):
    section = report["fake"]
    _no_problems(section)
    assert len(section["checked"]) >= 20


@needs_bindings
def test_enums_and_dtypes_exist(report):
    section = report["enums"]
    _no_problems(section)
    assert len(section["enums"]) == 6 and len(section["dtypes"]) == 7


# ------------------------------------------------------------------------------------------- torch2trt


def test_torch2trt_keywords_are_real_parameters():
    from realtime.backends import torch2trt_backend

    for precision in ("fp32", "fp16", "int8"):
        for use_onnx in (True, False):
            kw = torch2trt_backend.conversion_kwargs(precision, 8, calib_dataset=[[None]], use_onnx=use_onnx,
                                                     calib_algorithm="ENTROPY_CALIBRATION_2")
            assert set(kw) <= TORCH2TRT_PARAMS - {"module", "inputs"}, set(kw) - TORCH2TRT_PARAMS
            assert ("int8_calib_algorithm" in kw) == ("int8_calib_dataset" in kw) == (precision == "int8")


def test_torch2trt_onnx_export_uses_the_torchscript_exporter():
    """torch2trt's use_onnx call (no dynamo=) must work with this PyTorch: without onnxscript, dynamo fails."""
    import io

    import onnx
    import torch

    from realtime.backends.torch2trt_backend import torchscript_onnx_export

    class Flat(torch.nn.Module):  # like torch2trt's Flatten: export gets the input list as one argument
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GELU())

        def forward(self, *args):
            return self.net(*args[0])

    real = torch.onnx.export
    buf = io.BytesIO()
    with torchscript_onnx_export():
        torch.onnx.export(Flat(), [torch.zeros(1, 3, 8, 6)], buf, input_names=["pixel_values"],
                          output_names=["heatmaps"], dynamic_axes={"pixel_values": {0: "input_0_axis_0"}},
                          opset_version=17)
    assert torch.onnx.export is real
    graph = onnx.load_from_string(buf.getvalue()).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "input_0_axis_0"


if __name__ == "__main__":
    print(json.dumps(run_checks(Path(sys.argv[1]))))
