// HttpListener: httplib's routing and request parsing over connection handling of our own (the
// socket stream, the keep-alive loop, the thread per connection, the lingering close).
#include "server/http_listener.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>

#include <spdlog/spdlog.h>

namespace slim::server {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Waits in slices this long, so that stop flags are seen promptly.
constexpr milliseconds kSlice{50};

// The lingering close waits at most this long for the client to finish sending.
constexpr milliseconds kLinger{1000};

int SliceMs(SteadyClock::time_point until) {
  const auto left = std::chrono::duration_cast<milliseconds>(until - SteadyClock::now());
  return static_cast<int>(std::clamp(left, milliseconds(0), kSlice).count());
}

std::string Address(const sockaddr_storage& a, int* port) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof(buf));
    *port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof(buf));
    *port = ntohs(v6->sin6_port);
  }
  return buf;
}

// TaskQueue::enqueue returns void up to cpp-httplib 0.14 and bool (accepted) after.
using EnqueueResult = decltype(std::declval<httplib::TaskQueue&>().enqueue(std::function<void()>()));

template <class R>
R Accepted() {
  if constexpr (std::is_same_v<R, bool>) return true;
}

// One thread per connection; finished threads are joined on the next connection and at shutdown.
class ConnectionThreads final : public httplib::TaskQueue {
 public:
  ~ConnectionThreads() override { shutdown(); }
  EnqueueResult enqueue(std::function<void()> fn) override {
    std::lock_guard<std::mutex> l(mu_);
    ReapLocked(false);
    auto done = std::make_shared<std::atomic<bool>>(false);
    threads_.push_back(Entry{std::thread([fn = std::move(fn), done] {
                               fn();
                               done->store(true, std::memory_order_release);
                             }),
                             done});
    return Accepted<EnqueueResult>();
  }
  void shutdown() override {
    std::lock_guard<std::mutex> l(mu_);
    ReapLocked(true);
  }

 private:
  struct Entry {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  void ReapLocked(bool all) {
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (all || it->done->load(std::memory_order_acquire)) {
        it->thread.join();
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
  }
  std::mutex mu_;
  std::list<Entry> threads_;
};

}  // namespace

class Connection;

class HttpListener::Impl final : public httplib::Server {
 public:
  explicit Impl(HttpListenerOptions o) : options(std::move(o)) {}

  const HttpListenerOptions options;
  std::atomic<bool> stopping{false};     // no new requests; reads give up
  std::atomic<bool> abandon{false};      // writes give up too
  std::atomic<bool> listen_done{false};  // the accept loop and every connection thread ended
  std::atomic<int> active{0};
  std::thread accept_thread;

  bool closed() const { return svr_sock_ == INVALID_SOCKET || stopping.load(std::memory_order_acquire); }
  // httplib listens with a backlog of 5: a burst of more connects than that is dropped by the
  // kernel and the clients retry after a second or more. listen() again sets a larger one.
  bool SetBacklog(int n) { return ::listen(svr_sock_, n) == 0; }

