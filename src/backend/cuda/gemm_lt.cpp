// gemm.h on cuBLASLt. cuBLASLt is column-major: a row-major [r, c] buffer is
// the column-major [c, r] matrix, so y[rows, out] = x · W is computed as
// yᵀ[out, rows] = Wᵀ · xᵀ: A = W (a row-major [in, out] W is the column-major
// [out, in] matrix, op N; a row-major [out, in] W is column-major [in, out],
// op T), B = x (column-major [in, rows], op N), C = D = y (column-major
// [out, rows]), and the bias runs along D's rows, i.e. y's columns.
//
// Each thread has its own handle and 32 MiB workspace (cuBLASLt's advice for
// Hopper), and caches, per distinct problem (shapes, types, epilogue,
// alignments), the descriptors and the algorithm the heuristic picked: a
// cached call costs nothing on the host, and nothing here synchronises, so a
// CUDA graph can capture the calls.
//
// Row counts above 1024 share a plan per bucket of 1024 rows. Batches of
// packed texts have a new row count almost every time, and a new problem
// cost ~3.7 ms at batch 256 on an H100 (the heuristic, and the lazy loading
// of the kernel it picks: device run 5, fp16 at 27.5k samples/s against
// 46k for a variant whose problems were already cached). The bucket's
// algorithm is the heuristic's for the bucket's largest row count, so it
// depends on the bucket only (never on which call came first: the same
// problem always runs the same kernel), and cublasLtMatmulAlgoCheck
// confirms it for each exact row count; where it does not fit, that row
// count gets the heuristic's own choice.
#include "backend/cuda/gemm.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <map>
#include <memory>
#include <tuple>

#include "backend/cuda/cublaslt_library.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/device_buffer.h"
#include "core/device_memory.h"
#include "core/error.h"

namespace gpt2q::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

void check_lt(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail("cuBLASLt: {} failed: {} ({})", what, cublaslt().status_string(status), cublaslt().status_name(status));
}

uint64_t dim(int64_t v) {
  if (v < 0 || v > INT_MAX) fail("cuBLASLt: dimension {} exceeds its int range", v);
  return static_cast<uint64_t>(v);
}

// The largest power of two (up to 256) that divides the address: cuBLASLt
// picks kernels by the alignment it is promised.
uint32_t alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t r = 256;
  while (r > 1 && (a % r) != 0) r /= 2;
  return r;
}

size_t type_bytes(cudaDataType_t t) {
  switch (t) {
    case CUDA_R_32F:
    case CUDA_R_32I: return 4;
    case CUDA_R_16F:
    case CUDA_R_16BF: return 2;
    default: return 1;
  }
}

// The alignment every product of a batch keeps: its base's, and its stride's.
uint32_t alignment(const void* p, int64_t batch, int64_t stride, cudaDataType_t t) {
  const uint32_t base = alignment(p);
  if (batch <= 1) return base;
  return std::min(base, alignment(reinterpret_cast<const void*>(static_cast<uintptr_t>(stride) * type_bytes(t))));
}

const char* type_name(cudaDataType_t t) {
  switch (t) {
    case CUDA_R_32F: return "f32";
    case CUDA_R_16F: return "f16";
    case CUDA_R_16BF: return "bf16";
    case CUDA_R_8I: return "i8";
    case CUDA_R_32I: return "i32";
    default: return "?";
  }
}

