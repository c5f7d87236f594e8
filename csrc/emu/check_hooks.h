// The functions that code compiled with -fsanitize=thread calls, defined by the race checker in
// place of ThreadSanitizer's runtime (check.h). Memory accesses go to the checker; atomics are
// performed (sequentially consistent: stronger than asked is always correct); function entry/exit
// and the rest do nothing. `inline` + `used`: one definition per module, emitted even if unused
// in this translation unit.
#pragma once

#include <cstddef>
#include <cstdint>

#define MINICNN_EMU_TSAN_FN \
  extern "C" inline __attribute__((no_sanitize_thread, used, visibility("hidden")))

MINICNN_EMU_TSAN_FN void __tsan_init() {}
MINICNN_EMU_TSAN_FN void __tsan_func_entry(void*) {}
MINICNN_EMU_TSAN_FN void __tsan_func_exit() {}
MINICNN_EMU_TSAN_FN void __tsan_vptr_update(void**, void*) {}
MINICNN_EMU_TSAN_FN void __tsan_vptr_read(void**) {}

#define MINICNN_EMU_ACCESS(prefix, n, is_write)                                            \
  MINICNN_EMU_TSAN_FN void prefix##n(void* p) {                                            \
    ::minicnn_emu::detail::CheckThread& t = ::minicnn_emu::detail::t_check;                \
    if (__builtin_expect(!t.on, 1)) {                                                      \
      if (__builtin_expect(::minicnn_emu::detail::g_probe_active, 0)) t.probe_seen = true; \
      return;                                                                              \
    }                                                                                      \
    ::minicnn_emu::detail::on_access(t, p, n, is_write, __builtin_return_address(0));      \
  }
#define MINICNN_EMU_ACCESSES(n)                       \
  MINICNN_EMU_ACCESS(__tsan_read, n, false)           \
  MINICNN_EMU_ACCESS(__tsan_write, n, true)           \
  MINICNN_EMU_ACCESS(__tsan_unaligned_read, n, false) \
  MINICNN_EMU_ACCESS(__tsan_unaligned_write, n, true) \
  MINICNN_EMU_ACCESS(__tsan_volatile_read, n, false)  \
  MINICNN_EMU_ACCESS(__tsan_volatile_write, n, true)
MINICNN_EMU_ACCESSES(1)
MINICNN_EMU_ACCESSES(2)
MINICNN_EMU_ACCESSES(4)
MINICNN_EMU_ACCESSES(8)
MINICNN_EMU_ACCESSES(16)
#undef MINICNN_EMU_ACCESSES
#undef MINICNN_EMU_ACCESS

MINICNN_EMU_TSAN_FN void __tsan_read_range(void* p, size_t size) {
  ::minicnn_emu::detail::CheckThread& t = ::minicnn_emu::detail::t_check;
  if (t.on) ::minicnn_emu::detail::on_access(t, p, size, false, __builtin_return_address(0));
}
MINICNN_EMU_TSAN_FN void __tsan_write_range(void* p, size_t size) {
  ::minicnn_emu::detail::CheckThread& t = ::minicnn_emu::detail::t_check;
  if (t.on) ::minicnn_emu::detail::on_access(t, p, size, true, __builtin_return_address(0));
}

// ---- atomics: __tsan_atomicN_op(address, ..., memory order) -------------------------------------
#define MINICNN_EMU_SC __ATOMIC_SEQ_CST
// __tsan_atomicN_<op>(a, v, order) is __atomic_<builtin>(a, v): exchange and fetch_<op>.
#define MINICNN_EMU_RMW(n, T, op, builtin)                                 \
  MINICNN_EMU_TSAN_FN T __tsan_atomic##n##_##op(volatile T* a, T v, int) { \
    return __atomic_##builtin(a, v, MINICNN_EMU_SC);                       \
  }
// __tsan_atomicN_compare_exchange_{strong,weak}(a, expected, desired, order, failure order)
#define MINICNN_EMU_CAS(n, T, kind, weak)                                                      \
  MINICNN_EMU_TSAN_FN int __tsan_atomic##n##_compare_exchange_##kind(volatile T* a, T* c, T v, \
                                                                     int, int) {               \
    return __atomic_compare_exchange_n(a, c, v, weak, MINICNN_EMU_SC, MINICNN_EMU_SC);         \
  }
#define MINICNN_EMU_ATOMICS(n, T)                                                             \
  MINICNN_EMU_TSAN_FN T __tsan_atomic##n##_load(const volatile T* a, int) {                   \
    return __atomic_load_n(a, MINICNN_EMU_SC);                                                \
  }                                                                                           \
  MINICNN_EMU_TSAN_FN void __tsan_atomic##n##_store(volatile T* a, T v, int) {                \
    __atomic_store_n(a, v, MINICNN_EMU_SC);                                                   \
  }                                                                                           \
  MINICNN_EMU_RMW(n, T, exchange, exchange_n)                                                 \
  MINICNN_EMU_RMW(n, T, fetch_add, fetch_add)                                                 \
  MINICNN_EMU_RMW(n, T, fetch_sub, fetch_sub)                                                 \
  MINICNN_EMU_RMW(n, T, fetch_and, fetch_and)                                                 \
  MINICNN_EMU_RMW(n, T, fetch_or, fetch_or)                                                   \
  MINICNN_EMU_RMW(n, T, fetch_xor, fetch_xor)                                                 \
  MINICNN_EMU_RMW(n, T, fetch_nand, fetch_nand)                                               \
  MINICNN_EMU_CAS(n, T, strong, false)                                                        \
  MINICNN_EMU_CAS(n, T, weak, true)                                                           \
  MINICNN_EMU_TSAN_FN T __tsan_atomic##n##_compare_exchange_val(volatile T* a, T c, T v, int, \
                                                                int) {                        \
    __atomic_compare_exchange_n(a, &c, v, false, MINICNN_EMU_SC, MINICNN_EMU_SC);             \
    return c;                                                                                 \
  }
MINICNN_EMU_ATOMICS(8, uint8_t)
MINICNN_EMU_ATOMICS(16, uint16_t)
MINICNN_EMU_ATOMICS(32, uint32_t)
MINICNN_EMU_ATOMICS(64, uint64_t)
#undef MINICNN_EMU_ATOMICS
#undef MINICNN_EMU_CAS
#undef MINICNN_EMU_RMW
#undef MINICNN_EMU_SC

MINICNN_EMU_TSAN_FN void __tsan_atomic_thread_fence(int) {
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
MINICNN_EMU_TSAN_FN void __tsan_atomic_signal_fence(int) {
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
}
