// gpt2q finetune: trains GPT-2 as a classifier (GPT2ForSequenceClassification)
// or a language model (GPT2LMHeadModel) from a checkpoint or from HF's
// initialisation, and writes an HF checkpoint directory (docs/training.md).
#include <cmath>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "cli/command.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "model/synthetic_weights.h"
#include "text/tokenizer.h"
#include "train/trainer.h"

namespace {

using gpt2q::fail;
using gpt2q::train::Task;
namespace fs = std::filesystem;

struct FinetuneArgs {
  std::optional<std::string> model, init, eval, tokenizer, format, labels;
  std::string task = "classify", train, out;
  std::optional<double> eval_split, dropout;
  std::optional<int64_t> num_labels;
  int64_t epochs = 3, batch_size = 16, warmup_steps = 0, max_length = 128, max_steps = 0, save_every = 0;
  int64_t limit = 0, stop_after_steps = 0, eval_batch_size = 32;
  double lr = 2e-5, weight_decay = 0.0, grad_clip = 1.0;
  uint64_t seed = 42;
  bool resume = false, json = false, quiet = false;
};

// --init names: GPT-2's published sizes, and `tiny` for tests and quick runs.
std::string init_geometry(const std::string& name) {
  if (name == "tiny") return "128x2x4";
  if (name == "small") return "768x12x12";
  if (name == "medium") return "1024x24x16";
  if (name == "large") return "1280x36x20";
  if (name == "xl") return "1600x48x25";
  return name;
}

std::vector<std::string> split_labels(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) fail("--labels: empty label name in '{}'", s);
    v.push_back(item);
  }
  if (v.size() < 2) fail("--labels: need at least two comma-separated names, got '{}'", s);
  return v;
}

void check_args(const FinetuneArgs& a) {
  if (a.model.has_value() == a.init.has_value()) fail("give exactly one of --model DIR and --init GEOMETRY");
  if (a.task != "classify" && a.task != "lm") fail("--task: expected classify or lm, got '{}'", a.task);
  if (a.eval && a.eval_split) fail("give at most one of --eval FILE and --eval-split FRACTION");
  if (a.eval_split && !(*a.eval_split > 0 && *a.eval_split < 1))
    fail("--eval-split {}: must be between 0 and 1 (exclusive)", *a.eval_split);
  if (a.epochs < 1) fail("--epochs {}: must be at least 1", a.epochs);
  if (a.batch_size < 1) fail("--batch-size {}: must be at least 1", a.batch_size);
  if (a.max_length < (a.task == "lm" ? 2 : 1))
    fail("--max-length {}: must be at least {}", a.max_length, a.task == "lm" ? 2 : 1);
  if (!(a.lr >= 0) || !std::isfinite(a.lr)) fail("--lr {}: must be a finite number >= 0", a.lr);
  if (!(a.weight_decay >= 0) || !std::isfinite(a.weight_decay)) fail("--weight-decay {}: must be >= 0", a.weight_decay);
  if (!std::isfinite(a.grad_clip)) fail("--grad-clip {}: must be finite (0 turns clipping off)", a.grad_clip);
  if (a.warmup_steps < 0) fail("--warmup-steps {}: must be >= 0", a.warmup_steps);
  if (a.dropout && !(*a.dropout >= 0 && *a.dropout < 1)) fail("--dropout {}: must be in [0, 1)", *a.dropout);
  if (a.max_steps < 0) fail("--max-steps {}: must be >= 0", a.max_steps);
  if (a.save_every < 0) fail("--save-every {}: must be >= 0", a.save_every);
  if (a.limit < 0) fail("--limit {}: must be >= 0", a.limit);
  if (a.num_labels && *a.num_labels < 2) fail("--num-labels {}: must be at least 2", *a.num_labels);
  if (a.task == "lm" && (a.labels || a.num_labels)) fail("--labels / --num-labels apply to --task classify only");
  if (a.init && !a.tokenizer) fail("--init needs --tokenizer DIR (GPT-2 tokenizer files, e.g. ../shared/data/gpt2-tokenizer)");
}

