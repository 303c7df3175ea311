"""Reference outputs of transformers' GPT-2 for gpt2q's conformance fixtures.

Every function here runs a transformers model (fp32, eval mode) and returns
numpy arrays / plain Python values; make_fixtures.py decides what is stored.
The perplexity and greedy-decoding helpers each carry an independent
brute-force cross-check so the fixture is not trusted on one code path alone.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from transformers import GenerationConfig

TOPK = 10
# Positions whose top-1/top-2 logit gap is below this cannot promise an
# identical argmax under the 1e-4 logit tolerance; they are reported.
ARGMAX_GAP = 2e-4


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right padding: ids [B,T], attention mask [B,T], lengths [B] (int64)."""
    T = max(len(s) for s in seqs)
    ids = np.full((len(seqs), T), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), T), dtype=np.int64)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = s
        mask[b, : len(s)] = 1
    return ids, mask, mask.sum(axis=1).astype(np.int64)


def _t(a: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


@torch.no_grad()
def hidden_states(base, ids: np.ndarray, mask: np.ndarray, device: str) -> np.ndarray:
    """last_hidden_state (after ln_f) of a GPT2Model, [B,T,C]."""
    out = base(input_ids=_t(ids, device), attention_mask=_t(mask, device))
    return out.last_hidden_state.float().cpu().numpy()


@torch.no_grad()
def lm_logits(lm, ids: np.ndarray, mask: np.ndarray, device: str) -> np.ndarray:
    out = lm(input_ids=_t(ids, device), attention_mask=_t(mask, device))
    return out.logits.float().cpu().numpy()


def logit_summary(logits: np.ndarray, positions: list[tuple[int, int]], full_positions: list[tuple[int, int]],
                  sample_stride: int) -> dict[str, np.ndarray]:
    """Per (b, t): top-10 ids/values, mean and RMS over the vocabulary (float64),
    every `sample_stride`-th logit, and the full rows at `full_positions`."""
    V = logits.shape[-1]
    rows = np.stack([logits[b, t] for b, t in positions]).astype(np.float32)
    top = torch.topk(torch.from_numpy(rows), TOPK, dim=-1)
    rows64 = rows.astype(np.float64)
    sample_ids = np.arange(0, V, sample_stride, dtype=np.int64)
    out = {
        "pos": np.array(positions, dtype=np.int64),
        "topk_ids": top.indices.numpy().astype(np.int64),
        "topk_values": top.values.numpy().astype(np.float32),
        "logit_mean": rows64.mean(axis=1),
        "logit_rms": np.sqrt((rows64 * rows64).mean(axis=1)),
        "sample_ids": sample_ids,
        "logits_sampled": np.ascontiguousarray(rows[:, sample_ids]),
    }
    if full_positions:
        out["full_pos"] = np.array(full_positions, dtype=np.int64)
        out["logits_full"] = np.stack([logits[b, t] for b, t in full_positions]).astype(np.float32)
    return out


def small_gap_count(topk_values: np.ndarray) -> int:
    return int(((topk_values[:, 0] - topk_values[:, 1]) < ARGMAX_GAP).sum())


@torch.no_grad()
def classifier_logits(cls_model, ids: np.ndarray, mask: np.ndarray, pad_id: int, device: str):
    """GPT2ForSequenceClassification logits [B, L] and the position HF pooled,
    cross-checked against score(hidden[b, pos]) computed here."""
    out = cls_model(input_ids=_t(ids, device), attention_mask=_t(mask, device)).logits.float().cpu().numpy()
    T = ids.shape[1]
    pooled_pos = (np.arange(T)[None, :] * (ids != pad_id)).argmax(axis=1).astype(np.int64)
    hidden = cls_model.transformer(input_ids=_t(ids, device), attention_mask=_t(mask, device)).last_hidden_state
    manual = torch.stack([hidden[b, int(p)] for b, p in enumerate(pooled_pos)])
    manual = cls_model.score(manual).float().cpu().numpy()
    assert np.abs(manual - out).max() < 1e-5, "classifier pooling rule differs from argmax(pos * (ids != pad))"
    return out, pooled_pos


@torch.no_grad()
def greedy_generate(lm, prompt: list[int], max_new_tokens: int, pad_id: int, device: str) -> dict:
    """model.generate(do_sample=False) with no EOS stop, plus the smallest
    top-1/top-2 gap over the steps; re-derived by a cache-free argmax loop."""
    cfg = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, min_new_tokens=0,
                           eos_token_id=None, bos_token_id=None, pad_token_id=pad_id,
                           output_logits=True, return_dict_in_generate=True)
    ids = _t(np.array([prompt], dtype=np.int64), device)
    out = lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=cfg)
    seq = out.sequences[0].cpu().tolist()
    assert len(seq) == len(prompt) + max_new_tokens and seq[: len(prompt)] == prompt
    gaps = []
    for step_logits in out.logits:
        top2 = torch.topk(step_logits[0].float(), 2).values
        gaps.append(float(top2[0] - top2[1]))
    # Independent path: full forward over the growing sequence, torch.argmax.
    manual = list(prompt)
    for _ in range(max_new_tokens):
        logits = lm(input_ids=_t(np.array([manual], dtype=np.int64), device)).logits[0, -1]
        manual.append(int(torch.argmax(logits)))
    assert manual == seq, f"generate() {seq} != argmax loop {manual}"
    return {"prompt_ids": list(prompt), "max_new_tokens": max_new_tokens, "ids": seq,
            "new_ids": seq[len(prompt):], "min_gap": min(gaps)}


