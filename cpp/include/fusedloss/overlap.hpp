// The overlap losses (kind "overlap" in src/fusedloss/_spec.py: dice, tversky): the two passes over the elements.
//
// The C++ twin of _overlap_rows.py (Numba) and of steps 1 and 3 of _reference_overlap.py (NumPy, the
// specification). Scores x are (N, C, S): samples, classes, pixels. sums() writes, per sample and class, the
// float64 sums I = sum min(p, y), P = sum p, Y = sum y over the pixels (p the probabilities: softmax over C,
// sigmoid, or x itself; y the 0/1 target; ignored pixels count for nothing); grad() writes the gradient of
// sum_{n,c} aI[n,c] I[n,c] + aP[n,c] P[n,c] with respect to x, given those coefficients. The losses themselves (the
// per-class scores from the sums, their mean, the coefficients) are computed from the sums once, in Python
// (_reference_overlap.combine), for every backend.
//
// Work is split into fixed blocks of pixels of one sample; a block's sums are accumulated in double in pixel
// order and the blocks of a sample are added in block order, so the results do not depend on the thread count.
// Within a block, pixels go in tiles of kTile whose C x kTile probabilities stay in cache: the class loops run
// over contiguous pixels (the class axis has stride S).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fusedloss/isa.hpp"
#include "fusedloss/math.hpp"
#include "fusedloss/reduce.hpp"
#include "fusedloss/vecmath.hpp"

