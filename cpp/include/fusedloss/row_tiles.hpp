// Multiclass rows of few classes, in tiles: the vector lanes across rows instead of along one row.
//
// A row of C classes, C up to a few vector widths, leaves the row loops of rows.hpp little to vectorise:
// every row pays scalar loop remainders and the reductions across lanes of its max and its sums, which cost
// more than the row's arithmetic (cross_entropy float32 at C = 10: 18 ns per element, three times its cost at
// C = 1000). A row struct with a `tile` function (rows.hpp: cross_entropy) takes kTile rows at once, logit j
// of row r at [j * kTile + r], so that step j of each row pass is one vector operation over kTile rows, with
// no reduction across lanes. The driver below gathers each tile, treats ignored rows and weights as
// for_rows (loops.hpp) does, and scatters the outputs back; blocks hold whole tiles, and the rows' values are
// added in row order, so the result does not depend on the thread count. Whether a call runs in tiles depends
// on the row struct, its parameters and C only (`tiles_for`), never on the outputs or metrics asked for, so
// a call's value and gradient are the same with and without its metrics.
#pragma once

#include "fusedloss/isa.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "fusedloss/kernel_api.hpp"
#include "fusedloss/loops.hpp"
#include "fusedloss/rows.hpp"

namespace fusedloss {
FUSEDLOSS_ISA_BEGIN

template <class R, class = void>
struct has_tile : std::false_type {};
template <class R>
struct has_tile<R, std::void_t<decltype(&R::template tile<false, false, false>)>> : std::true_type {};

// M: the metrics pass (hard labels, no Hessian), mr / me: the rank and the entropy are asked for.
template <bool G, bool H, bool M, class Row, class T>
double tile_pass(const Row& row, const MulticlassArgs<T>& a, bool mr, bool me) {
  constexpr std::size_t L = rows::kTile;
  const std::size_t C = a.C;
  auto block = [&](std::size_t r0, std::size_t r1) {
    CompensatedSum sum;
    alignas(64) T xt[rows::kTileMaxC * L], gt[rows::kTileMaxC * L], ht[rows::kTileMaxC * L];
    for (std::size_t q0 = r0; q0 < r1; q0 += L) {
      const std::size_t nr = std::min(L, r1 - q0);
      std::int64_t t[L];
      double f[L], v[L], rw[L];
      bool kept[L];
      RowMetrics met[L];
      for (std::size_t r = 0; r < L; ++r) {
        const std::int64_t label = r < nr ? a.labels[q0 + r] : 0;
        rw[r] = r < nr && a.w ? double(a.w[q0 + r]) : 1.0;
        kept[r] = r < nr && label != a.ignore && rw[r] != 0.0;
        t[r] = kept[r] ? label : 0;  // an ignored row's lane computes on label 0, and is dropped below
        f[r] = kept[r] ? rw[r] * a.scale : 0.0;
      }
      const T* x = a.x + q0 * C;
      for (std::size_t j = 0; j < C; ++j) {
        for (std::size_t r = 0; r < L; ++r) xt[j * L + r] = r < nr ? x[r * C + j] : T(0);
      }
      row.template tile<G, H, M>(xt, t, f, v, gt, ht, met, mr, me);
      for (std::size_t r = 0; r < nr; ++r) {
        const std::size_t i = q0 + r, base = i * C;
        double value = 0.0;
        if (kept[r]) {
          value = weigh(row, t[r], rw[r], v[r]);
          if constexpr (G) {
            for (std::size_t j = 0; j < C; ++j) a.grad[base + j] = gt[j * L + r];
          }
          if constexpr (H) {
            for (std::size_t j = 0; j < C; ++j) a.hess[base + j] = ht[j * L + r];
          }
        } else {
          if constexpr (G) std::fill(a.grad + base, a.grad + base + C, T(0));
          if constexpr (H) std::fill(a.hess + base, a.hess + base + C, T(0));
          met[r] = RowMetrics{-1, 0.0, 0.0, 0.0};  // as multiclass_metrics_pass gives an ignored row
        }
        if constexpr (M) {
          if (mr) a.rank[i] = met[r].rank;
          a.conf[i] = met[r].conf;
          a.nll[i] = met[r].nll;
          if (me) a.entropy[i] = met[r].entropy;
        }
        if (a.value) a.value[i] = T(value);
        sum.add(value);
      }
    }
    return sum.value();
  };
  const std::size_t per = std::max<std::size_t>(L, kBlock / C / L * L);
  const std::size_t work = a.R * C;
  if (a.reduce) return sum_blocks(a.R, per, a.nthreads, block, work);
  for_blocks(a.R, per, a.nthreads, [&](std::size_t r0, std::size_t r1) { block(r0, r1); }, work);
  return 0.0;
}

template <template <class> class Row, class T>
struct TileRunner {
  const Row<T>& row;
  const MulticlassArgs<T>& args;
  template <bool G, bool H>
  double operator()() const {
    return tile_pass<G, H, false>(row, args, false, false);
  }
};

template <template <class> class Row, class T>
struct TileMetricsRunner {
  const Row<T>& row;
  const MulticlassArgs<T>& args;
  template <bool G>
  double operator()() const {
    return tile_pass<G, false, true>(row, args, args.rank != nullptr, args.entropy != nullptr);
  }
};

// The multiclass entry points of the kernel table (kernels_rows.cpp): in tiles where the row struct takes
// them (hard labels), else row by row (loops.hpp).
template <template <class> class Row, class T>
double multiclass_entry(const MulticlassArgs<T>& args) {
  if constexpr (has_tile<Row<T>>::value) {
    if (args.R != 0 && args.C != 0 && args.labels) {
      const Row<T> row(args.params, args.cw, args.C);
      if (row.tiles_for(args.C)) {
        const TileRunner<Row, T> run{row, args};
        return with_flags<>(run, args.grad != nullptr, args.hess != nullptr);
      }
    }
  }
  return multiclass<Row, T>(args);
}

template <template <class> class Row, class T>
double multiclass_metrics_entry(const MulticlassArgs<T>& args) {
  if constexpr (has_tile<Row<T>>::value) {
    if (args.R != 0 && args.C != 0) {
      const Row<T> row(args.params, args.cw, args.C);
      if (row.tiles_for(args.C)) {
        const TileMetricsRunner<Row, T> run{row, args};
        return with_flags<>(run, args.grad != nullptr);
      }
    }
  }
  return multiclass_metrics<Row, T>(args);
}

FUSEDLOSS_ISA_END
}  // namespace fusedloss
