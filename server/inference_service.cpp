// The Inference service handlers.
#include "server/inference_service.h"

#include "server/api_key.h"
#include "server/generate_reactor.h"
#include "server/proto_parse.h"
#include "server/quote.h"

namespace slim::server {
namespace {

namespace v1 = sliminfer::v1;

// A unary reaction that finishes at once.
grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const grpc::Status& s) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(s);
  return r;
}

}  // namespace

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), s.message());
}

InferenceService::InferenceService(ServerMetrics* metrics, ServiceOptions options) : options_(std::move(options)) {
  ctx_.metrics = metrics;
  ctx_.registry = &registry_;
  ctx_.limits = options_.limits;
  ctx_.api_key = options_.api_key;
  ctx_.watchdog = &watchdog_;
  ctx_.stream_write_timeout = options_.stream_write_timeout;
  ctx_.max_chunk_bytes = options_.max_chunk_bytes;
}

void InferenceService::SetReady(const Engine* engine, Scheduler* scheduler) {
  ctx_.engine = engine;
  ctx_.scheduler = scheduler;
  const int32_t context = static_cast<int32_t>(engine->context_length());
  RequestLimits& l = ctx_.limits;
  if (l.max_prompt_tokens <= 0 || l.max_prompt_tokens > context) l.max_prompt_tokens = context;
  if (l.max_total_tokens <= 0 || l.max_total_tokens > context) l.max_total_tokens = context;
  ready_.store(true, std::memory_order_release);
}

void InferenceService::SetDraining() { draining_.store(true, std::memory_order_release); }

void InferenceService::SetLoadFailed(const Status& why) {
  if (load_failed_.load(std::memory_order_acquire)) return;
  load_error_ = why.ToString();
  load_failed_.store(true, std::memory_order_release);
}

Status InferenceService::Admissible() const {
  if (draining_.load(std::memory_order_acquire)) return UnavailableError("server is draining (shutting down)");
  if (load_failed_.load(std::memory_order_acquire)) {
    return UnavailableError("model failed to load (fix it and restart the server): " + load_error_);
  }
  if (!ready_.load(std::memory_order_acquire)) return UnavailableError("model not loaded yet");
  return OkStatus();
}

Status InferenceService::Authorized(const grpc::CallbackServerContext* ctx) const {
  if (!ctx_.api_key.empty()) {
    const auto& md = ctx->client_metadata();
    auto it = md.find("authorization");
    const std::string_view sent = it == md.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size());
    SLIM_RETURN_IF_ERROR(CheckBearer(ctx_.api_key, sent));
  }
  return Admissible();
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::Generate(grpc::CallbackServerContext* ctx,
                                                                       const grpc::ByteBuffer* request) {
  const Status admissible = Authorized(ctx);
  return new GenerateReactor(ctx_, ctx, request, admissible);
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  Status s = Authorized(ctx);
  if (!s.ok()) return Done(ctx, ToGrpc(s));
  v1::TokenizeRequest req;
  s = ParseRequest(*request, &req);
  if (!s.ok()) return Done(ctx, ToGrpc(s));
  StatusOr<std::vector<int32_t>> ids = TokenizeRequest(req, *ctx_.engine);
  if (!ids.ok()) return Done(ctx, ToGrpc(ids.status()));
  v1::TokenizeResponse out;
  out.mutable_token_ids()->Assign(ids->begin(), ids->end());
  *response = SerializeToBuffer(out);
  return Done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                         const v1::GetModelInfoRequest* /*request*/,
                                                         v1::ModelInfo* out) {
  Status s = Authorized(ctx);
  if (!s.ok()) return Done(ctx, ToGrpc(s));
  const Engine& e = *ctx_.engine;
  const ModelConfig& c = e.config();
  out->set_name(c.name);
  out->set_architecture(c.arch);
  out->set_description(e.Describe());
  out->set_device(DeviceName(e.backend()->device()));
  out->set_n_layers(c.n_layers);
  out->set_n_heads(c.n_heads);
  out->set_n_kv_heads(c.n_kv_heads);
  out->set_head_dim(c.head_dim);
  out->set_vocab_size(c.vocab_size);
  out->set_context_length(static_cast<int32_t>(e.context_length()));
  out->set_trained_context_length(c.context_length);
  out->set_kv_block_tokens(e.kv().layout().block_tokens);
  const KvCapacity kc = e.kv_capacity();
  out->set_kv_total_blocks(kc.gpu_blocks);
  out->set_kv_free_blocks(e.kv().FreeBlocks());
  out->set_kv_gpu_capacity_tokens(kc.gpu_tokens);
  out->set_kv_gpu_capacity_bytes(static_cast<int64_t>(kc.gpu_bytes));
  out->set_kv_host_capacity_tokens(kc.host_tokens);
  out->set_kv_host_capacity_bytes(static_cast<int64_t>(kc.host_bytes));
  out->set_kv_host_free_blocks(e.kv().HostFreeBlocks());
  out->set_default_pruning_schedule(e.default_pruning().ToString());
  out->set_server_pruning_mode(ctx_.limits.server_pruning == PruningMode::kDefault ? "default" : "off");
  out->set_has_chat_template(e.chat_template() != nullptr);
  out->set_max_seqs(options_.max_seqs);
  out->set_max_queue(options_.max_queue);
  out->set_max_prompt_tokens(ctx_.limits.max_prompt_tokens);
  out->set_max_total_tokens(ctx_.limits.max_total_tokens);
  out->set_default_max_tokens(ctx_.limits.default_max_tokens);
  return Done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::Abort(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
                                                  grpc::ByteBuffer* response) {
  Status s = Authorized(ctx);
  if (!s.ok()) return Done(ctx, ToGrpc(s));
  v1::AbortRequest req;
  s = ParseRequest(*request, &req);
  if (!s.ok()) return Done(ctx, ToGrpc(s));
  if (req.request_id().empty()) return Done(ctx, ToGrpc(InvalidArgumentError("request_id: is empty")));
  std::shared_ptr<GenerationTask> task = registry_.Find(req.request_id());
  if (!task) {
    return Done(ctx, ToGrpc(NotFoundError("request_id: no live request " + QuoteClientValue(req.request_id()))));
  }
  task->Cancel(Status(StatusCode::kAborted, "aborted by Abort(request_id=" + QuoteClientValue(req.request_id()) + ")"));
  ctx_.scheduler->Notify();
  *response = SerializeToBuffer(v1::AbortResponse());
  return Done(ctx, grpc::Status::OK);
}

}  // namespace slim::server
