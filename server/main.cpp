// sliminfer-server: flags, logging, the server, and the SIGTERM/SIGINT drain (exit 0; a second
// signal during the drain exits at once with 1). A signal while the model is still loading or
// warming up exits at once with 0: nothing has been admitted yet, and a load can take minutes.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <atomic>
#include <cstdio>
#include <future>
#include <thread>

#include <google/protobuf/stubs/logging.h>
#include <spdlog/spdlog.h>

#include "server/server.h"

namespace {

// Self-pipe for the signal handler: libraries start threads before main (OpenBLAS), so a
// process-directed signal may land on any thread; the handler only writes the signal number.
int g_signal_pipe[2] = {-1, -1};

extern "C" void OnSignal(int sig) {
  const unsigned char b = static_cast<unsigned char>(sig);
  const int saved = errno;
  (void)!write(g_signal_pipe[1], &b, 1);
  errno = saved;
}

// libprotobuf logs to stderr when a client's bytes do not parse (e.g. invalid UTF-8 in a string
// field): the client already gets INVALID_ARGUMENT, so such lines go to the debug log instead of
// letting any client write to the server's error output.
void ProtobufLog(google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
  if (level >= google::protobuf::LOGLEVEL_FATAL) {
    spdlog::critical("libprotobuf {}:{}: {}", file, line, message);
  } else {
    spdlog::debug("libprotobuf {}:{}: {}", file, line, message);
  }
}

int WaitForSignal() {
  unsigned char b = 0;
  for (;;) {
    const ssize_t n = read(g_signal_pipe[0], &b, 1);
    if (n == 1) return b;
    if (n < 0 && errno == EINTR) continue;
    return SIGTERM;
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace slim::server;
  if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) {
    std::perror("sliminfer-server: pipe2");
    return 1;
  }
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  slim::StatusOr<ServerOptions> options = ParseServerOptions(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "sliminfer-server: %s\n", options.status().ToString().c_str());
    return 2;
  }
  if (slim::Status s = InitLogging(options->log_format, options->log_level); !s.ok()) {
    std::fprintf(stderr, "sliminfer-server: %s\n", s.ToString().c_str());
    return 2;
  }
  google::protobuf::SetLogHandler(ProtobufLog);
  slim::StatusOr<std::unique_ptr<InferenceServer>> server = InferenceServer::Start(*options);
  if (!server.ok()) {
    spdlog::error("{}", server.status().ToString());
    return 1;
  }
  // The signal watcher: during the load a signal ends the process; after it, the first signal
  // starts the drain below and a second one ends the process.
  std::atomic<bool> loaded{false};
  std::promise<int> first_signal;
  std::thread([&loaded, &first_signal] {
    const int sig = WaitForSignal();
    if (!loaded.load()) {
      spdlog::info("{} received during model load: exiting", sig == SIGINT ? "SIGINT" : "SIGTERM");
      std::_Exit(0);
    }
    first_signal.set_value(sig);
    WaitForSignal();
    spdlog::warn("second signal: exiting without finishing the drain");
    std::_Exit(1);
  }).detach();
  if (slim::Status s = (*server)->LoadModel(); !s.ok()) {
    // Stay up: health stays NOT_SERVING and every call gets UNAVAILABLE with this reason, so
    // probes and clients see why; SIGTERM stops the process as usual.
    spdlog::error("{}; serving UNAVAILABLE until stopped", s.ToString());
    (*server)->MarkLoadFailed(s);
  }
  loaded.store(true);
  const int sig = first_signal.get_future().get();
  spdlog::info("{} received: draining (grace {:.1f} s; a second signal exits at once)",
               sig == SIGINT ? "SIGINT" : "SIGTERM", options->drain_grace_s);
  (*server)->Drain(std::chrono::milliseconds(static_cast<int64_t>(options->drain_grace_s * 1000)));
  server->reset();
  spdlog::info("exiting");
  return 0;
}
