"""`repro.py`: a standalone reproducer that needs only NumPy and one framework.

`render` writes the script from `templates/repro.py.j2` extended by one framework's template under
`templates/frameworks/` (`framework` finds it). Inputs are embedded as exact values when the case is small, and
otherwise regenerated from the same NumPy seeds crossbn draws them with. Nothing in the script is taken from a
string that could run: a finding's strings go in as data (`|py`, `|prose`), and source script.py wrote itself is
marked `Source`.

Design notes: docs/internals/run-and-records.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossbn.oracle.inputs import DY_STREAM, PER_CHANNEL, X_STREAM, Draw, dy_draw, x_draw

EMBED_LIMIT = 4096  # input elements in all: up to this many are written into the script


@dataclass(frozen=True)
class Framework:
    template: str  # templates/frameworks/<template>.py.j2
    label: str  # how the framework is named in the script and the issue
    requirement: str  # what to pip install
    variables: dict = field(default_factory=dict)


_TORCH_MODULES = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d", 5: "BatchNorm3d"}

FRAMEWORKS = {
    "torch": Framework("torch", "PyTorch", "torch", {"compiled": False}),
    "torch-compile": Framework("torch", "PyTorch", "torch", {"compiled": True}),
    **{
        name: Framework("keras", "Keras", f"keras and {fw}", {"keras_backend": fw, "compiled": compiled})
        for name, fw, compiled in (
            ("keras-jax", "jax", False),
            ("keras-jax-jit", "jax", True),
            ("keras-tensorflow", "tensorflow", False),
            ("keras-tensorflow-xla", "tensorflow", True),
            ("keras-torch", "torch", False),
        )
    },
    "tf-keras": Framework("tf_keras", "tf-keras", "tf-keras (and tensorflow)", {"fused": False}),
    "tf-keras-fused": Framework("tf_keras", "tf-keras", "tf-keras (and tensorflow)", {"fused": True}),
    "tf-nn": Framework("tf_nn", "TensorFlow", "tensorflow", {"xla": False}),
    "tf-nn-xla": Framework("tf_nn", "TensorFlow", "tensorflow", {"xla": True}),
    "tf-fused-op": Framework("tf_fused", "TensorFlow", "tensorflow", {"xla": False}),
    "tf-fused-op-xla": Framework("tf_fused", "TensorFlow", "tensorflow", {"xla": True}),
    **{
        name: Framework("flax", "Flax", "flax (and jax)", {"api": name.split("-")[1], "jit": name.endswith("-jit")})
        for name in ("flax-linen", "flax-linen-jit", "flax-nnx", "flax-nnx-jit")
    },
    **{
        f"{runtime}-opset{opset}": Framework("onnx", label, req, {"runtime": runtime, "opset": opset})
        for runtime, label, req in (
            ("onnxruntime", "ONNX Runtime", "onnx and onnxruntime"),
            ("onnx-reference", "ONNX", "onnx"),
        )
        for opset in (9, 14, 15)
    },
    **{
        f"{runtime}-torch-{exporter}": Framework(
            "onnx_torch",
            label,
            f"torch, {req}" + (", onnxscript" if dynamo else ""),
            {"runtime": runtime, "dynamo": dynamo},
        )
        for runtime, label, req in (
            ("onnxruntime", "ONNX Runtime", "onnx and onnxruntime"),
            ("onnx-reference", "ONNX", "onnx"),
        )
        for exporter, dynamo in (("export", False), ("dynamo", True))
    },
}


class NoTemplate(LookupError):
    """No standalone reproducer for this backend; the message says which it is."""


def framework(backend: str) -> Framework:
    base = backend.split("@", 1)[0]
    found = FRAMEWORKS.get(base)
    if found is None or not (Path(__file__).parent / "templates" / "frameworks" / f"{found.template}.py.j2").is_file():
        raise NoTemplate(
            f"no standalone reproducer template for backend {base!r} "
            f"(crossbn/bugreport/templates/frameworks/; has: {', '.join(sorted(templated()))})"
        )
    return found


def templated() -> list[str]:
    """The backends a repro.py can be written for."""
    folder = Path(__file__).parent / "templates" / "frameworks"
    return [name for name, fw in FRAMEWORKS.items() if (folder / f"{fw.template}.py.j2").is_file()]


class Source(str):
    """Python source script.py wrote itself (numbers, arrays, its own tables): printed as it is."""


# What could end a string literal, the docstring or a comment, or start a statement.
_BREAKS_OUT = re.compile(r"[\"'\\\r\n#;\x00]")


def _finalize(value):
    """Every value a template prints. Plain strings come from records and tables; one that could
    break out of where it is printed is a template bug (it needed |py or |prose), refused here
    rather than written into a script a maintainer will run."""
    if isinstance(value, str) and not isinstance(value, Source) and _BREAKS_OUT.search(value):
        raise ValueError(f"repro.py template: {value!r} printed unfiltered (use |py in code, |prose in the docstring)")
    return value


def _literal(value) -> Source:
    """A string as a Python string literal: data, whatever it holds (repr; in double quotes,
    like the rest of the script, when it holds no quote at all)."""
    text = str(value)
    literal = repr(text)
    return Source(f'"{literal[1:-1]}"' if '"' not in text and "'" not in text else literal)


def _prose(text) -> Source:
    """Text for the script's docstring: one line of printable characters, with no quote or
    backslash that could end the docstring or start an escape."""
    text = "".join(c if c.isprintable() else " " for c in str(text))
    return Source(" ".join(text.replace("\\", "/").replace('"', "'").split()))


def environment():
    """The Jinja2 environment of the repro.py templates (no autoescape: its output is Python)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    env.filters.update(py=_literal, prose=_prose)
    return env


