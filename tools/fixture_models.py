"""The small GPT-2 checkpoints behind gpt2q's conformance fixtures: what each
one is, how its weights are made (seeded), and how it is written to disk.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, GPT2Model

GPT2_VOCAB = 50257
EOS = 50256
AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
# Causal-mask buffers some files carry (h.N.attn.bias, h.N.attn.masked_bias): not weights.
MASK_BUFFER = re.compile(r"(^|\.)h\.\d+\.attn\.(bias|masked_bias)$")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class ModelSpec:
    name: str
    purpose: str
    head: str  # "lm" (GPT2LMHeadModel), "cls" (GPT2ForSequenceClassification), "base" (GPT2Model)
    vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_positions: int
    n_inner: int | None = None
    dtype: str = "float32"  # as stored in model.safetensors
    layout: str = "transformers"  # "transformers": save_pretrained; "hub-plain": like the hub's gpt2 file
    weights: str = "wide"  # "wide": seeded random with non-trivial scales; "trained": HF init + AdamW steps
    seed: int = 0
    pad_id: int | None = None  # classifier pad_token_id
    gen_new_tokens: int = 10
    ppl_pairs: list[tuple[int, int]] = field(default_factory=list)

    @property
    def real_vocab(self) -> bool:
        return self.vocab == GPT2_VOCAB

    @property
    def eos_id(self) -> int:
        return EOS if self.real_vocab else self.vocab - 1


SPECS = [
    ModelSpec("tiny-lm", "real GPT-2 vocabulary, tiny width: tokenizer, text, CLI generate/perplexity",
              "lm", GPT2_VOCAB, 16, 2, 2, 128, seed=11, gen_new_tokens=12,
              ppl_pairs=[(128, 128), (128, 64), (100, 37)]),
    ModelSpec("small-vocab-lm", "vocabulary 1000, explicit n_inner=72, 3 layers x 4 heads: full logits",
              "lm", 1000, 32, 3, 4, 64, n_inner=72, seed=12, ppl_pairs=[(64, 64), (64, 24), (40, 40), (33, 1)]),
    ModelSpec("classifier", "GPT2ForSequenceClassification, 4 AG News labels, pad_token_id 998 != eos 999",
              "cls", 1000, 32, 2, 4, 64, seed=13, pad_id=998),
    ModelSpec("hub-style-noprefix", "file laid out like the hub's gpt2: no 'transformer.' prefix, h.N.attn.bias "
              "buffers, transformers-4 config (n_ctx, no dtype key)",
              "lm", 1000, 32, 2, 2, 64, layout="hub-plain", seed=14, ppl_pairs=[(64, 32)]),
    ModelSpec("base-model", "GPT2Model.save_pretrained (architecture GPT2Model, no prefix, no head), 3 heads of 8",
              "base", 1000, 24, 2, 3, 64, seed=15, ppl_pairs=[(64, 48)]),
    ModelSpec("trained-lm", "real vocabulary, HF init + 48 AdamW steps on tiny-shakespeare: realistic weights",
              "lm", GPT2_VOCAB, 8, 2, 2, 128, weights="trained", seed=16, gen_new_tokens=16,
              ppl_pairs=[(128, 128), (128, 32), (64, 64)]),
    ModelSpec("fp16-lm", "weights stored as F16 (config dtype float16); reference = the same values in fp32",
              "lm", 1000, 32, 2, 4, 64, dtype="float16", seed=17, ppl_pairs=[(64, 16)]),
    ModelSpec("bf16-lm", "weights stored as BF16 (config dtype bfloat16); reference = the same values in fp32",
              "lm", 1000, 32, 2, 4, 64, dtype="bfloat16", seed=18, ppl_pairs=[(64, 64)]),
]


def make_config(spec: ModelSpec) -> GPT2Config:
    kw = dict(vocab_size=spec.vocab, n_positions=spec.n_positions, n_embd=spec.n_embd, n_layer=spec.n_layer,
              n_head=spec.n_head, n_inner=spec.n_inner, bos_token_id=spec.eos_id, eos_token_id=spec.eos_id)
    if spec.head == "cls":
        kw.update(num_labels=len(AG_NEWS_LABELS), id2label=dict(enumerate(AG_NEWS_LABELS)),
                  label2id={n: i for i, n in enumerate(AG_NEWS_LABELS)}, pad_token_id=spec.pad_id)
    cfg = GPT2Config(**kw)
    cfg._attn_implementation = "eager"
    return cfg


def model_class(head: str):
    return {"lm": GPT2LMHeadModel, "cls": GPT2ForSequenceClassification, "base": GPT2Model}[head]


@torch.no_grad()
def widen_weights(model: torch.nn.Module, seed: int) -> None:
    """Replace HF's init (std 0.02, zero biases, LayerNorm 1/0) by seeded values
    of useful size: attention that is far from uniform, non-zero biases and
    LayerNorm parameters, so that a wrong bias, scale or mask shows in the logits."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        if "ln_" in name:
            p.copy_(1.0 + 0.2 * noise if name.endswith(".weight") else 0.1 * noise)
        elif name.endswith(".bias"):
            p.copy_(0.1 * noise)
        elif name.endswith("wte.weight"):
            p.copy_(noise / p.shape[1] ** 0.5)
        elif name.endswith("wpe.weight"):
            p.copy_(0.3 * noise)
        elif name.endswith("score.weight"):
            p.copy_(noise / p.shape[1] ** 0.5)
        elif "c_attn" in name or "c_fc" in name:  # Conv1D weight [in, out]
            p.copy_(1.2 * noise / p.shape[0] ** 0.5)
        else:  # attn.c_proj, mlp.c_proj: keep the residual stream moderate
            p.copy_(0.5 * noise / p.shape[0] ** 0.5)


