// One part of the elementwise kernel table of ONE instruction-set level. CMakeLists.txt compiles this file
// once per level and part (-DFUSEDLOSS_ISA=<level> -DFUSEDLOSS_PART=<k>): the losses are split over
// the parts CMakeLists.txt lists so that the build keeps every core busy. The parts are
// joined, in order, by kernel_table_<level>() (kernels_rows.cpp).
//
// Adding a loss: a struct in losses.hpp and ONE line in a part below (any part; keep their compile times similar:
// a loss with specialised twins or long point functions weighs several plain ones).
#include "fusedloss/binary_metrics.hpp"
#include "fusedloss/kernel_api.hpp"
#include "fusedloss/loops.hpp"
#include "fusedloss/losses.hpp"

#ifndef FUSEDLOSS_PART
#error "compile with -DFUSEDLOSS_PART=<k>"
#endif

namespace fusedloss {
FUSEDLOSS_ISA_BEGIN
namespace {

template <template <class> class Loss>
constexpr LossEntry entry() {
  static_assert(Loss<double>::arity <= Params::kMax, "more parameters than Params holds: raise Params::kMax");
  return {Loss<double>::name, Loss<double>::arity, has_column_param<Loss<double>>::value,
          &elementwise<Loss, float>, &elementwise<Loss, double>,
          binary_metrics_kernel<Loss, float>(), binary_metrics_kernel<Loss, double>()};
}

// The loss table, in parts: ONE line per elementwise loss.
constexpr LossEntry kElementwise[] = {
#if FUSEDLOSS_PART == 0
    entry<losses::general_robust>(),
    entry<losses::msle>(),
    entry<losses::squared_log>(),
    entry<losses::poisson_nll>(),
    entry<losses::gamma>(),
    entry<losses::log_cosh>(),
    entry<losses::mse>(),
    entry<losses::mae>(),
#elif FUSEDLOSS_PART == 1
    entry<losses::tweedie>(),
    entry<losses::exponential>(),
    entry<losses::binary_cross_entropy>(),
    entry<losses::cauchy>(),
    entry<losses::tweedie_identity>(),
    entry<losses::huber>(),
    entry<losses::smooth_l1>(),
    entry<losses::pseudo_huber>(),
#elif FUSEDLOSS_PART == 2
    entry<losses::binary_focal>(),
    entry<losses::binary_cross_entropy_with_logits>(),
    entry<losses::fair>(),
    entry<losses::hinge_embedding>(),
    entry<losses::asymmetric_huber>(),
    entry<losses::squared_hinge>(),
    entry<losses::hinge>(),
    entry<losses::mape>(),
    entry<losses::zero_one>(),
    entry<losses::quantile>(),
    entry<losses::expectile>(),
#else
#error "FUSEDLOSS_PART out of range"
#endif
};

}  // namespace
FUSEDLOSS_ISA_END

// Outside the ISA namespace: kernel_table_<level>() calls it by this name.
TablePart<LossEntry> FUSEDLOSS_ISA_CAT_(FUSEDLOSS_ISA_CAT_(FUSEDLOSS_ISA_CAT_(elementwise_part_, FUSEDLOSS_ISA), _),
                                        FUSEDLOSS_PART)() {
  return {kElementwise, sizeof(kElementwise) / sizeof(kElementwise[0])};
}

}  // namespace fusedloss
