// What crosses the ISA boundary: the argument structs the bindings fill in, the kernel signatures and table
// entries, and the per-ISA kernel tables. Deliberately NOT in a per-ISA namespace (isa.hpp): bindings.cpp
// (baseline) passes these to kernels compiled for any level, so they must be one type. Data and
// declarations only (kernel<T>() is called by bindings.cpp alone): nothing here is compiled per level.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace fusedloss {

// A loss's scalar parameters in the registry's order, as LossSpec.packed gives them: the loss's own number of
// them (`n`, its `arity`), at most kMax. The binding fills it from a Python sequence and refuses another count;
// each loss's constructor (losses.hpp, rows.hpp) is the one place that reads the slots and names the values.
struct Params {
  static constexpr std::size_t kMax = 4;
  double v[kMax] = {};
  std::size_t n = 0;
  double operator[](std::size_t k) const { return v[k]; }
};

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
  const T* cols = nullptr;  // null, or ncols values of the loss's column parameter, one per column
  std::size_t ncols = 0;    // divides n
  // Float32 outputs of a float64 call (T = double only): an output given here instead of in value / grad /
  // hess (null then) is computed in float64 and stored rounded to float32, as a float64 output converted
  // afterwards would be (a booster that keeps float32 derivatives gets them without that copy).
  float* value_f32 = nullptr;
  float* grad_f32 = nullptr;
  float* hess_f32 = nullptr;
  bool narrow() const { return value_f32 || grad_f32 || hess_f32; }
  bool wants_value() const { return value || value_f32; }
  bool wants_grad() const { return grad || grad_f32; }
  bool wants_hess() const { return hess || hess_f32; }
};

// The binary metrics of an elementwise pass (binary_metrics.hpp): a float64 table of `rows` rows of columns()
// columns, zeroed and filled by the kernel. Table row r sums the elements of a fixed run of kBlock-blocks
// (ceil(blocks / rows) of them, so the runs depend only on n and rows): [0] how many predictions are NaN,
// [1] the weight of the correct predictions (fractional for soft targets), [2] the weighted sum of
// (p - y)^2, then per probability bin b (holding [b/nbins, (b+1)/nbins), the last one 1 too) the weight of
// the positives (w y) and, after them, of the negatives (w (1 - y)), then per calibration bin (ece_bins of them,
// by the same rule) the weight (w), after them the weighted sums of p (w p) and of the targets (w y).
// p = sigmoid(pred) in float64, or pred itself with `probabilities`.
struct BinaryMetricsArgs {
  double* table = nullptr;
  std::size_t rows = 0;
  std::size_t nbins = 0;      // bins of the ROC / precision-recall curves (0: none)
  bool probabilities = false;
  std::size_t ece_bins = 0;   // bins of the calibration histogram (0: none)
  // the table's columns: NaN count, correct, squared error, 2 nbins curve sums, 3 ece_bins calibration sums
  std::size_t columns() const { return 3 + 2 * nbins + 3 * ece_bins; }
};

// One row's metrics, as a row struct's row_metrics gives them (rows.hpp; MulticlassArgs::rank ... say what
// each is).
struct RowMetrics {
  std::int64_t rank = -1;
  double conf = 0.0, nll = 0.0, entropy = 0.0;
};

// What a multiclass call reads and writes (the contract of backends.multiclass). Null pointers are arrays
// not given / outputs not asked for. Either labels (R, every one in [0, C) or == ignore: the binding checked)
// or q (R*C soft targets).
template <class T>
struct MulticlassArgs {
  const T* x = nullptr;                   // R*C logits
  const std::int64_t* labels = nullptr;   // R hard labels
  const T* q = nullptr;                   // R*C soft targets
  const T* w = nullptr;                   // R row weights
  const T* cw = nullptr;                  // C per-class vector (class_weight, alpha)
  T* value = nullptr;                     // R: w_r * l_r
  T* grad = nullptr;                      // R*C: scale * w_r * dl_r/dx (may be x itself)
  T* hess = nullptr;                      // R*C: scale * w_r * d2l_r/dx^2
  std::size_t R = 0, C = 0;
  std::int64_t ignore = -100;
  Params params;                          // LossSpec.packed
  double scale = 1.0;
  bool reduce = false;  // return sum_r w_r l_r in float64 (else 0.0)
  int nthreads = 1;
  // The per-row metrics (RowEntry::metrics kernels only; hard labels, no Hessian). Ignored rows get rank -1
  // and 0.0; a row with nothing to normalise rank -1 and nan. rank and entropy may be null (not asked for).
  std::int64_t* rank = nullptr;  // R: #{j: x_j > x_t} + #{j < t: x_j == x_t}, the label's place in argsort
  double* conf = nullptr;        // R: max_j p_j
  double* nll = nullptr;         // R: -log p_t
  double* entropy = nullptr;     // R: -sum_j p_j log p_j
};

