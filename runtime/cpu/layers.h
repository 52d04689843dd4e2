// The CPU's row-wise kernels of a Llama block: embedding, RMSNorm, rotary embedding, SwiGLU and
// cross-entropy. Raw pointers with explicit sizes (llm.c style): CpuBackend (runtime/cpu/
// cpu_backend.h) checks its tensors and calls these. All run on ctx.threads threads (one when no
// context is given) and give results independent of how rows were split among threads.
#pragma once

#include <cstdint>

#include "runtime/execution_context.h"
#include "runtime/layers.h"

namespace seqmesh {

// out (T, H) = table[tokens] with table (V, H). Token ids outside [0, V) are an error.
void EmbeddingForward(const int32_t* tokens, int64_t t, const float* table, int64_t vocab,
                      int64_t hidden, float* out, const ExecutionContext& ctx = {});
// dtable[tokens[i]] += dout[i]. Threads split columns, so no two write the same element.
void EmbeddingBackward(const int32_t* tokens, int64_t t, const float* dout, int64_t hidden,
                       float* dtable, const ExecutionContext& ctx = {});

// y = w * x / sqrt(mean(x^2) + eps) per row; rstd (T) saved for backward.
void RmsNormForward(const float* x, const float* w, float* y, float* rstd, int64_t t, int64_t n,
                    float eps, const ExecutionContext& ctx = {});
// dx (= or += when accumulate), dw += (reduced over rows in a fixed order).
void RmsNormBackward(const float* dy, const float* x, const float* w, const float* rstd, float* dx,
                     float* dw, int64_t t, int64_t n, bool accumulate,
                     const ExecutionContext& ctx = {});

// cos, sin (T, half): angle = positions[t] * inv_freq[i] in double, rounded once to float
// (inv_freq: runtime/rope.h's RopeInverseFrequencies, half = head_dim / 2 of them).
void RopeTable(const int32_t* positions, int64_t t, const double* inv_freq, int half, float* cos,
               float* sin, const ExecutionContext& ctx = {});
// Rotates `heads` heads of each of T rows (row stride ld) in place, rotate_half convention;
// inverse applies the transpose rotation (the backward of the forward rotation).
void RopeApply(float* x, int64_t ld, int64_t t, int heads, int head_dim, const float* cos,
               const float* sin, bool inverse, const ExecutionContext& ctx = {});

// gu (T, 2F) holds [gate | up] per row (one fused projection); h (T, F) = silu(gate) * up.
void SwiGluForward(const float* gu, float* h, int64_t t, int64_t f,
                   const ExecutionContext& ctx = {});
// dgu (T, 2F) = [d gate | d up] from dh (T, F).
void SwiGluBackward(const float* gu, const float* dh, float* dgu, int64_t t, int64_t f,
                    const ExecutionContext& ctx = {});

// Softmax cross-entropy over logits (T, V), in place: returns the sum of the per-token losses of
// rows whose target is not kIgnoreIndex (summed in double, in row order), and overwrites logits
// with d(loss_sum * grad_scale)/d(logits) (zero rows for ignored targets). Targets outside
// [0, V) other than kIgnoreIndex are an error naming the row.
double CrossEntropyForwardBackward(float* logits, const int32_t* targets, int64_t t, int64_t vocab,
                                   float grad_scale, const ExecutionContext& ctx = {});

}  // namespace seqmesh
