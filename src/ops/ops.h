#pragma once
// Device-independent ops on Tensors: each checks shapes and dtypes
// (contiguous, row-major), then dispatches on the tensors' device to a
// backend's kernel set (src/backend/cpu, src/backend/cuda; op_checks.h).
// Outputs are preallocated by the caller so the model's hot loop allocates
// nothing. Same signatures in ops/reference.h run the scalar reference
// kernels, which tests compare against.
#include <cstdint>
#include <vector>

#include "backend/linear_args.h"
#include "core/tensor.h"
#include "ops/checked_indices.h"
#include "ops/quantized_tensor.h"

namespace gpt2q::ops {

// A tensor whose contents are undefined, for an op's output that the op
// writes in full (cheaper than Tensor::empty's zero fill for big buffers).
Tensor scratch(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);

using backend::Activation;
using backend::Epilogue;

// y[..., out] = x[..., in] · w[in, out] + b[out] (b may be undefined), then
// the epilogue: y = act(...) or y += ... (the residual add). w is F32, F16
// or BF16 (GPT-2's Conv1D layout); b F32. On the CPU x and y are F32 and a
// 16-bit w is converted exactly (backend/cpu/half_gemm.h). On CUDA x and y
// may also be F16 / BF16 (backend/cuda: cuBLASLt).
void linear(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Epilogue epilogue = {});
// The same with w [out, in] (nn.Linear's layout): y = x · wᵀ + b, then the
// epilogue. On CUDA the dense layers hold their weights so (both operands
// contiguous along in: cuBLASLt's TN case, and each output's weights one
// contiguous run for the few-row GEMV).
void linear_nt(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Epilogue epilogue = {});
// c[m, n] = a[m, k] · b[n, k]ᵀ  (e.g. logits = h · wteᵀ); b F32, F16 or BF16.
void matmul_nt(const Tensor& a, const Tensor& b, Tensor& c);

// A dense weight w [in, out] (F32, F16 or BF16, on the CPU) prepared for
// linear_bf16: rounded to bf16 once (nearest even, as torch's
// .to(torch.bfloat16)) and packed (backend/cpu/bf16_linear.h). A BF16 tensor
// of cpu::bf16_linear_packed_elems(in, out) values.
Tensor pack_linear_bf16(const Tensor& w_in_out);
// y[..., out] = x[..., in] · W' + b with the CPU's bf16 compute (x rounded to
// bf16 from 16 rows, fp32 sums; backend/cpu/bf16_linear.h), then the
// epilogue. `packed` comes from pack_linear_bf16 of an [in, out] weight.
void linear_bf16(const Tensor& x, const Tensor& packed, int64_t in, int64_t out, const Tensor& b, Tensor& y,
                 Epilogue epilogue = {});

// The arithmetic of a packed product (backend/linear_args.h, QuantLinearArgs).
struct QuantLinearOptions {
  DType compute = DType::F32;
  float llm_int8_threshold = 6.0f;
  bool llm_int8_fp32_epilogue = false;
};
// y[..., out] = x[..., in] · W'ᵀ + b[out], W' the dequantized weight of w
// [out, in] (on x's device), then the epilogue.
void quant_linear(const Tensor& x, const QuantizedTensor& w, const Tensor& b, Tensor& y,
                  const QuantLinearOptions& options = {}, Epilogue epilogue = {});

// out[i, :] = table[idx[i], :] (or += with accumulate) in fp32: table [rows,
// cols] F32 / F16 / BF16 or packed, idx I64 [n], out F32 [n, cols]. An index
// outside the table is an Error, checked on the host before any kernel runs.
void gather_rows(const Tensor& table, const Tensor& idx, Tensor& out, bool accumulate = false);
void gather_rows(const QuantizedTensor& table, const Tensor& idx, Tensor& out, bool accumulate = false);
// The same with indices already checked and on out's device (no host work:
// what a captured CUDA graph runs); idx.bound() must not exceed the rows.
void gather_rows(const Tensor& table, const CheckedIndices& idx, Tensor& out, bool accumulate = false);
void gather_rows(const QuantizedTensor& table, const CheckedIndices& idx, Tensor& out, bool accumulate = false);
// LayerNorm over the last dimension (biased variance, fp32). y may be x.
void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y);
// In place: gelu_new (tanh approximation, GPT-2's "gelu_new") / exact erf GELU.
void gelu_new(Tensor& x);
void gelu_erf(Tensor& x);
// Softmax over the last dimension, in place.
void softmax_lastdim(Tensor& x);
// y = x converted (same shape; F32, F16 or BF16 either way, rounding to
// nearest even; the CPU converts as core/half.h).
void cast(const Tensor& x, Tensor& y);
// x += y (same shape): the residual connection.
void add_inplace(Tensor& x, const Tensor& y);
// out[r] = wte[ids[r]] + wpe[positions[r]]; ids I32 [rows], positions I64
// [rows], out [rows, C]. Ids or positions outside the tables are an Error.
void embedding(const Tensor& ids, const Tensor& positions, const Tensor& wte, const Tensor& wpe, Tensor& out);

