#pragma once
// The ops of ops.h computed by the scalar reference kernels
// (backend/cpu/reference_ops.h): CPU tensors only, slow, for tests.
#include <cstdint>

#include "ops/ops.h"

namespace gpt2q::ops::reference {

void linear(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Epilogue epilogue = {});
void linear_nt(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Epilogue epilogue = {});
void matmul_nt(const Tensor& a, const Tensor& b, Tensor& c);
void linear_bf16(const Tensor& x, const Tensor& packed, int64_t in, int64_t out, const Tensor& b, Tensor& y,
                 Epilogue epilogue = {});
void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y);
void gelu_new(Tensor& x);
void gelu_erf(Tensor& x);
void softmax_lastdim(Tensor& x);
void add_inplace(Tensor& x, const Tensor& y);
void quant_linear(const Tensor& x, const QuantizedTensor& w, const Tensor& b, Tensor& y,
                  const QuantLinearOptions& options = {}, Epilogue epilogue = {});
void gather_rows(const Tensor& table, const Tensor& idx, Tensor& out, bool accumulate = false);
void gather_rows(const QuantizedTensor& table, const Tensor& idx, Tensor& out, bool accumulate = false);
void embedding(const Tensor& ids, const Tensor& positions, const Tensor& wte, const Tensor& wpe, Tensor& out);
void causal_self_attention(const Tensor& qkv, const Tensor& key_mask, int64_t n_head, float scale, Tensor& out);
void causal_self_attention_cached(const Tensor& qkv, Tensor& cache_k, Tensor& cache_v, int64_t past,
                                  const Tensor& key_mask, int64_t n_head, float scale, Tensor& out);

}  // namespace gpt2q::ops::reference
