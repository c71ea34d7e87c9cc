// InferenceServer: startup, model loading with warm-up, drain and shutdown.
#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace slim::server {

namespace {

// --max-prefill-tokens-per-step's default per backend: a step's prefill work that keeps the first
// token of a long prompt within about 10% of an unchunked prefill while bounding the gaps it
// opens in running streams (bench/serving.md, "Chunked prefill").
int64_t DefaultPrefillTokensPerStep(Device device) { return device == Device::kCpu ? 512 : 2048; }

// The contents of a PEM file named by --`flag`, which must hold a "-----BEGIN ...`kind`-----" block.
StatusOr<std::string> ReadPem(const std::string& path, const std::string& flag, const std::string& kind) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgumentError("--" + flag + ": cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string pem = ss.str();
  const size_t begin = pem.find("-----BEGIN ");
  const size_t end = begin == std::string::npos ? begin : pem.find("-----", begin + 11);
  if (end == std::string::npos || pem.substr(begin, end - begin).find(kind) == std::string::npos) {
    return InvalidArgumentError("--" + flag + ": " + path + " holds no PEM " + kind + " block");
  }
  return pem;
}

// Reflection for this server only. Linking grpc++_reflection registers its plugin for every
// ServerBuilder of the process (a static initializer); this option drops that one and adds a
// plugin of its own when asked.
class ReflectionOption final : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionOption(bool on) : on_(on) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    auto mine = std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>();
    const std::string name = mine->name();
    std::erase_if(*plugins, [&](const std::unique_ptr<grpc::ServerBuilderPlugin>& p) { return p->name() == name; });
    if (on_) plugins->push_back(std::move(mine));
  }

 private:
  bool on_;
};

}  // namespace

InferenceServer::InferenceServer(const ServerOptions& options) : options_(options) {}

StatusOr<std::unique_ptr<InferenceServer>> InferenceServer::Start(const ServerOptions& options) {
  SLIM_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<InferenceServer> s(new InferenceServer(options));
  s->metrics_ = std::make_unique<ServerMetrics>();
  ServiceOptions so;
  so.limits.max_prompt_tokens = options.max_prompt_tokens;
  so.limits.max_total_tokens = options.max_total_tokens;
  so.limits.default_max_tokens = options.default_max_tokens;
  so.limits.server_pruning = options.pruning;
  so.max_seqs = options.max_seqs;
  so.max_queue = options.max_queue;
  so.api_key = options.api_key;
  so.stream_write_timeout = std::chrono::milliseconds(static_cast<int64_t>(options.stream_write_timeout_s * 1000));
  // Below the send limit, and below gRPC clients' default 4 MiB receive limit.
  so.max_chunk_bytes = std::min<size_t>(1 << 20, static_cast<size_t>(options.max_message_bytes) / 2);
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!options.tls_cert.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    SLIM_ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(options.tls_cert, "tls-cert", "CERTIFICATE"));
    SLIM_ASSIGN_OR_RETURN(pair.private_key, ReadPem(options.tls_key, "tls-key", "PRIVATE KEY"));
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    creds = grpc::SslServerCredentials(ssl);
  }
  s->service_ = std::make_unique<InferenceService>(s->metrics_.get(), so);
  SLIM_RETURN_IF_ERROR(s->StartHttp());

  grpc::EnableDefaultHealthCheckService(true);
  // Reflection lists every method to anyone who connects: by default only on an open server.
  const bool reflection =
      options.reflection == Reflection::kOn || (options.reflection == Reflection::kAuto && options.api_key.empty());
  grpc::ServerBuilder b;
  b.SetOption(std::make_unique<ReflectionOption>(reflection));
  const std::string addr = options.host + ":" + std::to_string(options.port);
  b.AddListeningPort(addr, creds, &s->port_);
  b.RegisterService(s->service_.get());
  b.SetMaxReceiveMessageSize(options.max_message_bytes);
  b.SetMaxSendMessageSize(options.max_message_bytes);
  // A second server on a busy port must fail, not silently share it (gRPC's default).
  b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, options.keepalive_time_ms);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, options.keepalive_timeout_ms);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Accept client keepalive pings down to every 10 s without calling them abuse.
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  s->grpc_ = b.BuildAndStart();
  if (!s->grpc_ || s->port_ == 0) {
    return UnavailableError("cannot listen on " + addr +
                            (options.tls_cert.empty() ? "" : " (or gRPC refused the --tls-cert / --tls-key pair)"));
  }
  grpc::HealthCheckServiceInterface* health = s->grpc_->GetHealthCheckService();
  health->SetServingStatus(false);
  spdlog::info("listening on {}:{} (gRPC), {}{}{}{}{}", options.host, s->port_,
               s->http_ ? options.http_host + ":" + std::to_string(s->http_port()) + " (HTTP: OpenAI API, /health, /metrics)"
                        : std::string("HTTP off"),
               s->metrics_http_ ? ", " + options.metrics_host + ":" + std::to_string(s->metrics_port()) +
                                      " (/metrics, /health)"
                                : std::string(),
               options.api_key.empty() ? "" : "; API key required",
               options.tls_cert.empty() ? "" : "; gRPC over TLS", reflection ? "; reflection on" : "");
  return s;
}

