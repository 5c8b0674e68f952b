// The generic loops: ONE elementwise loop, templated on the loss, the dtype and which outputs it writes.
//
// One fused pass reads p, y (and w) once and writes value/grad/hess once; outputs that were not asked for
// are not computed (the loss's `point` elides them at compile time). The loop over a block carries
// `#pragma omp simd`: every iteration is independent (outputs are distinct arrays, or exactly an input,
// which is read before it is written), and the block's float64 sum is kept in kLanes compensated lanes
// (below), whose order is fixed by the source. Blocks, threads and the fixed-order combination live in reduce.hpp.
//
// A per-column parameter (`cols`: element i takes cols[i % C] as the loss's column parameter) runs the same
// loop body over runs of consecutive columns: the block's first column is found once (one modulo per block),
// then each run goes to the end of a row, so there is no modulo per element. The blocks stay the same fixed kBlock elements.
//
// The row-wise family (multiclass, class axis last) sits beside this one: MulticlassArgs<T>, one generic
// driver multiclass_pass over rows (the row math is in rows.hpp), and sum_blocks over rows with a block of
// max(1, kBlock / C) rows.
#pragma once

#include "fusedloss/isa.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "fusedloss/kernel_api.hpp"
#include "fusedloss/reduce.hpp"
#include "fusedloss/stream.hpp"
#include "fusedloss/vecmath.hpp"  // FUSEDLOSS_INLINE


