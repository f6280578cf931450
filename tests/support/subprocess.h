// Child processes for integration tests: the real tessera binaries.
#ifndef TESSERA_TESTS_SUPPORT_SUBPROCESS_H_
#define TESSERA_TESTS_SUPPORT_SUBPROCESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace tessera::testing {

// Path of a built binary, e.g. BinaryPath("server/tessera-server").
std::string BinaryPath(const std::string& relative);

class Subprocess {
 public:
  // Starts argv[0] with stdout and stderr appended to log_path.
  static std::unique_ptr<Subprocess> Start(const std::vector<std::string>& argv, const std::string& log_path);
  ~Subprocess();  // SIGKILL if still running

  // Exit code once the process ends within timeout; -signal if it was killed
  // by a signal; nullopt if it is still running.
  std::optional<int> Wait(absl::Duration timeout);
  bool Running();
  void Signal(int sig);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

struct CommandResult {
  int exit_code = -1;  // -signal when killed by a signal; -1000 on timeout
  std::string output;  // stdout and stderr together
};

// Runs a command to completion (killed after timeout).
CommandResult RunCommand(const std::vector<std::string>& argv, absl::Duration timeout = absl::Seconds(60));

// A tessera-server on 127.0.0.1 with ephemeral gRPC, HTTP API and metrics ports, fp32
// weights, and --insecure-no-auth unless extra_flags has --tenants.
class ServerProcess {
 public:
  // Starts and waits until the port files appear (or the process exits).
  static std::unique_ptr<ServerProcess> Start(const std::string& model_dir,
                                              const std::vector<std::string>& extra_flags = {});
  ~ServerProcess();
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int metrics_port() const { return metrics_port_; }
  int http_port() const { return http_port_; }
  Subprocess& process() { return *process_; }
  std::string Log() const;

 private:
  std::string dir_;
  int port_ = 0;
  int metrics_port_ = 0;
  int http_port_ = 0;
  std::unique_ptr<Subprocess> process_;
};

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_SUPPORT_SUBPROCESS_H_
