"""Checkpoints as safetensors plus a JSON config: loading never unpickles anything."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from omnisage_model.config import ModelConfig
from omnisage_model.model import OmniSage

FORMAT = "omnisage-checkpoint/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or not an OmniSage checkpoint."""


def save_checkpoint(directory: Path | str, model: OmniSage, extra: dict[str, Any] | None = None) -> Path:
    """Write weights then config, each via a temporary file and an atomic rename."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = directory / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, directory / WEIGHTS)
    meta = {"format": FORMAT, "model_config": vars(model.config), **(extra or {})}
    tmp = directory / f".{CONFIG}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, directory / CONFIG)
    return directory


def read_checkpoint_config(directory: Path | str) -> dict[str, Any]:
    path = Path(directory) / CONFIG
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no checkpoint config here") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: corrupt checkpoint config ({err})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an OmniSage checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
    return meta


def load_checkpoint(directory: Path | str, device: str | torch.device = "cpu") -> tuple[OmniSage, dict[str, Any]]:
    """The model with its weights, and the checkpoint's JSON metadata."""
    meta = read_checkpoint_config(directory)
    model = OmniSage(ModelConfig.from_dict(meta["model_config"]))
    load_weights(model, directory)
    return model.to(device), meta


def load_weights(model: OmniSage, directory: Path | str) -> None:
    path = Path(directory) / WEIGHTS
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no weights file") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt weights ({err})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: weights do not fit this model (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, wrong shape {wrong[:3]})"
        )
    model.load_state_dict(state)