struct Key {
  int64_t rows, in, out;
  int x_type, w_type, y_type;
  bool w_out_in, x_in_rows, accumulate, bias, bias_f32;
  int activation;
  bool fast_bf16;
  int64_t batch, stride_x, stride_w, stride_y;
  uint32_t align_x, align_w, align_y, align_bias;
  auto tie() const {
    return std::tie(rows, in, out, x_type, w_type, y_type, w_out_in, x_in_rows, accumulate, bias, bias_f32, activation,
                    fast_bf16, batch, stride_x, stride_w, stride_y, align_x, align_w, align_y, align_bias);
  }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

// Row counts up to this get a plan each; above, a plan per bucket of it.
// GPT2Q_CUBLASLT_ROW_BUCKET overrides it for experiments (0: a plan per row
// count), read once.
int64_t row_bucket() {
  static const int64_t bucket = [] {
    const char* v = std::getenv("GPT2Q_CUBLASLT_ROW_BUCKET");
    return v && *v ? std::max<int64_t>(0, std::atoll(v)) : int64_t{1024};
  }();
  return bucket;
}
int64_t plan_rows(int64_t rows) {
  const int64_t b = row_bucket();
  return b == 0 || rows <= b ? rows : (rows + b - 1) / b * b;
}

// The layouts of x (B) and y (C, D) for an exact row count, and the
// algorithm that runs it.
struct RowsPlan {
  cublasLtMatrixLayout_t b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  RowsPlan() = default;
  RowsPlan(const RowsPlan&) = delete;
  RowsPlan& operator=(const RowsPlan&) = delete;
  ~RowsPlan() {
    for (cublasLtMatrixLayout_t l : {b, c})
      if (l) cublaslt().layout_destroy(l);
  }
};

// Descriptors and algorithm of one problem (rows: its bucket's).
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr;
  cublasLtMatmulAlgo_t algo{};  // the heuristic's, for the bucket's row count
  bool integer = false;
  std::map<int64_t, std::unique_ptr<RowsPlan>> by_rows;
  ~Plan() {
    by_rows.clear();
    if (desc) cublaslt().desc_destroy(desc);
    if (a) cublaslt().layout_destroy(a);
  }
};

class LtContext {
 public:
  LtContext() {
    check_lt(cublaslt().create(&handle_), "cublasLtCreate");
    workspace_ = device_allocate(kWorkspaceBytes, Device::CUDA, false);
  }
  ~LtContext() {
    plans_.clear();
    if (workspace_) device_free(workspace_, Device::CUDA);
    if (handle_) cublaslt().destroy(handle_);
  }
  LtContext(const LtContext&) = delete;
  LtContext& operator=(const LtContext&) = delete;

