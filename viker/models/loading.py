"""Load an image-text-to-text model and its processor from a local directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from viker.models.families import FamilyAdapter, adapter_for

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A model, its processor, the family adapter and the directory it came from."""

    model: torch.nn.Module
    processor: object
    adapter: FamilyAdapter
    path: Path

    @property
    def tokenizer(self):
        return self.processor.tokenizer


def check_model_dir(path: str | Path) -> Path:
    """Check that `path` holds a config, safetensors weights and a processor; return it as a Path."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} not found; pass a local folder saved with save_pretrained")
    if not (path / "config.json").is_file():
        raise ValueError(f"{path}: config.json is missing, so this is not a Hugging Face model folder")
    weights = list(path.glob("*.safetensors"))
    if not weights:
        has_bin = any(path.glob("*.bin"))
        hint = " It holds .bin (pickle) weights, which viker does not load because unpickling can run code;" \
               " convert them to safetensors first." if has_bin else ""
        raise ValueError(f"{path}: no *.safetensors weights found.{hint}")
    if not any((path / name).is_file() for name in ("processor_config.json", "preprocessor_config.json")):
        raise ValueError(
            f"{path}: no processor_config.json or preprocessor_config.json; save the processor with "
            "processor.save_pretrained(path) next to the model"
        )
    return path


def load_model(
    path: str | Path,
    *,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    device: str | None = None,
) -> LoadedModel:
    """Load model and processor from a local folder; weights only from safetensors."""
    path = check_model_dir(path)
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is invalid; choose one of {sorted(DTYPES)}")
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
    adapter = adapter_for(config)
    model = AutoModelForImageTextToText.from_pretrained(
        path,
        dtype=DTYPES[dtype],
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
        local_files_only=True,
    )
    processor = load_processor(path, adapter, trust_remote_code=trust_remote_code)
    if device:
        model.to(device)
    model.eval()
    return LoadedModel(model, processor, adapter, path)


def load_processor(path: Path, adapter: FamilyAdapter, trust_remote_code: bool = False):
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
    if not hasattr(processor, "tokenizer"):
        # Without torchvision, AutoProcessor can fall back to the bare tokenizer for some families.
        raise ValueError(
            f"{path}: AutoProcessor returned {type(processor).__name__}, not a multimodal processor. "
            f"Family {adapter.model_type!r} needs its processor class loaded explicitly."
        )
    return processor


def read_model_type(path: str | Path) -> str | None:
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("model_type")
    except (OSError, json.JSONDecodeError):
        return None
