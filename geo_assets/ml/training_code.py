"""The identity of the code that turns a training set into stored weights, for model version ids.

A version id must change when the training changes, or a store silently reuses weights that the
code of today would not make. The id covers a digest of these modules (paths in the package), each
in it because an edit to it can change the weights or the files stored for a version:

- ml/train.py          the training loop: loss, optimiser, seeding, batches
- ml/data.py           the chip sampler: which chips are drawn, how tiles and acquisitions weigh
- ml/models.py         the architectures and their layers
- ml/normalisation.py  the input normalisation fitted on the training tiles and stored with them
- ml/pairs.py          how image and label tiles are paired (clouds, no data -> ignored pixels)
- ml/inputs.py         how an imagery tile is read and its valid pixels found
- ml/versions.py       the training step: the set's order, groups, normalisation fit, the record
- ml/export.py         the exports written as the version (model.pt2, model.onnx)
- ml/device.py         the device and the CPU thread count training runs with (float sums follow it)
- geo/cog.py           how a tile's pixels are read from its COG
- geo/landcover.py     the class legend and the ignored label value the loss is taught with

The digest is of each module's syntax tree without docstrings and without the annotations of function
arguments and returns, so comments, docstrings, type hints and layout do not change ids; any change to
code does (a false new version costs a training, never a reuse). Annotated assignments stay: a
dataclass field is one.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

MODULES = (
    "ml/train.py",
    "ml/data.py",
    "ml/models.py",
    "ml/normalisation.py",
    "ml/pairs.py",
    "ml/inputs.py",
    "ml/versions.py",
    "ml/export.py",
    "ml/device.py",
    "geo/cog.py",
    "geo/landcover.py",
    "engine/threads.py",  # read_ahead and the Mapper decide the order tiles reach the normalisation's sums
    "engine/batches.py",
)
PACKAGE = Path(__file__).resolve().parents[1]  # geo_assets/


def _code_only(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            arguments = node.args
            for arg in [
                *arguments.posonlyargs,
                *arguments.args,
                *arguments.kwonlyargs,
                arguments.vararg,
                arguments.kwarg,
            ]:
                if arg is not None:
                    arg.annotation = None
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


@lru_cache(maxsize=1)
def digest() -> str:
    """sha256 (16 hex) over MODULES' code, in MODULES' order, each with its path."""
    h = hashlib.sha256()
    for module in MODULES:
        h.update(module.encode() + b"\0" + _code_only((PACKAGE / module).read_text(encoding="utf-8")).encode() + b"\0")
    return h.hexdigest()[:16]


def identity() -> dict:
    """What model.json records: the digest and the modules it covers."""
    return {"digest": digest(), "modules": list(MODULES)}
