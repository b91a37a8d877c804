"""A tiny Llama-architecture checkpoint made on the spot: random weights (a few MB) and a
byte-level BPE tokenizer trained on a few sentences, saved as a Hugging Face directory,
so the GPU checks load nothing from the network. Needs torch, transformers and tokenizers
(the vllm and trtllm extras bring them)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.models.catalog import ModelArch

LAYERS, HIDDEN, HEADS, KV_HEADS, FFN, CONTEXT = 4, 256, 8, 4, 512, 2048
CORPUS = ["The capital of France is Paris.", "Once upon a time there was a tiny model.",
          "One, two, three, four, five, six, seven, eight, nine, ten."] * 50


def make_tiny_llama(root: Path) -> tuple[str, ModelArch]:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(vocab_size=len(fast), hidden_size=HIDDEN, intermediate_size=FFN,
                         num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         num_key_value_heads=KV_HEADS, max_position_embeddings=CONTEXT,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         torch_dtype="float16")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float16)
    out = root / "tiny-llama"
    model.save_pretrained(out)
    fast.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    arch = ModelArch(id="tiny-llama", display="tiny Llama (random weights)", params=params,
                     layers=LAYERS, hidden=HIDDEN, heads=HEADS, kv_heads=KV_HEADS,
                     head_dim=HIDDEN // HEADS, ffn=FFN, vocab=len(fast), max_context=CONTEXT)
    return str(out), arch
