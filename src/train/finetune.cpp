#include "train/finetune.h"

#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "model/synthetic_weights.h"
#include "text/tokenizer.h"

namespace gpt2q::train {
namespace fs = std::filesystem;

namespace {

// The settings a resume must repeat (bit-identical results depend on them).
nlohmann::json settings_of(const FinetuneRequest& a) {
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
  // Only off the CPU, so that the states of earlier CPU runs still resume.
  if (a.device != Device::CPU) j["--device"] = std::string(device_name(a.device));
  if (a.precision != "fp32") j["--precision"] = a.precision;  // likewise: fp32 states resume
  return j;
}

void keep_first(Examples& e, int64_t limit) {
  if (limit > 0 && static_cast<int64_t>(e.items.size()) > limit) e.items.resize(static_cast<size_t>(limit));
}

struct Data {
  Examples train, eval;
  std::vector<std::string> label_names;  // classify
};

Data load_classify_data(const FinetuneRequest& a, const gpt2q::Tokenizer& tok,
                        const std::vector<std::string>& checkpoint_labels) {
    const auto format = a.format ? parse_data_format(*a.format) : guess_data_format(a.train);
  const Dataset train = load_dataset(a.train, format);
  std::optional<Dataset> eval_file;
  if (a.eval) eval_file = load_dataset(*a.eval, a.format ? format : guess_data_format(*a.eval));

  Data d;
  if (a.labels) {
    d.label_names = split_label_names(*a.labels);
    if (a.num_labels && *a.num_labels != static_cast<int64_t>(d.label_names.size()))
      fail("--num-labels {} but --labels names {}", *a.num_labels, d.label_names.size());
  } else if (!a.num_labels && format == DataFormat::AgNews) {
    d.label_names = agnews_label_names();
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

Data load_lm_data(const FinetuneRequest& a, const gpt2q::Tokenizer& tok) {
  Data d;
  auto blocks = lm_blocks(tok, a.train, a.max_length);
  if (a.eval_split) {
    auto parts = split_blocks(blocks, *a.eval_split, a.seed);
    d.train = std::move(parts.first);
    d.eval = std::move(parts.second);
  } else {
    d.train = std::move(blocks);
    if (a.eval) d.eval = lm_blocks(tok, *a.eval, a.max_length);
  }
  return d;
}

}  // namespace

std::string init_geometry(const std::string& name) {
  if (name == "tiny") return "128x2x4";
  if (name == "small") return "768x12x12";
  if (name == "medium") return "1024x24x16";
  if (name == "large") return "1280x36x20";
  if (name == "xl") return "1600x48x25";
  return name;
}

const std::vector<std::string>& agnews_label_names() {
  static const std::vector<std::string> names = {"World", "Sports", "Business", "Sci/Tech"};
  return names;
}

void check_finetune_request(const FinetuneRequest& a) {
  if (a.model.has_value() == a.init.has_value()) fail("give exactly one of --model DIR and --init GEOMETRY");
  if (a.task != "classify" && a.task != "lm") fail("--task: expected classify or lm, got '{}'", a.task);
  if (a.eval && a.eval_split) fail("give at most one of --eval FILE and --eval-split FRACTION");
  if (a.eval_split && !(*a.eval_split > 0 && *a.eval_split < 1))
    fail("--eval-split {}: must be between 0 and 1 (exclusive)", *a.eval_split);
  if (a.epochs < 1) fail("--epochs {}: must be at least 1", a.epochs);
  if (parse_train_precision(a.precision) == TrainPrecision::bf16 && a.device == Device::CPU)
    fail("--precision bf16 trains on a GPU (--device cuda); the CPU trains in fp32");
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

nlohmann::json FinetuneOutcome::to_json(const std::string& out) const {
  const TrainSummary& sum = summary;
  nlohmann::json j = {{"out", out},
                      {"architecture", architecture},
                      {"steps", sum.steps},
                      {"steps_run", sum.steps_run},
                      {"total_steps", sum.total_steps},
                      {"finished", sum.steps == sum.total_steps},
                      {"train_examples", train_examples},
                      {"eval_examples", eval_examples},
                      {"last_loss", sum.last_loss},
                      {"seconds", sum.seconds},
                      {"tokens_per_s", sum.tokens_per_s},
                      {"best_epoch", sum.best_epoch + 1}};
  if (sum.last_eval) j["last_eval"] = sum.last_eval->to_json();
  if (sum.best_score) j["best_score"] = *sum.best_score;
  return j;
}

FinetuneOutcome finetune(const FinetuneRequest& a) {
  check_finetune_request(a);
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
    return TrainableGPT2::from_checkpoint(*ckpt, task, num_labels, a.seed, a.device);
  }()
                    : TrainableGPT2::init(cfg, task, num_labels, a.seed, a.device);
  if (a.dropout) model.set_dropout(*a.dropout);
  model.set_precision(parse_train_precision(a.precision));

  TrainOptions o;
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
  o.progress = a.progress;
  o.settings = settings_of(a);
  const OutputLayout out{a.out};
  FinetuneOutcome outcome;
  outcome.summary = run_training(model, data.train, data.eval, o, out, tok_dir);

  outcome.architecture = std::string(architecture_name(model.kind()));
  outcome.train_examples = data.train.items.size();
  outcome.eval_examples = data.eval.items.size();
  return outcome;
}

}  // namespace gpt2q::train
