// Per-ISA namespaces for the kernel headers (runtime SIMD dispatch).
//
// The kernels (math.hpp, vecmath.hpp, losses.hpp, loops.hpp, reduce.hpp's loops, rows.hpp) are compiled once
// per instruction-set level: cpp/src/kernels_*.cpp are built several times, each time with its own ISA flags
// and -DFUSEDLOSS_ISA=<level> (CMakeLists.txt), and isa_select.cpp picks one of the resulting kernel tables
// at import (kernel_api.hpp). Every inline function and template those headers define lands in
// fusedloss::isa_<level>, an INLINE namespace: code keeps naming fusedloss::vm::exp, fusedloss::losses::mse,
// while the symbols of each level are distinct. Without it the linker would merge the (identically named,
// differently compiled) inline functions of all levels into one copy, and an AVX-512 copy could end up on
// the baseline path of a CPU that lacks AVX-512.
//
// Shared state (the fork guard's flags) and the types that cross levels (ElementwiseArgs, the kernel
// table) are declared OUTSIDE these namespaces, in reduce.hpp and kernel_api.hpp.
#pragma once

#ifndef FUSEDLOSS_ISA
#define FUSEDLOSS_ISA baseline  // the TU compiled with the platform's baseline flags (bindings.cpp too)
#endif

#define FUSEDLOSS_ISA_CAT2_(a, b) a##b
#define FUSEDLOSS_ISA_CAT_(a, b) FUSEDLOSS_ISA_CAT2_(a, b)
#define FUSEDLOSS_ISA_NS FUSEDLOSS_ISA_CAT_(isa_, FUSEDLOSS_ISA)
#define FUSEDLOSS_ISA_BEGIN inline namespace FUSEDLOSS_ISA_NS {
#define FUSEDLOSS_ISA_END }
#define FUSEDLOSS_ISA_STR2_(x) #x
#define FUSEDLOSS_ISA_STR_(x) FUSEDLOSS_ISA_STR2_(x)
#define FUSEDLOSS_ISA_NAME FUSEDLOSS_ISA_STR_(FUSEDLOSS_ISA)

// A function compiled once as a function of its own (see its uses).
#if defined(__GNUC__) || defined(__clang__)
#define FUSEDLOSS_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define FUSEDLOSS_NOINLINE __declspec(noinline)
#else
#define FUSEDLOSS_NOINLINE
#endif