  void run(const GemmCall& g, cudaStream_t stream) {
    const Key key{plan_rows(g.rows),
                  g.in,
                  g.out,
                  g.x_type,
                  g.w_type,
                  g.y_type,
                  g.w_out_in,
                  g.x_in_rows,
                  g.accumulate,
                  g.bias != nullptr,
                  g.bias_f32 && g.bias != nullptr,
                  static_cast<int>(g.activation),
                  g.fast_bf16,
                  g.batch,
                  g.batch_stride_x,
                  g.batch_stride_w,
                  g.batch_stride_y,
                  alignment(g.x, g.batch, g.batch_stride_x, g.x_type),
                  alignment(g.w, g.batch, g.batch_stride_w, g.w_type),
                  alignment(g.y, g.batch, g.batch_stride_y, g.y_type),
                  g.bias ? alignment(g.bias) : 256u};
    auto it = plans_.find(key);
    if (it == plans_.end()) it = plans_.emplace(key, make_plan(g, key)).first;
    Plan& p = *it->second;
    const RowsPlan& r = rows_plan(p, g, key);
    if (g.bias)
      check_lt(cublaslt().desc_set(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)),
               "setting the bias pointer");
    const float alpha_f = 1.0f, beta_f = g.accumulate ? 1.0f : 0.0f;
    const int32_t alpha_i = 1, beta_i = g.accumulate ? 1 : 0;
    const void* alpha = p.integer ? static_cast<const void*>(&alpha_i) : &alpha_f;
    const void* beta = p.integer ? static_cast<const void*>(&beta_i) : &beta_f;
    check_lt(cublaslt().matmul(handle_, p.desc, alpha, g.w, p.a, g.x, r.b, beta, g.y, r.c, g.y, r.c, &r.algo,
                               workspace_, kWorkspaceBytes, stream),
             "cublasLtMatmul");
  }

 private:
  static void set_batch(cublasLtMatrixLayout_t layout, const GemmCall& g, int64_t stride) {
    if (g.batch == 1) return;
    const int32_t count = static_cast<int32_t>(g.batch);
    check_lt(cublaslt().layout_set(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)), "batch count");
    check_lt(cublaslt().layout_set(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)),
             "batch stride");
  }

  std::unique_ptr<RowsPlan> make_rows(const GemmCall& g, int64_t rows) {
    auto r = std::make_unique<RowsPlan>();
    // B: x as column-major [in, rows] (op N), or, stored [in, rows] row-major,
    // column-major [rows, in] (op T).
    if (g.x_in_rows)
      check_lt(cublaslt().layout_create(&r->b, g.x_type, dim(rows), dim(g.in), dim(rows)), "layout B");
    else
      check_lt(cublaslt().layout_create(&r->b, g.x_type, dim(g.in), dim(rows), dim(g.in)), "layout B");
    check_lt(cublaslt().layout_create(&r->c, g.y_type, dim(g.out), dim(rows), dim(g.out)), "layout C");
    set_batch(r->b, g, g.batch_stride_x);
    set_batch(r->c, g, g.batch_stride_y);
    return r;
  }

  // The layouts and algorithm of g's exact row count: the bucket's
  // algorithm where cuBLASLt confirms it fits, else the heuristic's.
  const RowsPlan& rows_plan(Plan& p, const GemmCall& g, const Key& key) {
    auto it = p.by_rows.find(g.rows);
    if (it != p.by_rows.end()) return *it->second;
    if (p.by_rows.size() >= 4096) p.by_rows.clear();  // bounded: rebuilt on demand
    std::unique_ptr<RowsPlan> r = make_rows(g, g.rows);
    cublasLtMatmulHeuristicResult_t check{};
    if (g.rows == key.rows ||
        (cublaslt().algo_check(handle_, p.desc, p.a, r->b, r->c, r->c, &p.algo, &check) == CUBLAS_STATUS_SUCCESS &&
         check.workspaceSize <= kWorkspaceBytes)) {
      r->algo = p.algo;
    } else {
      r->algo = heuristic(g, p, r->b, r->c, key);
    }
    return *p.by_rows.emplace(g.rows, std::move(r)).first->second;
  }

  std::unique_ptr<Plan> make_plan(const GemmCall& g, const Key& key) {
    auto p = std::make_unique<Plan>();
    const auto& lt = cublaslt();
    p->integer = g.x_type == CUDA_R_8I;
    const cublasComputeType_t compute = p->integer  ? CUBLAS_COMPUTE_32I
                                        : g.fast_bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                                      : CUBLAS_COMPUTE_32F;
    const cudaDataType_t scale = p->integer ? CUDA_R_32I : CUDA_R_32F;
    check_lt(lt.desc_create(&p->desc, compute, scale), "cublasLtMatmulDescCreate");
    const cublasOperation_t op_a = g.w_out_in ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = g.x_in_rows ? CUBLAS_OP_T : CUBLAS_OP_N;
    check_lt(lt.desc_set(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)), "TRANSA");
    check_lt(lt.desc_set(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)), "TRANSB");
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    if (g.activation == GemmActivation::gelu_tanh) epi = g.bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    else if (g.bias) epi = CUBLASLT_EPILOGUE_BIAS;
    check_lt(lt.desc_set(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)), "EPILOGUE");
    if (g.bias) {
      const int32_t bias_type = g.bias_f32 ? CUDA_R_32F : g.y_type;
      check_lt(lt.desc_set(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)), "BIAS_TYPE");
    }
    const uint64_t in = dim(g.in), out = dim(g.out);
    // A: W as column-major [out, in] (op N, ld out) or [in, out] (op T, ld in).
    if (g.w_out_in)
      check_lt(lt.layout_create(&p->a, g.w_type, in, out, in), "layout A");
    else
      check_lt(lt.layout_create(&p->a, g.w_type, out, in, out), "layout A");
    set_batch(p->a, g, g.batch_stride_w);
    // The bucket's algorithm: the heuristic's for its largest row count.
    const std::unique_ptr<RowsPlan> bucket = make_rows(g, key.rows);
    p->algo = heuristic(g, *p, bucket->b, bucket->c, key);
    return p;
  }

  // The heuristic's first choice for the problem with x and y laid out as b, c.
  cublasLtMatmulAlgo_t heuristic(const GemmCall& g, const Plan& p, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                 const Key& key) {
    const auto& lt = cublaslt();
    cublasLtMatmulPreference_t pref = nullptr;
    check_lt(lt.pref_create(&pref), "cublasLtMatmulPreferenceCreate");
    const uint64_t ws = kWorkspaceBytes;
    lt.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    lt.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.align_w, sizeof(uint32_t));
    lt.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.align_x, sizeof(uint32_t));
    lt.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.align_y, sizeof(uint32_t));
    lt.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.align_y, sizeof(uint32_t));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st = lt.heuristic(handle_, p.desc, p.a, b, c, c, pref, 1, &result, &found);
    lt.pref_destroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0)
      fail("cuBLASLt: no algorithm for y[{}, {}] ({}) = x[{}, {}] ({}) · W{} ({}){}{}{}: {}", g.rows, g.out,
           type_name(g.y_type), g.rows, g.in, type_name(g.x_type), g.w_out_in ? "ᵀ" : "", type_name(g.w_type),
           g.bias ? " + bias" : "", g.accumulate ? " + y" : "",
           g.activation == GemmActivation::gelu_tanh ? ", GELU" : "",
           st == CUBLAS_STATUS_SUCCESS ? "none found" : cublaslt().status_string(st));
    return result.algo;
  }

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