// The settings a resume must repeat (bit-identical results depend on them).
nlohmann::json settings_of(const FinetuneArgs& a) {
  nlohmann::json j = {{"--task", a.task},           {"--train", a.train},         {"--epochs", a.epochs},
                      {"--batch-size", a.batch_size}, {"--lr", a.lr},             {"--weight-decay", a.weight_decay},
                      {"--warmup-steps", a.warmup_steps}, {"--max-length", a.max_length}, {"--grad-clip", a.grad_clip},
                      {"--seed", a.seed},           {"--max-steps", a.max_steps}, {"--limit", a.limit}};
  j["--model"] = a.model ? nlohmann::json(*a.model) : nlohmann::json();
  j["--init"] = a.init ? nlohmann::json(*a.init) : nlohmann::json();
  j["--eval"] = a.eval ? nlohmann::json(*a.eval) : nlohmann::json();
  j["--eval-split"] = a.eval_split ? nlohmann::json(*a.eval_split) : nlohmann::json();
  j["--dropout"] = a.dropout ? nlohmann::json(*a.dropout) : nlohmann::json();
  j["--labels"] = a.labels ? nlohmann::json(*a.labels) : nlohmann::json();
  j["--num-labels"] = a.num_labels ? nlohmann::json(*a.num_labels) : nlohmann::json();
  j["--format"] = a.format ? nlohmann::json(*a.format) : nlohmann::json();
  return j;
}

void keep_first(gpt2q::train::Examples& e, int64_t limit) {
  if (limit > 0 && static_cast<int64_t>(e.items.size()) > limit) e.items.resize(static_cast<size_t>(limit));
}

struct Data {
  gpt2q::train::Examples train, eval;
  std::vector<std::string> label_names;  // classify
};

Data load_classify_data(const FinetuneArgs& a, const gpt2q::Tokenizer& tok,
                        const std::vector<std::string>& checkpoint_labels) {
  using namespace gpt2q;
  const auto format = a.format ? parse_data_format(*a.format) : guess_data_format(a.train);
  const Dataset train = load_dataset(a.train, format);
  std::optional<Dataset> eval_file;
  if (a.eval) eval_file = load_dataset(*a.eval, a.format ? format : guess_data_format(*a.eval));

  Data d;
  if (a.labels) {
    d.label_names = split_labels(*a.labels);
    if (a.num_labels && *a.num_labels != static_cast<int64_t>(d.label_names.size()))
      fail("--num-labels {} but --labels names {}", *a.num_labels, d.label_names.size());
  } else if (!a.num_labels && format == DataFormat::AgNews) {
    d.label_names = {"World", "Sports", "Business", "Sci/Tech"};
  } else {
    int64_t k = std::max<int64_t>(2, train.num_labels());
    if (eval_file) k = std::max<int64_t>(k, eval_file->num_labels());
    k = a.num_labels.value_or(k);
    if (static_cast<int64_t>(checkpoint_labels.size()) == k) {
      d.label_names = checkpoint_labels;  // a classifier checkpoint keeps its names
    } else {
      for (int64_t c = 0; c < k; ++c) d.label_names.push_back(fmt::format("LABEL_{}", c));
    }
  }
  const auto k = static_cast<int32_t>(d.label_names.size());
  auto check_labels = [&](const Dataset& ds) {
    for (size_t i = 0; i < ds.rows.size(); ++i)
      if (ds.rows[i].label >= k)
        fail("{}: row {} has label {} but the classifier has {} labels (--labels / --num-labels)",
             ds.source.string(), i + 1, ds.rows[i].label, k);
  };
  check_labels(train);
  if (eval_file) check_labels(*eval_file);

  std::vector<size_t> train_rows, eval_rows;
  if (a.eval_split) {
    Split s = stratified_split(train, *a.eval_split, a.seed);
    train_rows = std::move(s.first);
    eval_rows = std::move(s.second);
  } else {
    for (size_t i = 0; i < train.rows.size(); ++i) train_rows.push_back(i);
  }
  d.train = train::classification_examples(tok, train, train_rows, a.max_length);
  if (eval_file) {
    for (size_t i = 0; i < eval_file->rows.size(); ++i) eval_rows.push_back(i);
    d.eval = train::classification_examples(tok, *eval_file, eval_rows, a.max_length);
  } else if (a.eval_split) {
    d.eval = train::classification_examples(tok, train, eval_rows, a.max_length);
  }
  return d;
}

