// fusedloss._core.build_info(): the facts of this build, read back by `fusedloss info` and the benchmarks.
#include <pybind11/pybind11.h>

#include <string>

#include "fusedloss/isa_select.hpp"
#include "fusedloss/reduce.hpp"  // kBlock, kParallelMin

namespace py = pybind11;

namespace fusedloss {

// ``isa``: the level chosen at import (FUSEDLOSS_SIMD, else the best the CPU has).
py::dict build_info(const char* isa) {
  py::dict d;
  d["version"] = FUSEDLOSS_VERSION;
  d["compiler"] = FUSEDLOSS_COMPILER;
  d["build_type"] = FUSEDLOSS_BUILD_TYPE;
  d["simd_flags"] = FUSEDLOSS_SIMD_FLAGS;
  d["simd"] = isa;
  py::list levels;
  for (const char* name : compiled_levels()) levels.append(name);
  d["simd_levels"] = levels;  // the levels this build has, best first
  d["system_processor"] = FUSEDLOSS_SYSTEM_PROCESSOR;
  d["cplusplus"] = static_cast<long>(__cplusplus);
  d["threads"] = "fusedloss pool (blocks claimed dynamically; see pool.hpp)";
  d["block_size"] = kBlock;
  d["parallel_threshold"] = kParallelMin;
  d["pybind11_version"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." + std::to_string(PYBIND11_VERSION_MINOR) +
                          "." + std::to_string(PYBIND11_VERSION_PATCH);
  // What the CPU running this offers (not what the build uses: see simd_flags).
  py::list cpu;
  for (const char* name : cpu_features()) cpu.append(name);
  d["cpu_features"] = cpu;
  return d;
}

}  // namespace fusedloss
