// gpt2q finetune: trains GPT-2 as a classifier (GPT2ForSequenceClassification)
// or a language model (GPT2LMHeadModel) from a checkpoint or from HF's
// initialisation, and writes an HF checkpoint directory (docs/training.md).
// The work is train::finetune (train/finetune.h); this file parses and prints.
#include <fmt/format.h>

#include "cli/command.h"
#include "cli/device_args.h"
#include "train/finetune.h"

namespace {

struct FinetuneArgs {
  gpt2q::train::FinetuneRequest request;
  std::string device = "cpu";
  bool json = false, quiet = false;
};

void run(FinetuneArgs& a) {
  using namespace gpt2q::train;
  a.request.progress = !a.quiet;
  a.request.device = gpt2q::cli::resolve_device({a.device, std::nullopt}).device;
  const FinetuneRequest& r = a.request;
  const FinetuneOutcome outcome = finetune(r);
  if (a.json) {
    gpt2q::cli::print_json(outcome.to_json(r.out));
    return;
  }
  const TrainSummary& sum = outcome.summary;
  const OutputLayout out{r.out};
  if (sum.steps_run == 0 && sum.steps == sum.total_steps) {
    fmt::print("nothing to do: the run in {} has finished its {} steps (best epoch {})\n", r.out, sum.steps,
               sum.best_epoch + 1);
    return;
  }
  fmt::print("{} {} steps of {} in {:.1f} s ({:.0f} tokens/s); last train loss {:.4f}\n",
             sum.steps == sum.total_steps ? "trained" : "stopped after", sum.steps, sum.total_steps, sum.seconds,
             sum.tokens_per_s, sum.last_loss);
  if (sum.last_eval) {
    const auto& e = *sum.last_eval;
    if (e.metrics)
      fmt::print("eval ({} texts): loss {:.4f}, accuracy {:.4f}, macro F1 {:.4f}\n", e.count, e.loss,
                 e.metrics->accuracy, e.metrics->macro_f1);
    else
      fmt::print("eval ({} tokens): loss {:.4f}, perplexity {:.3f}\n", e.count, e.loss, e.perplexity);
  }
  fmt::print("wrote {} (best, epoch {}), {} (last), {}\n", out.best_dir().string(), sum.best_epoch + 1,
             out.last_dir().string(), out.log_path().string());
}

}  // namespace

GPT2Q_COMMAND(finetune) {
  auto a = std::make_shared<FinetuneArgs>();
  auto& r = a->request;
  auto* cmd = app.add_subcommand("finetune", "Fine-tune GPT-2 as a classifier or language model (AdamW, CPU)");
  cmd->add_option("--model", r.model, "HF GPT-2 checkpoint dir to start from");
  cmd->add_option("--init", r.init, "start from HF's initialisation: tiny (128x2x4), small, medium, large, xl or WxLxH");
  cmd->add_option("--task", r.task, "classify or lm")->capture_default_str();
  cmd->add_option("--train", r.train, "training data: labelled text (classify) or a text file (lm)")->required();
  cmd->add_option("--eval", r.eval, "evaluation data, same kind as --train");
  cmd->add_option("--eval-split", r.eval_split, "hold out this fraction of --train for evaluation (seeded, stratified)");
  cmd->add_option("--format", r.format, "agnews | csv | jsonl (default: guessed from the file)");
  cmd->add_option("--labels", r.labels, "class names, comma-separated (agnews default: World,Sports,Business,Sci/Tech)");
  cmd->add_option("--num-labels", r.num_labels, "number of classes (default: from the data)");
  cmd->add_option("--tokenizer", r.tokenizer, "tokenizer dir (default: the model dir)");
  cmd->add_option("--epochs", r.epochs, "passes over the training data")->capture_default_str();
  cmd->add_option("--batch-size", r.batch_size, "examples per optimizer step")->capture_default_str();
  cmd->add_option("--lr", r.lr, "peak learning rate (AdamW)")->capture_default_str();
  cmd->add_option("--weight-decay", r.weight_decay, "AdamW weight decay (not on biases and LayerNorm weights)")
      ->capture_default_str();
  cmd->add_option("--warmup-steps", r.warmup_steps, "linear warmup steps, then linear decay to 0")
      ->capture_default_str();
  cmd->add_option("--max-length", r.max_length, "tokens per text (classify) or per block (lm)")->capture_default_str();
  cmd->add_option("--grad-clip", r.grad_clip, "max global gradient norm (0: no clipping)")->capture_default_str();
  cmd->add_option("--dropout", r.dropout, "embd/attn/resid dropout probability (default: the config's)");
  cmd->add_option("--device", a->device, "cpu (default), cuda or cuda:N: where the model trains")
      ->capture_default_str();
  cmd->add_option("--precision", r.precision,
                  "fp32 (default: exact) or bf16 (GPU: bf16 products on tensor cores, fp32 weights, state and loss)")
      ->capture_default_str();
  cmd->add_option("--seed", r.seed, "seed of the init, the data order, the split and dropout")->capture_default_str();
  cmd->add_option("--out", r.out, "output directory (an HF checkpoint; see docs/training.md)")->required();
  cmd->add_flag("--resume", r.resume, "continue the interrupted run in --out (same arguments)");
  cmd->add_option("--save-every", r.save_every, "also save the resumable state every N steps (0: epoch ends only)")
      ->capture_default_str();
  cmd->add_option("--max-steps", r.max_steps, "train exactly this many steps (overrides --epochs)");
  cmd->add_option("--limit", r.limit, "use only the first N training (and eval) examples");
  cmd->add_option("--eval-batch-size", r.eval_batch_size, "examples per evaluation forward pass")
      ->capture_default_str();
  cmd->add_option("--stop-after-steps", r.stop_after_steps, "testing: stop after N steps, as if killed")
      ->group("");  // hidden
  cmd->add_flag("--quiet", a->quiet, "no progress output");
  cmd->add_flag("--json", a->json, "print one JSON object");
  cmd->callback([a] { run(*a); });
}