Data load_lm_data(const FinetuneArgs& a, const gpt2q::Tokenizer& tok) {
  Data d;
  auto blocks = gpt2q::train::lm_blocks(tok, a.train, a.max_length);
  if (a.eval_split) {
    auto parts = gpt2q::train::split_blocks(blocks, *a.eval_split, a.seed);
    d.train = std::move(parts.first);
    d.eval = std::move(parts.second);
  } else {
    d.train = std::move(blocks);
    if (a.eval) d.eval = gpt2q::train::lm_blocks(tok, *a.eval, a.max_length);
  }
  return d;
}

void run(const FinetuneArgs& a) {
  using namespace gpt2q;
  check_args(a);
  const Task task = a.task == "lm" ? Task::LM : Task::Classify;

  std::optional<Checkpoint> ckpt;
  GPT2Config cfg;
  if (a.model) {
    ckpt = Checkpoint::load(*a.model);
    cfg = ckpt->config;
  } else {
    cfg = geometry_config(init_geometry(*a.init), "--init");
  }
  if (a.max_length > cfg.n_positions)
    fail("--max-length {}: the model has only {} positions", a.max_length, cfg.n_positions);
  const fs::path tok_dir = a.tokenizer ? fs::path(*a.tokenizer) : fs::path(*a.model);
  if (!Tokenizer::present(tok_dir))
    fail("{}: no tokenizer files (vocab.json+merges.txt, encoder.json+vocab.bpe or tokenizer.json); pass --tokenizer DIR",
         tok_dir.string());
  const Tokenizer tok = Tokenizer::load(tok_dir);
  if (tok.vocab_size() > cfg.vocab_size)
    fail("{}: the tokenizer has {} tokens but the model's vocab_size is {}", tok_dir.string(), tok.vocab_size(),
         cfg.vocab_size);

  Data data = task == Task::LM ? load_lm_data(a, tok) : load_classify_data(a, tok, cfg.id2label);
  keep_first(data.train, a.limit);
  keep_first(data.eval, a.limit);
  if (data.train.items.empty()) fail("{}: no training examples", a.train);

  const int64_t num_labels = static_cast<int64_t>(data.label_names.size());
  if (task == Task::Classify) cfg.id2label = data.label_names;
  auto model = ckpt ? [&] {
    ckpt->config = cfg;
    return train::TrainableGPT2::from_checkpoint(*ckpt, task, num_labels, a.seed);
  }()
                    : train::TrainableGPT2::init(cfg, task, num_labels, a.seed);
  if (a.dropout) model.set_dropout(*a.dropout);

  train::TrainOptions o;
  o.epochs = a.epochs;
  o.batch_size = a.batch_size;
  o.lr = a.lr;
  o.weight_decay = a.weight_decay;
  o.grad_clip = a.grad_clip;
  o.warmup_steps = a.warmup_steps;
  o.max_steps = a.max_steps;
  o.seed = a.seed;
  o.save_every = a.save_every;
  o.stop_after_steps = a.stop_after_steps;
  o.eval_batch_size = a.eval_batch_size;
  o.resume = a.resume;
  o.progress = !a.quiet;
  o.settings = settings_of(a);
  const train::OutputLayout out{a.out};
  const auto sum = train::run_training(model, data.train, data.eval, o, out, tok_dir);

  nlohmann::json j = {{"out", a.out},
                      {"architecture", architecture_name(model.kind())},
                      {"steps", sum.steps},
                      {"steps_run", sum.steps_run},
                      {"total_steps", sum.total_steps},
                      {"finished", sum.steps == sum.total_steps},
                      {"train_examples", data.train.items.size()},
                      {"eval_examples", data.eval.items.size()},
                      {"last_loss", sum.last_loss},
                      {"seconds", sum.seconds},
                      {"tokens_per_s", sum.tokens_per_s},
                      {"best_epoch", sum.best_epoch + 1}};
  if (sum.last_eval) j["last_eval"] = sum.last_eval->to_json();
  if (sum.best_score) j["best_score"] = *sum.best_score;
  if (a.json) {
    cli::print_json(j);
    return;
  }
  if (sum.steps_run == 0 && sum.steps == sum.total_steps) {
    fmt::print("nothing to do: the run in {} has finished its {} steps (best epoch {})\n", a.out, sum.steps,
               sum.best_epoch + 1);
    return;
  }
  fmt::print("{} {} steps of {} in {:.1f} s ({:.0f} tokens/s); last train loss {:.4f}\n",
             sum.steps == sum.total_steps ? "trained" : "stopped after", sum.steps, sum.total_steps, sum.seconds,
             sum.tokens_per_s, sum.last_loss);
  if (sum.last_eval) {
    const auto& r = *sum.last_eval;
    if (r.metrics)
      fmt::print("eval ({} texts): loss {:.4f}, accuracy {:.4f}, macro F1 {:.4f}\n", r.count, r.loss,
                 r.metrics->accuracy, r.metrics->macro_f1);
    else
      fmt::print("eval ({} tokens): loss {:.4f}, perplexity {:.3f}\n", r.count, r.loss, r.perplexity);
  }
  fmt::print("wrote {} (best, epoch {}), {} (last), {}\n", out.best_dir().string(), sum.best_epoch + 1,
             out.last_dir().string(), out.log_path().string());
}

}  // namespace

