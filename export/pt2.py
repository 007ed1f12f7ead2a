"""PyTorch 2 artifacts from the exported program: a ``torch.export`` program, an AOTInductor package, and
TorchScript where the model allows (traced at fixed shapes).

Each artifact is written through a temp file and a rename, then loaded back and checked against the eager module
on the parity cases before it counts as built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from dymos.manifest import atomic_write

from .validate import TOLERANCES, ParityCase, ParityError, compare

# File name per format, after the graph's submodel name (``denoiser``, Wan 2.2 A14B's ``denoiser_2``).
_SUFFIXES = {"pt2": ".pt2", "aoti": "_aoti.pt2", "torchscript": ".torchscript.pt"}


def artifact_name(fmt: str, submodel: str = "denoiser") -> str:
    """``denoiser.pt2``, ``denoiser_aoti.pt2``, ``denoiser.torchscript.pt`` (or ``denoiser_2...``)."""
    return f"{submodel}{_SUFFIXES[fmt]}"


def check_parity(
    name: str,
    artifact: Callable[..., torch.Tensor],
    reference: Callable[..., torch.Tensor],
    cases: Sequence[ParityCase],
    precision: str,
) -> dict[str, Any]:
    """Run both on every case; raise :class:`ParityError` past the precision's tolerance."""
    tol = TOLERANCES[precision]
    rows = []
    with torch.no_grad():
        for case in cases:
            args = list(case.inputs.values())
            ref = reference(*args)
            out = artifact(*args)
            out = out[0] if isinstance(out, (tuple, list)) else out
            rows.append({"name": case.name, **compare(ref.double().cpu().numpy(), out.double().cpu().numpy(), tol)})
    if not all(r["passed"] for r in rows):
        raise ParityError(f"{name} does not match PyTorch within {tol}: {rows}")
    return {"backend": name, "tolerance": tol, "cases": rows, "passed": True}


def save_program(program: torch.export.ExportedProgram, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.export.save(program, tmp), suffix=".pt2")


def load_program(path: Path) -> Callable[..., torch.Tensor]:
    return torch.export.load(str(path)).module()


def compile_aoti(program: torch.export.ExportedProgram, path: Path) -> None:
    """AOTInductor: compile the program to a self-contained package (C++ compiler needed; minutes)."""
    from torch._inductor import aoti_compile_and_package

    atomic_write(path, lambda tmp: aoti_compile_and_package(program, package_path=tmp), suffix=".pt2")


def load_aoti(path: Path) -> Callable[..., torch.Tensor]:
    from torch._inductor import aoti_load_package

    return aoti_load_package(str(path))


def trace_torchscript(module: torch.nn.Module, sample: Sequence[torch.Tensor], path: Path) -> None:
    """TorchScript by tracing at the sample's shapes; raises when the model does not trace."""
    with torch.no_grad():
        traced = torch.jit.trace(module, tuple(sample), check_trace=False, strict=False)
    atomic_write(path, lambda tmp: torch.jit.save(traced, tmp))


def load_torchscript(path: Path) -> Callable[..., torch.Tensor]:
    return torch.jit.load(str(path))