Status InferenceServer::StartHttp() {
  OpenAiHttpOptions ho;
  ho.served_model_name = options_.served_model_name;
  if (ho.served_model_name.empty()) {
    // The model file's name: models/SmolLM2-135M-Instruct.Q4_1.gguf -> SmolLM2-135M-Instruct.Q4_1.
    const std::string& model = options_.engine.model;
    std::string name = model.substr(model.find_last_of('/') + 1);
    if (name.ends_with(".gguf")) name.resize(name.size() - 5);
    ho.served_model_name = name.empty() ? model : name;
  }
  ho.max_body_bytes = static_cast<size_t>(options_.http_max_body_bytes);
  http_api_ = std::make_unique<OpenAiHttpApi>(service_.get(), metrics_.get(), ho);
  HttpListenerOptions lo;
  lo.max_connections = options_.http_max_connections;
  lo.read_timeout = std::chrono::milliseconds(static_cast<int64_t>(options_.http_read_timeout_s * 1000));
  lo.idle_timeout = std::chrono::milliseconds(static_cast<int64_t>(options_.http_idle_timeout_s * 1000));
  lo.write_timeout = std::chrono::milliseconds(static_cast<int64_t>(options_.http_write_timeout_s * 1000));
  lo.max_body_bytes = static_cast<size_t>(options_.http_max_body_bytes);
  if (options_.http_port >= 0) {
    lo.host = options_.http_host;
    lo.port = options_.http_port;
    lo.name = "http";
    SLIM_ASSIGN_OR_RETURN(http_, HttpListener::Start(lo, [this](httplib::Server& s) { http_api_->AddRoutes(s); }));
  }
  if (options_.metrics_port >= 0) {
    lo.host = options_.metrics_host;
    lo.port = options_.metrics_port;
    lo.name = "metrics";
    SLIM_ASSIGN_OR_RETURN(metrics_http_,
                          HttpListener::Start(lo, [this](httplib::Server& s) { http_api_->AddMetricsRoutes(s); }));
  }
  return OkStatus();
}

Status InferenceServer::LoadModel() {
  EngineOptions eo = options_.engine;
  // auto: CUDA first; the CPU when there is no usable device (Unavailable), not on other errors.
  eo.backend.device = options_.device == DeviceChoice::kCpu ? Device::kCpu : Device::kCuda;
  const auto t0 = std::chrono::steady_clock::now();
  StatusOr<std::unique_ptr<Engine>> e = Engine::Create(eo);
  if (!e.ok() && options_.device == DeviceChoice::kAuto && e.status().code() == StatusCode::kUnavailable) {
    spdlog::info("no CUDA device ({}); using the CPU", e.status().ToString());
    eo.backend.device = Device::kCpu;
    e = Engine::Create(eo);
  }
  if (!e.ok()) return e.status().WithPrefix("loading " + eo.model);
  engine_ = std::move(*e);
  if (options_.warmup) {
    const auto w0 = std::chrono::steady_clock::now();
    int64_t up_to = options_.warmup_tokens;
    if (options_.max_prompt_tokens > 0) up_to = std::min<int64_t>(up_to, options_.max_prompt_tokens);
    SLIM_RETURN_IF_ERROR(engine_->WarmUp(up_to).WithPrefix("warm-up"));
    spdlog::info("warm-up done in {:.1f} s", std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count());
  }
  runner_ = std::make_unique<EngineRunner>(engine_.get());
  SchedulerOptions so;
  so.max_seqs = options_.max_seqs;
  so.max_queue = options_.max_queue;
  so.max_prefill_tokens_per_step = options_.max_prefill_tokens_per_step >= 0
                                       ? options_.max_prefill_tokens_per_step
                                       : DefaultPrefillTokensPerStep(engine_->backend()->device());
  scheduler_ = std::make_unique<Scheduler>(runner_.get(), so, &clock_, metrics_.get());
  scheduler_->Start();
  metrics_->SetSources(&engine_->kv(), scheduler_.get());
  service_->SetReady(engine_.get(), scheduler_.get());
  grpc_->GetHealthCheckService()->SetServingStatus(true);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const KvCapacity kc = engine_->kv_capacity();
  spdlog::info("model loaded in {:.1f} s: {}; KV gpu tier {} tokens per layer ({:.2f} GiB), host tier {} tokens "
               "({:.2f} GiB); SERVING",
               secs, engine_->Describe(), kc.gpu_tokens, static_cast<double>(kc.gpu_bytes) / (1 << 30), kc.host_tokens,
               static_cast<double>(kc.host_bytes) / (1 << 30));
  return OkStatus();
}

void InferenceServer::MarkLoadFailed(const Status& why) { service_->SetLoadFailed(why); }

void InferenceServer::Drain(std::chrono::milliseconds grace) {
  if (drained_) return;
  drained_ = true;
  if (!grpc_) {  // Start failed before the transport came up: nothing is in flight.
    if (scheduler_) scheduler_->Shutdown(UnavailableError("server shut down"));
    StopHttp();
    return;
  }
  grpc_->GetHealthCheckService()->SetServingStatus(false);
  service_->SetDraining();
  const auto until = std::chrono::steady_clock::now() + grace;
  if (scheduler_) {
    int64_t live = scheduler_->live();
    spdlog::info("draining: {} request(s) in flight, grace {:.1f} s", live, grace.count() / 1e3);
    while (live > 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      live = scheduler_->live();
    }
    if (live > 0) spdlog::warn("drain grace over: ending {} request(s) with UNAVAILABLE", live);
    scheduler_->Shutdown(UnavailableError("server shut down before the request finished"));
  }
  // Reactors finish their last writes; anything still open after 5 s is cancelled.
  grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc_->Wait();
  // HTTP responses of the ended requests are written by now or within the listener's grace.
  StopHttp();
  spdlog::info("drained");
}

void InferenceServer::StopHttp() {
  if (http_) http_->Stop();
  if (metrics_http_) metrics_http_->Stop();
}

InferenceServer::~InferenceServer() {
  Drain(std::chrono::milliseconds(0));
  StopHttp();
  if (metrics_) metrics_->SetSources(nullptr, nullptr);
}

}  // namespace slim::server
