#!/usr/bin/env python3
"""Load gpt2q's quantized checkpoints with transformers + bitsandbytes.

Shows that the layout `gpt2q quantize` writes (tensor names, packing, nibble
order, [out, in] transposition, quant_state JSON, SCB) is the one
transformers + bitsandbytes read:

  python3 tools/check_bnb_compat.py --gpt2q build/gpt2q [--model DIR]

Without --model it builds a small random GPT-2 (seeded). For each method
(nf4, nf4 + double quant, fp4, llm-int8) it runs `gpt2q quantize`, then:
  1. loads the result with AutoModelForCausalLM.from_pretrained (bnb CPU
     backend) and checks every block projection became a bnb layer;
  2. compares the weight bitsandbytes reconstructs from our file
     (dequantize_4bit / CB·SCB/127) with the original weight: the error must be
     that of the format (|err| <= absmax/2-ish, not a scrambled layout);
  3. quantizes the original weights with bitsandbytes itself and counts codes
     that differ from ours (bnb's CPU backend rounds a few threshold ties
     differently: docs/quantization.md);
  4. runs both models (bnb on our checkpoint; fp32 transformers with the
     weights bnb dequantized) and compares the logits (bnb's bf16 CPU kernel
     for 4-bit layers is switched off so that both compute in fp32).
Then compute dtype bf16 (`quantize --compute-dtype bf16`, written as
bnb_4bit_compute_dtype): with --tokenizer (default ../shared/data/gpt2-tokenizer
when present) it builds a small GPT-2 with the real vocabulary, quantizes it to
nf4 and fp4 with bf16 compute, checks that transformers gives every Linear4bit
compute_dtype bfloat16, and compares the last-position logits of a 20+-token
text from bnb (bf16 compute, its own CPU path) with `gpt2q logits` on the same
checkpoint. They agree to bf16's rounding noise, not bit for bit: bnb also
rounds each layer's output to bf16 (gpt2q keeps the fp32 sums) and sums in
another order, so its distance from gpt2q's bf16 logits is of the size of
either's distance from fp32 compute (all three ~0.3-0.5 % of the largest
logit on this model).
Needs: pip install bitsandbytes accelerate. Exit status 1 if a check fails.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch


def make_model(path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_embd=128, n_layer=2, n_head=4, n_positions=64, vocab_size=500, bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(path)


def projections(model):
    for i, block in enumerate(model.transformer.h):
        for name, mod in (("attn.c_attn", block.attn.c_attn), ("attn.c_proj", block.attn.c_proj),
                          ("mlp.c_fc", block.mlp.c_fc), ("mlp.c_proj", block.mlp.c_proj)):
            yield f"h.{i}.{name}", mod


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpt2q", required=True, help="path of the gpt2q binary")
    ap.add_argument("--model", help="fp32 GPT-2 checkpoint (default: a small random one)")
    default_tok = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "gpt2-tokenizer")
    ap.add_argument("--tokenizer", default=default_tok if os.path.isdir(default_tok) else None,
                    help="GPT-2 tokenizer dir for the bf16-compute check (skipped without one)")
    args = ap.parse_args()

    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    from transformers import AutoModelForCausalLM

    work = tempfile.mkdtemp(prefix="gpt2q_bnb_")
    src = args.model or os.path.join(work, "fp32")
    if not args.model:
        make_model(src)
    original = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    ids = torch.tensor([[3, 14, 15, 92, 65, 35, 89, 79, 32, 38], [46, 26, 43, 38, 32, 79, 50, 28, 84, 19]])

    ok = True
    for method, extra in (("nf4", []), ("nf4", ["--double-quant"]), ("fp4", []), ("llm-int8", [])):
        tag = method + ("-dq" if extra else "")
        out = os.path.join(work, tag)
        subprocess.run([args.gpt2q, "quantize", "--model", src, "--method", method, *extra, "--keep-dtype", "fp32",
                        "--out", out], check=True, stdout=subprocess.DEVNULL)
        q = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
        for m in q.modules():
            # On AVX512-BF16 CPUs bnb repacks 4-bit weights for a bf16 kernel at
            # inference; keep its fp32 path (dequantize, then an fp32 GEMM).
            if isinstance(m, bnb.nn.Linear4bit):
                m.support_avx512bf16_for_cpu = False
        reference = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
        worst_rel, code_diff, code_total = 0.0, 0, 0
        for (name, mod), (_, orig_mod), (_, ref_mod) in zip(projections(q), projections(original),
                                                             projections(reference)):
            w = orig_mod.weight.detach().t().contiguous()  # Conv1D [in, out] -> [out, in]
            if method == "llm-int8":
                if not isinstance(mod, bnb.nn.Linear8bitLt):
                    print(f"{tag}: {name} is {type(mod).__name__}, not Linear8bitLt"); ok = False; continue
                cb, scb = mod.weight.data, mod.weight.SCB
                deq = cb.float() * scb[:, None].float() / 127.0
                ref_cb, ref_scb, _ = F.int8_vectorwise_quant(w.half())
                code_diff += int((ref_cb != cb).sum()); code_total += cb.numel()
                if not torch.equal(ref_scb.float(), scb.float()):
                    print(f"{tag}: {name} SCB differs from bnb's"); ok = False
                tol = scb[:, None].float() / 127.0 * 0.5 + 1e-3 * w.abs()  # half a step (+ the fp16 rounding of w)
            else:
                if not isinstance(mod, bnb.nn.Linear4bit):
                    print(f"{tag}: {name} is {type(mod).__name__}, not Linear4bit"); ok = False; continue
                qs = mod.weight.quant_state
                deq = F.dequantize_4bit(mod.weight.data, qs).float()
                ref_packed, _ = F.quantize_4bit(w, blocksize=qs.blocksize, quant_type=qs.quant_type,
                                                compress_statistics=qs.nested)
                a = np.unpackbits(ref_packed.numpy().reshape(-1)).reshape(-1, 4)
                b = np.unpackbits(mod.weight.data.numpy().reshape(-1)).reshape(-1, 4)
                code_diff += int((a != b).any(axis=1).sum()); code_total += a.shape[0]
                absmax = w.reshape(-1, qs.blocksize).abs().amax(dim=1).repeat_interleave(qs.blocksize).reshape(w.shape)
                tol = absmax * (0.16 if qs.quant_type == "nf4" else 0.17) + 1e-6  # half the widest table gap
            err = (deq - w).abs()
            worst_rel = max(worst_rel, float((err / tol).max()))
            if deq.shape != w.shape or bool((err > tol).any()):
                print(f"{tag}: {name}: bnb's reconstruction of our weights is off (max |err| {float(err.max()):.3g})")
                ok = False
            ref_mod.weight.data = deq.t().contiguous()  # back to Conv1D for the fp32 reference
        with torch.no_grad():
            lq = q(ids).logits
            lr = reference(ids).logits
        diff = float((lq - lr).abs().max())
        scale = float(lr.abs().max())
        # 4-bit: the same weights, fp32 either way. LLM.int8 also quantizes the
        # activations, so it only agrees to that error.
        limit = 1e-4 * scale if method != "llm-int8" else 5e-2 * scale
        status = "ok" if diff <= limit else "FAIL"
        ok &= diff <= limit
        print(json.dumps({"method": tag, "status": status, "codes_differing_from_bnb": code_diff,
                          "codes": code_total, "worst_error_over_tolerance": round(worst_rel, 4),
                          "max_logit_diff": diff, "max_logit": scale}))
    if args.tokenizer:
        ok &= check_bf16_compute(args.gpt2q, args.tokenizer, work)
    sys.exit(0 if ok else 1)


def check_bf16_compute(gpt2q, tokenizer_dir, work):
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(1)
    src = os.path.join(work, "fp32_vocab")
    cfg = GPT2Config(n_embd=128, n_layer=2, n_head=4, n_positions=64, vocab_size=50257)
    GPT2LMHeadModel(cfg).save_pretrained(src)
    tok = GPT2TokenizerFast(os.path.join(tokenizer_dir, "vocab.json"), os.path.join(tokenizer_dir, "merges.txt"))
    text = ("Quantized weights are stored packed, and a prompt of this length is multiplied with bf16 operands "
            "and fp32 sums, as bitsandbytes does it.")
    ids = torch.tensor([tok(text)["input_ids"]])
    assert ids.shape[1] >= 16, "the text must reach gpt2q's tiled path (16 rows)"
    ok = True
    for method in ("nf4", "fp4"):
        logits = {}
        for compute in ("fp32", "bf16"):
            out = os.path.join(work, f"{method}-{compute}")
            subprocess.run([gpt2q, "quantize", "--model", src, "--method", method, "--compute-dtype", compute,
                            "--keep-dtype", "fp32", "--out", out], check=True, stdout=subprocess.DEVNULL)
            r = subprocess.run([gpt2q, "logits", "--model", out, "--tokenizer", tokenizer_dir, "--text", text,
                                "--json"], check=True, capture_output=True, text=True)
            logits[compute] = torch.tensor(json.loads(r.stdout)["logits"][0])
        q = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()  # the bf16 one
        dtypes = {m.compute_dtype for m in q.modules() if isinstance(m, bnb.nn.Linear4bit)}
        if dtypes != {torch.bfloat16}:
            print(f"{method} bf16: transformers set compute dtypes {dtypes}, not bfloat16"); ok = False
        with torch.no_grad():
            bnb_last = q(ids).logits[0, -1].float()
        scale = float(bnb_last.abs().max())
        d_bf16 = float((bnb_last - logits["bf16"]).abs().max())
        d_fp32 = float((logits["fp32"] - logits["bf16"]).abs().max())
        d_bnb_fp32 = float((bnb_last - logits["fp32"]).abs().max())
        # bf16 rounding of activations, weights and (bnb only) layer outputs:
        # a few 2^-8 relative steps through two layers and the head.
        limit = 3e-2 * scale
        status = "ok" if d_bf16 <= limit else "FAIL"
        ok &= d_bf16 <= limit
        print(json.dumps({"method": method + " bf16-compute", "status": status, "tokens": int(ids.shape[1]),
                          "max_logit_diff_vs_bnb_bf16": d_bf16, "bnb_bf16_vs_gpt2q_fp32": d_bnb_fp32,
                          "gpt2q_bf16_vs_gpt2q_fp32": d_fp32,
                          "max_logit": scale, "limit": limit}))
    return ok


if __name__ == "__main__":
    main()
