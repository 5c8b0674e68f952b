#!/bin/sh
# Check that the per-ISA kernel objects export nothing but their own namespace, kernel_table_<level>() and
# elementwise_part_<level>_<k>(), ctc_kernels_<level>(), pairwise_kernels_<level>() (and the C++ runtime's exception
# personality reference, the same data for every level). Anything else that is global or weak (a std:: template with
# out-of-line code, an inline helper outside FUSEDLOSS_ISA_BEGIN/END) would be merged across levels by the linker,
# and an AVX-512 copy could then run on the baseline path. Usage: tools/check_isa_symbols.sh BUILD_DIR
set -eu
build=${1:?usage: $0 BUILD_DIR}
status=0
for obj in $(find "$build" -path '*_fl_kernels_*' -name '*.o'); do
  level=$(echo "$obj" | sed -n 's/.*_fl_kernels_\([a-z0-9]*\)_[a-z0-9]*\.dir.*/\1/p')
  bad=$(nm -C --defined-only "$obj" | awk '$2 !~ /^[trdbsn]$/' \
        | grep -v "fusedloss::isa_${level}::" \
        | grep -v "fusedloss::kernel_table_${level}()" \
        | grep -v "fusedloss::elementwise_part_${level}_[0-9]*()" \
        | grep -v "fusedloss::ctc_kernels_${level}()" \
        | grep -v "fusedloss::pairwise_kernels_${level}()" \
        | grep -v " DW.ref.__gxx_personality_v0$" || true)
  if [ -n "$bad" ]; then
    echo "$obj: symbols outside fusedloss::isa_${level}:"; echo "$bad"; status=1
  else
    echo "$obj: ok (level ${level})"
  fi
done
exit $status
