#include "core/device_graph.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/device_memory.h"
#include "core/error.h"

#ifdef GPT2Q_CUDA
#include <cuda_runtime_api.h>
#endif

namespace gpt2q {

namespace {

std::atomic<int>& graphs_setting() {
  // -1: not decided yet (read the environment on first use).
  static std::atomic<int> setting{-1};
  return setting;
}

std::atomic<uint64_t> launches{0};

}  // namespace

uint64_t device_graph_launches() { return launches.load(); }

bool cuda_graphs_enabled() {
  int s = graphs_setting().load();
  if (s < 0) {
    const char* env = std::getenv("GPT2Q_CUDA_GRAPHS");
    s = env && std::strcmp(env, "0") == 0 ? 0 : 1;
    graphs_setting().store(s);
  }
  return s == 1;
}

void set_cuda_graphs_enabled(bool enabled) { graphs_setting().store(enabled ? 1 : 0); }

#ifdef GPT2Q_CUDA

DeviceGraph::~DeviceGraph() {
  // A replay still in flight finishes first: the runtime defers the
  // destruction of a launched executable graph until it completes.
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
}

bool DeviceGraph::capture(const std::function<void()>& body) {
  if (exec_) {
    cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
    exec_ = nullptr;
  }
  auto stream = static_cast<cudaStream_t>(cuda_stream());
  // Thread-local mode: only this thread's calls are checked, so another
  // thread's allocations or copies do not break the capture.
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  bool body_ok = true;
  try {
    body();
  } catch (...) {
    body_ok = false;  // e.g. a synchronising call that capture refuses
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  if (!body_ok || ended != cudaSuccess || !graph) {
    cudaGetLastError();
    if (graph) cudaGraphDestroy(graph);
    return false;
  }
  cudaGraphExec_t exec = nullptr;
  // Auto-free: memory the body allocates and does not free is released at
  // the next launch (the body is expected to free its scratch itself).
  const cudaError_t made = cudaGraphInstantiateWithFlags(&exec, graph, cudaGraphInstantiateFlagAutoFreeOnLaunch);
  cudaGraphDestroy(graph);
  if (made != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  exec_ = exec;
  return true;
}

void DeviceGraph::launch() const {
  GPT2Q_CHECK(exec_ != nullptr, "DeviceGraph::launch before a successful capture");
  const cudaError_t err = cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), static_cast<cudaStream_t>(cuda_stream()));
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail("CUDA: a graph replay failed to launch: {} ({})", cudaGetErrorString(err), cudaGetErrorName(err));
  }
  launches.fetch_add(1);
}

#else  // CPU-only build: nothing to capture

DeviceGraph::~DeviceGraph() = default;
bool DeviceGraph::capture(const std::function<void()>&) { return false; }
void DeviceGraph::launch() const { fail("CUDA graphs are not available in this build"); }

#endif

}  // namespace gpt2q
