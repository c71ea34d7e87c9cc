// A minimal HTTP/1.1 endpoint for Prometheus scrapes: GET /metrics returns the text exposition
// format from a render callback; anything else is 404/405. One accept thread, one request per
// connection. (prometheus-cpp's civetweb exposer pins its worker threads to 100 KiB stacks,
// which cannot hold the static TLS of a process that links cuBLASLt (94 KiB): its threads fail
// to start in the CUDA build, so the server serves /metrics itself.)
// Thread-safety: Start/destructor from one thread; the render callback runs on the accept thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "engine/core/status.h"

namespace slim::server {

class MetricsHttpServer {
 public:
  // Listens on host:port (port 0 = any free port); Unavailable when it cannot.
  static StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host, int port,
                                                            std::function<std::string()> render);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsHttpServer(int fd, int port, std::function<std::string()> render);
  void Serve();
  void Handle(int conn);

  int fd_;
  int port_;
  std::function<std::string()> render_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace slim::server
