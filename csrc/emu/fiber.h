// Fibers: stacks and the context switch that the emulator's scheduler runs CUDA threads on.
//
// Part of the CUDA emulator (see cuda_emu.h). A fiber is a stack plus a saved stack pointer. To
// switch from fiber A to fiber B we push A's callee-saved registers on A's stack, remember A's stack
// pointer, load B's stack pointer and pop the registers B pushed when it was suspended: B continues
// exactly where it stopped. Nothing is saved that the C++ compiler does not already expect a function
// call to clobber, so a switch costs a few nanoseconds (ucontext's swapcontext makes a signal-mask
// syscall and costs ~10x more; it is the fallback on machines that are not x86-64).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#if defined(__x86_64__) && !defined(MINICNN_EMU_UCONTEXT)
#define MINICNN_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

// AddressSanitizer must be told about every stack switch, or it mistakes the fiber stacks for
// stack overflows and reports garbage.
#if defined(__SANITIZE_ADDRESS__)
#define MINICNN_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MINICNN_EMU_ASAN 1
#endif
#endif
#ifdef MINICNN_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// Bytes reserved for each CUDA thread's stack (only the pages it touches are backed by memory).
#ifndef MINICNN_EMU_STACK_BYTES
#ifdef MINICNN_EMU_ASAN
#define MINICNN_EMU_STACK_BYTES (256 * 1024)  // ASan's redzones make frames larger
#else
#define MINICNN_EMU_STACK_BYTES (64 * 1024)
#endif
#endif

#ifdef MINICNN_EMU_ASM_SWITCH
// minicnn_emu_switch_stack(save_sp, load_sp)   [System V x86-64: save_sp in rdi, load_sp in rsi]
// A naked inline function: no prologue, just this assembly; the linker keeps one copy per shared
// object (also under -flto, where top-level asm would be duplicated). `noipa` stops GCC from
// analysing the body, which would make it believe that the call clobbers no registers.
#if defined(__GNUC__) && !defined(__clang__)
#define MINICNN_EMU_NOIPA noipa,
#else
#define MINICNN_EMU_NOIPA
#endif
extern "C" __attribute__((naked, noinline, MINICNN_EMU_NOIPA visibility("hidden"))) inline void
minicnn_emu_switch_stack(void** /*save_sp*/, void* /*load_sp*/) {
  asm volatile(
      "pushq %rbp\n\t"  // save the callee-saved registers on the current stack
      "pushq %rbx\n\t"
      "pushq %r12\n\t"
      "pushq %r13\n\t"
      "pushq %r14\n\t"
      "pushq %r15\n\t"
      "movq  %rsp, (%rdi)\n\t"  // *save_sp = rsp: where to resume this fiber
      "movq  %rsi, %rsp\n\t"    // rsp = load_sp: now on the other fiber's stack
      "popq  %r15\n\t"          // restore the registers it saved when it was suspended
      "popq  %r14\n\t"
      "popq  %r13\n\t"
      "popq  %r12\n\t"
      "popq  %rbx\n\t"
      "popq  %rbp\n\t"
      "ret\n\t");  // return into the other fiber's call of this function
}
#endif

namespace minicnn_emu::detail {

struct Fiber {
#ifdef MINICNN_EMU_ASM_SWITCH
  void* sp = nullptr;  // saved stack pointer while the fiber is suspended
#else
  ucontext_t context;
#endif
  // The fiber's stack: [stack_lo, stack_lo + stack_size). For the launching OS thread's own stack
  // (the "main fiber") these are learnt from ASan when needed and stay unset otherwise.
  const void* stack_lo = nullptr;
  size_t stack_size = 0;
};

// The fiber that switched to the running one; ASan reports that fiber's stack bounds to us.
inline thread_local Fiber* g_switched_from = nullptr;

// Called first thing after every switch, on the new stack.
inline void finish_switch(void* fake_stack) {
#ifdef MINICNN_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, &g_switched_from->stack_lo,
                                  &g_switched_from->stack_size);
#else
  (void)fake_stack;
#endif
}

// Suspend `from` and resume `to`. `from_is_done`: `from` will never be resumed.
inline void switch_fiber(Fiber& from, Fiber& to, bool from_is_done) {
  void* fake_stack = nullptr;
#ifdef MINICNN_EMU_ASAN
  __sanitizer_start_switch_fiber(from_is_done ? nullptr : &fake_stack, to.stack_lo, to.stack_size);
#else
  (void)from_is_done;
#endif
  g_switched_from = &from;
#ifdef MINICNN_EMU_ASM_SWITCH
  minicnn_emu_switch_stack(&from.sp, to.sp);
#else
  swapcontext(&from.context, &to.context);
#endif
  finish_switch(fake_stack);  // `from` runs again: someone switched back to it
}

// Make `fiber` start running entry() on the given stack at its first switch. entry() must call
// finish_switch(nullptr) first and must never return.
inline void prepare_fiber(Fiber& fiber, char* stack_lo, size_t stack_size, void (*entry)()) {
  fiber.stack_lo = stack_lo;
  fiber.stack_size = stack_size;
#ifdef MINICNN_EMU_ASM_SWITCH
  // The stack as minicnn_emu_switch_stack expects to find it: six registers, then the address
  // `ret` jumps to, then a null return address for entry() (so backtraces end there).
  auto* top = reinterpret_cast<uintptr_t*>(stack_lo + stack_size);  // 16-byte aligned
  top[-1] = 0;
  top[-2] = reinterpret_cast<uintptr_t>(entry);
  for (int i = 3; i <= 8; ++i) top[-i] = 0;  // rbp, rbx, r12, r13, r14, r15
  fiber.sp = top - 8;
#else
  getcontext(&fiber.context);
  fiber.context.uc_stack.ss_sp = stack_lo;
  fiber.context.uc_stack.ss_size = stack_size;
  fiber.context.uc_link = nullptr;
  makecontext(&fiber.context, entry, 0);
#endif
}

// Stacks are mapped once and reused by every later block and launch. Below each stack sits a
// PROT_NONE guard page, so a kernel that overflows its stack crashes instead of corrupting memory.
class StackPool {
 public:
  static size_t stack_bytes() {
    static const size_t bytes = round_to_page(MINICNN_EMU_STACK_BYTES);
    return bytes;
  }

  char* stack(size_t i) {  // lowest usable address of stack i
    while (stacks_.size() <= i) stacks_.push_back(map_stack());
    return stacks_[i];
  }

  // Frames abandoned after an error leave ASan's redzone marks on their stacks; clear them before
  // the stacks are reused.
  void unpoison_all() {
#ifdef MINICNN_EMU_ASAN
    for (char* lo : stacks_) __asan_unpoison_memory_region(lo, stack_bytes());
#endif
  }

 private:
  static size_t page_bytes() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
  static size_t round_to_page(size_t n) {
    return (n + page_bytes() - 1) / page_bytes() * page_bytes();
  }

  static char* map_stack() {
    size_t guard = page_bytes();
    void* p = mmap(nullptr, guard + stack_bytes(), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    mprotect(p, guard, PROT_NONE);
    return static_cast<char*>(p) + guard;
  }

  std::vector<char*> stacks_;
};

}  // namespace minicnn_emu::detail
