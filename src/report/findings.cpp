#include "report/findings.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "report/number_format.h"

namespace gpt2q::report {

namespace {

bool classify_task(const CompareResults& r) { return r.run.task == Task::Classification; }

// Quality score where higher is better: accuracy, or minus perplexity; NaN when unknown.
double quality(const CompareResults& r, size_t i) {
  if (classify_task(r)) return r.comparisons[i].metrics->accuracy;
  return r.variants[i].perplexity ? -r.variants[i].perplexity->ppl : std::nan("");
}

double latency(const CompareResults& r, size_t i) { return r.variants[i].latency.mean_ms; }
size_t memory(const CompareResults& r, size_t i) { return r.variants[i].weight_bytes; }

// Indices with the extreme value of `key` (ties kept), `better(a, b)` true when a beats b.
template <typename Key, typename Better>
std::vector<size_t> best_of(const CompareResults& r, Key key, Better better) {
  std::vector<size_t> best;
  for (size_t i = 0; i < r.variants.size(); ++i) {
    if (best.empty() || better(key(r, i), key(r, best[0])))
      best = {i};
    else if (!better(key(r, best[0]), key(r, i)))
      best.push_back(i);
  }
  return best;
}

std::string names(const CompareResults& r, const std::vector<size_t>& idx) {
  std::vector<std::string> n;
  for (size_t i : idx) n.push_back(r.variants[i].name);
  if (n.size() == 1) return n[0];
  const std::string last = n.back();
  n.pop_back();
  return fmt::format("{} and {}", fmt::join(n, ", "), last);
}

// Not measurably worse in quality than the baseline.
bool quality_kept(const CompareResults& r, size_t i) {
  const auto& c = r.comparisons[i];
  if (classify_task(r)) return c.delta_accuracy >= 0 || c.mcnemar->p_value >= kNoiseAlpha;
  const auto& d = r.variants[i].lm_nll_difference;
  return d && (d->mean <= 0 || d->p_value >= kNoiseAlpha);
}

std::string samples_text(int64_t n) { return fmt::format("{} sample{}", n, n == 1 ? "" : "s"); }

std::string speed_words(double speedup) {
  if (speedup >= 1) return fmt::format("{} the baseline's speed", fmt_ratio(speedup));
  return fmt::format("{} slower than the baseline", fmt_ratio(1.0 / speedup));
}

void accuracy_findings(CompareResults& r) {
  const auto& base_m = *r.comparisons[0].metrics;
  const std::string& base = r.baseline();
  const int64_t n = base_m.n;
  const auto top = best_of(r, quality, [](double a, double b) { return a > b; });
  const auto& tm = *r.comparisons[top[0]].metrics;
  r.findings.push_back({"best-accuracy", fmt::format("Best accuracy: {} with {} ({} of {}; 95% Wilson CI {} – {}){}.",
                                                     names(r, top), fmt_pct(tm.accuracy), tm.correct, tm.n,
                                                     fmt_pct(tm.accuracy_ci95.low), fmt_pct(tm.accuracy_ci95.high),
                                                     top.size() > 1 ? " (tied)" : "")});
  // Chance level: majority-class rate inside the baseline's interval.
  int64_t majority = 0;
  for (const auto& s : base_m.per_class) majority = std::max(majority, s.support);
  const double majority_rate = static_cast<double>(majority) / static_cast<double>(n);
  const double chance = std::max(majority_rate, 1.0 / static_cast<double>(base_m.num_classes));
  if (base_m.accuracy_ci95.low <= chance) {
    r.findings.push_back(
        {"chance-level",
         fmt::format("The baseline {} is not better than chance: its accuracy {} has a 95% CI ({} – {}) that "
                     "includes {} (the {}). Accuracy differences between variants therefore say little about "
                     "quality; agreement with the baseline and KL divergence measure how far each variant drifts.",
                     base, fmt_pct(base_m.accuracy), fmt_pct(base_m.accuracy_ci95.low),
                     fmt_pct(base_m.accuracy_ci95.high), fmt_pct(chance),
                     chance == majority_rate ? "majority-class rate" : "uniform-guess rate")});
  }
  // Noise across all variants.
  std::vector<size_t> significant, within;
  for (size_t i = 1; i < r.variants.size(); ++i)
    (r.comparisons[i].mcnemar->p_value < kNoiseAlpha ? significant : within).push_back(i);
  const double half_width = (base_m.accuracy_ci95.high - base_m.accuracy_ci95.low) / 2;
  if (r.variants.size() > 1) {
    if (significant.empty()) {
      r.findings.push_back(
          {"noise", fmt::format("Every accuracy difference against {} is within noise at n = {}: all McNemar exact "
                                "p-values are >= {} (smallest {}), and the baseline's 95% CI is ±{:.2f} pp wide.",
                                base, n, kNoiseAlpha,
                                fmt_p(std::min_element(r.comparisons.begin() + 1, r.comparisons.end(),
                                                       [](auto& a, auto& b) {
                                                         return a.mcnemar->p_value < b.mcnemar->p_value;
                                                       })->mcnemar->p_value),
                                100 * half_width)});
    } else {
      std::vector<std::string> parts;
      for (size_t i : significant)
        parts.push_back(fmt::format("{} ({}, p = {})", r.variants[i].name, fmt_pp(r.comparisons[i].delta_accuracy),
                                    fmt_p(r.comparisons[i].mcnemar->p_value)));
      r.findings.push_back(
          {"noise", fmt::format("Accuracy differs from {} beyond noise (McNemar exact p < {}) for {}{}.", base,
                                kNoiseAlpha, fmt::join(parts, ", "),
                                within.empty() ? "" : fmt::format("; the differences of {} are within noise",
                                                                  names(r, within)))});
    }
  }
}

void delta_findings(CompareResults& r) {
  const bool classify = classify_task(r);
  for (size_t i = 1; i < r.variants.size(); ++i) {
    const auto& v = r.variants[i];
    const auto& c = r.comparisons[i];
    std::string q;
    if (classify) {
      const auto& m = *c.metrics;
      q = fmt::format("accuracy {} ({} vs {}; {} turned wrong, {} turned right; McNemar p = {}, {}); "
                      "macro F1 {:+.4f}; ",
                      fmt_pp(c.delta_accuracy), fmt_pct(m.accuracy), fmt_pct(r.comparisons[0].metrics->accuracy),
                      samples_text(c.mcnemar->b), c.mcnemar->c, fmt_p(c.mcnemar->p_value),
                      c.mcnemar->p_value >= kNoiseAlpha ? "within noise" : "beyond noise",
                      m.macro_f1 - r.comparisons[0].metrics->macro_f1);
    } else if (v.perplexity && r.variants[0].perplexity) {
      q = fmt::format("perplexity {:.4f} vs {:.4f} ({:+.2f}%", v.perplexity->ppl, r.variants[0].perplexity->ppl,
                      100 * (v.perplexity->ppl / r.variants[0].perplexity->ppl - 1));
      if (const auto& d = v.lm_nll_difference)
        q += fmt::format("; NLL {:+.3g} ± {:.2g} nats/token, p = {}, {}", d->mean, d->se, fmt_p(d->p_value),
                         d->p_value >= kNoiseAlpha ? "within noise" : "beyond noise");
      q += "); ";
    }
    std::string drift;
    if (c.divergence)
      drift = fmt::format("; top-1 agreement {} and mean KL {} nats (p99 {})", fmt_pct(c.agreement),
                          fmt_kl(c.divergence->kl_mean), fmt_kl(c.divergence->kl_p99));
    r.findings.push_back(
        {"delta", fmt::format("{} vs {}: {}weights {} ({} of the baseline's, {} {}), latency {} ms/{} ({}){}.", v.name,
                              r.baseline(), q, fmt_mb(v.weight_bytes), fmt_pct(1 - c.memory_reduction, 1),
                              fmt_ratio(c.compression_ratio), c.compression_ratio >= 1 ? "smaller" : "larger",
                              fmt_ms(v.latency.mean_ms), classify ? "sample" : "window", speed_words(c.speedup),
                              drift)});
  }
}

void tradeoff_findings(CompareResults& r) {
  const size_t n = r.variants.size();
  std::vector<size_t> front;
  for (size_t i = 0; i < n; ++i) {
    std::vector<size_t> by;
    for (size_t j = 0; j < n; ++j)
      if (j != i && dominates(r, j, i)) by.push_back(j);
    if (by.empty()) {
      front.push_back(i);
    } else {
      r.findings.push_back({"dominated", fmt::format("{} is dominated by {}: no more memory, no slower and at least "
                                                     "as {} ({} vs {} of weights, {} vs {} ms).",
                                                     r.variants[i].name, r.variants[by[0]].name,
                                                     classify_task(r) ? "accurate" : "low in perplexity",
                                                     fmt_mb(memory(r, by[0])), fmt_mb(memory(r, i)),
                                                     fmt_ms(latency(r, by[0])), fmt_ms(latency(r, i)))});
    }
  }
  if (front.size() > 1) {
    const auto small = best_of(r, memory, [](size_t a, size_t b) { return a < b; })[0];
    const auto fast = best_of(r, latency, [](double a, double b) { return a < b; })[0];
    std::string t = fmt::format("Trade-off: {} variants are on the Pareto front of memory, latency and {} ({}).",
                                front.size(), classify_task(r) ? "accuracy" : "perplexity", names(r, front));
    if (small != fast)
      t += fmt::format(" The smallest, {}, runs at {} ms ({} of the fastest); the fastest, {}, holds {} ({} the "
                       "smallest's).",
                       r.variants[small].name, fmt_ms(latency(r, small)), fmt_ratio(latency(r, small) / latency(r, fast)),
                       r.variants[fast].name, fmt_mb(memory(r, fast)),
                       fmt_ratio(static_cast<double>(memory(r, fast)) / static_cast<double>(memory(r, small))));
    r.findings.push_back({"trade-off", t});
  }
}

// ", the smallest loss being X's (...)": the non-baseline variant closest in quality.
std::string least_loss_words(const CompareResults& r) {
  if (r.variants.size() < 2) return "";
  size_t best = 1;
  for (size_t i = 2; i < r.variants.size(); ++i)
    if (quality(r, i) > quality(r, best)) best = i;
  if (std::isnan(quality(r, best))) return "";
  if (classify_task(r))
    return fmt::format(" (the smallest loss is {}'s, {})", r.variants[best].name,
                       fmt_pp(r.comparisons[best].delta_accuracy));
  return fmt::format(" (the smallest increase is {}'s, {:+.2f}%)", r.variants[best].name,
                     100 * (r.variants[best].perplexity->ppl / r.variants[0].perplexity->ppl - 1));
}

// The variant with the least of `key` whose quality is not measurably worse.
std::optional<size_t> best_kept(const CompareResults& r, auto key) {
  std::optional<size_t> best;
  for (size_t i = 0; i < r.variants.size(); ++i) {
    const bool ok = i == 0 || quality_kept(r, i);
    if (ok && (!best || key(r, i) < key(r, *best))) best = i;
  }
  return best;
}

void recommendations(CompareResults& r) {
  const bool classify = classify_task(r);
  const std::string& base = r.baseline();
  const std::string kept_words =
      classify ? "without a measurable accuracy loss (McNemar p >= 0.05 or better)"
               : "without a measurable perplexity increase (paired per-token NLL test p >= 0.05 or lower)";
  if (auto m = best_kept(r, memory)) {
    const auto& c = r.comparisons[*m];
    if (*m == 0) {
      r.recommendations.push_back(
          {"memory", fmt::format("Keep {} where quality matters: every smaller variant is measurably worse in {}{}.",
                                 base, classify ? "accuracy" : "perplexity", least_loss_words(r))});
    } else {
      r.recommendations.push_back(
          {"memory", fmt::format("To save memory, use {}: it holds {} less weight memory than {} ({} smaller, {}) {}.",
                                 r.variants[*m].name, fmt_pct(c.memory_reduction, 1), base,
                                 fmt_ratio(c.compression_ratio), fmt_mb(r.variants[*m].weight_bytes), kept_words)});
    }
  }
  if (auto f = best_kept(r, latency)) {
    if (*f == 0) {
      const auto fastest_other = [&] {
        size_t b = 1;
        for (size_t i = 1; i < r.variants.size(); ++i)
          if (latency(r, i) < latency(r, b)) b = i;
        return b;
      };
      std::string alt = r.variants.size() > 1
                            ? fmt::format(" (the fastest other variant, {}, is {})", r.variants[fastest_other()].name,
                                          speed_words(r.comparisons[fastest_other()].speedup))
                            : "";
      r.recommendations.push_back(
          {"latency", fmt::format("For the lowest latency on this CPU, stay with {}: no variant that keeps quality is "
                                  "faster{}.",
                                  base, alt)});
    } else {
      r.recommendations.push_back(
          {"latency", fmt::format("For the lowest latency, use {}: {} ms/{}, {} {}.", r.variants[*f].name,
                                  fmt_ms(latency(r, *f)), classify ? "sample" : "window",
                                  speed_words(r.comparisons[*f].speedup), kept_words)});
    }
  }
  for (size_t i = 0; i < r.variants.size(); ++i)
    for (size_t j = 0; j < r.variants.size(); ++j)
      if (j != i && dominates(r, j, i)) {
        r.recommendations.push_back(
            {"avoid", fmt::format("Avoid {}: {} needs no more memory, is no slower and is at least as {}.",
                                  r.variants[i].name, r.variants[j].name, classify ? "accurate" : "good in perplexity")});
        break;
      }
  if (classify) {
    bool chance = false;
    for (const auto& f : r.findings) chance |= f.kind == "chance-level";
    if (chance && r.variants.size() > 1) {
      size_t closest = 1;
      for (size_t i = 1; i < r.variants.size(); ++i)
        if (r.comparisons[i].divergence->kl_mean < r.comparisons[closest].divergence->kl_mean) closest = i;
      r.recommendations.push_back(
          {"model", fmt::format("Compare again with a fine-tuned checkpoint before choosing on accuracy: at chance "
                                "level only the drift is informative, and {} stays closest to {} (mean KL {}, "
                                "agreement {}).",
                                r.variants[closest].name, base, fmt_kl(r.comparisons[closest].divergence->kl_mean),
                                fmt_pct(r.comparisons[closest].agreement))});
    }
    // Differences that exist but cannot be resolved at this n.
    const auto& bm = *r.comparisons[0].metrics;
    double largest_unresolved = 0;
    for (size_t i = 1; i < r.variants.size(); ++i)
      if (r.comparisons[i].mcnemar->p_value >= kNoiseAlpha)
        largest_unresolved = std::max(largest_unresolved, std::abs(r.comparisons[i].delta_accuracy));
    if (largest_unresolved > 0) {
      const double half = (bm.accuracy_ci95.high - bm.accuracy_ci95.low) / 2;
      // The interval narrows as 1/sqrt(n): samples needed for a half-width equal to the largest unresolved delta.
      const double needed = static_cast<double>(bm.n) * (half / largest_unresolved) * (half / largest_unresolved);
      r.recommendations.push_back(
          {"samples", fmt::format("To tell apart accuracy differences of {:.2f} pp (the largest one within noise here), "
                                  "evaluate on about {:.0f} samples or more (now {}, 95% CI ±{:.2f} pp).",
                                  100 * largest_unresolved, std::ceil(needed), bm.n, 100 * half)});
    }
  }
}

}  // namespace

bool dominates(const CompareResults& r, size_t a, size_t b) {
  const double qa = quality(r, a), qb = quality(r, b);
  if (std::isnan(qa) || std::isnan(qb)) return false;
  const bool no_worse = memory(r, a) <= memory(r, b) && latency(r, a) <= latency(r, b) && qa >= qb;
  const bool better = memory(r, a) < memory(r, b) || latency(r, a) < latency(r, b) || qa > qb;
  return no_worse && better;
}

void compute_findings(CompareResults& r) {
  if (r.comparisons.size() != r.variants.size() || r.variants.empty())
    fail("compare: findings need the comparisons of every variant");
  r.findings.clear();
  r.recommendations.clear();
  if (classify_task(r)) {
    accuracy_findings(r);
  } else if (r.variants[0].perplexity) {
    const auto top = best_of(r, quality, [](double a, double b) { return a > b; });
    r.findings.push_back({"best-perplexity", fmt::format("Lowest perplexity: {} with {:.4f} over {} tokens.",
                                                         names(r, top), r.variants[top[0]].perplexity->ppl,
                                                         r.variants[top[0]].perplexity->tokens)});
    std::vector<size_t> beyond, within;
    for (size_t i = 1; i < r.variants.size(); ++i)
      if (const auto& d = r.variants[i].lm_nll_difference) (d->p_value < kNoiseAlpha ? beyond : within).push_back(i);
    if (!beyond.empty() || !within.empty())
      r.findings.push_back(
          {"noise", fmt::format("Per-token NLL against {} (paired z-test, p < {} = beyond noise): {}{}.", r.baseline(),
                                kNoiseAlpha, beyond.empty() ? "no variant differs beyond noise" : "beyond noise for " + names(r, beyond),
                                within.empty() ? "" : "; within noise for " + names(r, within))});
  }
  const auto small = best_of(r, memory, [](size_t a, size_t b) { return a < b; });
  const auto& sc = r.comparisons[small[0]];
  r.findings.push_back({"lowest-memory", fmt::format("Lowest memory: {} holds {} ({}) of weights, {} {} than {} ({:+.1f}%).",
                                                     names(r, small), fmt_mb(memory(r, small[0])),
                                                     fmt_mib(memory(r, small[0])), fmt_ratio(sc.compression_ratio),
                                                     sc.compression_ratio >= 1 ? "smaller" : "larger", r.baseline(),
                                                     -100 * sc.memory_reduction)});
  const auto fast = best_of(r, latency, [](double a, double b) { return a < b; });
  const auto slow = best_of(r, latency, [](double a, double b) { return a > b; });
  const bool classify = classify_task(r);
  r.findings.push_back(
      {"fastest", fmt::format("Fastest: {} at {} ms/{} ({} {}/s); slowest: {} at {} ms ({} of the fastest's time).",
                              names(r, fast), fmt_ms(latency(r, fast[0])), classify ? "sample" : "window",
                              fmt_rate(r.variants[fast[0]].latency.samples_per_s), classify ? "samples" : "windows",
                              names(r, slow), fmt_ms(latency(r, slow[0])),
                              fmt_ratio(latency(r, slow[0]) / latency(r, fast[0])))});
  if (r.variants.size() > 1 && r.comparisons[1].divergence) {
    size_t far = 1;
    for (size_t i = 1; i < r.variants.size(); ++i)
      if (r.comparisons[i].divergence->kl_mean > r.comparisons[far].divergence->kl_mean) far = i;
    r.findings.push_back({"drift", fmt::format("Largest drift from {}: {} (mean KL {} nats, max {}; top-1 agreement {}).",
                                               r.baseline(), r.variants[far].name,
                                               fmt_kl(r.comparisons[far].divergence->kl_mean),
                                               fmt_kl(r.comparisons[far].divergence->kl_max),
                                               fmt_pct(r.comparisons[far].agreement))});
  }
  delta_findings(r);
  tradeoff_findings(r);
  recommendations(r);
}

}  // namespace gpt2q::report
