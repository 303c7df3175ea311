#include "train/epoch_eval.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace gpt2q::train {

nlohmann::json EvalReport::to_json() const {
  nlohmann::json j = {{"loss", loss}, {"count", count}};
  if (metrics) {
    j["accuracy"] = metrics->accuracy;
    j["macro_f1"] = metrics->macro_f1;
    j["macro_precision"] = metrics->macro_precision;
    j["macro_recall"] = metrics->macro_recall;
  } else {
    j["perplexity"] = perplexity;
  }
  return j;
}

EvalReport evaluate(const TrainableGPT2& model, const Examples& examples, int64_t batch_size) {
  GPT2Q_CHECK(batch_size >= 1 && !examples.items.empty(), "evaluate: nothing to evaluate");
  const int32_t pad = static_cast<int32_t>(model.config().pad_token_id.value_or(model.config().eos_token_id.value_or(0)));
  const size_t n = examples.items.size();
  std::vector<size_t> idx;
  std::vector<int32_t> labels, y_true, y_pred;
  double loss_sum = 0;
  int64_t count = 0;
  for (size_t begin = 0; begin < n; begin += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(n, begin + static_cast<size_t>(batch_size));
    idx.clear();
    for (size_t i = begin; i < end; ++i) idx.push_back(i);
    TokenBatch batch = make_batch(examples, idx, pad, &labels);
    if (model.task() == Task::LM) {
      const LossValue lv = model.loss(batch, {});
      loss_sum += lv.loss * static_cast<double>(lv.count);
      count += lv.count;
      continue;
    }
    const Tensor logits = to_device(model.logits(batch), Device::CPU);
    const int64_t k = logits.dim(1);
    const float* z = logits.data<float>();
    for (int64_t b = 0; b < batch.batch; ++b) {
      const float* row = z + b * k;
      const int64_t pred = std::max_element(row, row + k) - row;  // first maximum
      double mx = row[pred], sum = 0;
      for (int64_t c = 0; c < k; ++c) sum += std::exp(static_cast<double>(row[c]) - mx);
      loss_sum += mx + std::log(sum) - row[labels[b]];
      ++count;
      y_pred.push_back(static_cast<int32_t>(pred));
      y_true.push_back(labels[b]);
    }
  }
  EvalReport r;
  r.count = count;
  r.loss = count ? loss_sum / static_cast<double>(count) : 0;
  if (model.task() == Task::LM)
    r.perplexity = std::exp(r.loss);
  else
    r.metrics = compute_classification_metrics(y_true, y_pred, model.num_labels());
  return r;
}

}  // namespace gpt2q::train
