#include "common/process_memory.h"

#include <fstream>
#include <string>

namespace tessera {
namespace {

int64_t StatusFieldBytes(const std::string& field, const char* path = "/proc/self/status") {
  std::ifstream in(path);
  std::string key;
  while (in >> key) {
    if (key == field + ":") {
      int64_t kb = 0;
      in >> kb;
      return kb * 1024;
    }
    std::getline(in, key);
  }
  return 0;
}

}  // namespace

int64_t CurrentRssBytes() { return StatusFieldBytes("VmRSS"); }
int64_t PeakRssBytes() { return StatusFieldBytes("VmHWM"); }
int64_t AvailableMemoryBytes() { return StatusFieldBytes("MemAvailable", "/proc/meminfo"); }

}  // namespace tessera