// The output combinations an elementwise kernel computes in one pass (value V, reduction R, gradient G,
// Hessian H): what the dispatcher asks for. Any other combination runs as several passes (loops.hpp,
// run_outputs, which instantiates exactly these), so none of its outputs may be an input array.
inline bool elementwise_one_pass(bool V, bool R, bool /* G: rides along with any of them */, bool H) {
  if (V) return !R && !H;  // V, V+G
  if (R) return !H;        // R, R+G
  return true;             // nothing, G, G+H, H
}

template <class T>
using Kernel = double (*)(const Params&, const ElementwiseArgs<T>&);
template <class T>
using BinaryMetricsKernel = double (*)(const Params&, const ElementwiseArgs<T>&, const BinaryMetricsArgs&);

struct LossEntry {
  const char* name;
  std::size_t arity;  // how many scalar parameters it takes (Params::n)
  bool column_param;  // takes its first parameter per column (`cols`)
  Kernel<float> f32;
  Kernel<double> f64;
  // the loss pass with the binary metrics (BinaryMetricsArgs), or null: losses that declare binary_metrics
  BinaryMetricsKernel<float> metrics_f32 = nullptr;
  BinaryMetricsKernel<double> metrics_f64 = nullptr;

  template <class T>
  Kernel<T> kernel() const {
    if constexpr (std::is_same_v<T, float>) {
      return f32;
    } else {
      return f64;
    }
  }
  template <class T>
  BinaryMetricsKernel<T> metrics_kernel() const {
    if constexpr (std::is_same_v<T, float>) {
      return metrics_f32;
    } else {
      return metrics_f64;
    }
  }
};

template <class T>
using RowKernel = double (*)(const MulticlassArgs<T>&);

struct RowEntry {
  const char* name;
  std::size_t arity;  // how many scalar parameters it takes (Params::n)
  bool hard_labels, soft_labels, class_vector;  // target forms it takes; whether it reads cw
  RowKernel<float> f32;
  RowKernel<double> f64;
  // the loss pass with the per-row metrics (MulticlassArgs::rank ...), or null: losses whose row struct
  // has row_metrics (rows.hpp)
  RowKernel<float> metrics_f32;
  RowKernel<double> metrics_f64;

  template <class T>
  RowKernel<T> kernel() const {
    if constexpr (std::is_same_v<T, float>) {
      return f32;
    } else {
      return f64;
    }
  }
  template <class T>
  RowKernel<T> metrics_kernel() const {
    if constexpr (std::is_same_v<T, float>) {
      return metrics_f32;
    } else {
      return metrics_f64;
    }
  }
};

// A slice of a table, as one translation unit provides it (the elementwise table is built in parts).
template <class Entry>
struct TablePart {
  const Entry* entries;
  std::size_t n;
};

// The scans of one block of a plain array that the validation and the "mean" divisor make (reduce.hpp:
// block_extremes, block_sum; bindings.cpp runs them over fixed blocks on the pool).
template <class T>
struct BlockScans {
  void (*extremes)(const T* x, std::size_t n, T& lo, T& hi);  // min and max, NaN skipped
  double (*sum)(const T* x, std::size_t n);                      // compensated, in float64
};

// Everything one ISA level provides.
struct KernelTable {
  const char* isa;  // "baseline", "avx2", "avx512"
  const LossEntry* elementwise;
  std::size_t n_elementwise;
  const RowEntry* multiclass;
  std::size_t n_multiclass;
  BlockScans<float> scans_f32;
  BlockScans<double> scans_f64;

  template <class T>
  const BlockScans<T>& scans() const {
    if constexpr (std::is_same_v<T, float>) {
      return scans_f32;
    } else {
      return scans_f64;
    }
  }
};

// One per compiled level (cpp/src/kernels_rows.cpp, built once per level by CMakeLists.txt, which defines
// FUSEDLOSS_HAVE_ISA_AVX2 / FUSEDLOSS_HAVE_ISA_AVX512 for bindings.cpp when those were built).
const KernelTable& kernel_table_baseline();
const KernelTable& kernel_table_avx2();
const KernelTable& kernel_table_avx512();

}  // namespace fusedloss