namespace fusedloss {
FUSEDLOSS_ISA_BEGIN



// Whether a loss takes its first parameter per column (losses.hpp: column_param and point_col).
template <class L, class = void>
struct has_column_param : std::false_type {};
template <class L>
struct has_column_param<L, std::void_t<decltype(L::column_param)>> : std::bool_constant<L::column_param> {};

// One element of the elementwise loop: computes and stores the requested outputs of element i (k = i - begin,
// its index into col; outputs at index i - o), and returns its term w_i l_i of the float64 sum (0 unless R).
template <bool Col, bool W, bool V, bool R, bool G, bool H, class Loss, class T>
FUSEDLOSS_INLINE double elementwise_point(const Loss& loss, const T* p, const T* y, const T* w, T* value, T* grad,
                                          T* hess, T scale, const T* col, std::size_t k, std::size_t i,
                                          std::size_t o = 0) {
  T l = T(0), g = T(0), h = T(0);
  if constexpr (Col) {
    loss.template point_col<V || R, G, H>(col[k], p[i], y[i], l, g, h);
  } else {
    (void)col;
    (void)k;
    loss.template point<V || R, G, H>(p[i], y[i], l, g, h);
  }
  T wi = T(1), sw = scale;
  if constexpr (W) {
    wi = w[i];
    sw = scale * wi;
  }
  if constexpr (V) value[i - o] = W ? wi * l : l;  // o: outputs go to a chunk buffer starting at element o
  if constexpr (G) grad[i - o] = sw * g;
  if constexpr (H) hess[i - o] = sw * h;
  if constexpr (R) return W ? double(wi) * double(l) : double(l);
  return 0.0;
}

// Lanes of the float64 sum of a run (KahanLanes, reduce.hpp). Element i goes to lane (i - begin) % kLanes, and
// a remainder of fewer than kLanes elements, then the lanes and their corrections, are added in order by a
// CompensatedSum. That order is fixed by the source (compilers may not reassociate without -ffast-math), so a
// reduced value is the same bits for every instantiation (whatever else it writes), every ISA level and
// every thread count; an `omp simd reduction` would follow each loop's vectorisation instead. 16 lanes fill
// an AVX-512 register of floats and cost nothing measurable (mse: same time as the omp reduction).
inline constexpr std::size_t kLanes = 16;

// Outputs written with streaming stores (stream.hpp) are computed in chunks of kSub elements into
// buffers on the stack (L1-resident) and then streamed out. kSub is a multiple of kLanes and the lanes carry
// over from chunk to chunk, so the float64 sum adds the same terms in the same order either way: a streamed
// call returns the same bits as a plain one.
inline constexpr std::size_t kSub = 512;
static_assert(kSub % kLanes == 0, "chunks must keep the lane of every element");

// One run [begin, end) of the elementwise loop. W: weighted; V: write value; R: sum w*l; G, H: write
// gradient, Hessian; Col: element i takes the loss's first parameter from col[i - begin]; stream: outputs
// go out through chunk buffers and streaming stores (a runtime flag, not a template one: the loop body is the
// same either way, it writes through a pointer and an offset). Returns the run's float64 sum of w*l (0 unless R).
template <bool Col, bool W, bool V, bool R, bool G, bool H, class Loss, class T>
FUSEDLOSS_INLINE double elementwise_run(const Loss& loss_, const ElementwiseArgs<T>& a, const T* col, std::size_t begin,
                                        std::size_t end, bool stream) {
  // A copy of the loss in this frame: a parameter that a point function reads on one side of a select only
  // (focal's q > 0 ? q^gamma : f0) is then a plain value, where through the reference GCC if-converts it into
  // a masked load that it does not vectorise (the whole loop then ran scalar: 9x slower).
  const Loss loss = loss_;
  const T* p = a.p;
  const T* y = a.y;
  const T* w = a.w;
  const T scale = T(a.scale);
  alignas(64) T tv[V ? kSub : 1], tg[G ? kSub : 1], th[H ? kSub : 1];
  const bool narrow = a.narrow();
  const bool chunked = stream || narrow;  // outputs through the chunk buffers
  T* value = chunked ? tv : a.value;
  T* grad = chunked ? tg : a.grad;
  T* hess = chunked ? th : a.hess;
  KahanLanes<kLanes> lanes;
  CompensatedSum rest;
  const std::size_t step = chunked ? kSub : end - begin;  // one chunk unless chunked
  for (std::size_t c0 = begin; c0 < end; c0 += step) {
    const std::size_t c1 = std::min(end, c0 + step);
    const std::size_t o = chunked ? c0 : 0;  // outputs of element i at index i - o
    if constexpr (R) {
      std::size_t i = c0;
      for (; i + kLanes <= c1; i += kLanes) {
#pragma omp simd
        for (std::size_t j = 0; j < kLanes; ++j) {
          lanes.add(j, elementwise_point<Col, W, V, R, G, H>(loss, p, y, w, value, grad, hess, scale, col,
                                                             i + j - begin, i + j, o));
        }
      }
      for (; i < c1; ++i) {  // only in the last chunk: every other one is a multiple of kLanes long
        rest.add(elementwise_point<Col, W, V, R, G, H>(loss, p, y, w, value, grad, hess, scale, col, i - begin, i, o));
      }
    } else {
#pragma omp simd
      for (std::size_t i = c0; i < c1; ++i) {
        elementwise_point<Col, W, V, R, G, H>(loss, p, y, w, value, grad, hess, scale, col, i - begin, i, o);
      }
    }
    if (narrow) {
      if constexpr (V) narrow_copy(a.value_f32 + c0, tv, c1 - c0, stream);
      if constexpr (G) narrow_copy(a.grad_f32 + c0, tg, c1 - c0, stream);
      if constexpr (H) narrow_copy(a.hess_f32 + c0, th, c1 - c0, stream);
    } else if (stream) {
      if constexpr (V) stream_copy(a.value + c0, tv, c1 - c0);
      if constexpr (G) stream_copy(a.grad + c0, tg, c1 - c0);
      if constexpr (H) stream_copy(a.hess + c0, th, c1 - c0);
    }
  }
  if (stream) stream_fence();
  if constexpr (!R) return 0.0;
  lanes.fold_into(rest);
  return rest.value();
}

// One block [begin, end) of the elementwise loop. With Col, `col` holds `width` parameters, one per column
// (width a multiple of the number of columns: see ColumnTile): the block is cut into runs that end at a row
// end, and only the block's first column needs a modulo.
// Not inlined: one copy per instantiation serves both the serial and the OpenMP path of
// sum_blocks (everything inside it is force-inlined, so its loop vectorises).
template <bool Col, bool W, bool V, bool R, bool G, bool H, class Loss, class T>
FUSEDLOSS_NOINLINE double elementwise_block(const Loss& loss, const ElementwiseArgs<T>& a, const T* col, std::size_t width,
                                            std::size_t begin, std::size_t end, bool stream) {
  if constexpr (!Col) {
    (void)width;
    return elementwise_run<false, W, V, R, G, H>(loss, a, col, begin, end, stream);
  } else {
    CompensatedSum s;
    std::size_t j = begin % width;
    for (std::size_t i = begin; i < end;) {
      const std::size_t stop = std::min(end, i + (width - j));
      s.add(elementwise_run<true, W, V, R, G, H>(loss, a, col + j, i, stop, false));
      i = stop;
      j = 0;
    }
    return s.value();
  }
}

// The per-column parameters as the loop reads them. Narrow rows (few columns) would make runs too short to
// vectorise, so fewer than kMin columns are repeated into a row of `width` = a multiple of ncols close to
// kTile (element i still gets cols[i % ncols], since ncols divides width); wider ones are used in place.
template <class T>
struct ColumnTile {
  static constexpr std::size_t kMin = 256, kTile = 1024;
  T buf[kTile];
  const T* col = nullptr;
  std::size_t width = 0;
  ColumnTile(const T* cols, std::size_t ncols) {
    if (cols == nullptr || ncols == 0) return;
    if (ncols >= kMin) {
      col = cols;
      width = ncols;
      return;
    }
    width = ncols * (kTile / ncols);
    for (std::size_t i = 0; i < width; ++i) buf[i] = cols[i % ncols];
    col = buf;
  }
};

// Whether a call's outputs go out with streaming stores (stream.hpp): outputs of kStreamMinBytes or more (all of
// them together, counted in T: float32 outputs of a float64 call stream from the same length), except with
// per-column parameters.
template <class T>
bool use_stream(const ElementwiseArgs<T>& a, bool col, std::size_t outputs) {
  return !col && a.n * sizeof(T) * outputs >= kStreamMinBytes;
}

// The whole elementwise pass for one instantiation of the flags.
template <bool Col, bool W, bool V, bool R, bool G, bool H, class Loss, class T>
double elementwise_pass(const Loss& loss, const ElementwiseArgs<T>& a, const T* col, std::size_t width) {
  const bool stream = use_stream(a, Col, std::size_t(V) + std::size_t(G) + std::size_t(H));
  auto block = [&](std::size_t begin, std::size_t end) {
    return elementwise_block<Col, W, V, R, G, H>(loss, a, col, width, begin, end, stream);
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

template <class Loss, class T, bool Col>
struct ElementwiseRunner {
  const Loss& loss;
  const ElementwiseArgs<T>& args;
  const T* col;
  std::size_t width;
  template <bool W, bool V, bool R, bool G, bool H>
  double operator()() const {
    return elementwise_pass<Col, W, V, R, G, H>(loss, args, col, width);
  }
};

// The output combinations the elementwise kernels are instantiated for: what the dispatcher asks for
// (reduce: R, R+G; per-element values: V, V+G; derivatives: G, G+H, H). Every other combination the kernel
// contract allows (values together with the reduction, or the Hessian together with the values) runs as a
// sequence of these passes, each computing what it writes; the reduced value comes from the R pass, so it
// has the same bits as a one-pass call. Instantiating all 16 combinations tripled the build for nothing.
template <bool W, class Run>
double run_outputs(const Run& run, bool V, bool R, bool G, bool H) {
  switch ((unsigned(V) << 3) | (unsigned(R) << 2) | (unsigned(G) << 1) | unsigned(H)) {
    case 0b0000: return 0.0;
    case 0b0100: return run.template operator()<W, false, true, false, false>();
    case 0b0110: return run.template operator()<W, false, true, true, false>();
    case 0b1000: return run.template operator()<W, true, false, false, false>();
    case 0b1010: return run.template operator()<W, true, false, true, false>();
    case 0b0010: return run.template operator()<W, false, false, true, false>();
    case 0b0011: return run.template operator()<W, false, false, true, true>();
    case 0b0001: return run.template operator()<W, false, false, false, true>();
    default: break;
  }
  double total = 0.0;
  bool g_left = G;  // the gradient rides along with the first pass that can take it
  if (R) {
    total = run_outputs<W>(run, false, true, g_left && !H, false);
    g_left = g_left && H;
  }
  if (V) {
    run_outputs<W>(run, true, false, g_left && !H, false);
    g_left = g_left && H;
  }
  if (H) {
    run_outputs<W>(run, false, false, g_left, true);
    g_left = false;
  }
  if (g_left) run_outputs<W>(run, false, false, true, false);
  return total;
}

template <class Run>
double run_outputs(const Run& run, bool W, bool V, bool R, bool G, bool H) {
  return W ? run_outputs<true>(run, V, R, G, H) : run_outputs<false>(run, V, R, G, H);
}

// Whether a loss picks a specialised twin per call (losses.hpp: `specialise`), e.g. poisson_nll's log_input:
// a mode that is the same for every element, taken out of the loop so that the loop body has no branch on
// it (GCC does not unswitch large loop bodies, and computing both modes as selects would double the work).
template <class L, class = void>
struct has_specialise : std::false_type {};
template <class L>
struct has_specialise<L, std::void_t<decltype(L::specialised)>> : std::bool_constant<L::specialised> {};

// Run every requested output of one (already constructed, already specialised) loss.
template <class T, class Loss>
double elementwise_with(const Loss& loss, const ElementwiseArgs<T>& args) {
  if constexpr (has_column_param<Loss>::value) {
    if (args.cols != nullptr) {
      const ColumnTile<T> tile(args.cols, args.ncols);
      const ElementwiseRunner<Loss, T, true> run{loss, args, tile.col, tile.width};
      return run_outputs(run, args.w != nullptr, args.wants_value(), args.reduce, args.wants_grad(),
                         args.wants_hess());
    }
  }
  const ElementwiseRunner<Loss, T, false> run{loss, args, nullptr, 0};
  return run_outputs(run, args.w != nullptr, args.wants_value(), args.reduce, args.wants_grad(),
                     args.wants_hess());
}

// Entry point for one loss and dtype: build the loss from its parameters (and pick its specialised
// twin, if it has any) and run the matching instantiation. Runs without the GIL; must not throw.
// args.cols is honoured for losses with a column parameter (the binding refuses it for the others).
template <template <class> class Loss, class T>
double elementwise(const Params& params, const ElementwiseArgs<T>& args) {
  if (args.n == 0) return 0.0;
  const Loss<T> loss(params);
  if constexpr (has_specialise<Loss<T>>::value) {
    return loss.specialise([&](const auto& twin) { return elementwise_with<T>(twin, args); });
  } else {
    return elementwise_with<T>(loss, args);
  }
}

// --- multiclass: rows of C classes -------------------------------------------------------------------


// The one generic row driver: every row through Row::row, in fixed blocks of max(1, kBlock / C) rows (in
// parallel when the call touches at least kParallelMin elements), ignored rows (ignore_index, or row weight 0)
// -> value 0 and zero gradient/Hessian rows, row weights applied, the float64 total over blocks in a fixed order. G, H: write
// gradient, Hessian (the value, its output and the reduction are per-row branches, which cost nothing next
// to a row). (Streaming stores were tried for large gradients here too: no gain, since cross-entropy's
// rows are bound by their exps, not by memory.) `kept(r, x, t, q, rw, f, g, h)` returns the weighted value of
// a row that is not ignored (weigh), `ignored(r)` is told of one that is.
template <bool G, bool H, class T, class Kept, class Ignored>
double for_rows(const MulticlassArgs<T>& a, const Kept& kept, const Ignored& ignored) {
  const std::size_t C = a.C;
  auto block = [&](std::size_t r0, std::size_t r1) {
    CompensatedSum s;
    for (std::size_t r = r0; r < r1; ++r) {
      const std::size_t base = r * C;
      T* g = G ? a.grad + base : nullptr;
      T* h = H ? a.hess + base : nullptr;
      const std::int64_t t = a.labels ? a.labels[r] : 0;
      double v = 0.0;
      const double rw = a.w ? double(a.w[r]) : 1.0;
      if ((a.labels && t == a.ignore) || rw == 0.0) {  // ignored: exactly 0, whatever its logits hold
        if constexpr (G) std::fill(g, g + C, T(0));
        if constexpr (H) std::fill(h, h + C, T(0));
        ignored(r);
      } else {
        v = kept(r, a.x + base, t, a.q ? a.q + base : nullptr, rw, rw * a.scale, g, h);
      }
      if (a.value) a.value[r] = T(v);
      s.add(v);
    }
    return s.value();
  };
  const std::size_t per = std::max<std::size_t>(1, kBlock / C);
  const std::size_t work = a.R * C;
  if (a.reduce) return sum_blocks(a.R, per, a.nthreads, block, work);
  for_blocks(a.R, per, a.nthreads, [&](std::size_t r0, std::size_t r1) { block(r0, r1); }, work);
  return 0.0;
}

// A row whose value is a per-row factor times a sum (multi_margin: cw_t / C) may return the sum alone and give
// the factor as value_factor(t): the row weight then meets the factor first, (rw cw_t / C) sum, which overflows
// only where the weighted value itself does (under "mean", fit_weights and refit_total scale rw by 2^-k for
// that), where rw (cw_t / C sum) overflowed whenever the unweighted row value did.
template <class Row, class = void>
struct has_value_factor : std::false_type {};
template <class Row>
struct has_value_factor<Row, std::void_t<decltype(std::declval<const Row&>().value_factor(std::int64_t(0)))>>
    : std::true_type {};

// rw times a row's value v (as returned by Row::row), in the order above.
template <class Row>
double weigh(const Row& row, std::int64_t t, double rw, double v) {
  if constexpr (has_value_factor<Row>::value) {
    return (rw * row.value_factor(t)) * v;
  } else {
    return rw * v;
  }
}

template <bool G, bool H, class Row, class T>
double multiclass_pass(const Row& row, const MulticlassArgs<T>& a) {
  return for_rows<G, H>(
      a,
      [&](std::size_t, const T* x, std::int64_t t, const T* q, double rw, double f, T* g, T* h) {
        return weigh(row, t, rw, row.template row<G, H>(x, t, q, f, g, h));
      },
      [](std::size_t) {});
}

// The metrics pass (rows.hpp: row_metrics; hard labels, no Hessian): the loss pass, which also writes each
// row's metrics. The label's rank and the entropy are written where asked for (a.rank, a.entropy not null).
template <bool G, class Row, class T>
double multiclass_metrics_pass(const Row& row, const MulticlassArgs<T>& a) {
  const bool mr = a.rank != nullptr, me = a.entropy != nullptr;
  return for_rows<G, false>(
      a,
      [&](std::size_t r, const T* x, std::int64_t t, const T*, double rw, double f, T* g, T*) {
        RowMetrics m;
        const double v = weigh(row, t, rw, row.template row_metrics<G>(x, t, f, g, m, mr, me));
        if (mr) a.rank[r] = m.rank;
        a.conf[r] = m.conf;
        a.nll[r] = m.nll;
        if (me) a.entropy[r] = m.entropy;
        return v;
      },
      [&](std::size_t r) {
        if (mr) a.rank[r] = -1;
        a.conf[r] = 0.0;
        a.nll[r] = 0.0;
        if (me) a.entropy[r] = 0.0;
      });
}

// A row struct may read its class vector in every instantiation of some of its options (unit_class_vector(),
// rows.hpp: cross_entropy), so as not to compile them twice: given no vector, such a row gets unit weights from
// a per-thread buffer (reduce.hpp: detail::GrowBuffer), filled on the calling thread before any block runs.
template <class R, class = void>
struct has_unit_class_vector : std::false_type {};
template <class R>
struct has_unit_class_vector<R, std::void_t<decltype(std::declval<const R&>().unit_class_vector())>>
    : std::true_type {};

// The class vector a row of args is built with: args.cw, or unit weights where the row asks for them.
template <template <class> class Row, class T>
const T* class_vector_for(const MulticlassArgs<T>& args) {
  if constexpr (has_unit_class_vector<Row<T>>::value) {
    if (args.cw == nullptr && Row<T>(args.params, nullptr, args.C).unit_class_vector()) {
      thread_local detail::GrowBuffer<T> ones;
      if (args.C > ones.size) {
        T* const u = ones.get(args.C);
        std::fill(u, u + args.C, T(1));
      }
      return ones.data;
    }
  }
  return args.cw;
}

template <template <class> class Row, class T>
struct MulticlassRunner {
  const Row<T>& row;
  const MulticlassArgs<T>& args;
  template <bool G, bool H>
  double operator()() const {
    return multiclass_pass<G, H>(row, args);
  }
};

// Entry point for one multiclass loss and dtype. Runs without the GIL; must not throw.
template <template <class> class Row, class T>
double multiclass(const MulticlassArgs<T>& args) {
  if (args.R == 0 || args.C == 0) return 0.0;
  const Row<T> row(args.params, class_vector_for<Row>(args), args.C);
  const MulticlassRunner<Row, T> run{row, args};
  return with_flags<>(run, args.grad != nullptr, args.hess != nullptr);
}

// Whether a row struct has the metrics pass (rows.hpp: `row_metrics`).
template <class R, class = void>
struct has_row_metrics : std::false_type {};
template <class R>
struct has_row_metrics<R, std::void_t<decltype(&R::template row_metrics<false>)>> : std::true_type {};

template <template <class> class Row, class T>
struct MetricsRunner {
  const Row<T>& row;
  const MulticlassArgs<T>& args;
  template <bool G>
  double operator()() const {
    return multiclass_metrics_pass<G>(row, args);
  }
};

// Entry point of the metrics pass for one multiclass loss and dtype (labels given, hess null: the binding
// checked). Runs without the GIL; must not throw.
template <template <class> class Row, class T>
double multiclass_metrics(const MulticlassArgs<T>& args) {
  if (args.R == 0 || args.C == 0) return 0.0;
  const Row<T> row(args.params, class_vector_for<Row>(args), args.C);
  const MetricsRunner<Row, T> run{row, args};
  return with_flags<>(run, args.grad != nullptr);
}

FUSEDLOSS_ISA_END
}  // namespace fusedloss
