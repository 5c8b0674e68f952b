// The kernel table of ONE instruction-set level. CMakeLists.txt compiles this file once per level, each
// time with that level's flags and -DFUSEDLOSS_ISA=<level>; everything it instantiates lives in
// fusedloss::isa_<level> (isa.hpp), and the only function it exports is kernel_table_<level>().
//
// Adding a loss: a struct in losses.hpp (rows.hpp) and ONE line in a table below.
#include "fusedloss/kernel_api.hpp"
#include "fusedloss/loops.hpp"
#include "fusedloss/losses.hpp"
#include "fusedloss/rows.hpp"

namespace fusedloss {
FUSEDLOSS_ISA_BEGIN
namespace {

template <template <class> class Loss>
constexpr LossEntry entry() {
  return {Loss<double>::name, has_column_param<Loss<double>>::value, &elementwise<Loss, float>,
          &elementwise<Loss, double>};
}

// The loss table: ONE line per elementwise loss.
constexpr LossEntry kElementwise[] = {
    entry<losses::mse>(),
    entry<losses::mae>(),
    entry<losses::huber>(),
    entry<losses::smooth_l1>(),
    entry<losses::pseudo_huber>(),
    entry<losses::log_cosh>(),
    entry<losses::quantile>(),
    entry<losses::poisson_nll>(),
    entry<losses::tweedie>(),
    entry<losses::binary_cross_entropy>(),
    entry<losses::binary_cross_entropy_with_logits>(),
    entry<losses::binary_focal>(),
    entry<losses::hinge>(),
    entry<losses::squared_hinge>(),
    entry<losses::zero_one>(),
};

template <template <class> class Row>
constexpr RowEntry row_entry() {
  using R = Row<double>;
  return {R::name, R::hard_labels, R::soft_labels, R::class_vector, &multiclass<Row, float>,
          &multiclass<Row, double>};
}

// The multiclass table: ONE line per multiclass loss.
constexpr RowEntry kMulticlass[] = {
    row_entry<rows::cross_entropy>(),
    row_entry<rows::categorical_focal>(),
    row_entry<rows::multi_margin>(),
    row_entry<rows::kl_div>(),
};

constexpr KernelTable kTable = {FUSEDLOSS_ISA_NAME, kElementwise, sizeof(kElementwise) / sizeof(kElementwise[0]),
                                kMulticlass, sizeof(kMulticlass) / sizeof(kMulticlass[0])};

}  // namespace
FUSEDLOSS_ISA_END

// Outside the ISA namespace: bindings.cpp calls it by this name.
const KernelTable& FUSEDLOSS_ISA_CAT_(kernel_table_, FUSEDLOSS_ISA)() { return kTable; }

}  // namespace fusedloss
