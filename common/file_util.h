// POSIX file helpers for durable writes (adapter store, watermark vault) with
// errors that tell an operator what to fix.
//
// Thread safety: stateless functions.
#ifndef TESSERA_COMMON_FILE_UTIL_H_
#define TESSERA_COMMON_FILE_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tessera {

// `what` failed with errno `err`: the code follows the errno (ENOSPC/EDQUOT:
// ResourceExhausted, EACCES/EPERM/EROFS: PermissionDenied) and the message
// says what to do for those operator-fixable causes.
absl::Status ErrnoError(int err, const std::string& what);
absl::Status FsError(const std::error_code& ec, const std::string& what);

// Writes all of `data` at `offset`, retrying short writes and EINTR.
absl::Status PwriteAll(int fd, std::string_view data, int64_t offset, const std::string& what);

// Creates or truncates `path` with `mode`, writes `content` and fsyncs it.
absl::Status WriteFileDurably(const std::string& path, std::string_view content, mode_t mode = 0644);

// fsyncs a directory, making renames and creations inside it durable.
absl::Status FsyncDir(const std::string& dir);

// Reads path in 1 MiB chunks, handing each to consume; returns the size.
absl::StatusOr<int64_t> ReadFileInChunks(const std::string& path,
                                         const std::function<void(std::string_view)>& consume);
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace tessera

#endif  // TESSERA_COMMON_FILE_UTIL_H_
