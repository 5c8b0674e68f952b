// Non-temporal ("streaming") stores for large outputs.
//
// A plain store to a line that is not in cache first reads the line from memory (read for ownership), so a
// kernel that reads p, y and writes g moves 16 bytes per float32 element, not the 12 it needs; for a
// cross-entropy row it is 12 instead of 8. A non-temporal store writes the line without reading it. It is
// only worth it when the output will not be read again soon from cache, i.e. when it is larger than the
// caches: below kStreamMinBytes of output the kernels store normally (a training step reads its gradient
// right after, and small outputs should stay in cache for that).
//
// stream_copy(dst, src, n) copies n elements of T with non-temporal vector stores (AVX-512, AVX or SSE2,
// whichever this translation unit is compiled for: each ISA level gets its own copy, isa.hpp), the
// unaligned head and tail with plain stores; elsewhere (other architectures) it is a plain copy.
// narrow_copy does the same for float32 outputs of float64 values (ElementwiseArgs::grad_f32 ...).
// stream_fence() orders those stores before anything the thread does next (an sfence); call it before
// the thread's results are handed over (end of a block), so that readers see the data.
#pragma once

#include "fusedloss/isa.hpp"

#include <cstddef>
#include <cstdint>

#if defined(__SSE2__) || defined(__AVX__) || defined(__AVX512F__)
#include <immintrin.h>
#define FUSEDLOSS_HAVE_STREAM 1
#endif

#include "fusedloss/vecmath.hpp"  // FUSEDLOSS_INLINE

namespace fusedloss {
FUSEDLOSS_ISA_BEGIN

// Outputs at least this large (bytes, all outputs of a call together) are written with streaming stores.
inline constexpr std::size_t kStreamMinBytes = std::size_t(16) << 20;

#if defined(__AVX512F__)
inline constexpr std::size_t kStreamAlign = 64;
FUSEDLOSS_INLINE void stream_vec(float* d, const float* s) { _mm512_stream_ps(d, _mm512_loadu_ps(s)); }
FUSEDLOSS_INLINE void stream_vec(double* d, const double* s) { _mm512_stream_pd(d, _mm512_loadu_pd(s)); }
#elif defined(__AVX__)
inline constexpr std::size_t kStreamAlign = 32;
FUSEDLOSS_INLINE void stream_vec(float* d, const float* s) { _mm256_stream_ps(d, _mm256_loadu_ps(s)); }
FUSEDLOSS_INLINE void stream_vec(double* d, const double* s) { _mm256_stream_pd(d, _mm256_loadu_pd(s)); }
#elif defined(FUSEDLOSS_HAVE_STREAM)
inline constexpr std::size_t kStreamAlign = 16;
FUSEDLOSS_INLINE void stream_vec(float* d, const float* s) { _mm_stream_ps(d, _mm_loadu_ps(s)); }
FUSEDLOSS_INLINE void stream_vec(double* d, const double* s) { _mm_stream_pd(d, _mm_loadu_pd(s)); }
#endif

template <class T>
FUSEDLOSS_INLINE void stream_copy(T* dst, const T* src, std::size_t n) {
  std::size_t i = 0;
#ifdef FUSEDLOSS_HAVE_STREAM
  constexpr std::size_t L = kStreamAlign / sizeof(T);
  // plain stores up to the first aligned element (an element-aligned dst reaches it; otherwise none is)
  const std::uintptr_t mis = reinterpret_cast<std::uintptr_t>(dst) % kStreamAlign;
  if (mis % sizeof(T) == 0) {
    std::size_t head = mis == 0 ? 0 : (kStreamAlign - mis) / sizeof(T);
    if (head > n) head = n;
    for (; i < head; ++i) dst[i] = src[i];
    for (; i + L <= n; i += L) stream_vec(dst + i, src + i);
  }
#endif
  for (; i < n; ++i) dst[i] = src[i];
}

// narrow_copy(dst, src, n, stream): n values rounded to float32 (to nearest, as NumPy's astype rounds them),
// stored with streaming stores when `stream`.
template <class T>
FUSEDLOSS_INLINE void narrow_copy(float* dst, const T* src, std::size_t n, bool stream) {
  if (!stream) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
    return;
  }
  constexpr std::size_t kPiece = 256;
  alignas(64) float buf[kPiece];
  for (std::size_t i0 = 0; i0 < n; i0 += kPiece) {
    const std::size_t m = n - i0 < kPiece ? n - i0 : kPiece;
#pragma omp simd
    for (std::size_t i = 0; i < m; ++i) buf[i] = static_cast<float>(src[i0 + i]);
    stream_copy(dst + i0, buf, m);
  }
}

FUSEDLOSS_INLINE void stream_fence() {
#ifdef FUSEDLOSS_HAVE_STREAM
  _mm_sfence();
#endif
}

FUSEDLOSS_ISA_END
}  // namespace fusedloss
