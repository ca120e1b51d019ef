"""The one owner of the artifact folder format: every read and write of a trained model.

A model folder holds:

- ``model.json``: the manifest (labels, settings, training record) with ``format`` and
  ``files``, the weight files the model is made of (the artifacts hash covers exactly
  those, so a new weight file only needs listing there);
- ``heads.safetensors``: the task heads (float16);
- ``adapter_config.json`` + ``adapter_model.safetensors``: LoRA adapters in peft's standard
  format (``peft.PeftModel.from_pretrained(bert, folder)`` loads them), when trained with
  LoRA;
- ``encoder_delta.safetensors``: a fully fine-tuned encoder as its weight delta to the base
  (``models.delta``: float16, truncated SVD or int8 per row; the manifest's
  ``encoder_delta`` says which), when trained with ``--method full``;
- side files: ``calibration.json`` (part of the model: it changes the probabilities),
  ``metrics.json``, ``cohort_confusion.json``, ``runtime.json`` (precision verdicts, keyed
  on the artifacts hash, one per variant and CPU numerics) and ``reliability.png``.

Where models live: the committed default ships read-only in the package
(``models/artifacts``); models you train or promote go to a model directory
(``ScorerConfig.model_dir``, ``SWINGDIAL_MODEL_DIR``, default ``$SWINGDIAL_HOME/models``).
:func:`resolve` picks the folder to load. Format 1 folders (hand-written LoRA keys in
``lora.safetensors``) still load; :func:`convert_legacy` rewrites one in format 2.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from models.paths import ARTIFACTS_DIR

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMAT = 2
MANIFEST = "model.json"
HEADS = "heads.safetensors"
ADAPTER_CONFIG = "adapter_config.json"  # peft's CONFIG_NAME
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # peft's SAFETENSORS_WEIGHTS_NAME
LEGACY_LORA = "lora.safetensors"  # format 1: the hand-written LoRA's keys
ENCODER_DELTA = "encoder_delta.safetensors"  # full fine-tuning: fine-tuned - base weights
CALIBRATION = "calibration.json"
METRICS = "metrics.json"
CONFUSION = "cohort_confusion.json"
RUNTIME_GATE = "runtime.json"
RELIABILITY = "reliability.png"
# Files that describe one model (copied by promote); the weights come from the manifest.
SIDE_FILES = (CALIBRATION, METRICS, CONFUSION, RUNTIME_GATE, RELIABILITY)
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_DIR = ARTIFACTS_DIR  # the committed default, read-only


# --- where -----------------------------------------------------------------------------


def has_model(directory: Path | None) -> bool:
    return directory is not None and (Path(directory) / MANIFEST).is_file()


def resolve(explicit: Path | str | None = None, model_dir: Path | str | None = None) -> Path:
    """The folder to load: ``explicit`` > ``model_dir`` if it holds a model > the packaged
    default (a fresh install scores with the committed model, nothing to set up)."""
    if explicit is not None:
        return Path(explicit)
    if model_dir is not None and has_model(Path(model_dir)):
        return Path(model_dir)
    return PACKAGED_DIR


def is_packaged(directory: Path) -> bool:
    return Path(directory).resolve() == PACKAGED_DIR.resolve()


# --- manifest and hashes ---------------------------------------------------------------


def read_manifest(directory: Path = PACKAGED_DIR) -> dict:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(
            f"no trained model in {directory} ({MANIFEST} missing); run `swingdial models train`"
        )
    return json.loads(path.read_text())


def weight_files(directory: Path, manifest: Mapping[str, Any] | None = None) -> list[str]:
    """The weight files a model is made of, as its manifest lists them (format 1: guessed)."""
    manifest = manifest if manifest is not None else read_manifest(directory)
    if "files" in manifest:
        return list(manifest["files"])
    return [name for name in (HEADS, LEGACY_LORA) if (Path(directory) / name).exists()]


def _digest(directory: Path, names: list[str]) -> str:
    digest = hashlib.sha256()
    for name in names:
        path = Path(directory) / name
        if path.exists():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def weights_hash(directory: Path) -> str:
    """Hash of what decides the embeddings and logits (manifest + weights), not calibration:
    the key of caches of logits."""
    return _digest(directory, [MANIFEST, *weight_files(directory)])


def artifacts_hash(directory: Path) -> str:
    """Short content hash of the model (manifest, weights, calibration): part of the version
    string and the key of the ONNX exports and the precision verdicts."""
    return _digest(directory, [MANIFEST, *weight_files(directory), CALIBRATION])


# --- weights ---------------------------------------------------------------------------


def half_precision(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float tensors as contiguous float16 CPU tensors (how models are stored: half the
    size; loaders copy the values back into float32 parameters)."""
    import torch

    return {k: v.detach().cpu().to(torch.float16).contiguous() for k, v in state.items()}


def read_heads_state(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / HEADS))


