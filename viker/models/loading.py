"""Load an image-text-to-text model and its processor from a local directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from viker.models.families import FAMILIES, FamilyAdapter, adapter_for
from viker.models.qwen import IMAGE_TEXT_PROCESSORS

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
    for file in weights:
        check_safetensors_file(file)
    if not any((path / name).is_file() for name in ("processor_config.json", "preprocessor_config.json")):
        raise ValueError(
            f"{path}: no processor_config.json or preprocessor_config.json; save the processor with "
            "processor.save_pretrained(path) next to the model"
        )
    return path


def check_safetensors_file(path: Path) -> None:
    """Raise ValueError if a safetensors file is cut short or its header is unreadable.

    Reads only the 8-byte header length and the JSON header: the file must be exactly
    as long as the header says (8 + header + the end of the last tensor's data).
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            header_length = int.from_bytes(f.read(8), "little")
            if header_length <= 0 or 8 + header_length > size:
                raise ValueError(f"header length {header_length} does not fit in {size} bytes")
            header = json.loads(f.read(header_length))
        data_end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"),
                       default=0)
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise ValueError(f"{path}: the safetensors header is damaged ({err}); download or save the weights again")
    if 8 + header_length + data_end != size:
        raise ValueError(f"{path}: the file has {size} bytes but its header describes "
                         f"{8 + header_length + data_end}; it is truncated or damaged, so download or save it again")


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
    declared = read_model_type(path)
    if declared not in FAMILIES:
        raise ValueError(f"{path / 'config.json'}: unsupported model_type {declared!r}; viker supports "
                         f"{sorted(FAMILIES)}. Point --model at a checkpoint of one of those families")
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
    """Load the processor: the family's image-text class where viker has one, AutoProcessor otherwise.

    transformers 5.25's stock Qwen2-VL and Qwen2.5-VL processors need the torchvision
    video processor: without torchvision, AutoProcessor raises ImportError on a
    downloaded Qwen folder and returns only the tokenizer on one saved by viker. Those
    families always load through the image-only subclasses in `viker.models.qwen`,
    so they behave the same with and without torchvision.
    """
    if adapter.model_type in IMAGE_TEXT_PROCESSORS:
        return IMAGE_TEXT_PROCESSORS[adapter.model_type].from_pretrained(path, local_files_only=True)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code, local_files_only=True)
    if not hasattr(processor, "tokenizer"):
        raise ValueError(
            f"{path}: AutoProcessor returned {type(processor).__name__}, not a multimodal processor. "
            f"Family {adapter.model_type!r} needs its processor class loaded explicitly, as viker does for "
            "Qwen through IMAGE_TEXT_PROCESSORS in viker/models/qwen.py."
        )
    return processor


def read_model_type(path: str | Path) -> str | None:
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("model_type")
    except (OSError, json.JSONDecodeError):
        return None
