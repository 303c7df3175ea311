#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <optional>

#include <fmt/format.h>

#include "core/error.h"
#include "core/file_util.h"
#include "core/progress.h"
#include "train/adamw.h"
#include "train/batch_order.h"
#include "train/grad_clip.h"
#include "train/lr_schedule.h"
#include "train/train_state.h"
#include "train/training_log.h"

namespace gpt2q::train {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

bool dropout_on(const GPT2Config& c) { return c.embd_pdrop > 0 || c.attn_pdrop > 0 || c.resid_pdrop > 0; }

void check_options(const TrainOptions& o, size_t n_train) {
  if (n_train == 0) fail("no training examples");
  if (o.batch_size < 1) fail("--batch-size {}: must be at least 1", o.batch_size);
  if (o.epochs < 1 && o.max_steps < 1) fail("--epochs {}: must be at least 1", o.epochs);
  if (!(o.lr >= 0) || !std::isfinite(o.lr)) fail("--lr {}: must be a finite number >= 0", o.lr);
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay))
    fail("--weight-decay {}: must be a finite number >= 0", o.weight_decay);
  if (o.warmup_steps < 0) fail("--warmup-steps {}: must be >= 0", o.warmup_steps);
  if (o.save_every < 0) fail("--save-every {}: must be >= 0", o.save_every);
  if (o.eval_batch_size < 1) fail("eval batch size {}: must be at least 1", o.eval_batch_size);
}

// What a failed run leaves: a non-finite step stops training without
// touching what was written before (resume restarts from it).
std::string kept_note(const OutputLayout& out) {
  std::error_code ec;
  return std::filesystem::exists(out.state_path(), ec) ? "the checkpoints written before it are kept"
                                                      : "nothing was saved";
}

// Weights are checked before every save, so that no checkpoint (best, last
// or resume state) ever holds NaN or Inf: an update can overflow the
// weights even when the loss and gradients it came from were finite.
void check_finite_weights(const TrainableGPT2& model, const OutputLayout& out, int64_t step) {
  const Tensor flat = to_device(model.flat_values(), Device::CPU);  // one copy from a device
  for (const auto& p : model.parameters()) {
    const auto v = flat.span<const float>().subspan(static_cast<size_t>(p.offset), static_cast<size_t>(p.value.numel()));
    bool finite = true;
#pragma omp parallel for reduction(&& : finite) schedule(static)
    for (size_t i = 0; i < v.size(); ++i) finite = finite && std::isfinite(v[i]);
    if (!finite)
      fail("{}: step {}: parameter {} is no longer finite (NaN or Inf); training stopped, {} (try a lower --lr)",
           out.root.string(), step, p.name, kept_note(out));
  }
}

// The best checkpoint, the last one and the state, in that order: a kill in
// between leaves the previous state, whose resume redoes this epoch's end.
void end_of_epoch(TrainableGPT2& model, const AdamW& opt, TrainPosition& pos, const Examples& eval,
                  const TrainOptions& opts, const OutputLayout& out, TrainingLog& log, TrainSummary& sum) {
  bool improved = true;
  if (!eval.items.empty()) {
    EvalReport r = evaluate(model, eval, opts.eval_batch_size);
    improved = !pos.best_metric || r.score() > *pos.best_metric;
    if (improved) {
      pos.best_metric = r.score();
      pos.best_epoch = pos.epoch;
    }
    nlohmann::json rec = {{"type", "eval"}, {"step", pos.step}, {"epoch", pos.epoch + 1}};
    rec["eval"] = r.to_json();
    log.write(rec);
    if (opts.progress) {
      if (r.metrics)
        fmt::print(stderr, "epoch {}: eval loss {:.4f}, accuracy {:.4f}, macro F1 {:.4f}{}\n", pos.epoch + 1, r.loss,
                   r.metrics->accuracy, r.metrics->macro_f1, improved ? " (best)" : "");
      else
        fmt::print(stderr, "epoch {}: eval loss {:.4f}, perplexity {:.3f}{}\n", pos.epoch + 1, r.loss, r.perplexity,
                   improved ? " (best)" : "");
    }
    sum.last_eval = std::move(r);
  } else {
    pos.best_epoch = pos.epoch;
  }
  check_finite_weights(model, out, pos.step);
  if (improved) save_model(out.best_dir(), model);
  save_model(out.last_dir(), model);
  ++pos.epoch;
  pos.batch_in_epoch = 0;
  pos.log_bytes = log.bytes();
  save_train_state(out.state_path(), model, opt, pos, opts.settings);
}

