#!/usr/bin/env python3
"""Summarises an ncu --csv log of tools/gpu/run.sh's profile stage.

  python3 tools/gpu/profile_summary.py profile_classify.csv [--top 15]

Prints, per kernel name (template arguments cut), the launches, the summed
and mean duration, the DRAM bytes and the achieved bandwidth, sorted by
time, and the total: where the time of a batch-1 step goes.
"""
import argparse
import collections
import csv
import re
import sys

UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0,
         "nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0,
         "byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}


def short(name):
    name = name.replace("void ", "").replace("gpt2q::", "").replace("<unnamed>::", "").replace("cuda::", "")
    name = re.sub(r"\(.*", "", name)  # the parameter list
    return name.strip()[:70]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    with open(a.csv, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu's own messages are not quoted
    rows = list(csv.DictReader(lines))
    if not rows:
        sys.exit(f"{a.csv}: no metric rows")
    per = collections.defaultdict(lambda: {"n": set(), "t": 0.0, "b": 0.0})
    for r in rows:
        k = per[short(r["Kernel Name"])]
        k["n"].add(r["ID"])
        v = float(r["Metric Value"].replace(",", "")) * UNITS.get(r["Metric Unit"], 1)
        if r["Metric Name"] == "gpu__time_duration.sum":
            k["t"] += v
        elif r["Metric Name"] == "dram__bytes.sum":
            k["b"] += v
    total_t = sum(k["t"] for k in per.values())
    total_n = sum(len(k["n"]) for k in per.values())
    print(f"{'kernel':70} {'launches':>8} {'total us':>9} {'mean us':>8} {'MB':>8} {'GB/s':>7}")
    for name, k in sorted(per.items(), key=lambda kv: -kv[1]["t"])[:a.top]:
        n = len(k["n"])
        print(f"{name:70} {n:8d} {k['t'] * 1e6:9.1f} {k['t'] * 1e6 / n:8.2f} {k['b'] / 1e6:8.2f} "
              f"{k['b'] / k['t'] / 1e9 if k['t'] else 0:7.0f}")
    print(f"{'all kernels':70} {total_n:8d} {total_t * 1e6:9.1f}")


if __name__ == "__main__":
    main()