 private:
  // Replaces httplib's connection loop (private virtual in httplib::Server, called per accepted
  // socket on its connection thread); requests are still parsed and routed by process_request.
  bool process_and_close_socket(socket_t sock) override;
};

namespace {

thread_local Connection* tl_connection = nullptr;

}  // namespace

// The socket stream httplib reads requests from and writes responses to: buffered reads under
// the request's deadline, complete writes under the write timeout, no SIGPIPE.
class Connection final : public httplib::Stream {
 public:
  Connection(int fd, const HttpListener::Impl* owner) : fd_(fd), owner_(owner) {
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));  // one SSE event = one segment, now
  }

  // Waits up to the idle timeout for the first byte of the next request.
  bool WaitForRequest() {
    if (off_ < len_) return true;
    const auto until = SteadyClock::now() + owner_->options.idle_timeout;
    while (!owner_->closed()) {
      pollfd p{fd_, POLLIN, 0};
      const int r = poll(&p, 1, SliceMs(until));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return false;
      if (SteadyClock::now() >= until) return false;
    }
    return false;
  }
  void BeginRequest() { deadline_ = SteadyClock::now() + owner_->options.read_timeout; }

  // Whether the peer is still connected (no error, hang-up or end of its sending side).
  bool Alive() const {
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) < 0) return errno == EINTR;
    if (p.revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)) return false;
    if (p.revents & POLLIN) {
      char c;
      const ssize_t n = recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0) return false;
    }
    return true;
  }

  bool is_readable() const override { return off_ < len_ || WaitReadable(); }
  bool is_writable() const override { return !owner_->abandon.load(std::memory_order_acquire) && Alive(); }

  ssize_t read(char* ptr, size_t size) override {
    if (off_ >= len_) {
      if (!WaitReadable()) return -1;
      ssize_t n;
      do n = recv(fd_, buf_, sizeof(buf_), 0);
      while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      off_ = 0;
      len_ = static_cast<size_t>(n);
    }
    const size_t k = std::min(size, len_ - off_);
    std::memcpy(ptr, buf_ + off_, k);
    off_ += k;
    return static_cast<ssize_t>(k);
  }

  ssize_t write(const char* ptr, size_t size) override {
    const auto until = SteadyClock::now() + owner_->options.write_timeout;
    size_t done = 0;
    while (done < size) {
      const ssize_t w = send(fd_, ptr + done, size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) {
        done += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
      if (!WaitWritable(until)) return -1;
    }
    return static_cast<ssize_t>(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof(a);
    port = 0;
    if (getpeername(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) ip = Address(a, &port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof(a);
    port = 0;
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) ip = Address(a, &port);
  }
  socket_t socket() const override { return fd_; }

 private:
  bool WaitReadable() const {
    while (!owner_->stopping.load(std::memory_order_acquire)) {
      pollfd p{fd_, POLLIN, 0};
      const int r = poll(&p, 1, SliceMs(deadline_));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return false;
      if (SteadyClock::now() >= deadline_) return false;
    }
    return false;
  }
  bool WaitWritable(SteadyClock::time_point until) const {
    while (!owner_->abandon.load(std::memory_order_acquire)) {
      pollfd p{fd_, POLLOUT, 0};
      const int r = poll(&p, 1, SliceMs(until));
      if (r > 0) return (p.revents & (POLLERR | POLLHUP | POLLNVAL)) == 0;
      if (r < 0 && errno != EINTR) return false;
      if (SteadyClock::now() >= until) return false;
    }
    return false;
  }

  const int fd_;
  const HttpListener::Impl* owner_;
  SteadyClock::time_point deadline_ = SteadyClock::now();
  char buf_[4096];
  size_t off_ = 0, len_ = 0;
};

namespace {

// Stops sending, reads what the client still sends (up to kLinger), then closes: closing with
// unread input would reset the connection and could destroy a response the client has not read.
void LingeringClose(int fd) {
  ::shutdown(fd, SHUT_WR);
  const auto until = SteadyClock::now() + kLinger;
  char sink[4096];
  while (SteadyClock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    const int r = poll(&p, 1, SliceMs(until));
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    const ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;
  }
  ::close(fd);
}

}  // namespace

bool HttpListener::Impl::process_and_close_socket(socket_t sock) {
  Connection conn(sock, this);
  if (active.fetch_add(1) >= options.max_connections) {
    static const std::string kBody =
        R"({"error":{"message":"too many open connections","type":"server_error","param":null,"code":"unavailable"}})";
    const std::string head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: " +
                             std::to_string(kBody.size()) + "\r\nConnection: close\r\n\r\n";
    conn.write(head.data(), head.size());
    conn.write(kBody.data(), kBody.size());
  } else {
    tl_connection = &conn;
    size_t left = options.max_requests_per_connection;
    while (left > 0 && conn.WaitForRequest()) {
      conn.BeginRequest();
      bool connection_closed = false;
      const bool ok = process_request(conn, left == 1 || closed(), connection_closed, nullptr);
      if (!ok || connection_closed) break;
      --left;
    }
    tl_connection = nullptr;
  }
  active.fetch_sub(1);
  LingeringClose(sock);
  return true;
}

HttpListener::HttpListener(std::unique_ptr<Impl> impl, int port) : impl_(std::move(impl)), port_(port) {}

StatusOr<std::unique_ptr<HttpListener>> HttpListener::Start(const HttpListenerOptions& options,
                                                            const std::function<void(httplib::Server&)>& routes) {
  auto impl = std::make_unique<Impl>(options);
  impl->new_task_queue = [] { return new ConnectionThreads(); };
  impl->set_payload_max_length(options.max_body_bytes);
  impl->set_read_timeout(options.read_timeout);    // SO_RCVTIMEO of accepted sockets
  impl->set_write_timeout(options.write_timeout);  // SO_SNDTIMEO
  impl->set_tcp_nodelay(true);
  // Only for the Keep-Alive response header: the connection loop here enforces both.
  impl->set_keep_alive_max_count(options.max_requests_per_connection);
  impl->set_keep_alive_timeout(std::max<time_t>(1, std::chrono::duration_cast<std::chrono::seconds>(options.idle_timeout).count()));
  // SO_REUSEADDR only: a second server on a busy port must fail rather than share it.
  impl->set_socket_options([](socket_t s) {
    const int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  });
  routes(*impl);
  int port = options.port;
  if (port == 0) {
    port = impl->bind_to_any_port(options.host);
  } else if (!impl->bind_to_port(options.host, port)) {
    port = -1;
  }
  if (port <= 0) {
    return UnavailableError("cannot listen on " + options.host + ":" + std::to_string(options.port) + " (" +
                            options.name + ")");
  }
  if (!impl->SetBacklog(std::clamp(options.max_connections, 128, 4096))) {
    return UnavailableError("cannot listen on " + options.host + ":" + std::to_string(port) + " (" + options.name +
                            "): listen: " + std::strerror(errno));
  }
  Impl* p = impl.get();
  p->accept_thread = std::thread([p] {
    p->listen_after_bind();
    p->listen_done.store(true, std::memory_order_release);
  });
  // Stop() before the accept loop runs would be lost (httplib's stop() needs it running).
  while (!p->is_running() && !p->listen_done.load(std::memory_order_acquire)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::unique_ptr<HttpListener>(new HttpListener(std::move(impl), port));
}

void HttpListener::Stop(std::chrono::milliseconds grace) {
  if (stopped_) return;
  stopped_ = true;
  impl_->stopping.store(true, std::memory_order_release);
  impl_->stop();  // closes the listening socket: the accept loop ends and joins the connections
  const auto until = SteadyClock::now() + grace;
  while (!impl_->listen_done.load(std::memory_order_acquire) && SteadyClock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!impl_->listen_done.load(std::memory_order_acquire)) {
    spdlog::warn("{}: abandoning {} connection(s) still writing", impl_->options.name, impl_->active.load());
  }
  impl_->abandon.store(true, std::memory_order_release);
  if (impl_->accept_thread.joinable()) impl_->accept_thread.join();
}

HttpListener::~HttpListener() { Stop(); }

bool HttpListener::PeerConnected() { return tl_connection != nullptr && tl_connection->Alive(); }

}  // namespace slim::server
