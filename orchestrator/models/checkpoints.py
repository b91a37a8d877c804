"""The checkpoint formats a cluster spec can name (the keys of `artifacts.sources`), and
what each one is. Which backend serves which precision from which of them is a backend
fact (`Backend.loads`, `Backend.quantizes_from`); the planner offers a (precision, backend)
only where the spec names a checkpoint it can start from (planner/checkpoints.py)."""

from __future__ import annotations

CHECKPOINTS: dict[str, str] = {
    "hf": "an F16/BF16 Hugging Face checkpoint",
    "awq": "an AutoAWQ INT4 checkpoint",
    "gptq": "a GPTQ INT4 checkpoint",
    "modelopt_fp8": "a ModelOpt FP8 checkpoint (hf_quant_config.json)",
    "modelopt_w4a16": "a ModelOpt W4A16 AWQ checkpoint (hf_quant_config.json)",
    "gguf": "a GGUF file",
    "imatrix": "a llama.cpp importance matrix (for IQ types)",
}
# what a spec names that is not a model checkpoint by itself
AUXILIARY = frozenset({"imatrix"})
