// The binary metrics pass: an elementwise loss on logits (or probabilities) that also sums, per fixed run of
// blocks, what accuracy, the Brier score, the binned ROC / precision-recall curves and the calibration error
// need (BinaryMetricsArgs, kernel_api.hpp; the NumPy specification is src/fusedloss/_binary_metrics.py).
//
// Each kBlock-block first goes through binary_metrics_block, then, while its inputs are still in L1, through the
// loss's own elementwise_block (loops.hpp: the very instantiation the plain pass runs; after the metrics, since
// its gradient may overwrite the scores). The loss's partial
// sums land in the same per-block slots and are combined in the same order as sum_blocks does, so the value,
// the gradient and the per-element values keep their bits with and without metrics, and the plain pass has
// no metrics code in it at all. Threads claim runs of blocks (one table row each); a row is summed by one
// thread in block order, so the table does not depend on the thread count.
#pragma once

#include "fusedloss/isa.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "fusedloss/kernel_api.hpp"
#include "fusedloss/loops.hpp"
#include "fusedloss/math.hpp"
#include "fusedloss/pool.hpp"
#include "fusedloss/reduce.hpp"

namespace fusedloss {
FUSEDLOSS_ISA_BEGIN

// Whether a loss has the binary metrics pass (losses.hpp: `static constexpr bool binary_metrics = true`).
template <class L, class = void>
struct has_binary_metrics : std::false_type {};
template <class L>
struct has_binary_metrics<L, std::void_t<decltype(L::binary_metrics)>> : std::bool_constant<L::binary_metrics> {};

// The metrics of elements [begin, end) (at most kBlock of them) added into one table row. Probs: pred is a
// probability (else a logit); E: the calibration histogram is asked for (args.ece_bins). The sums go through
// kLanes lanes in a fixed order (the remainder into lane 0), and the histograms are scalar loops over the bin
// indices (and, for E, the probabilities) the vector loop parked on the stack (computing them there,
// vectorised, leaves the scalar loops their loads and read-modify-writes).
template <bool Probs, bool W, bool E, class T>
FUSEDLOSS_NOINLINE void binary_metrics_block(const T* x, const T* y, const T* w, std::size_t begin, std::size_t end,
                                             const BinaryMetricsArgs& args, double* row) {
  alignas(64) std::int32_t bin[kBlock];
  alignas(64) std::int32_t ebin[E ? kBlock : 1];
  alignas(64) double prob[E ? kBlock : 1];
  const std::size_t nbins = args.nbins, ece_bins = args.ece_bins;
  const double scale = double(nbins), top = double(nbins) - 1.0;
  const double escale = double(ece_bins), etop = double(ece_bins) - 1.0;
  double bad[kLanes] = {}, hit[kLanes] = {}, sq[kLanes] = {};
  const std::size_t m = end - begin;
  x += begin;
  y += begin;
  if constexpr (W) w += begin;
  auto point = [&](std::size_t k, std::size_t lane) {
    const double xv = double(x[k]), yv = double(y[k]);
    const double wv = W ? double(w[k]) : 1.0;
    double p;
    if constexpr (Probs) {
      p = xv;
    } else {
      double sm;
      sigmoid_pair(xv, p, sm);
    }
    // predicted positive: p > 1/2 (scikit-learn's threshold on probabilities), i.e. a logit > 0
    const double pos = xv > (Probs ? 0.5 : 0.0) ? 1.0 : 0.0;
    hit[lane] += wv * (pos * yv + (1.0 - pos) * (1.0 - yv));
    const double d = p - yv;
    sq[lane] += wv * (d * d);
    bad[lane] += xv != xv ? 1.0 : 0.0;
    // floor(p nbins), the last bin 1 too; a NaN goes to bin 0 (it makes every metric NaN anyway)
    bin[k] = std::int32_t(std::min(p >= 0.0 ? p * scale : 0.0, top));
    if constexpr (E) {
      ebin[k] = std::int32_t(std::min(p >= 0.0 ? p * escale : 0.0, etop));
      prob[k] = p;
    }
  };
  std::size_t k = 0;
  for (; k + kLanes <= m; k += kLanes) {
#pragma omp simd
    for (std::size_t j = 0; j < kLanes; ++j) point(k + j, j);
  }
  for (; k < m; ++k) point(k, 0);
  for (std::size_t j = 0; j < kLanes; ++j) {
    row[0] += bad[j];
    row[1] += hit[j];
    row[2] += sq[j];
  }
  if (nbins != 0) {
    double* pos = row + 3;
    double* neg = pos + nbins;
    for (k = 0; k < m; ++k) {
      const std::int32_t b = bin[k];
      const double wv = W ? double(w[k]) : 1.0, yv = double(y[k]);
      pos[b] += wv * yv;
      neg[b] += wv * (1.0 - yv);
    }
  }
  if constexpr (E) {
    double* weight = row + 3 + 2 * nbins;  // then ece_bins sums of w p, then ece_bins of w y
    for (k = 0; k < m; ++k) {
      double* cell = weight + ebin[k];
      const double wv = W ? double(w[k]) : 1.0;
      cell[0] += wv;
      cell[ece_bins] += wv * prob[k];
      cell[2 * ece_bins] += wv * double(y[k]);
    }
  }
}

namespace detail {
template <class Job>
struct RowJob {
  const Job* job;
  static void call(const void* self, std::size_t r) { (*static_cast<const RowJob*>(self)->job)(r); }
};
}  // namespace detail

// The pass for one instantiation of the loss's flags (V xor R, G; never H).
template <bool Col, bool W, bool V, bool R, bool G, class Loss, class T>
double binary_metrics_pass(const Loss& loss, const ElementwiseArgs<T>& a, const T* col, std::size_t width,
                           const BinaryMetricsArgs& m) {
  const bool stream = use_stream(a, Col, std::size_t(V) + std::size_t(G));  // the plain pass's choice of stores
  const std::size_t n = a.n, nb = (n + kBlock - 1) / kBlock;
  const std::size_t per = (nb + m.rows - 1) / m.rows;  // blocks per table row
  const std::size_t used = (nb + per - 1) / per;
  const std::size_t ncol = m.columns();
  double stack_buf[R ? kStackPartials : 1];
  double* partial = stack_buf;
  if (R && nb > kStackPartials) {
    thread_local detail::PartialBuffer heap_buf;
    partial = heap_buf.get(nb);
  }
  const auto job = [&](std::size_t r) {
    double* row = m.table + r * ncol;
    const std::size_t b1 = std::min(nb, (r + 1) * per);
    for (std::size_t b = r * per; b < b1; ++b) {
      const std::size_t begin = b * kBlock, end = std::min(n, begin + kBlock);
      // the metrics first: the gradient (or the values) may overwrite the scores (or the targets)
      const bool e = m.ece_bins != 0;
      if (m.probabilities) {
        (e ? binary_metrics_block<true, W, true, T> : binary_metrics_block<true, W, false, T>)(a.p, a.y, a.w, begin,
                                                                                             end, m, row);
      } else {
        (e ? binary_metrics_block<false, W, true, T> : binary_metrics_block<false, W, false, T>)(a.p, a.y, a.w, begin,
                                                                                               end, m, row);
      }
      const double s = elementwise_block<Col, W, V, R, G, false>(loss, a, col, width, begin, end, stream);
      if constexpr (R) partial[b] = s;
    }
  };
  const int nt = threads_for(n, used, a.nthreads);
  if (nt <= 1) {
    for (std::size_t r = 0; r < used; ++r) job(r);
  } else {
    const detail::RowJob<decltype(job)> ctx{&job};
    pool::run(used, nt, &decltype(ctx)::call, &ctx);
  }
  if constexpr (R) return nb == 1 ? partial[0] : compensated_sum(partial, nb);  // as sum_blocks
  return 0.0;
}

template <class Loss, class T, bool Col>
struct BinaryMetricsRunner {
  const Loss& loss;
  const ElementwiseArgs<T>& args;
  const T* col;
  std::size_t width;
  const BinaryMetricsArgs& m;
  template <bool W, bool V, bool R, bool G>
  double operator()() const {
    if constexpr (V == R) {
      return 0.0;  // the binding refuses these (a value is needed, and one form of it)
    } else {
      return binary_metrics_pass<Col, W, V, R, G>(loss, args, col, width, m);
    }
  }
};

template <class T, class Loss>
double binary_metrics_with(const Loss& loss, const ElementwiseArgs<T>& a, const BinaryMetricsArgs& m) {
  if constexpr (has_column_param<Loss>::value) {
    if (a.cols != nullptr) {
      const ColumnTile<T> tile(a.cols, a.ncols);
      const BinaryMetricsRunner<Loss, T, true> run{loss, a, tile.col, tile.width, m};
      return with_flags<>(run, a.w != nullptr, a.value != nullptr, a.reduce, a.grad != nullptr);
    }
  }
  const BinaryMetricsRunner<Loss, T, false> run{loss, a, nullptr, 0, m};
  return with_flags<>(run, a.w != nullptr, a.value != nullptr, a.reduce, a.grad != nullptr);
}

// Entry point for one loss and dtype (hess null, exactly one of value and reduce, m.rows >= 1: the binding
// checked). Runs without the GIL; must not throw.
template <template <class> class Loss, class T>
double binary_metrics(const Params& params, const ElementwiseArgs<T>& args, const BinaryMetricsArgs& m) {
  std::fill(m.table, m.table + m.rows * m.columns(), 0.0);
  if (args.n == 0) return 0.0;
  const Loss<T> loss(params);
  if constexpr (has_specialise<Loss<T>>::value) {
    return loss.specialise([&](const auto& twin) { return binary_metrics_with<T>(twin, args, m); });
  } else {
    return binary_metrics_with<T>(loss, args, m);
  }
}

// The kernel-table slot of a loss: its metrics kernel, or null when it has none.
template <template <class> class Loss, class T>
constexpr BinaryMetricsKernel<T> binary_metrics_kernel() {
  if constexpr (has_binary_metrics<Loss<double>>::value) {
    return &binary_metrics<Loss, T>;
  } else {
    return nullptr;
  }
}

FUSEDLOSS_ISA_END
}  // namespace fusedloss
