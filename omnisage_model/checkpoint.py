"""Checkpoints as safetensors plus a JSON config: loading never unpickles anything."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
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


def trained_with(meta: dict[str, Any], config: ModelConfig) -> bool:
    """Whether the checkpoint whose metadata is ``meta`` has ``config``'s architecture. A setting
    added since it was written takes its default (what the checkpoint was trained with), so an
    upgrade does not cost a warm start; one this code does not know means another architecture."""
    try:
        saved = ModelConfig.from_dict(meta["model_config"])
    except (KeyError, TypeError, ValueError):
        return False
    return dataclasses.asdict(saved) == dataclasses.asdict(config)


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


# A resumable training state: everything a killed run needs to continue as if it had not
# stopped. Tensors go to safetensors, the rest to JSON; the folder is replaced atomically.
STATE_TENSORS, STATE_JSON = "state.safetensors", "state.json"


def save_training_state(
    directory: Path | str,
    model: OmniSage,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
) -> Path:
    """Write the state into a fresh sibling folder, then swap it in with renames."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_checkpoint(tmp, model)
    opt = optimizer.state_dict()
    flat = {f"optimizer.{pid}.{key}": value for pid, state in opt["state"].items() for key, value in state.items()}
    flat |= {f"extra.{key}": value for key, value in tensors.items()}
    save_file({k: v.detach().contiguous().cpu() for k, v in flat.items()}, str(tmp / STATE_TENSORS))
    body = {"optimizer_param_groups": opt["param_groups"], "scheduler": scheduler.state_dict(), **meta}
    (tmp / STATE_JSON).write_text(json.dumps(body, default=str))
    old = directory.with_name(f".{directory.name}.old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old.exists():
        shutil.rmtree(old)
    return directory


def recover_training_state(directory: Path | str) -> None:
    """Finish what a kill between ``save_training_state``'s two renames left: the previous
    state parked as ``.<name>.old`` goes back in place (a half-written ``.tmp`` is dropped)."""
    directory = Path(directory)
    old = directory.with_name(f".{directory.name}.old")
    if not directory.exists() and old.exists():
        os.replace(old, directory)


def load_training_state(
    directory: Path | str,
    model: OmniSage,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore model, optimizer and scheduler in place; return the extra tensors and metadata."""
    directory = Path(directory)
    load_weights(model, directory)
    try:
        body = json.loads((directory / STATE_JSON).read_text())
        flat = load_file(str(directory / STATE_TENSORS))
    except (OSError, json.JSONDecodeError, SafetensorError) as err:
        raise CheckpointError(f"{directory}: corrupt training state ({err})") from None
    state: dict[int, dict[str, torch.Tensor]] = {}
    extra = {}
    for key, value in flat.items():
        kind, rest = key.split(".", 1)
        if kind == "optimizer":
            pid, name = rest.split(".", 1)
            state.setdefault(int(pid), {})[name] = value
        else:
            extra[rest] = value
    optimizer.load_state_dict({"state": state, "param_groups": body.pop("optimizer_param_groups")})
    scheduler.load_state_dict(body.pop("scheduler"))
    return extra, body