def train_briefly(model: GPT2LMHeadModel, token_ids: list[int], seed: int, steps: int = 48, batch: int = 8,
                  seq: int = 64, lr: float = 1e-2) -> dict:
    """A few AdamW steps of next-token training on CPU, fully seeded."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data = torch.tensor(token_ids, dtype=torch.int64)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, foreach=False)
    model.train()
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=gen)
        x = torch.stack([data[s:s + seq] for s in starts.tolist()])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return {"steps": steps, "batch": batch, "seq": seq, "lr": lr, "optimizer": "AdamW(wd=0.01), clip 1.0",
            "loss_first": losses[0], "loss_last": losses[-1]}


def hub_style_config(spec: ModelSpec) -> dict:
    """config.json as the hub's gpt2 has it (transformers 4 era): n_ctx, no dtype."""
    return {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": spec.eos_id, "embd_pdrop": 0.1, "eos_token_id": spec.eos_id, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": spec.n_positions, "n_embd": spec.n_embd,
        "n_head": spec.n_head, "n_layer": spec.n_layer, "n_positions": spec.n_positions, "resid_pdrop": 0.1,
        "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
        "summary_type": "cls_index", "summary_use_proj": True,
        "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
        "vocab_size": spec.vocab,
    }


def save_model(spec: ModelSpec, model: torch.nn.Module, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    if spec.layout == "hub-plain":
        # The hub's gpt2 model.safetensors: GPT2Model names plus each block's
        # causal-mask buffer `h.N.attn.bias` [1, 1, P, P] (F32 lower triangle).
        base = model.transformer if hasattr(model, "transformer") else model
        tensors = {k: v.detach().to(DTYPES[spec.dtype]).contiguous() for k, v in base.state_dict().items()
                   if not MASK_BUFFER.search(k)}
        P = spec.n_positions
        mask = torch.tril(torch.ones(P, P, dtype=torch.float32)).view(1, 1, P, P)
        for layer in range(spec.n_layer):
            tensors[f"h.{layer}.attn.bias"] = mask.clone()
        save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(hub_style_config(spec), f, indent=2, sort_keys=True)
            f.write("\n")
        return
    model.to(DTYPES[spec.dtype]).save_pretrained(out_dir, safe_serialization=True)
    model.to(torch.float32)


def build_model(spec: ModelSpec, training_ids: list[int] | None) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(spec.seed)
    model = model_class(spec.head)(make_config(spec)).eval()
    info: dict = {}
    if spec.weights == "trained":
        info["training"] = train_briefly(model, training_ids, spec.seed)
    else:
        widen_weights(model, spec.seed)
    return model, info


def load_models(spec: ModelSpec, model_dir: str, device: str) -> dict[str, torch.nn.Module]:
    """The checkpoint as transformers loads it, in fp32, eval mode, eager
    attention: {"lm": ..., "base": ..., "cls": ...} for what the spec has.
    Each is checked to hold exactly the file's values (no silent re-init)."""
    kw = dict(dtype=torch.float32, attn_implementation="eager")
    models: dict[str, torch.nn.Module] = {}
    if spec.head == "cls":
        models["cls"] = GPT2ForSequenceClassification.from_pretrained(model_dir, **kw)
        models["base"] = models["cls"].transformer
    else:
        models["lm"] = GPT2LMHeadModel.from_pretrained(model_dir, **kw)
        models["base"] = models["lm"].transformer
        if spec.head == "base":
            models["base"] = GPT2Model.from_pretrained(model_dir, **kw)
    for m in models.values():
        m.to(device).eval()
    file_tensors = load_file(os.path.join(model_dir, "model.safetensors"))
    for top in [m for k, m in models.items() if k != "base"] + [models["base"]]:
        _assert_holds_file_values(top, file_tensors, model_dir)
    return models


def _assert_holds_file_values(model: torch.nn.Module, file_tensors: dict, model_dir: str) -> None:
    state = model.state_dict()
    matched = 0
    for key, value in file_tensors.items():
        name = key.removeprefix("transformer.")
        if MASK_BUFFER.search(name):
            continue  # causal-mask buffers, not weights
        for cand in (key, name, "transformer." + name):
            if cand in state:
                got = state[cand].detach().cpu()
                assert torch.equal(got, value.to(torch.float32)), f"{model_dir}: {cand} differs from the file"
                matched += 1
                break
    params = [k for k in state if not k.startswith("lm_head.") and not MASK_BUFFER.search(k)]
    assert matched == len(params), f"{model_dir}: {matched} file tensors matched {len(params)} parameters"


def random_ids(rng: np.random.Generator, n: int, vocab: int, avoid: set[int]) -> list[int]:
    out = []
    while len(out) < n:
        v = int(rng.integers(0, vocab))
        if v not in avoid:
            out.append(v)
    return out