GPT2Q_COMMAND(finetune) {
  auto a = std::make_shared<FinetuneArgs>();
  auto* cmd = app.add_subcommand("finetune", "Fine-tune GPT-2 as a classifier or language model (AdamW, CPU)");
  cmd->add_option("--model", a->model, "HF GPT-2 checkpoint dir to start from");
  cmd->add_option("--init", a->init, "start from HF's initialisation: tiny (128x2x4), small, medium, large, xl or WxLxH");
  cmd->add_option("--task", a->task, "classify or lm")->capture_default_str();
  cmd->add_option("--train", a->train, "training data: labelled text (classify) or a text file (lm)")->required();
  cmd->add_option("--eval", a->eval, "evaluation data, same kind as --train");
  cmd->add_option("--eval-split", a->eval_split, "hold out this fraction of --train for evaluation (seeded, stratified)");
  cmd->add_option("--format", a->format, "agnews | csv | jsonl (default: guessed from the file)");
  cmd->add_option("--labels", a->labels, "class names, comma-separated (agnews default: World,Sports,Business,Sci/Tech)");
  cmd->add_option("--num-labels", a->num_labels, "number of classes (default: from the data)");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer dir (default: the model dir)");
  cmd->add_option("--epochs", a->epochs, "passes over the training data")->capture_default_str();
  cmd->add_option("--batch-size", a->batch_size, "examples per optimizer step")->capture_default_str();
  cmd->add_option("--lr", a->lr, "peak learning rate (AdamW)")->capture_default_str();
  cmd->add_option("--weight-decay", a->weight_decay, "AdamW weight decay (not on biases and LayerNorm weights)")
      ->capture_default_str();
  cmd->add_option("--warmup-steps", a->warmup_steps, "linear warmup steps, then linear decay to 0")
      ->capture_default_str();
  cmd->add_option("--max-length", a->max_length, "tokens per text (classify) or per block (lm)")->capture_default_str();
  cmd->add_option("--grad-clip", a->grad_clip, "max global gradient norm (0: no clipping)")->capture_default_str();
  cmd->add_option("--dropout", a->dropout, "embd/attn/resid dropout probability (default: the config's)");
  cmd->add_option("--seed", a->seed, "seed of the init, the data order, the split and dropout")->capture_default_str();
  cmd->add_option("--out", a->out, "output directory (an HF checkpoint; see docs/training.md)")->required();
  cmd->add_flag("--resume", a->resume, "continue the interrupted run in --out (same arguments)");
  cmd->add_option("--save-every", a->save_every, "also save the resumable state every N steps (0: epoch ends only)")
      ->capture_default_str();
  cmd->add_option("--max-steps", a->max_steps, "train exactly this many steps (overrides --epochs)");
  cmd->add_option("--limit", a->limit, "use only the first N training (and eval) examples");
  cmd->add_option("--eval-batch-size", a->eval_batch_size, "examples per evaluation forward pass")
      ->capture_default_str();
  cmd->add_option("--stop-after-steps", a->stop_after_steps, "testing: stop after N steps, as if killed")
      ->group("");  // hidden
  cmd->add_flag("--quiet", a->quiet, "no progress output");
  cmd->add_flag("--json", a->json, "print one JSON object");
  cmd->callback([a] { run(*a); });
}