// The run itself (run_training adds the clean-up of a failed fresh run).
TrainSummary train_loop(TrainableGPT2& model, const Examples& train, const Examples& eval, const TrainOptions& opts,
                        const OutputLayout& out, const std::filesystem::path& tokenizer_dir);

}  // namespace

int64_t total_train_steps(const TrainOptions& opts, size_t n_train) {
  if (opts.max_steps > 0) return opts.max_steps;
  return opts.epochs * batches_per_epoch(n_train, opts.batch_size);
}

TrainSummary run_training(TrainableGPT2& model, const Examples& train, const Examples& eval, const TrainOptions& opts,
                          const OutputLayout& out, const std::filesystem::path& tokenizer_dir) {
  check_options(opts, train.items.size());
  prepare_output(out, opts.resume);
  if (opts.resume) return train_loop(model, train, eval, opts, out, tokenizer_dir);
  // A fresh run that fails before its first training state leaves no output
  // behind (the directory was absent or empty: prepare_output checked).
  try {
    return train_loop(model, train, eval, opts, out, tokenizer_dir);
  } catch (...) {
    std::error_code ec;
    if (!std::filesystem::exists(out.state_path(), ec))
      for (const auto& e : std::filesystem::directory_iterator(out.root, ec)) std::filesystem::remove_all(e.path(), ec);
    throw;
  }
}

