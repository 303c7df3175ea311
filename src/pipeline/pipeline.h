#pragma once
// `gpt2q pipeline`: the study end to end, in stages that each leave a
// finished artefact in OUT and are skipped (or resumed) when run again:
//
//   OUT/data/heldout.jsonl   the seeded stratified eval split of --data (the
//                            rows fine-tuning holds out), for compare;
//   OUT/pretrain/            optional: GPT-2 trained as an LM on --pretrain-text;
//   OUT/finetune/            the classifier fine-tuned on the rest of --data
//                            (or --model, taken as it is);
//   OUT/quantized/<variant>/ every variant as a checkpoint of its own;
//   OUT/report/              `gpt2q compare` of the variants on the held-out rows.
//
// Resuming: fine-tuning continues from its last saved state (train/trainer.h,
// bit-identical to an uninterrupted run); a quantized checkpoint that exists
// is complete (written by rename) and kept; compare reuses finished variants.
// --force starts over. OUT/pipeline.json records the settings; running again
// with different ones is an Error (start over with --force or choose another OUT).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "train/finetune.h"

namespace gpt2q::pipeline {

// The fine-tuning recipe the pipeline uses unless told otherwise: tuned for a
// small GPT-2 trained from scratch on ~6,000 AG News texts on a 2-core CPU
// (docs/pipeline.md gives the accuracy it reaches and the time it takes).
train::FinetuneRequest default_finetune_recipe();
// For --base (a pretrained GPT-2): the usual transformers fine-tuning
// settings of the study (3 epochs, batch 16, lr 2e-5, 128 tokens).
train::FinetuneRequest pretrained_finetune_recipe();
// The fine-tuning rate after the pipeline's own LM pre-training
// (--pretrain-text): the pretrained recipe's other settings, at this rate.
inline constexpr double kSelfPretrainedFinetuneLr = 1e-4;

struct PipelineOptions {
  std::filesystem::path data;                     // labelled text (AG News test.csv)
  std::optional<std::string> format;              // agnews | csv | jsonl (default: guessed)
  std::filesystem::path tokenizer;                // GPT-2 tokenizer files
  std::optional<std::filesystem::path> model;     // a fine-tuned classifier: skip training
  std::optional<std::filesystem::path> base;      // start fine-tuning from this checkpoint
  std::string init = "128x2x4";                   // else a fresh GPT-2 of this geometry
  // LM pre-training texts (--pretrain-text, repeatable): one is read as it
  // is; several are joined, in order, into OUT/data/pretrain.txt.
  std::vector<std::filesystem::path> pretrain_texts;
  int64_t pretrain_epochs = 1;
  double pretrain_lr = 1e-3;
  double eval_split = 0.2;
  train::FinetuneRequest finetune = default_finetune_recipe();  // hyper-parameters (model/init/train/out/eval are set by the pipeline)
  std::string variants;             // default: kPipelineVariants
  int64_t compare_batch_size = 8;
  std::filesystem::path out = "out/pipeline";
  bool force = false, progress = true;
  std::string command_line;
  // Where the comparison runs (report::CompareOptions: device, compute dtype
  // and the device line of the report). The training stages run on
  // finetune.device (the CLI sets both from --device; fp32 there).
  Device compare_device = Device::CPU;
  std::optional<DType> compare_compute;
  std::string compare_device_description = "CPU";
};

inline constexpr std::string_view kPipelineVariants =
    "fp32,fp16,int8-tensor,int8-tensor:per-channel,int8-tensor:mlp-only,int8-tensor:bf16-compute,llm-int8,nf4,"
    "nf4:double-quant,nf4:bf16-compute,fp4";

struct PipelineResult {
  std::filesystem::path classifier;  // the checkpoint compared as fp32
  std::filesystem::path report_dir;
  nlohmann::json summary;            // stages: what ran, what was reused, key numbers
};

PipelineResult run_pipeline(const PipelineOptions& opts);

// The message for missing inputs: what to fetch and where to put it.
std::string missing_data_help(const std::filesystem::path& data, const std::filesystem::path& tokenizer);

}  // namespace gpt2q::pipeline