def write_heads_state(directory: Path, state: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    Path(directory).mkdir(parents=True, exist_ok=True)
    save_file(half_precision(state), str(Path(directory) / HEADS))


def legacy_lora_to_peft(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Format 1 keys (``encoder.layer.0.attention.self.query.lora_A``, the same matrices)
    as peft saves them (``base_model.model.<same>.lora_A.weight``)."""
    return {f"base_model.model.{key}.weight": value for key, value in state.items()}


def read_adapter(directory: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """``(settings, peft state dict)`` of a model's LoRA adapters, None without adapters.

    ``settings``: ``rank``, ``alpha``, ``target_modules``. Format 1 folders are converted
    in memory.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    if (directory / ADAPTER_CONFIG).exists():
        config = json.loads((directory / ADAPTER_CONFIG).read_text())
        settings = {
            "rank": int(config["r"]),
            "alpha": float(config["lora_alpha"]),
            "target_modules": config["target_modules"],
        }
        return settings, load_file(str(directory / ADAPTER_WEIGHTS))
    if (directory / LEGACY_LORA).exists():
        lora = read_manifest(directory).get("lora") or {}
        settings = {"rank": int(lora["rank"]), "alpha": float(lora.get("alpha", 16.0))}
        return settings, legacy_lora_to_peft(load_file(str(directory / LEGACY_LORA)))
    return None


def _write_adapter_config(directory: Path, config: Any) -> None:
    """peft's ``adapter_config.json``, byte-stable: sets sorted, no local paths."""
    data = config.to_dict()
    data = {k: sorted(v) if isinstance(v, set) else v for k, v in data.items()}
    data["inference_mode"] = True
    data["base_model_name_or_path"] = BASE_MODEL  # not the package's machine-specific path
    (directory / ADAPTER_CONFIG).write_text(json.dumps(data, indent=2, sort_keys=True))


def write_adapter(directory: Path, model: nn.Module) -> list[str]:
    """A peft model's adapters in peft's standard format (weights float16); file names."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_adapter_config(directory, cast(Any, model).peft_config["default"])
    state = half_precision(get_peft_model_state_dict(model))
    save_file(state, str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return [ADAPTER_CONFIG, ADAPTER_WEIGHTS]


def read_encoder_delta(directory: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """``(settings, packed delta)`` of a fully fine-tuned model, None for the others.

    ``settings``: ``form`` (one of ``models.config.DELTA_FORMS``) and ``rank`` (svd), from the
    manifest; the packed tensors decode with ``models.delta.decode_delta``.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    settings = read_manifest(directory).get("encoder_delta")
    if not settings:
        return None
    return dict(settings), load_file(str(directory / ENCODER_DELTA))


def training_setting(manifest: Mapping[str, Any], name: str) -> Any:
    """A run's training setting ``name``: from its config (lora / full runs) or, for frozen
    runs, the training info itself; ``None`` when the run did not record it."""
    training = manifest.get("training", {})
    return training.get("config", {}).get(name, training.get(name))


def _remove(directory: Path, names: list[str] | tuple[str, ...]) -> None:
    for name in names:
        (Path(directory) / name).unlink(missing_ok=True)


def write_model(
    directory: Path,
    heads_state: Mapping[str, torch.Tensor],
    manifest: dict,
    *,
    adapter: nn.Module | None = None,
    extra_weights: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    encoder_delta: tuple[dict, Mapping[str, torch.Tensor]] | None = None,
) -> dict:
    """Write a whole model: heads, adapters (a peft model, or None), a fully fine-tuned
    encoder's ``(settings, packed delta)`` (or None), any further weight files (``{file
    name: state dict}``) and the manifest listing them. Stale weights of a previous model
    in the folder are removed. Returns the manifest written."""
    from safetensors.torch import save_file

    directory = Path(directory)
    write_heads_state(directory, heads_state)
    files = [HEADS]
    _remove(directory, (ADAPTER_CONFIG, ADAPTER_WEIGHTS, LEGACY_LORA, ENCODER_DELTA))
    if adapter is not None:
        files += write_adapter(directory, adapter)
    rest = {k: v for k, v in manifest.items() if k not in ("format", "files", "encoder_delta")}
    if encoder_delta is not None:
        settings, packed = encoder_delta
        # stored as given: float16 / int8 already, so a refit re-writes it byte for byte
        save_file(dict(packed), str(directory / ENCODER_DELTA), metadata={"format": "pt"})
        files.append(ENCODER_DELTA)
        rest["encoder_delta"] = dict(settings)
    for name, state in (extra_weights or {}).items():
        save_file(half_precision(state), str(directory / name))
        files.append(name)
    manifest = {"format": FORMAT, **rest, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def convert_legacy(directory: Path) -> bool:
    """Rewrite a format 1 folder in format 2 (adapters in peft's format, ``files`` in the
    manifest); the adapter values are copied unchanged. Returns whether anything changed."""
    from safetensors.torch import save_file

    from models.encoder import lora_config

    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.get("format", 1) >= FORMAT:
        return False
    files = [HEADS]
    adapter = read_adapter(directory)
    if adapter is not None:
        settings, state = adapter
        dropout = float(manifest.get("training", {}).get("config", {}).get("dropout", 0.0))
        _write_adapter_config(directory, lora_config(settings["rank"], settings["alpha"], dropout))
        save_file(dict(state), str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        files += [ADAPTER_CONFIG, ADAPTER_WEIGHTS]
        _remove(directory, (LEGACY_LORA,))
    manifest = {**manifest, "format": FORMAT, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return True


def copy_model(source: Path, target: Path) -> list[str]:
    """Copy a whole model (weights as float16, manifest, side files) into ``target``,
    removing files of the previous model there that the new one lacks. Returns the names
    copied. ``target`` must not be the packaged default (it ships read-only).

    Weights already in float16 are copied byte for byte, so the artifacts hash, and with it
    the precision verdicts and the ONNX exports, carry over.
    """
    import torch
    from safetensors.torch import load_file, save_file

    source, target = Path(source), Path(target)
    if is_packaged(target):
        raise ValueError(f"{target} is the packaged default (read-only); use a model directory")
    manifest = read_manifest(source)
    weights = weight_files(source, manifest)
    target.mkdir(parents=True, exist_ok=True)
    if has_model(target):
        _remove(target, weight_files(target))
    _remove(target, (ADAPTER_CONFIG, ADAPTER_WEIGHTS, LEGACY_LORA, ENCODER_DELTA, *SIDE_FILES))
    copied = []
    for name in (*weights, MANIFEST, *SIDE_FILES):
        if not (source / name).exists():
            continue
        state = load_file(str(source / name)) if name.endswith(".safetensors") else None
        if state and any(
            v.is_floating_point() and v.dtype != torch.float16 for v in state.values()
        ):
            save_file(half_precision(state), str(target / name), metadata={"format": "pt"})
        else:
            shutil.copy2(source / name, target / name)
        copied.append(name)
    return copied


# --- side files ------------------------------------------------------------------------


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


def _write_json(path: Path, data: Any, indent: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent) + "\n")
    return path


def read_calibration(directory: Path) -> dict:
    """Per-head calibration parameters ({} when the model has none: plain softmax)."""
    return _read_json(Path(directory) / CALIBRATION, {})


def write_calibration(directory: Path, params: dict) -> Path:
    return _write_json(Path(directory) / CALIBRATION, params)


def read_metrics(directory: Path) -> dict:
    return _read_json(Path(directory) / METRICS, {})


def write_metrics(directory: Path, metrics: dict) -> Path:
    return _write_json(Path(directory) / METRICS, metrics)


def update_metrics(directory: Path, entries: dict) -> Path:
    """Merge ``entries`` into the stored metrics (keeps entries only training wrote)."""
    return write_metrics(directory, read_metrics(directory) | entries)


def read_confusion(directory: Path = PACKAGED_DIR) -> dict:
    """The cohort confusion counts measured for this model (``models.cohort_confusion``)."""
    return json.loads((Path(directory) / CONFUSION).read_text())


def write_confusion(directory: Path, data: dict) -> Path:
    return _write_json(Path(directory) / CONFUSION, data, indent=1)


def read_gate(directory: Path) -> dict:
    """The stored precision verdicts, whatever artifacts they were measured on."""
    try:
        return json.loads((Path(directory) / RUNTIME_GATE).read_text())
    except (OSError, ValueError):
        return {}


def runtime_gate(directory: Path = PACKAGED_DIR) -> dict[str, Any]:
    """The precision verdicts stored for exactly these artifacts (empty if none or stale)."""
    gate = read_gate(directory)
    return gate if gate.get("artifacts_hash") == artifacts_hash(directory) else {}


def gate_verdict(gate: dict, variant: str, model_file: str | None = None) -> dict | None:
    """The verdict for ``variant`` measured where the numbers are this CPU's
    (:func:`models.cpu.numerics`) on the model file ``model_file`` (its name carries the
    export recipe, so a new int8 recipe needs a new verdict): verdicts are stored per
    variant and numerics, since int8 and bf16 round differently on other CPUs. None if
    none was measured (a file of the older flat form, one row per variant with no CPU,
    gives none either)."""
    from models.cpu import numerics

    rows = gate.get("variants", {}).get(variant, {})
    row = rows.get(numerics(variant))
    if not isinstance(row, dict) or row.get("file") != model_file:
        return None
    return row


def merge_gate(old: dict, new: dict) -> dict:
    """``new``'s verdicts added to ``old``'s for the same artifacts (a re-measured variant
    and numerics replaced), so gates run on different CPUs add up; other artifacts' or
    flat-form verdicts are dropped."""
    if old.get("artifacts_hash") != new.get("artifacts_hash"):
        return new
    variants: dict[str, dict] = {}
    for source in (old, new):
        for variant, rows in source.get("variants", {}).items():
            if "ok" in rows:  # the flat form: not tied to any CPU
                continue
            variants.setdefault(variant, {}).update(rows)
    return {**new, "variants": variants}


def write_gate(result: dict, directory: Path = PACKAGED_DIR) -> Path:
    """Store the verdicts next to the artifacts they were measured on, beside the verdicts
    other CPUs measured for them."""
    merged = merge_gate(read_gate(directory), result)
    return _write_json(Path(directory) / RUNTIME_GATE, merged)


def reliability_path(directory: Path) -> Path:
    return Path(directory) / RELIABILITY
