// sliminfer-server: flags, logging, the server, and the SIGTERM/SIGINT drain (exit 0).
#include <csignal>
#include <cstdio>

#include <spdlog/spdlog.h>

#include "server/server.h"

int main(int argc, char** argv) {
  using namespace slim::server;
  // Block the shutdown signals in every thread (gRPC's and the engine's inherit this mask);
  // this thread takes them with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  slim::StatusOr<ServerOptions> options = ParseServerOptions(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "sliminfer-server: %s\n", options.status().ToString().c_str());
    return 2;
  }
  if (slim::Status s = InitLogging(options->log_format, options->log_level); !s.ok()) {
    std::fprintf(stderr, "sliminfer-server: %s\n", s.ToString().c_str());
    return 2;
  }
  slim::StatusOr<std::unique_ptr<InferenceServer>> server = InferenceServer::Start(*options);
  if (!server.ok()) {
    spdlog::error("{}", server.status().ToString());
    return 1;
  }
  if (slim::Status s = (*server)->LoadModel(); !s.ok()) {
    spdlog::error("{}", s.ToString());
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("{} received: draining (grace {:.1f} s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
               options->drain_grace_s);
  (*server)->Drain(std::chrono::milliseconds(static_cast<int64_t>(options->drain_grace_s * 1000)));
  server->reset();
  spdlog::info("exiting");
  return 0;
}