def _number(x: float) -> Source:
    """A float64 as Python source that reads back bit for bit."""
    x = float(x)
    if math.isnan(x):
        return Source("np.nan")
    if math.isinf(x):
        return Source("np.inf" if x > 0 else "-np.inf")
    return Source(repr(x))


def array_source(a) -> Source:
    """An array (any float dtype) as `np.array([...]).reshape(shape)` of its exact float64 values."""
    a = np.asarray(a).astype(np.float64)
    values = ", ".join(_number(v) for v in a.ravel())
    return Source(f"np.array([{values}]).reshape({tuple(a.shape)})")


def _arrays(case, inputs: dict) -> list[tuple[str, Source]]:
    steps = range(len(case.steps))
    out = [
        ("X", Source("[" + ",\n     ".join(array_source(inputs[f"x{k}"]) for k in steps) + "]")),
        ("DY", Source("[" + ",\n      ".join(array_source(inputs[f"dy{k}"]) for k in steps) + "]")),
    ]
    for name, key in (
        ("GAMMA", "gamma"),
        ("BETA", "beta"),
        ("RUNNING_MEAN", "running_mean"),
        ("RUNNING_VAR", "running_var"),
    ):
        out.append((name, array_source(inputs[key]) if key in inputs else Source("None")))
    return out


def _draw(draw: Draw, stream: str, size: str) -> Source:
    """A Draw as the NumPy expression repro.py evaluates (its _rng(stream) is crossbn's generator)."""
    expr = f"_rng({stream}).{draw.method}({_number(draw.a)}, {_number(draw.b)}, size={size})"
    if draw.clip is not None:
        expr = f"np.clip({expr}, {_number(draw.clip[0])}, {_number(draw.clip[1])})"
    return Source(expr)


def _draws(case) -> dict[str, Source | bool]:
    """The template's input expressions, from the oracle's one description (oracle/inputs.py)."""
    x, constant = x_draw(case, 0)  # a step's x differs from the first's only in its stream
    out: dict[str, Source | bool] = {
        "draw_x": _draw(x, f"{X_STREAM} + step", "SHAPE"),
        "draw_dy": _draw(dy_draw(0), f"{DY_STREAM} + step", "SHAPE"),
        "constant_channel": constant is not None,
        "constant_value": _number(constant if constant is not None else 0.0),
    }
    for name, draw in PER_CHANNEL.items():
        out[f"draw_{name}"] = _draw(draw, str(draw.stream), "SHAPE[1]")
    return out


def _tolerance(bound) -> Source:
    """Per-element bounds as source; only their largest when there are too many to write."""
    b = np.asarray(bound, np.float64)
    if b.ndim == 0 or b.size > EMBED_LIMIT:
        return Source(_number(float(np.max(b)) if b.size else 0.0) + "  # (the largest of its per-element bounds)")
    return Source(
        "np.array(["
        + ", ".join(f"{v:.3g}" if math.isfinite(v) else _number(v) for v in b.ravel())
        + f"]).reshape({tuple(b.shape)})"
    )


def _convention(backend) -> Source:
    if backend.convention("running_var") == "unbiased":
        lines = [
            "UNBIASED_RUNNING_VAR = True  # documented: the running variance is fed the unbiased "
            "batch variance, var * n / (n - 1)"
        ]
    else:
        lines = ["UNBIASED_RUNNING_VAR = False  # the running variance is fed the batch variance itself"]
    if backend.convention("hyperparameters") == "float32":
        lines.append(
            "FLOAT32_ATTRIBUTES = True  # documented: eps and momentum reach the computation as "
            "32-bit floats (the expectation uses those values)"
        )
    else:
        lines.append("FLOAT32_ATTRIBUTES = False  # eps and momentum are used as given")
    if backend.convention("frozen") == "inference":
        lines.append(
            "FROZEN_AS_INFERENCE = True  # documented: a frozen layer's training step runs as inference "
            "(running statistics, left unchanged)"
        )
    else:
        lines.append(
            "FROZEN_AS_INFERENCE = False  # a frozen layer's training step still uses, and updates, "
            "the batch statistics"
        )
    return Source("\n".join(lines))


def render(
    *,
    case,
    inputs: dict,
    backend_name: str,
    backend,
    device: str,
    version: str,
    target: str,
    tolerance,
    title: str,
    expect_error: bool = False,
) -> str:
    """The text of repro.py. The strings (title, version, backend_name, device, target) are data
    from a record: the templates print them through |prose or |py."""
    fw = framework(backend_name)
    eps, momentum = _number(case.eps), _number(case.momentum)
    embedded = sum(a.size for a in inputs.values()) <= EMBED_LIMIT
    text = (
        environment()
        .get_template(f"frameworks/{fw.template}.py.j2")
        .render(
            title=title,
            version=version,
            framework=fw.label,
            requirement=fw.requirement,
            backend=backend_name,
            device=device,
            target=target,
            tolerance=_tolerance(tolerance),
            case=case,
            channels_last=case.channel_axis != 1,
            eps=eps,
            momentum=momentum,
            convention=_convention(backend),
            embedded=embedded,
            arrays=_arrays(case, inputs) if embedded else [],
            **_draws(case),
            specials=Source(repr([(str(v), int(s), tuple(map(int, i))) for v, s, i in case.specials])),
            module=_TORCH_MODULES[case.rank],
            expect_error=expect_error,
            **fw.variables,
        )
    )
    compile(text, "repro.py", "exec")  # a template mistake shows here, not on a maintainer's machine
    return text
