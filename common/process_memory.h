// Resident memory of this process, from /proc/self/status (Linux).
#ifndef TESSERA_COMMON_PROCESS_MEMORY_H_
#define TESSERA_COMMON_PROCESS_MEMORY_H_

#include <cstdint>

namespace tessera {

// Current resident set size in bytes (VmRSS); 0 when unknown.
int64_t CurrentRssBytes();
// Peak resident set size since start in bytes (VmHWM); 0 when unknown.
int64_t PeakRssBytes();
// Memory the system can give new allocations (MemAvailable); 0 when unknown.
int64_t AvailableMemoryBytes();

}  // namespace tessera

#endif  // TESSERA_COMMON_PROCESS_MEMORY_H_