// nll[r] = logsumexp(logits[r, :]) - logits[r, target[r]] in double: the
// next-token loss of each row. logits F32 [rows, V] on any device, targets
// I64 [rows] on the host (checked against V), nll F64 [rows] on the host.
// The max is taken in fp32, exp(x - max) summed in double.
void token_nll(const Tensor& logits, const Tensor& targets, Tensor& nll);

// Causal self-attention over qkv [B, T, 3C] (c_attn's output: q | k | v, each
// split into n_head heads of C / n_head) -> out [B, T, C]. key_mask: U8
// [B, M], M >= T, 1 where a key may be attended (padding -> 0), or undefined.
// Scores are multiplied by `scale` (HF: 1/sqrt(head_dim), / (layer+1) with
// scale_attn_by_inverse_layer_idx).
void causal_self_attention(const Tensor& qkv, const Tensor& key_mask, int64_t n_head, float scale, Tensor& out);
// The same with a KV cache: cache_k / cache_v [B, n_head, capacity, head_dim]
// hold `past` positions; the new keys and values are written at [past,
// past + T) and the T queries attend to all past + T keys. key_mask: U8
// [B, capacity] covering old and new positions, or undefined.
void causal_self_attention_cached(const Tensor& qkv, Tensor& cache_k, Tensor& cache_v, int64_t past,
                                  const Tensor& key_mask, int64_t n_head, float scale, Tensor& out);

// What a KV cache on CUDA keeps for the decode kernels
// (backend/cuda/decode_attention.h): the number of cached positions in
// device memory (I32 [1], equal to `past` when the op runs: the caller
// uploads it once per step, or a CUDA graph's kernels advance it) and the
// split-K scratch (zero-filled when made). With it, 1..4 new F16 / BF16
// queries take the split-K kernels; everything else takes the path above.
struct CacheKernelState {
  Tensor past;
  Tensor scratch;
};
void causal_self_attention_cached(const Tensor& qkv, Tensor& cache_k, Tensor& cache_v, int64_t past,
                                  const Tensor& key_mask, int64_t n_head, float scale, Tensor& out,
                                  const CacheKernelState& state);
// The scratch a cache of `capacity` positions needs on `device` (undefined
// on the CPU or where the decode kernels do not apply).
CacheKernelState make_cache_kernel_state(int64_t batch, int64_t n_head, int64_t head_dim, int64_t capacity,
                                         DType dtype, Device device);

// The sequences of a batch of rows. Sequence b occupies rows [offset[b],
// offset[b] + rows[b]) of the activations, and its first valid[b] rows are
// real tokens (right padding after them; valid >= 1): a padded [B, T] batch
// (offset b·T, rows T) or a packed one (offsets the prefix sums, rows =
// valid = length, no padding at all). Made once per batch: host values,
// and on CUDA their device copies (one upload).
struct SequenceLayout {
  int64_t batch = 0, max_rows = 0, total_rows = 0;
  std::vector<int32_t> offset, rows, valid;
  Tensor offset_d, rows_d, valid_d;  // I32 [batch] on the device; undefined on the CPU
  Tensor mask_d;                     // U8 [batch, max_rows] on the device when some valid < rows
  static SequenceLayout padded(const std::vector<int64_t>& lengths, int64_t seq, Device device);
  static SequenceLayout packed(const std::vector<int64_t>& lengths, Device device);
};
// Causal self-attention of every sequence of `layout` over qkv [total_rows,
// 3C] -> out [total_rows, C] (padding rows attend the valid keys, as HF).
// F16 / BF16 on CUDA with head_dim 32, 64 or 128 run the tensor-core flash
// kernel (backend/cuda/flash_attention.h); the rest the generic kernels.
void causal_self_attention(const Tensor& qkv, const SequenceLayout& layout, int64_t n_head, float scale, Tensor& out);

}  // namespace gpt2q::ops
