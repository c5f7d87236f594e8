// A C interface to the emulator's settings, for Python's ctypes (minicnn/emu.py) and other
// languages: schedules, the race checker's status and findings, the checker's self-tests.
// Part of the CUDA emulator (see cuda_emu.h). Functions return 0 on success, else -1 with the
// reason in `error` (NUL-terminated, truncated to `error_bytes`).
#pragma once

#include <cstring>
#include <exception>
#include <string>

#include "selftest.h"

#define MINICNN_EMU_CAPI extern "C" inline __attribute__((used, visibility("default")))

namespace minicnn_emu::detail {
inline int copy_text(const std::string& text, char* out, size_t bytes) {
  if (out != nullptr && bytes > 0) {
    size_t n = std::min(text.size(), bytes - 1);
    std::memcpy(out, text.data(), n);
    out[n] = '\0';
  }
  return static_cast<int>(text.size());
}
template <class Body>
int guarded(char* error, size_t error_bytes, Body body) {
  try {
    body();
    return 0;
  } catch (const std::exception& ex) {
    copy_text(ex.what(), error, error_bytes);
    return -1;
  }
}
}  // namespace minicnn_emu::detail

// spec: "threads=forward|reverse|random blocks=forward|reverse|random seed=N" (items optional,
// applied to the current schedule); workers: OS threads for blocks (<= 0: unchanged).
MINICNN_EMU_CAPI int minicnn_emu_set_schedule(const char* spec, int workers, char* error,
                                              size_t error_bytes) {
  using namespace minicnn_emu;
  return detail::guarded(error, error_bytes, [&] {
    Schedule s = detail::parse_schedule(spec ? spec : "", get_schedule());
    if (workers > 0) s.workers = workers;
    set_schedule(s);
  });
}

// The current schedule as "threads=... blocks=... seed=... workers=..."; returns its length.
MINICNN_EMU_CAPI int minicnn_emu_get_schedule(char* out, size_t bytes) {
  return minicnn_emu::detail::copy_text(minicnn_emu::detail::describe(minicnn_emu::get_schedule()),
                                        out, bytes);
}

// 1 when this build has the race checker (MINICNN_EMU_CHECK), else 0.
MINICNN_EMU_CAPI int minicnn_emu_race_checker() {
  return minicnn_emu::detail::kRaceChecker ? 1 : 0;
}

// Runs the emulator self-test kernel `name` (selftest.h); its error, if any, in `error`.
MINICNN_EMU_CAPI int minicnn_emu_selftest(const char* name, char* error, size_t error_bytes) {
  return minicnn_emu::detail::guarded(error, error_bytes,
                                      [&] { minicnn_emu::selftest::run(name); });
}

// Race-checker reports so far (one per launch with findings): how many, and report `index`.
MINICNN_EMU_CAPI int minicnn_emu_report_count() {
#ifdef MINICNN_EMU_CHECK
  std::lock_guard<std::mutex> lock(minicnn_emu::detail::g_findings.mutex);
  return static_cast<int>(minicnn_emu::detail::g_findings.log.size());
#else
  return 0;
#endif
}
MINICNN_EMU_CAPI int minicnn_emu_report(int index, char* out, size_t bytes) {
#ifdef MINICNN_EMU_CHECK
  std::lock_guard<std::mutex> lock(minicnn_emu::detail::g_findings.mutex);
  const auto& log = minicnn_emu::detail::g_findings.log;
  if (index < 0 || index >= static_cast<int>(log.size())) return -1;
  return minicnn_emu::detail::copy_text(log[index], out, bytes);
#else
  (void)index, (void)out, (void)bytes;
  return -1;
#endif
}
