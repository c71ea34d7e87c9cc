// An HTTP/1.1 listener on cpp-httplib whose connection handling a slow or idle client cannot use
// to stall the others: one thread per connection up to a cap (past it a connection gets 503 at
// once), a whole-request read deadline (a request's head and body must arrive within
// read_timeout of its first byte, however slowly they trickle), a keep-alive idle timeout and
// request cap, a write timeout, and a lingering close, so a client still sending a refused body
// reads the error instead of a reset. Routes are plain httplib handlers; a handler may ask
// whether its client is still there (PeerConnected).
// Connection threads have default stacks: prometheus-cpp's civetweb exposer is not used because
// its 100 KiB worker stacks cannot hold the static TLS of a process that links cuBLASLt.
// Thread-safety: Start and Stop from one controlling thread; handlers run on connection threads;
// PeerConnected from a handler's own thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "engine/core/status.h"

namespace httplib {
class Server;
}

namespace slim::server {

class Connection;

struct HttpListenerOptions {
  std::string host = "0.0.0.0";
  int port = 8000;                                   // 0 = any free port
  int max_connections = 256;                         // open at once; more get 503 and are closed
  std::chrono::milliseconds read_timeout{10000};     // a whole request (head and body)
  std::chrono::milliseconds idle_timeout{5000};      // keep-alive: wait for the next request
  std::chrono::milliseconds write_timeout{30000};    // one write blocked this long: the client is gone
  size_t max_requests_per_connection = 1000;
  size_t max_body_bytes = 16 << 20;                  // larger bodies get 413
  std::string name = "http";                         // for log lines
};

class HttpListener {
 public:
  // Binds host:port, lets `routes` register handlers on the httplib server, and starts
  // accepting on a thread of its own. UNAVAILABLE when the port cannot be bound.
  static StatusOr<std::unique_ptr<HttpListener>> Start(const HttpListenerOptions& options,
                                                       const std::function<void(httplib::Server&)>& routes);
  ~HttpListener();  // Stop()
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  int port() const { return port_; }

  // Stops accepting, closes idle connections and those still sending a request, gives handlers
  // up to `grace` to finish their responses (writes are then abandoned), and joins every
  // connection thread. Idempotent.
  void Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

  // On a handler's thread: false once its client has closed or broken the connection.
  static bool PeerConnected();

 private:
  class Impl;
  friend class Connection;  // the socket stream of one connection reads Impl's settings
  explicit HttpListener(std::unique_ptr<Impl> impl, int port);

  std::unique_ptr<Impl> impl_;
  int port_;
  bool stopped_ = false;
};

}  // namespace slim::server