def _token_nlls(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target] per row, in float64."""
    l64 = logits.double()
    return torch.logsumexp(l64, dim=-1) - l64.gather(-1, targets[:, None])[:, 0]


@torch.no_grad()
def sliding_window_perplexity(lm, ids: list[int], max_length: int, stride: int, device: str) -> dict:
    """The transformers guide's loop (labels = -100 before the target slice),
    with the NLL summed exactly and the scored positions counted exactly."""
    N = len(ids)
    ids_t = _t(np.array(ids, dtype=np.int64), device)
    nll_sum, scored, windows, prev_end = 0.0, 0, 0, 0
    for begin in range(0, N, stride):
        end = min(begin + max_length, N)
        trg_len = end - prev_end
        window = ids_t[begin:end][None]
        labels = window.clone()
        labels[:, :-trg_len] = -100
        out = lm(input_ids=window, labels=labels)
        shift_logits, shift_labels = out.logits[0, :-1], labels[0, 1:]
        valid = shift_labels != -100
        n_valid = int(valid.sum())
        if n_valid:
            window_nll = float(_token_nlls(shift_logits[valid], shift_labels[valid]).sum())
            # transformers' own (fp32, mean) loss over the same labels agrees.
            assert abs(float(out.loss) * n_valid - window_nll) <= 1e-4 * max(1.0, abs(window_nll))
            nll_sum += window_nll
            scored += n_valid
        windows += 1
        prev_end = end
        if end == N:
            break
    mean = nll_sum / scored
    return {"max_length": max_length, "stride": stride, "tokens": scored, "windows": windows,
            "nll_sum": nll_sum, "nll": mean, "ppl": math.exp(mean)}


@torch.no_grad()
def brute_force_perplexity(lm, ids: list[int], max_length: int, stride: int, device: str) -> tuple[int, float]:
    """Token by token: position p belongs to the first window [begin, end) of the
    schedule with begin < p < end; its NLL comes from a forward pass over
    ids[begin:p] alone. Returns (scored positions, NLL sum)."""
    N = len(ids)
    starts = []
    for begin in range(0, N, stride):
        starts.append(begin)
        if begin + max_length >= N:
            break
    nll_sum, scored = 0.0, 0
    for p in range(1, N):
        owner = next((b for b in starts if b < p < min(b + max_length, N)), None)
        if owner is None:
            continue
        ctx = _t(np.array(ids[owner:p], dtype=np.int64), device)[None]
        logits = lm(input_ids=ctx).logits[0, -1:]
        nll_sum += float(_token_nlls(logits, _t(np.array([ids[p]], dtype=np.int64), device))[0])
        scored += 1
    return scored, nll_sum


def checked_perplexity(lm, ids: list[int], max_length: int, stride: int, device: str) -> dict:
    result = sliding_window_perplexity(lm, ids, max_length, stride, device)
    bf_tokens, bf_nll = brute_force_perplexity(lm, ids, max_length, stride, device)
    assert bf_tokens == result["tokens"], (bf_tokens, result)
    rel = abs(bf_nll - result["nll_sum"]) / abs(bf_nll)
    assert rel < 1e-6, f"brute-force NLL {bf_nll} vs windowed {result['nll_sum']} (rel {rel:.2e})"
    return result
