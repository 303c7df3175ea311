#!/usr/bin/env python3
"""Writes the GPT-2 tokenizer fixtures under tests/fixtures/tokenizer/.

The reference is Hugging Face's GPT2TokenizerFast (the `tokenizers` backend)
loaded offline from ../shared/data/gpt2-tokenizer (vocab.json + merges.txt).

Files (all .safetensors, written with the `safetensors` package; a set of
token-id sequences is `ids` U16 = every sequence's ids concatenated, and
`offsets` U32 with n+1 entries, sequence i = ids[offsets[i]:offsets[i+1]]):

  wiki_lines.safetensors   every line of wikitext-2-raw/wiki.test.raw, split on
                           '\\n' (the newline itself not included; the empty
                           string after the final '\\n' is not a line)
  wiki_whole.safetensors   the whole wiki.test.raw as one string (n = 1)
  agnews.safetensors       every row of ag_news/test.csv (Python csv module),
                           text = title + " " + description
  edge_cases.safetensors   texts chosen to stress the encoder (long words that
                           skip the cache, runs of one class, <|endoftext|>
                           in odd places, random Unicode): `text` U8 and
                           `text_offsets` U32 as in decode, plus `ids`/`offsets`
  decode.safetensors       random id sequences (many of them byte tokens that
                           form invalid UTF-8) and what HF decode() returns:
                           `ids`/`offsets` as above, plus `text` U8 (UTF-8 of
                           every decoded string concatenated) and
                           `text_offsets` U32
  codepoint_classes.safetensors
                           how the pre-tokenizer regex (oniguruma inside
                           `tokenizers`) classifies every code point:
                           `run_starts` U32 and `run_classes` U8, class of code
                           point c = run_classes[last i with run_starts[i] <= c];
                           0 letter (\\p{L}), 1 number (\\p{N}), 2 white space
                           (\\s), 3 other, 255 surrogate (not encodable)
  meta.json                library versions, sha256 of every source file,
                           sequence counts

It also writes src/text/unicode_classes.inc, the same code point classes as
C++ range tables: the system PCRE2 (10.42, Unicode 14) knows fewer letters
and numbers than the oniguruma inside `tokenizers` (Unicode 16) and counts
U+180E as white space, so the pre-tokenizer spells its classes out from these
tables instead of using \\p{L}, \\p{N} and \\s.

Usage: python3 tools/make_tokenizer_fixtures.py [--data ../shared/data]
"""
import argparse
import csv
import hashlib
import io
import json
import os
import random
import sys

import numpy as np


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(tensors, path):
    from safetensors.numpy import save_file
    save_file(tensors, path)
    os.chmod(path, 0o644)  # safetensors creates 0600 files; these are committed


def pack_ids(seqs):
    offsets = np.zeros(len(seqs) + 1, dtype=np.uint32)
    offsets[1:] = np.cumsum([len(s) for s in seqs], dtype=np.uint64)
    flat = [i for s in seqs for i in s]
    assert all(0 <= i < 65536 for i in flat)
    return {"ids": np.asarray(flat, dtype=np.uint16), "offsets": offsets}


def pack_bytes(strings):
    blobs = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(blobs) + 1, dtype=np.uint32)
    offsets[1:] = np.cumsum([len(b) for b in blobs], dtype=np.uint64)
    return {"text": np.frombuffer(b"".join(blobs), dtype=np.uint8).copy(), "text_offsets": offsets}


def edge_case_texts():
    rng = random.Random(42)
    letters = "abcdefghijklmnopqrstuvwxyz"
    texts = [
        "a" * 5000, "ab" * 3000, " " + "a" * 300, "".join(rng.choice(letters) for _ in range(20000)),
        " " * 1000, "\n" * 999, " \t\n" * 300, "!" * 500, "?!." * 400, "7" * 3001, "1234567890" * 100,
        "<|endoftext|>" * 3, "<|endoftext|", "|endoftext|>", "x<|endoftext|>y", " <|endoftext|> ",
        "<|endoftext|><|endoftext|>", "a\n<|endoftext|>\n", "<|endoftext|>" + "a" * 200, "",
        "don't we'll I'M they'RE it's 's 't 're 've 'm 'll 'd ''s",
        "\u00a0\u2003x\u3000 y\u0085z\u2028\u180e\u200b\ufeff", "e\u0301\u0301 \u0661\u0662 \u00bd\u2167",
    ]
    # Random code points: mostly ASCII, white space and the BMP, some astral.
    spaces = [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x85, 0xA0, 0x1680, 0x2000, 0x2028, 0x2029, 0x202F, 0x3000, 0x180E]
    for _ in range(3000):
        chars = []
        for _ in range(rng.randint(1, 40)):
            r = rng.random()
            if r < 0.35:
                cp = rng.randrange(0x20, 0x7F)
            elif r < 0.55:
                cp = rng.choice(spaces)
            elif r < 0.9:
                cp = rng.randrange(0x80, 0x10000)
            else:
                cp = rng.randrange(0x10000, 0x110000)
            if 0xD800 <= cp < 0xE000:
                cp = 0x41
            chars.append(chr(cp))
        texts.append("".join(chars))
    return texts