// One per host thread, made on its first GEMM. Not destroyed at exit (the
// driver goes with the process, and the order of static destruction against
// the CUDA runtime's is unknown): release_gemm_context() frees it earlier.
thread_local LtContext* thread_context = nullptr;
thread_local Fp32Products thread_fp32_products = Fp32Products::exact;

LtContext& context() {
  if (!thread_context) thread_context = new LtContext();
  return *thread_context;
}

}  // namespace

Fp32Products fp32_products() { return thread_fp32_products; }
void set_fp32_products(Fp32Products p) { thread_fp32_products = p; }

namespace {

// Elements a (possibly batched) operand spans: the last product's end.
int64_t operand_extent(int64_t batch, int64_t stride, int64_t elements) { return (batch - 1) * stride + elements; }

// How fast_bf16 runs. By default the operands are rounded to bf16 (nearest
// even) into scratch buffers and multiplied as bf16 × bf16 with fp32 sums
// and an fp32 y: what PyTorch's bf16 autocast does to a Linear. cuBLASLt's
// own CUBLAS_COMPUTE_32F_FAST_16BF on fp32 operands was measured to pick
// TF32 kernels on an H100 (device run 10: the bf16 trainer's products ran at
// TF32's rate), so it is kept only for comparison: GPT2Q_FAST_16BF=1.
bool use_compute_fast_16bf() {
  static const bool on = [] {
    const char* v = std::getenv("GPT2Q_FAST_16BF");
    return v && *v && *v != '0';
  }();
  return on;
}

// An operand already in bf16 (a caller that rounded it once for two
// products) is taken as it is.
void run_as_bf16(GemmCall call, cudaStream_t stream) {
  const bool round_x = call.x_type == CUDA_R_32F, round_w = call.w_type == CUDA_R_32F;
  const int64_t nx = operand_extent(call.batch, call.batch_stride_x, call.rows * call.in);
  const int64_t nw = operand_extent(call.batch, call.batch_stride_w, call.in * call.out);
  DeviceBuffer x16(round_x ? static_cast<size_t>(nx) * 2 : 0), w16(round_w ? static_cast<size_t>(nw) * 2 : 0);
  if (round_x) {
    convert(call.x, DType::F32, x16.get(), DType::BF16, nx, stream);
    call.x = x16.get();
  }
  if (round_w) {
    convert(call.w, DType::F32, w16.get(), DType::BF16, nw, stream);
    call.w = w16.get();
  }
  call.x_type = call.w_type = CUDA_R_16BF;
  call.fast_bf16 = false;
  context().run(call, stream);
  // The scratch is freed in stream order (device_free), after the product.
}

}  // namespace

void gemm(const GemmCall& in_call, cudaStream_t stream) {
  GemmCall call = in_call;
  if (thread_fp32_products == Fp32Products::bf16 && call.x_type == CUDA_R_32F && call.w_type == CUDA_R_32F &&
      call.y_type == CUDA_R_32F)
    call.fast_bf16 = true;
  if (call.rows == 0 || call.out == 0 || call.batch == 0) return;
  if (call.batch < 1 || call.batch > INT32_MAX || (call.batch > 1 && call.bias))
    fail("cuBLASLt: a batch of {} products{}", call.batch, call.bias ? " with a bias" : "");
  auto f32_or_bf16 = [](cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16BF; };
  if (call.fast_bf16 && (!f32_or_bf16(call.x_type) || !f32_or_bf16(call.w_type) || call.y_type != CUDA_R_32F))
    fail("cuBLASLt: bf16 products of fp32 operands take F32 (or BF16) x and W and an F32 y");
  const bool mixed = call.x_type != CUDA_R_32F || call.w_type != CUDA_R_32F;
  if (call.fast_bf16 && (mixed || !use_compute_fast_16bf())) return run_as_bf16(call, stream);
  context().run(call, stream);
}

void release_gemm_context() {
  delete thread_context;
  thread_context = nullptr;
}

}  // namespace gpt2q::cuda
