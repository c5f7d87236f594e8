// The race checker's findings and how they are told: kernel, block, thread, address, and the source
// line of both accesses (instruction addresses turned into file:line by addr2line, GNU binutils).
// Part of the race checker (check.h).
#pragma once

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace minicnn_emu::detail {

// One access as the shadow memory remembers it (32 bytes). Trivial types (no member initialisers):
// the checker builds them inside its hooks, where an out-of-line constructor would be instrumented.
struct Access {
  uintptr_t pc;     // the instruction (or, for atomics, the call)
  uint32_t launch;  // 0: no access
  uint32_t block;   // linear block index
  uint32_t epoch;   // the block's barrier interval
  uint32_t clock;   // the thread's own warp clock
  uint16_t tid;     // linear thread index in the block
  bool write;
  bool atomic;
};

enum class FindingKind : uint8_t { kRace, kUninitialised };
enum class Unordered : uint8_t { kNo, kBlocks, kBarrier, kWarp };  // why two accesses are unordered

struct Finding {
  FindingKind kind;
  Unordered why;
  bool shared;
  uintptr_t address;
  Access now, before;
};

inline bool g_probe_active = false;  // the start-up self-test is running (check_runtime.h)

// ---- collecting: one launch at a time -------------------------------------------------------------
constexpr size_t kMaxFindingsShown = 8;
struct Findings {
  std::mutex mutex;
  std::vector<Finding> shown;  // the first few distinct ones of this launch
  std::set<std::tuple<int, uintptr_t, uintptr_t>> seen;
  uint64_t count = 0;            // distinct (kind, both instructions) in this launch
  uint64_t total = 0;            // over the process
  std::vector<std::string> log;  // every launch's report, for minicnn.emu.reports()
};
inline Findings g_findings;

inline void begin_findings() {
  std::lock_guard<std::mutex> lock(g_findings.mutex);
  g_findings.shown.clear();
  g_findings.seen.clear();
  g_findings.count = 0;
}

__attribute__((no_sanitize_thread)) inline void add_finding(const Finding& f) {
  std::lock_guard<std::mutex> lock(g_findings.mutex);
  if (!g_findings.seen.emplace(int(f.kind), f.now.pc, f.before.pc).second) return;
  ++g_findings.count;
  if (g_findings.shown.size() < kMaxFindingsShown) g_findings.shown.push_back(f);
}

// ---- source lines ------------------------------------------------------------------------------
inline bool on_path(const char* program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (size_t at = 0; at <= dirs.size();) {
    size_t end = dirs.find(':', at);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(at, end - at) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return true;
    at = end + 1;
  }
  return false;
}

inline void require_addr2line() {
  if (!on_path("addr2line")) {
    throw std::runtime_error(
        "race checker: addr2line (GNU binutils) is not on PATH; the checker needs it to "
        "name source lines (apt-get install binutils)");
  }
}

inline std::string short_path(std::string path) {
  for (size_t up; (up = path.find("/../")) != std::string::npos;) {  // "a/b/../c" -> "a/c"
    size_t parent = path.rfind('/', up == 0 ? 0 : up - 1);
    path.erase(parent == std::string::npos ? 0 : parent,
               up + 3 - (parent == std::string::npos ? 0 : parent));
  }
  size_t at = path.rfind("csrc/");
  if (at == std::string::npos) at = path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1;
  return path.substr(at);
}

inline std::string short_function(
    std::string f) {  // "ns::kernel<float, 3>(float*, int)" -> "kernel"
  f = f.substr(0, f.find('('));
  std::string flat;
  int depth = 0;
  for (char ch : f) {
    depth += ch == '<' ? 1 : ch == '>' ? -1 : 0;
    if (depth == 0 && ch != '>') flat += ch;
  }
  size_t colon = flat.rfind("::");
  return colon == std::string::npos ? flat : flat.substr(colon + 2);
}

// "csrc/kernels/common.cuh:57 (block_sum, inlined in batch_norm_backward_kernel)" for an instruction.
inline std::string source_line(uintptr_t pc) {
  static std::map<uintptr_t, std::string> cache;
  if (auto it = cache.find(pc); it != cache.end()) return it->second;
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%zx", size_t(pc));
  std::string text = std::string("pc ") + hex;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(pc), &info) && info.dli_fname) {
    auto* header = static_cast<const ElfW(Ehdr)*>(info.dli_fbase);
    uintptr_t at =
        pc - 1 - (header->e_type == ET_EXEC ? 0 : reinterpret_cast<uintptr_t>(info.dli_fbase));
    std::snprintf(hex, sizeof hex, "0x%zx", size_t(at));
    std::string command =
        std::string("addr2line -C -f -i -e '") + info.dli_fname + "' " + hex + " 2>/dev/null";
    std::vector<std::string> lines;
    if (FILE* pipe = popen(command.c_str(), "r")) {
      char buf[4096];
      while (std::fgets(buf, sizeof buf, pipe)) lines.emplace_back(buf, std::strcspn(buf, "\n"));
      pclose(pipe);
    }
    if (lines.size() >= 2 && lines[1].rfind("??", 0) != 0) {
      std::string line = short_path(lines[1].substr(0, lines[1].find(" (discriminator")));
      text = line + " (" + short_function(lines[0]);
      if (lines.size() >= 4) text += ", inlined in " + short_function(lines[lines.size() - 2]);
      text += ")";
    }
  }
  return cache[pc] = text;
}

// ---- telling ------------------------------------------------------------------------------------
inline std::string dims3(uint32_t linear, dim3 d) {
  return "(" + std::to_string(linear % d.x) + "," + std::to_string(linear / d.x % d.y) + "," +
         std::to_string(linear / (d.x * d.y)) + ")";
}

inline std::string access_text(const Access& a, const Launch& l) {
  std::string what = a.atomic ? "atomic" : a.write ? "write" : "read";
  return what + " by block " + dims3(a.block, l.grid) + " thread " + dims3(a.tid, l.block) +
         " at " + source_line(a.pc);
}

inline std::string finding_text(const Finding& f, const Launch& l) {
  char address[32];
  std::snprintf(address, sizeof address, "0x%zx", size_t(f.address));
  std::string memory = std::string(f.shared ? "shared" : "global") + " memory " + address;
  if (f.kind == FindingKind::kUninitialised) {
    return "uninitialised read of " + memory + ": " + access_text(f.now, l) +
           "; no thread of this block wrote it before";
  }
  const char* why = f.why == Unordered::kBlocks ? "different blocks of one launch are unordered"
                    : f.why == Unordered::kBarrier
                        ? "same barrier interval, no __syncthreads() between them"
                        : "same warp, no __syncwarp() between them";
  return "race on " + memory + ": " + access_text(f.now, l) + " and " + access_text(f.before, l) +
         " (" + why + ")";
}

// The report of the launch that just ran ("" when clean); also kept for minicnn.emu.reports().
inline std::string end_findings(const Launch& l) {
  std::lock_guard<std::mutex> lock(g_findings.mutex);
  if (g_findings.count == 0) return "";
  g_findings.total += g_findings.count;
  std::string text = "kernel " + std::string(l.kernel_name) +
                     ": race checker: " + std::to_string(g_findings.count) +
                     " finding(s) [schedule " + describe(l.schedule) + "]";
  for (const Finding& f : g_findings.shown) text += "\n  " + finding_text(f, l);
  if (g_findings.count > g_findings.shown.size()) text += "\n  ...";
  g_findings.log.push_back(text);
  return text;
}

}  // namespace minicnn_emu::detail