def classify_codepoints(tok):
    """Runs of code points by pre-tokenizer class, probed through HF itself."""
    pre = tok.backend_tokenizer.pre_tokenizer
    probes = [("a", 0), ("1", 1), ("\t", 2), ("!", 3)]  # c joins the probe's piece iff same class
    starts, classes = [], []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            cls = 255
        else:
            hits = [k for p, k in probes if len(pre.pre_tokenize_str(p + chr(cp))) == 1]
            if len(hits) != 1:
                sys.exit(f"code point U+{cp:04X}: ambiguous class {hits}")
            cls = hits[0]
        if not classes or classes[-1] != cls:
            starts.append(cp)
            classes.append(cls)
    return {"run_starts": np.asarray(starts, dtype=np.uint32), "run_classes": np.asarray(classes, dtype=np.uint8)}


def write_class_tables(classes, path, versions):
    starts = [int(x) for x in classes["run_starts"]]
    kinds = [int(x) for x in classes["run_classes"]]
    ends = starts[1:] + [0x110000]
    out = ["// Generated by tools/make_tokenizer_fixtures.py: do not edit.",
           f"// Code point classes of the GPT-2 pre-tokenizer regex as HF tokenizers {versions}",
           "// (oniguruma) applies them: {first, last} ranges of \\p{L}, \\p{N} and \\s.",
           "// Everything else (and every surrogate) is 'other'.", "#pragma once", "",
           "namespace gpt2q::text::unicode_classes {", ""]
    for name, kind in (("kLetter", 0), ("kNumber", 1), ("kSpace", 2)):
        ranges = [(s, e - 1) for s, e, k in zip(starts, ends, kinds) if k == kind]
        out.append(f"inline constexpr char32_t {name}[][2] = {{")
        for i in range(0, len(ranges), 6):
            out.append("    " + " ".join(f"{{0x{a:X}, 0x{b:X}}}," for a, b in ranges[i:i + 6]))
        out.append("};")
    out += ["", "}  // namespace gpt2q::text::unicode_classes", ""]
    with open(path, "w") as f:
        f.write("\n".join(out))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "tokenizer"))
    ap.add_argument("--classes-out", default=os.path.join(here, "..", "src", "text", "unicode_classes.inc"))
    args = ap.parse_args()

    import safetensors
    import tokenizers
    import transformers
    from transformers import GPT2TokenizerFast

    tok_dir = os.path.join(args.data, "gpt2-tokenizer")
    wiki_path = os.path.join(args.data, "wikitext-2-raw", "wiki.test.raw")
    ag_path = os.path.join(args.data, "ag_news", "test.csv")
    tok = GPT2TokenizerFast.from_pretrained(tok_dir, local_files_only=True)
    assert tok.encode("Hello world") == [15496, 995], "tokenizer did not load (transformers API change?)"

    def encode_all(texts):
        return tok(texts, add_special_tokens=False)["input_ids"]

    os.makedirs(args.out, exist_ok=True)
    meta = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "safetensors": safetensors.__version__, "sources": {}, "counts": {}}
    for name in ("vocab.json", "merges.txt"):
        meta["sources"]["gpt2-tokenizer/" + name] = sha256(os.path.join(tok_dir, name))

    with open(wiki_path, "rb") as f:
        wiki = f.read().decode("utf-8")
    meta["sources"]["wikitext-2-raw/wiki.test.raw"] = sha256(wiki_path)
    lines = wiki.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    sets = {"wiki_lines": encode_all(lines), "wiki_whole": encode_all([wiki])}

    with open(ag_path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    meta["sources"]["ag_news/test.csv"] = sha256(ag_path)
    sets["agnews"] = encode_all([r[1] + " " + r[2] for r in rows])

    for name, seqs in sets.items():
        save(pack_ids(seqs), os.path.join(args.out, name + ".safetensors"))
        meta["counts"][name] = {"sequences": len(seqs), "ids": sum(len(s) for s in seqs)}

    edge = edge_case_texts()
    edge_set = pack_ids(encode_all(edge))
    edge_set.update(pack_bytes(edge))
    save(edge_set, os.path.join(args.out, "edge_cases.safetensors"))
    meta["counts"]["edge_cases"] = {"sequences": len(edge)}

    # Decode: mostly byte tokens (ids < 256 are single bytes) so that many
    # sequences are invalid UTF-8, plus ordinary tokens and <|endoftext|>.
    rng = random.Random(1234)
    dec_ids = []
    for _ in range(3000):
        seq = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            seq.append(rng.randrange(256) if r < 0.6 else 50256 if r < 0.65 else rng.randrange(50257))
        dec_ids.append(seq)
    dec = pack_ids(dec_ids)
    dec.update(pack_bytes([tok.decode(s) for s in dec_ids]))
    save(dec, os.path.join(args.out, "decode.safetensors"))
    meta["counts"]["decode"] = {"sequences": len(dec_ids)}

    classes = classify_codepoints(tok)
    save(classes, os.path.join(args.out, "codepoint_classes.safetensors"))
    meta["counts"]["codepoint_class_runs"] = int(classes["run_starts"].size)
    write_class_tables(classes, args.classes_out, tokenizers.__version__)

    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps(meta["counts"]))


if __name__ == "__main__":
    main()
