"""What an export directory holds, in a few lines a person can read (``dymos inspect``), without torch.

The manifest is the source: the model and export options, the strength contract, each graph's inputs with their
exported ranges, its artifacts with how they were validated, and the TensorRT version an engine needs against the
one installed here. The CLI opens the directory through :class:`ExportDir`, which verifies sizes (and hashes)
first, so a summary is only printed for artifacts that are what the manifest says. Optional manifest entries that
are missing print as ``?``; a graph entry without its inputs is a :class:`ManifestError`.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from dymos.manifest import ManifestError

from .artifacts import ExportDir


def installed_tensorrt_version() -> str | None:
    """The TensorRT version importable here, or None (CPU machines cannot install it)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt
    except (ImportError, OSError):  # the package without its CUDA libraries
        return None
    return str(tensorrt.__version__)


def _shape(tensor: dict[str, Any]) -> str:
    return f"{tensor.get('dtype', '?')} [{', '.join(str(d) for d in tensor.get('shape', []))}]"


def _ranges(dims: dict[str, dict[str, int]]) -> str:
    return ", ".join(
        f"{name} {d.get('min', '?')}..{d.get('max', '?')} (opt {d.get('opt', '?')})" for name, d in dims.items()
    )


def _parity(entry: dict[str, Any]) -> str:
    """How the artifact was checked against PyTorch: ONNX graphs keep a report under ``validated``, the PyTorch 2
    artifacts ``validated: true`` and their numbers under ``parity``."""
    validated = entry.get("validated")
    report = validated if isinstance(validated, dict) else entry.get("parity") if validated is True else None
    if not isinstance(report, dict):
        return "; parity vs PyTorch passed" if validated is True else ""
    verdict = "passed" if report.get("passed", validated is True) else "FAILED"
    details = [str(report["backend"])] if report.get("backend") else []
    tolerance = report.get("tolerance") or {}
    details += [f"{key} {tolerance[key]:g}" for key in ("atol", "rtol") if isinstance(tolerance.get(key), int | float)]
    return f"; parity vs PyTorch {verdict}" + (f" ({', '.join(details)})" if details else "")


def _artifact_line(kind: str, entry: dict[str, Any], files: dict[str, Any], tensorrt: str | None) -> str:
    names = entry.get("files") or [entry["file"]]
    size = sum(files.get(name, {}).get("bytes", 0) for name in names)
    line = f"{kind:<12} {entry['file']} ({size / 1e6:.2f} MB" + (f", {len(names)} files)" if len(names) > 1 else ")")
    line += _parity(entry)
    if kind == "tensorrt":
        built = entry.get("tensorrt_version")
        built_text = f"built with TensorRT {built}" if built else "TensorRT version not recorded"
        if tensorrt is None:
            line += f"; {built_text}, none installed here"
        elif built:
            line += f"; {built_text}, {tensorrt} installed: " + (
                "usable" if built == tensorrt else "NOT usable, rebuild it"
            )
        else:
            line += f"; {built_text} ({tensorrt} installed)"
    return line


def describe_export(export: ExportDir, tensorrt: str | None = None, *, hashes_verified: bool = True) -> list[str]:
    """The summary's lines. ``tensorrt``: the installed TensorRT version (None: not installed);
    ``hashes_verified``: whether ``export`` was opened with its sha256 checked (the first line says which)."""
    manifest = export.manifest
    model, options = manifest.get("model", {}), manifest.get("export", {})
    strength, files = manifest.get("strength", {}), manifest.get("files", {})
    checked = "sizes and sha256 verified" if hashes_verified else "sizes verified (sha256 not checked)"
    fraction = strength.get("default_schedule_fraction")
    lines = [
        f"{export.root}: {len(files)} files, {sum(f.get('bytes', 0) for f in files.values()) / 1e6:.2f} MB, {checked}",
        f"model     {model.get('class', '?')} ({model.get('family', '?')}) from {model.get('source', '?')}",
        f"export    {options.get('precision', '?')}, opset {options.get('opset', '?')}, strategy "
        f"{strength.get('strategy', '?')}, formats {', '.join(options.get('formats', [])) or '?'}; created "
        f"{manifest.get('created', '?')}",
        f"strength  input `{strength.get('input', '?')}` {strength.get('dtype', '?')} "
        f"[{', '.join(strength.get('shape', []))}]: 0 is the stock model"
        + (f"; default schedule: the first {fraction:.0%} of steps" if isinstance(fraction, int | float) else ""),
    ]
    pipeline = manifest.get("pipeline")
    if pipeline:
        video, defaults = pipeline.get("video", {}), pipeline.get("defaults", {})
        runtime = "driven by `dymos run`" if pipeline.get("runtime_supported") else "not driven by the runtime"
        lines.append(
            f"pipeline  {pipeline.get('class', '?')}, {pipeline.get('scheduler', {}).get('class', '?')}; {runtime}; "
            f"video {video.get('frames', '?')} frames {video.get('height', '?')}x{video.get('width', '?')} -> latents "
            f"{video.get('latent_frames', '?')}x{video.get('latent_height', '?')}x{video.get('latent_width', '?')}"
            + (f"; defaults {', '.join(f'{k} {v}' for k, v in defaults.items())}" if defaults else "")
        )
    versions = manifest.get("versions", {})
    lines.append("versions  " + ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None))
    for name, entry in manifest.get("submodels", {}).items():
        if "inputs" not in entry or "outputs" not in entry:
            raise ManifestError(f"{export.root}: the manifest's {name!r} graph lacks its inputs or outputs")
        lines.append(f"graph {name}")
        lines += [f"  in   {t.get('name', '?'):<24} {_shape(t)}" for t in entry["inputs"]]
        lines += [f"  out  {t.get('name', '?'):<24} {_shape(t)}" for t in entry["outputs"]]
        if entry.get("dims"):
            lines.append(f"  dims {_ranges(entry['dims'])}")
        for kind, artifact in export.artifacts(name).items():
            if not isinstance(artifact, dict):
                continue
            if artifact.get("file"):
                lines.append(f"  {_artifact_line(kind, artifact, files, tensorrt)}")
            elif artifact.get("reason"):
                lines.append(f"  {kind:<12} not exported: {artifact['reason']}")
    return lines
