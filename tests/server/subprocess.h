// A child process for the server tests (the real sliminfer-server, the real prometheus):
// started with fork/exec, output to a log file, signalled and reaped by pid.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace slim::server::testing {

class Subprocess {
 public:
  // stdout and stderr go to `log_path`, or stderr to `err_path` when given.
  Subprocess(const std::vector<std::string>& argv, const std::string& log_path, const std::string& err_path = "")
      : log_(log_path) {
    std::vector<char*> args;
    std::vector<std::string> copy = argv;
    for (std::string& a : copy) args.push_back(a.data());
    args.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      if (!err_path.empty()) {
        const int efd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (efd >= 0) dup2(efd, 2);
      }
      // Children must not inherit a blocked SIGTERM.
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Subprocess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  void Signal(int sig) const { kill(pid_, sig); }
  // Waits up to `timeout` for the exit; returns the wait status, or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  bool Running() {
    if (exited_) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) exited_ = true;
    return !exited_;
  }
  std::string Log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string log_;
};

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct CommandResult {
  int exit_code = -1;  // -1: did not exit in time or was killed by a signal
  std::string out, err;
};

// Runs a command to completion (up to `timeout`) and returns its exit code, stdout and stderr.
inline CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& dir,
                                std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
  static int n = 0;
  const std::string base = dir + "/cmd" + std::to_string(n++);
  CommandResult r;
  {
    Subprocess p(argv, base + ".out", base + ".err");
    const int status = p.Wait(timeout);
    if (status != -1 && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  }
  r.out = ReadFile(base + ".out");
  r.err = ReadFile(base + ".err");
  return r;
}

// A fresh temporary directory.
inline std::string TempDir(const std::string& tag) {
  std::string tmpl = "/tmp/sliminfer-" + tag + "-XXXXXX";
  char* d = mkdtemp(tmpl.data());
  return d ? std::string(d) : std::string("/tmp");
}

// The directory of this test executable (where the build puts every binary).
inline std::string BinDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

}  // namespace slim::server::testing
