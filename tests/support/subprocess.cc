#include "tests/support/subprocess.h"

#include <cstdio>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace tessera::testing {

std::string BinaryPath(const std::string& relative) {
  return std::string(TESSERA_BINARY_DIR) + "/" + relative;
}

std::unique_ptr<Subprocess> Subprocess::Start(const std::vector<std::string>& argv,
                                              const std::string& log_path) {
  const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return nullptr;
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execv(args[0], args.data());
    std::_Exit(127);
  }
  ::close(fd);
  if (pid < 0) return nullptr;
  auto p = std::make_unique<Subprocess>();
  p->pid_ = pid;
  return p;
}

Subprocess::~Subprocess() {
  if (Running()) {
    ::kill(pid_, SIGKILL);
    Wait(absl::Seconds(10));
  }
}

bool Subprocess::Running() {
  if (status_) return false;
  int st = 0;
  const pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    return false;
  }
  return r == 0;
}

std::optional<int> Subprocess::Wait(absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (Running()) {
    if (absl::Now() > end) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

void Subprocess::Signal(int sig) {
  if (Running()) ::kill(pid_, sig);
}

namespace {
std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string MakeTempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "tessera-proc-XXXXXX").string();
  return ::mkdtemp(tmpl.data()) ? tmpl : "";
}
}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, absl::Duration timeout) {
  const std::string dir = MakeTempDir();
  const std::string log = dir + "/output.log";
  CommandResult result;
  {
    std::unique_ptr<Subprocess> p = Subprocess::Start(argv, log);
    if (!p) return result;
    std::optional<int> code = p->Wait(timeout);
    result.exit_code = code ? *code : -1000;
  }
  result.output = ReadAll(log);
  std::filesystem::remove_all(dir);
  return result;
}

std::unique_ptr<ServerProcess> ServerProcess::Start(const std::string& model_dir,
                                                    const std::vector<std::string>& extra_flags) {
  auto s = std::unique_ptr<ServerProcess>(new ServerProcess());
  s->dir_ = MakeTempDir();
  const std::string port_file = s->dir_ + "/port";
  std::vector<std::string> argv = {BinaryPath("server/tessera-server"),
                                   "--model",
                                   model_dir,
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--port-file",
                                   port_file,
                                   "--threads",
                                   "2",
                                   "--quantize",
                                   "none",  // tests compare with the fp32 fixtures unless they ask
                                   "--metrics-listen",
                                   "127.0.0.1:0",
                                   "--metrics-port-file",
                                   s->dir_ + "/metrics_port",
                                   "--http-listen",
                                   "127.0.0.1:0",
                                   "--http-port-file",
                                   s->dir_ + "/http_port"};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  if (std::find(extra_flags.begin(), extra_flags.end(), "--tenants") == extra_flags.end()) {
    argv.push_back("--insecure-no-auth");
  }
  s->process_ = Subprocess::Start(argv, s->dir_ + "/server.log");
  if (!s->process_) {
    ADD_FAILURE() << "cannot start " << argv[0];
    return nullptr;
  }
  const absl::Time end = absl::Now() + absl::Seconds(60);
  while (absl::Now() < end) {
    std::ifstream in(port_file);
    std::ifstream metrics_in(s->dir_ + "/metrics_port");
    std::ifstream http_in(s->dir_ + "/http_port");
    if (in >> s->port_ && s->port_ > 0 && metrics_in >> s->metrics_port_ && http_in >> s->http_port_) return s;
    if (!s->process_->Running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "tessera-server did not start:\n" << s->Log();
  return nullptr;
}

ServerProcess::~ServerProcess() {
  // A server that died on its own (a crash, a sanitizer report) explains the
  // test's failure: show the end of its log.
  if (process_ && !process_->Running()) {
    const std::string log = Log();
    std::fprintf(stderr, "tessera-server exited on its own; the end of its log:\n%s\n",
                 log.substr(log.size() > 8000 ? log.size() - 8000 : 0).c_str());
  }
  process_.reset();
  std::filesystem::remove_all(dir_);
}

std::string ServerProcess::Log() const { return ReadAll(dir_ + "/server.log"); }

}  // namespace tessera::testing
