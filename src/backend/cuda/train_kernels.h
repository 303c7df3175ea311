#pragma once
// CUDA kernels of the training pass, the twins of backend/cpu's
// (kernels_backward.h, adamw_kernels.h): the first of issue 13's GPU
// trainer. Every pointer is device memory; every launcher takes the stream
// and neither allocates nor synchronises (capturable).
//   - dropout: the same counter-based masks as the CPU (splitmix64 of key +
//     index, the top 24 bits against p), so a mask is identical on both
//     devices, and the same single multiply by 1 / (1 - p): bit for bit.
//   - GELU backward: the reference's formula in double, rounded once (the
//     CPU's fast kernel is within float rounding of it).
//   - AdamW: backend/adamw_args.h's float operations, each correctly rounded
//     (explicit _rn intrinsics: no contraction), so the update equals the
//     CPU's bit for bit.
//   - LayerNorm backward: the scalar reference's double arithmetic, with
//     deterministic column sums.
#include <driver_types.h>

#include <cstdint>

#include "backend/adamw_args.h"

namespace gpt2q::cuda {

// x[i] = kept(key, first + i) ? x[i] * scale : 0 for i in [0, n), scale =
// 1 / (1 - p) as the CPU computes it (cpu::dropout_scale). p <= 0: nothing.
void dropout(float* x, int64_t n, float p, uint64_t key, uint64_t first, cudaStream_t stream);
// dy[i] *= gelu'(x[i]).
void gelu_new_backward(const float* x, float* dy, int64_t n, cudaStream_t stream);
void gelu_erf_backward(const float* x, float* dy, int64_t n, cudaStream_t stream);
// One AdamW update of a.n elements.
void adamw_update(const backend::AdamWArgs& a, cudaStream_t stream);

// LayerNorm's backward as cpu::layer_norm_backward (statistics recomputed
// from x as the forward does, in double): dx += ∂L/∂x, dw += Σ dy·x̂,
// db += Σ dy. The column sums run in two passes, partial sums per chunk of
// rows (double) then the chunks in order: the result depends on the row
// count only, never on timing. Takes a scratch from the caching pool.
void layer_norm_backward(const float* x, int64_t rows, int64_t cols, const float* w, float eps, const float* dy,
                         float* dx, float* dw, float* db, cudaStream_t stream);

// out[c] += Σ_r x[r, c] (fp32 x [rows, cols]), summed in double in two
// passes as layer_norm_backward's column sums (deterministic).
void column_sums_accumulate(const float* x, int64_t rows, int64_t cols, float* out, cudaStream_t stream);

// y = x·W + b, W [in, out], fp32 (cuBLASLt, no TF32): dx = dy·Wᵀ
// (overwritten; skipped when null), dw += xᵀ·dy (β = 1), db += Σ_rows dy
// (skipped when null): cpu::linear_backward's contract.
void linear_backward(const float* x, int64_t rows, int64_t in, const float* w, int64_t out, const float* dy,
                     float* dx, float* dw, float* db, cudaStream_t stream);

// c = a·bᵀ, a [m, k], b [n, k], fp32: da = dc·b (overwritten; skipped when
// null), db += dcᵀ·a (β = 1): cpu::matmul_nt_backward's contract.
void matmul_nt_backward(const float* a, int64_t m, int64_t k, const float* b, int64_t n, const float* dc, float* da,
                        float* db, cudaStream_t stream);

// dwte[ids[r]] += dout[r], dwpe[positions[r]] += dout[r], as
// cpu::embedding_backward: each touched row adds its rows' gradients in
// ascending r, one float add at a time, so the result is the CPU's bit for
// bit. ids and positions are HOST arrays (ops checks them there): grouped by
// row on the host and uploaded (a synchronous staging copy: not capturable).
void embedding_backward(const int32_t* ids_host, const int64_t* positions_host, int64_t rows, const float* dout,
                        int64_t cols, float* dwte, float* dwpe, cudaStream_t stream);

// Softmax cross entropy per row of logits [rows, cols] against HOST targets
// (-1 = ignored), cpu::reference::cross_entropy's arithmetic (double sums):
// dlogits = grad_scale · (softmax − onehot), 0 on ignored rows (may alias
// logits); row_loss[r] (device, double) the row's loss, 0 when ignored. The
// targets are uploaded (a staging copy); nothing waits for the stream.
void cross_entropy(const float* logits, const int32_t* targets_host, int64_t rows, int64_t cols, float grad_scale,
                   float* dlogits, double* row_loss, cudaStream_t stream);

}  // namespace gpt2q::cuda