namespace {

TrainSummary train_loop(TrainableGPT2& model, const Examples& train, const Examples& eval, const TrainOptions& opts,
                        const OutputLayout& out, const std::filesystem::path& tokenizer_dir) {
  const size_t n = train.items.size();
  const int64_t per_epoch = batches_per_epoch(n, opts.batch_size);
  const int64_t total = total_train_steps(opts, n);

  AdamWOptions aw;
  aw.weight_decay = opts.weight_decay;
  AdamW opt(model, aw);
  TrainPosition pos;
  if (opts.resume) pos = load_train_state(out.state_path(), model, opt, opts.settings, {total, per_epoch});
  if (opts.resume && pos.step >= total) {
    // A finished run: resuming it does nothing (docs/training.md) and writes
    // nothing, so it also works in a directory that has become read-only.
    TrainSummary done;
    done.total_steps = total;
    done.steps = pos.step;
    done.best_score = pos.best_metric;
    done.best_epoch = pos.best_epoch;
    return done;
  }
  TrainingLog log(out.log_path(), pos.log_bytes);
  if (!opts.resume) {
    write_file_atomic(out.args_path(), opts.settings.dump(1) + "\n");
    log.write({{"type", "start"}, {"total_steps", total}, {"steps_per_epoch", per_epoch}, {"train_examples", n},
               {"eval_examples", eval.items.size()}, {"settings", opts.settings}});
  }
  copy_tokenizer_files(tokenizer_dir, out.best_dir());
  copy_tokenizer_files(tokenizer_dir, out.last_dir());

  TrainSummary sum;
  sum.total_steps = total;
  sum.best_score = pos.best_metric;
  const int32_t pad = static_cast<int32_t>(model.config().pad_token_id.value_or(model.config().eos_token_id.value_or(0)));
  const bool classify = model.task() == Task::Classify;
  DropoutContext drop;
  drop.enabled = dropout_on(model.config());
  drop.seed = opts.seed;

  std::optional<Progress> bar;
  if (opts.progress)
    bar.emplace(opts.resume ? fmt::format("finetune (from step {})", pos.step) : "finetune", total - pos.step, "steps");
  const auto run_start = Clock::now();
  int64_t run_tokens = 0;
  std::vector<int32_t> labels;
  while (pos.step < total) {
    const auto order = epoch_order(n, opts.seed, pos.epoch);
    while (pos.batch_in_epoch < per_epoch && pos.step < total) {
      const size_t begin = static_cast<size_t>(pos.batch_in_epoch * opts.batch_size);
      const size_t end = std::min(n, begin + static_cast<size_t>(opts.batch_size));
      const TokenBatch batch = make_batch(train, std::span(order).subspan(begin, end - begin), pad, &labels);
      const auto t0 = Clock::now();
      model.zero_grad();
      drop.step = static_cast<uint64_t>(pos.step);
      const LossValue lv = model.forward_backward(batch, classify ? std::span<const int32_t>(labels) : std::span<const int32_t>(), drop);
      const float norm = clip_grad_norm(model, opts.grad_clip);
      // A NaN/Inf loss or gradient would poison every later step and the
      // saved weights: stop before this update.
      if (!std::isfinite(lv.loss) || !std::isfinite(norm))
        fail("{}: step {}: the loss is {} and the gradient norm {}; training stopped before this update, {} (try a "
             "lower --lr)",
             out.root.string(), pos.step + 1, lv.loss, norm, kept_note(out));
      const double lr = linear_warmup_lr(opts.lr, pos.step, opts.warmup_steps, total);
      opt.step(model.parameters(), lr);
      const double dt = seconds_since(t0);
      ++pos.step;
      ++pos.batch_in_epoch;
      ++sum.steps_run;
      int64_t tokens = 0;
      for (int64_t len : batch.lengths) tokens += len;
      run_tokens += tokens;
      const double tps = dt > 0 ? static_cast<double>(tokens) / dt : 0.0;
      log.write({{"type", "train"},
                 {"step", pos.step},
                 {"epoch", static_cast<double>(pos.epoch) + static_cast<double>(pos.batch_in_epoch) / per_epoch},
                 {"loss", lv.loss},
                 {"lr", lr},
                 {"grad_norm", norm},
                 {"tokens", tokens},
                 {"tokens_per_s", tps}});
      sum.last_loss = lv.loss;
      if (bar) {
        bar->set_note(fmt::format("loss {:.4f}  lr {:.2e}  {:.0f} tok/s", lv.loss, lr, tps));
        bar->advance();
      }
      const bool epoch_done = pos.batch_in_epoch == per_epoch || pos.step == total;
      if (epoch_done) {
        end_of_epoch(model, opt, pos, eval, opts, out, log, sum);  // moves pos to the next epoch
        ++sum.epochs_done;
      } else if (opts.save_every > 0 && pos.step % opts.save_every == 0) {
        pos.log_bytes = log.bytes();
        check_finite_weights(model, out, pos.step);
        save_train_state(out.state_path(), model, opt, pos, opts.settings);
      }
      if (opts.stop_after_steps > 0 && pos.step >= opts.stop_after_steps && pos.step < total) {
        sum.stopped = true;
        break;
      }
      if (epoch_done) break;  // the next epoch has its own order
    }
    if (sum.stopped) break;
  }
  if (bar) bar->finish();
  sum.steps = pos.step;
  sum.seconds = seconds_since(run_start);
  sum.tokens_per_s = sum.seconds > 0 ? static_cast<double>(run_tokens) / sum.seconds : 0;
  sum.best_score = pos.best_metric;
  sum.best_epoch = pos.best_epoch;
  return sum;
}

}  // namespace

}  // namespace gpt2q::train