namespace fusedloss {

// What the binding hands the kernels (checked there: lengths, label range, no output overlapping an input).
template <class T>
struct OverlapArgs {
  const T* x = nullptr;
  const std::int64_t* labels = nullptr;  // (N, S) class indices in [0, C) or ignore (multiclass), else null
  const T* y = nullptr;                  // (N, C, S) targets (binary, multilabel), else null
  std::size_t N = 0, C = 0, S = 0;
  int act = 0;  // 0: x are probabilities, 1: sigmoid, 2: softmax over C
  bool has_ignore = false;
  std::int64_t ignore = 0;
  int nthreads = 1;
};

FUSEDLOSS_ISA_BEGIN
namespace overlap {

constexpr std::size_t kBlock = 4096;  // pixels of one sample per block of work (fixed: the sums' partials)
constexpr std::size_t kTileElems = 8192;  // C x tile probabilities per tile

inline std::size_t blocks_per_sample(std::size_t S) { return (S + kBlock - 1) / kBlock; }
inline std::size_t tile_of(std::size_t C) { return std::max<std::size_t>(1, kTileElems / std::max<std::size_t>(C, 1)); }

// Per-tile scratch, allocated once per block (allocation failure is reported, never thrown through the pool).
template <class T>
struct Tile {
  std::vector<T> p, d, q, r;  // probabilities (C x B), gradient in p (C x B), sigmoid(-x) or the max (B), sums (B)
  bool make(std::size_t C, std::size_t B) {
    try {
      p.resize(C * B);
      d.resize(C * B);
      q.resize(C * B);
      r.resize(B);
    } catch (...) {
      return false;
    }
    return true;
  }
};

// The probabilities of pixels [s0, s0 + nb) of sample n into t.p (class-major, class c at c * ld) and, for sigmoid,
// sigmoid(-x) into t.q (for the gradient: dp/dx = p sigmoid(-x), without forming 1 - p).
template <class T>
void probabilities(const OverlapArgs<T>& a, std::size_t n, std::size_t s0, std::size_t nb, std::size_t ld,
                   Tile<T>& t) {
  const std::size_t C = a.C, S = a.S;
  const T* x = a.x + n * C * S + s0;
  T* p = t.p.data();
  if (a.act == 2) {
    T* mx = t.r.data();
    for (std::size_t b = 0; b < nb; ++b) mx[b] = x[b];
    for (std::size_t c = 1; c < C; ++c) {
      const T* xc = x + c * S;
      for (std::size_t b = 0; b < nb; ++b) mx[b] = xc[b] > mx[b] ? xc[b] : mx[b];
    }
    T* sum = t.q.data();  // q is free under softmax
    for (std::size_t b = 0; b < nb; ++b) sum[b] = T(0);
    for (std::size_t c = 0; c < C; ++c) {
      const T* xc = x + c * S;
      T* pc = p + c * ld;
      for (std::size_t b = 0; b < nb; ++b) {
        pc[b] = vm::exp(xc[b] - mx[b]);
        sum[b] += pc[b];
      }
    }
    for (std::size_t b = 0; b < nb; ++b) sum[b] = T(1) / sum[b];
    for (std::size_t c = 0; c < C; ++c) {
      T* pc = p + c * ld;
      for (std::size_t b = 0; b < nb; ++b) pc[b] *= sum[b];
    }
  } else if (a.act == 1) {
    for (std::size_t c = 0; c < C; ++c) {
      const T* xc = x + c * S;
      T* pc = p + c * ld;
      T* qc = t.q.data() + c * ld;
      for (std::size_t b = 0; b < nb; ++b) sigmoid_pair(xc[b], pc[b], qc[b]);
    }
  } else {
    for (std::size_t c = 0; c < C; ++c) std::copy(x + c * S, x + c * S + nb, p + c * ld);
  }
}

// The target of pixel s0 + b of sample n and class c, 0 where ignored; keep: the pixel counts.
template <class T>
inline T target(const OverlapArgs<T>& a, std::size_t n, std::size_t c, std::size_t s, bool& keep) {
  if (a.labels) {
    const std::int64_t l = a.labels[n * a.S + s];
    keep = !(a.has_ignore && l == a.ignore);
    return keep && l == std::int64_t(c) ? T(1) : T(0);
  }
  const T v = a.y[(n * a.C + c) * a.S + s];
  keep = !(a.has_ignore && v == T(a.ignore));
  return keep ? v : T(0);
}

// Every tile of pixels on the pool: fn(t, n, s0, nb) after the tile's probabilities are in t, blocks (of kBlock
// pixels of one sample) claimed whole. Returns false when a block could not allocate its tile.
template <class T, class Fn>
bool for_tiles(const OverlapArgs<T>& a, const Fn& fn) {
  const std::size_t C = a.C, S = a.S, nbs = blocks_per_sample(S), B = tile_of(C);
  if (C == 0) return true;  // no element (the softmax would read a pixel's first class)
  std::atomic<bool> ok{true};
  for_blocks(a.N * nbs, 1, a.nthreads, [&](std::size_t i0, std::size_t i1) {
    Tile<T> t;
    if (!t.make(C, B)) {
      ok.store(false, std::memory_order_relaxed);
      return;
    }
    for (std::size_t i = i0; i < i1; ++i) {
      const std::size_t n = i / nbs, s_end = std::min(S, (i % nbs + 1) * kBlock);
      for (std::size_t s0 = (i % nbs) * kBlock; s0 < s_end; s0 += B) {
        const std::size_t nb = std::min(B, s_end - s0);
        probabilities(a, n, s0, nb, B, t);
        fn(t, n, s0, nb);
      }
    }
  }, a.N * C * S);
  return ok.load();
}

// Pass 1: sums[(n * C + c) * 3 + {0, 1, 2}] = I, P, Y. partial: blocks_per_sample(S) * N * C * 3 doubles of
// scratch, one row of C x 3 per block, added per sample in block order.
template <class T>
bool sums(const OverlapArgs<T>& a, double* sums, double* partial) {
  const std::size_t C = a.C, nbs = blocks_per_sample(a.S), B = tile_of(C);
  std::fill(partial, partial + a.N * nbs * C * 3, 0.0);
  const bool ok = for_tiles(a, [&](const Tile<T>& t, std::size_t n, std::size_t s0, std::size_t nb) {
    double* out = partial + (n * nbs + s0 / kBlock) * C * 3;
    for (std::size_t c = 0; c < C; ++c) {
      const T* pc = t.p.data() + c * B;
      double si = 0.0, sp = 0.0, sy = 0.0;
      for (std::size_t b = 0; b < nb; ++b) {
        bool keep;
        const T y = target(a, n, c, s0 + b, keep);
        const T pm = keep ? pc[b] : T(0);
        si += double(y < pm ? y : pm);  // min(pm, y); nan in pm stays nan
        sp += double(pm);
        sy += double(y);
      }
      out[c * 3] += si;
      out[c * 3 + 1] += sp;
      out[c * 3 + 2] += sy;
    }
  });
  for (std::size_t n = 0; n < a.N; ++n) {
    double* s = sums + n * C * 3;
    std::fill(s, s + C * 3, 0.0);
    for (std::size_t k = 0; k < nbs; ++k) {
      const double* part = partial + (n * nbs + k) * C * 3;
      for (std::size_t j = 0; j < C * 3; ++j) s[j] += part[j];
    }
  }
  return ok;
}

// Pass 2: grad (like x) = d/dx of sum aI I + aP P, coef[(n * C + c) * 2 + {0, 1}] = aI, aP. dI/dp = [p < y] +
// [p = y] / 2 (torch's |p - y| backward has sign(0) = 0); masked pixels have no gradient.
template <class T>
bool grad(const OverlapArgs<T>& a, const double* coef, T* g) {
  const std::size_t C = a.C, S = a.S, B = tile_of(C);
  return for_tiles(a, [&](Tile<T>& t, std::size_t n, std::size_t s0, std::size_t nb) {
    for (std::size_t c = 0; c < C; ++c) {
      const T* pc = t.p.data() + c * B;
      T* dc = t.d.data() + c * B;
      const double ai = coef[(n * C + c) * 2], ap = coef[(n * C + c) * 2 + 1];
      for (std::size_t b = 0; b < nb; ++b) {
        bool keep;
        const T y = target(a, n, c, s0 + b, keep);
        const T pm = keep ? pc[b] : T(0);
        const double dmin = pm < y ? 1.0 : (pm == y ? 0.5 : 0.0);
        dc[b] = keep ? T(ap + ai * dmin) : T(0);
      }
    }
    T* gx = g + n * C * S + s0;
    if (a.act == 2) {  // softmax: g_c = p_c (d_c - sum_k p_k d_k)
      T* dot = t.r.data();
      std::fill(dot, dot + nb, T(0));
      for (std::size_t c = 0; c < C; ++c) {
        const T* pc = t.p.data() + c * B;
        const T* dc = t.d.data() + c * B;
        for (std::size_t b = 0; b < nb; ++b) dot[b] += pc[b] * dc[b];
      }
      for (std::size_t c = 0; c < C; ++c) {
        const T* pc = t.p.data() + c * B;
        const T* dc = t.d.data() + c * B;
        for (std::size_t b = 0; b < nb; ++b) gx[c * S + b] = pc[b] * (dc[b] - dot[b]);
      }
    } else if (a.act == 1) {  // sigmoid: dp/dx = p sigmoid(-x)
      for (std::size_t c = 0; c < C; ++c) {
        const T* pc = t.p.data() + c * B;
        const T* qc = t.q.data() + c * B;
        const T* dc = t.d.data() + c * B;
        for (std::size_t b = 0; b < nb; ++b) gx[c * S + b] = dc[b] * pc[b] * qc[b];
      }
    } else {
      for (std::size_t c = 0; c < C; ++c) std::copy(t.d.data() + c * B, t.d.data() + c * B + nb, gx + c * S);
    }
  });
}

}  // namespace overlap
FUSEDLOSS_ISA_END
}  // namespace fusedloss
