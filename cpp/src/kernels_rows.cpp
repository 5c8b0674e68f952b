// The multiclass kernel table of ONE instruction-set level, and the level's whole kernel table. CMakeLists.txt
// compiles this file once per level, with that level's flags and -DFUSEDLOSS_ISA=<level>; everything it
// instantiates lives in fusedloss::isa_<level> (isa.hpp), and it exports kernel_table_<level>(), which joins
// the elementwise parts (kernels_elementwise.cpp), the rows below and the block scans (reduce.hpp).
//
// Adding a multiclass loss: a struct in rows.hpp and ONE line in the table below.
#include "fusedloss/kernel_api.hpp"
#include "fusedloss/loops.hpp"
#include "fusedloss/reduce.hpp"
#include "fusedloss/row_tiles.hpp"
#include "fusedloss/rows.hpp"

#include <cstddef>
#include <initializer_list>

namespace fusedloss {

#define FUSEDLOSS_PART_FN_(k) FUSEDLOSS_ISA_CAT_(FUSEDLOSS_ISA_CAT_(FUSEDLOSS_ISA_CAT_(elementwise_part_, FUSEDLOSS_ISA), _), k)
TablePart<LossEntry> FUSEDLOSS_PART_FN_(0)();
TablePart<LossEntry> FUSEDLOSS_PART_FN_(1)();
TablePart<LossEntry> FUSEDLOSS_PART_FN_(2)();

FUSEDLOSS_ISA_BEGIN
namespace {

template <template <class> class Row>
constexpr RowEntry row_entry() {
  using R = Row<double>;
  static_assert(R::arity <= Params::kMax, "more parameters than Params holds: raise Params::kMax");
  if constexpr (has_row_metrics<R>::value) {
    return {R::name, R::arity, R::hard_labels, R::soft_labels, R::class_vector, &multiclass_entry<Row, float>,
            &multiclass_entry<Row, double>, &multiclass_metrics_entry<Row, float>,
            &multiclass_metrics_entry<Row, double>};
  } else {
    return {R::name, R::arity, R::hard_labels, R::soft_labels, R::class_vector, &multiclass_entry<Row, float>,
            &multiclass_entry<Row, double>, nullptr, nullptr};
  }
}

// The multiclass table: ONE line per multiclass loss.
constexpr RowEntry kMulticlass[] = {
    row_entry<rows::cross_entropy>(),
    row_entry<rows::categorical_focal>(),
    row_entry<rows::multi_margin>(),
    row_entry<rows::kl_div_with_logits>(),
    row_entry<rows::jensen_shannon>(),
    row_entry<rows::multilabel_soft_margin>(),
    row_entry<rows::poly1>(),
    row_entry<rows::categorical_hinge>(),
};

// Room for the joined elementwise parts (checked when they are joined).
constexpr std::size_t kMaxElementwise = 64;
LossEntry g_joined[kMaxElementwise];

KernelTable join_parts() noexcept {
  std::size_t n = 0;
  for (const TablePart<LossEntry> part : {FUSEDLOSS_PART_FN_(0)(), FUSEDLOSS_PART_FN_(1)(), FUSEDLOSS_PART_FN_(2)()}) {
    for (std::size_t i = 0; i < part.n && n < kMaxElementwise; ++i) g_joined[n++] = part.entries[i];
  }
  return KernelTable{FUSEDLOSS_ISA_NAME, g_joined, n, kMulticlass, sizeof(kMulticlass) / sizeof(kMulticlass[0]),
                     {&block_extremes<float>, &block_sum<float>}, {&block_extremes<double>, &block_sum<double>}};
}

}  // namespace
FUSEDLOSS_ISA_END

// Outside the ISA namespace: bindings.cpp calls it by this name. Joined once, on first use (thread-safe).
const KernelTable& FUSEDLOSS_ISA_CAT_(kernel_table_, FUSEDLOSS_ISA)() {
  static const KernelTable table = join_parts();
  return table;
}

}  // namespace fusedloss
