#pragma once
// Work captured once from the thread's CUDA stream and replayed as one CUDA
// graph: a batch-1 forward is ~100 small kernels whose launch overhead is
// most of its time, and a replay launches them all in one call (llama.cpp
// does the same for decode). The captured work reads and writes the same
// device buffers on every replay, so its inputs live in buffers refilled
// between replays and its outputs in buffers read after them.
#include <cstdint>
#include <functional>

namespace gpt2q {

class DeviceGraph {
 public:
  DeviceGraph() = default;
  ~DeviceGraph();
  DeviceGraph(const DeviceGraph&) = delete;
  DeviceGraph& operator=(const DeviceGraph&) = delete;

  // Records `body`'s work on the thread's CUDA stream without running it.
  // True when the graph is ready to launch; false when the work cannot be
  // captured (a synchronising call inside it, a graph the driver refuses,
  // the body throwing): nothing was run then, the stream is usable and the
  // caller runs the body itself. Run the body once eagerly first, so that
  // what it sets up on first use (GEMM plans, workspaces) is not captured.
  bool capture(const std::function<void()>& body);
  // Enqueues one replay on the thread's stream.
  void launch() const;
  bool ready() const { return exec_ != nullptr; }

 private:
  void* exec_ = nullptr;  // cudaGraphExec_t
};

// Whether the model replays CUDA graphs for batch-1 classification and
// decoding: on unless the environment sets GPT2Q_CUDA_GRAPHS=0, or
// set_cuda_graphs_enabled(false) was called (tests compare both paths).
bool cuda_graphs_enabled();
// Graph replays launched by this process so far (benchmarks report it;
// tests check that the graph path ran).
uint64_t device_graph_launches();
void set_cuda_graphs_enabled(bool enabled);

}  // namespace gpt2q
