// The generic loops: ONE elementwise loop, templated on the loss, the dtype and which outputs it writes.
//
// One fused pass reads p, y (and w) once and writes value/grad/hess once; outputs that were not asked for
// are not computed (the loss's `point` elides them at compile time). The loop over a block carries
// `#pragma omp simd`: every iteration is independent (outputs are distinct arrays, or exactly an input,
// which is read before it is written), and the block's float64 sum uses an OpenMP simd reduction, whose
// order is fixed for a given binary. Blocks, threads and the fixed-order combination live in reduce.hpp.
//
// A row-wise family (multiclass, class axis last) sits beside this one: a RowwiseArgs<T> with ncols, a
// rowwise_block<Loss, T, ...> over rows, and sum_blocks over rows with a block of max(1, kBlock / ncols).
#pragma once

#include <cstddef>
#include <type_traits>

#include "fusedloss/reduce.hpp"

// Where a per-ISA build of the kernels will hook in (runtime SIMD dispatch is a later step): e.g. GCC's
// __attribute__((target_clones("avx512f", "avx2", "default"))) on x86-64, or a table of kernels compiled
// once per ISA and chosen at import. Empty for now: the kernels are built for the platform baseline.
#ifndef FUSEDLOSS_KERNEL_ATTR
#define FUSEDLOSS_KERNEL_ATTR
#endif

namespace fusedloss {

// What an elementwise call reads and writes. Null output pointers are outputs not asked for; a null w
// means unit weights. All arrays have length n.
template <class T>
struct ElementwiseArgs {
  const T* p = nullptr;
  const T* y = nullptr;
  const T* w = nullptr;
  T* value = nullptr;  // value[i] = w[i] * l[i]
  T* grad = nullptr;   // grad[i]  = scale * w[i] * g[i]
  T* hess = nullptr;   // hess[i]  = scale * w[i] * h[i]
  std::size_t n = 0;
  double scale = 1.0;
  bool reduce = false;  // return sum_i w[i] * l[i] in float64 (else 0.0)
  int nthreads = 1;
};

// One block [begin, end) of the elementwise loop. W: weighted; V: write value; R: sum w*l; G, H: write
// gradient, Hessian. Returns the block's float64 sum of w*l (0 unless R).
template <bool W, bool V, bool R, bool G, bool H, class Loss, class T>
inline double elementwise_block(const Loss& loss, const ElementwiseArgs<T>& a, std::size_t begin,
                                std::size_t end) {
  const T* p = a.p;
  const T* y = a.y;
  const T* w = a.w;
  T* value = a.value;
  T* grad = a.grad;
  T* hess = a.hess;
  const T scale = T(a.scale);
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (std::size_t i = begin; i < end; ++i) {
    T l = T(0), g = T(0), h = T(0);
    loss.template point<V || R, G, H>(p[i], y[i], l, g, h);
    T wi = T(1), sw = scale;
    if constexpr (W) {
      wi = w[i];
      sw = scale * wi;
    }
    if constexpr (V) value[i] = W ? wi * l : l;
    if constexpr (R) s += W ? double(wi) * double(l) : double(l);
    if constexpr (G) grad[i] = sw * g;
    if constexpr (H) hess[i] = sw * h;
  }
  return s;
}

// The whole elementwise pass for one instantiation of the flags.
template <bool W, bool V, bool R, bool G, bool H, class Loss, class T>
FUSEDLOSS_KERNEL_ATTR double elementwise_pass(const Loss& loss, const ElementwiseArgs<T>& a) {
  auto block = [&](std::size_t begin, std::size_t end) {
    return elementwise_block<W, V, R, G, H>(loss, a, begin, end);
  };
  if constexpr (R) {
    return sum_blocks(a.n, kBlock, a.nthreads, block);
  } else {
    if constexpr (V || G || H) for_blocks(a.n, kBlock, a.nthreads, block);
    return 0.0;
  }
}

// Turn runtime bools into template arguments: with_flags<>(f, b1, ..., bk) calls
// f.template operator()<b1, ..., bk>() (2^k instantiations, chosen by one branch per flag).
template <bool... Bs, class F>
inline double with_flags(const F& f) {
  return f.template operator()<Bs...>();
}
template <bool... Bs, class F, class... Rest>
inline double with_flags(const F& f, bool b, Rest... rest) {
  return b ? with_flags<Bs..., true>(f, rest...) : with_flags<Bs..., false>(f, rest...);
}

template <template <class> class Loss, class T>
struct ElementwiseRunner {
  const Loss<T>& loss;
  const ElementwiseArgs<T>& args;
  template <bool W, bool V, bool R, bool G, bool H>
  double operator()() const {
    return elementwise_pass<W, V, R, G, H>(loss, args);
  }
};

// Entry point for one loss and dtype: build the loss from its packed parameters and run the matching
// instantiation. Runs without the GIL; must not throw.
template <template <class> class Loss, class T>
double elementwise(double a, double b, const ElementwiseArgs<T>& args) {
  if (args.n == 0) return 0.0;
  const Loss<T> loss(a, b);
  const ElementwiseRunner<Loss, T> run{loss, args};
  return with_flags<>(run, args.w != nullptr, args.value != nullptr, args.reduce, args.grad != nullptr,
                      args.hess != nullptr);
}

}  // namespace fusedloss
