#pragma once
// The state of GPT2Model's captured CUDA graphs (gpt2.h: class_logits of
// one text, decode_step): the buffers a graph reads and writes on every
// replay, refilled and read by the host between replays.
#include "core/device_graph.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace gpt2q {

// One text padded to a length bucket N (classify_bucket) through the classifier.
struct ClassifyGraph {
  ops::CheckedIndices ids, positions;  // [N]: the text padded to its bucket, 0..N-1
  ops::CheckedIndices pooled_row;      // [1]: the position the classifier reads
  ops::SequenceLayout layout;          // one packed sequence of N rows
  Tensor logits;                       // F32 [1, num_labels]: written by each replay
  DeviceGraph graph;
  bool eager = false;  // the capture failed: run the same work without a graph
};

// One new token of a batch-1 KV cache through the LM head.
struct DecodeGraph {
  ops::CheckedIndices id, position;  // [1]
  Tensor logits;                     // F32 [1, vocab]: written by each replay
  DeviceGraph graph;
  bool eager = false;
};

}  // namespace gpt2q
