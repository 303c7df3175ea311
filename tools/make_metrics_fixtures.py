#!/usr/bin/env python3
"""Writes tests/fixtures/eval/metrics_cases.json: classification metrics computed
by scikit-learn (and the Wilson interval by statsmodels) for seeded random
labels and for the zero-division corner cases, so that gpt2q's src/eval/metrics
is checked against the libraries users compare it with.

    pip install scikit-learn statsmodels
    python3 tools/make_metrics_fixtures.py
"""
import json
import pathlib

import numpy as np
import sklearn
import statsmodels
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from statsmodels.stats.proportion import proportion_confint

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "eval" / "metrics_cases.json"


def case(name, y_true, y_pred, k):
    y_true = [int(v) for v in y_true]
    y_pred = [int(v) for v in y_pred]
    labels = list(range(k))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    acc = accuracy_score(y_true, y_pred)
    correct = int(sum(t == q for t, q in zip(y_true, y_pred)))
    lo, hi = proportion_confint(correct, len(y_true), alpha=0.05, method="wilson")
    return {
        "name": name,
        "num_classes": k,
        "y_true": y_true,
        "y_pred": y_pred,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "accuracy": float(acc),
        "accuracy_ci95": [float(lo), float(hi)],
        "precision": [float(v) for v in p],
        "recall": [float(v) for v in r],
        "f1": [float(v) for v in f],
        "support": [int(v) for v in s],
        "macro_precision": float(mp),
        "macro_recall": float(mr),
        "macro_f1": float(mf),
    }


def main():
    rng = np.random.default_rng(20240611)
    cases = []
    for i, (n, k) in enumerate([(50, 4), (200, 4), (37, 3), (500, 7), (12, 2)]):
        y_true = rng.integers(0, k, n)
        # Mostly-right predictions, like a real classifier, so precision and
        # recall are not all near 1/k.
        y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
        cases.append(case(f"random_{i}_n{n}_k{k}", y_true, y_pred, k))
    # Zero-division corners.
    cases.append(case("class_never_predicted", [0, 1, 2, 2, 1, 0], [0, 1, 1, 1, 1, 0], 3))
    cases.append(case("class_never_true", [0, 0, 1, 1], [0, 2, 1, 2], 3))
    cases.append(case("class_absent_everywhere", [0, 1, 0, 1, 1], [0, 1, 1, 1, 0], 4))
    cases.append(case("all_wrong", [0, 1, 2, 3], [1, 2, 3, 0], 4))
    cases.append(case("all_right", [3, 2, 1, 0, 0], [3, 2, 1, 0, 0], 4))
    cases.append(case("single_sample", [1], [1], 2))
    cases.append(case("single_class", [0, 0, 0], [0, 0, 0], 1))
    cases.append(case("everything_one_class", [0, 1, 2, 3, 1, 2], [2, 2, 2, 2, 2, 2], 4))
    doc = {
        "generator": "tools/make_metrics_fixtures.py",
        "sklearn": sklearn.__version__,
        "statsmodels": statsmodels.__version__,
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
