// sliminfer-bench: engine commands that need no server — `generate` (stream a completion),
// `tokenize` (ids as JSON) and `engine` (TTFT, decode ms/token and KV bytes per prompt length).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <iostream>
#include <numeric>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client/bench/args.h"
#include "client/bench/chat_template_cmd.h"
#include "client/bench/kv_transfer.h"
#include "client/bench/quality.h"
#include "engine/engine.h"
#include "engine/gguf/gguf_file.h"
#ifdef SLIM_HAVE_GRPC_CLIENT
#include "client/bench/server_load.h"
#endif

namespace slim::bench {
namespace {

using json = nlohmann::json;

const char* kUsage = R"(usage:
  sliminfer-bench generate --model M --prompt TEXT [--chat [--chat-template FILE.jinja]] [--max-tokens N] [--temperature T]
                           [--top-k K] [--top-p P] [--seed S] [--device cpu|cuda] [--threads N]
                           [--kv-dtype auto|f32|f16|bf16] [--json]
  sliminfer-bench tokenize --model M --text TEXT [--special] [--chat] [--json]
  sliminfer-bench tokenize --model M --lines [--chat]   (JSON strings on stdin -> token counts)
  sliminfer-bench chat-template (--model M | --template-file T [--bos-token B] [--eos-token E])
                           --messages FILE.json [--no-generation-prompt]
     prints exactly the text the Jinja chat template renders for the messages ([{role, content}])
  sliminfer-bench engine   --model M [--device cpu|cuda] [--lengths 512,2048,8192] [--modes dense]
                           [--decode-tokens N] [--repeat N] [--text-file F] [--prompt-ids-dir D]
                           [--schedule LAYER:KEEP,...] [--prune-after-attention] [--threads N]
                           [--context N (up to 4x the trained context)] [--json]
                           [--profile] [--kv-dtype auto|f32|f16|bf16] [--cuda-attention auto|mma|wgmma] [--decode-kv-budget N]
                           [--cuda-gemv auto|on|off] [--cuda-gemm-tune auto|on|off] [--cuda-graphs auto|on|off] [--cuda-pdl auto|on|off]
                           [--warm-up-tokens N] [--host-kv-gib G] [--decode-detail] [--decode-kv-score means|bounds]
                           [--decode-kv-resident-layers N]
     modes: dense, pruned (the model's default schedule, or --schedule); --profile adds per-op
     device times of one more prefill and of 16 decode steps (CUDA); --warm-up-tokens runs the
     server's start-up warm-up first (GEMM tuning for prompts up to N tokens on CUDA);
     with --decode-kv-budget (or --decode-detail) one more run decodes step by step and reports
     step time, prefetch wait, bytes moved and the gpu-tier KV ("decode_tiers"); --host-kv-gib
     gives it a host tier (default none: every block stays on the first tier)
  sliminfer-bench decode-batch --model M [--device cpu|cuda] [--batches 1,8,32,64] [--contexts 4096,32768] [--profile]
                           [--steps 32] [--kv-tokens N | --gpu-memory-fraction F] [--json] [--cuda-graphs auto|on|off] [--cuda-pdl auto|on|off]
     decode step time per batch size and context against the bytes a step reads (weights + KV)
  sliminfer-bench kv-transfer [--device cuda|cpu] [--blocks 4096] [--block-kib 256] [--repeat 5]
                           [--parts copies,store,decode] [--model synthetic:llama-3.1-8b]
                           [--context-tokens 32768] [--swap-tokens 8192] [--decode-tokens 64] [--json]
                           [--background h2d,d2h,both[-contig[-queued]|-gN],...] [--profile] [--cuda-graphs auto|on|off] [--cuda-pdl auto|on|off]
     KV store copy rates (contiguous, per block, grouped, batched; each way and both ways),
     whole-sequence offload/prefetch, and decode ms/token with and without swaps running;
     --background: also beside raw 1 GiB copies of scattered blocks looping one way (-contig: one
     contiguous range each; -contig-queued: queued up front by the decoding thread, so that no
     other thread calls CUDA during the run; -gN: in N batches instead of 32); --profile: with
     those, per-op device times per token alone and beside the copies
  sliminfer-bench server   --server HOST:PORT [--concurrency C | --rate R [--seed S]] [--requests N]
                           [--prompt-tokens 256,1024] [--max-tokens M] [--pruning off|default] [--warmup N]
                           [--decode-kv-budget N (sent with each request; default: the server's)]
                           [--slo-ttft-ms 2000] [--slo-itl-ms 50] [--text-file F] [--json]
     closed loop (C streams) or open loop (Poisson arrivals at R requests/s); prompt lengths cycle
     through the list (latencies also reported per length); goodput = requests within both SLOs
     (builds with gRPC only) TTFT / inter-token / end-to-end percentiles and throughput of a server
  sliminfer-bench quality  --model M --tasks bench/quality/tasks.jsonl [--docs docs.jsonl]
                           [--schedules "name=L:K,...;name2=..."] [--include-after-attention]
                           [--max-tokens 24] [--limit N] [--out results.json] [--device cpu|cuda]
                           [--decode-budgets 512,1024,2048]   (each schedule also under these decode KV budgets)
)";

StatusOr<Device> ParseDevice(const std::string& s) {
  if (s == "cpu") return Device::kCpu;
  if (s == "cuda") return Device::kCuda;
  return InvalidArgumentError("--device must be cpu or cuda, got '" + s + "'");
}

// `min_context`: the sequence length the command needs; when --context is not given, the
// engine's limit is raised to it if the model's trained context is shorter (as llama.cpp's
// benchmarks size n_ctx to the prompt), and results say so.
StatusOr<std::unique_ptr<Engine>> MakeEngine(const Args& a, int64_t kv_tokens, int64_t min_context = 0) {
  EngineOptions o;
  o.model = a.Str("model");
  if (o.model.empty()) return InvalidArgumentError("--model is required");
  BackendOptions& bo = o.backend;
  SLIM_ASSIGN_OR_RETURN(bo.device, ParseDevice(a.Str("device", "cpu")));
  SLIM_ASSIGN_OR_RETURN(int64_t threads, a.Int("threads", 0, 0, 1024));
  bo.threads = static_cast<int>(threads);
  SLIM_ASSIGN_OR_RETURN(bo.cuda_attention, ParseAttentionKernel(a.Str("cuda-attention", "auto")));
  SLIM_ASSIGN_OR_RETURN(bo.kv_cache, ParseKvCache(a.Str("kv-dtype", "auto")));
  SLIM_ASSIGN_OR_RETURN(bo.cuda_gemv, ParseToggle("cuda GEMV mode", a.Str("cuda-gemv", "auto")));
  SLIM_ASSIGN_OR_RETURN(bo.cuda_gemm_tune, ParseToggle("cuda GEMM tuning mode", a.Str("cuda-gemm-tune", "auto")));
  SLIM_ASSIGN_OR_RETURN(bo.cuda_graphs, ParseToggle("cuda graphs mode", a.Str("cuda-graphs", "auto")));
  SLIM_ASSIGN_OR_RETURN(bo.cuda_pdl, ParseToggle("cuda PDL mode", a.Str("cuda-pdl", "auto")));
  o.kv_tokens = kv_tokens;
  o.chat_template_file = a.Str("chat-template");  // only commands that list it take it
  // Only commands that list --gpu-memory-fraction take it (the KV tier sized from the device).
  SLIM_ASSIGN_OR_RETURN(o.gpu_memory_fraction, a.Float("gpu-memory-fraction", 0.0, 0.0, 1.0));
  SLIM_ASSIGN_OR_RETURN(o.context_length, a.Int("context", 0, 0, 1 << 22));
  // Only commands that list --decode-kv-budget take it.
  SLIM_ASSIGN_OR_RETURN(o.decode_kv_budget, a.Int("decode-kv-budget", 0, 0, int64_t{1} << 32));
  // Only commands that list --host-kv-gib take it (0 = no host tier, the default here).
  SLIM_ASSIGN_OR_RETURN(o.host_kv_gib, a.Float("host-kv-gib", 0.0, 0.0, 1 << 20));
  // Only commands that list --decode-kv-score take it.
  SLIM_ASSIGN_OR_RETURN(o.decode_kv_score, ParseDecodeKvScore(a.Str("decode-kv-score", "means")));
  // Only commands that list --decode-kv-resident-layers take it.
  SLIM_ASSIGN_OR_RETURN(const int64_t resident, a.Int("decode-kv-resident-layers", o.decode_kv_resident_layers, 0, 1024));
  o.decode_kv_resident_layers = static_cast<int>(resident);
  if (!a.Has("context") && min_context > 0) {
    // Only the config is read here (GGUF metadata, or the synthetic shape), no weights.
    SLIM_ASSIGN_OR_RETURN(std::unique_ptr<WeightSource> src, OpenWeights(o.model));
    if (src->config().context_length < min_context) o.context_length = min_context;
  }
  return Engine::Create(o);
}

Status CmdGenerate(int argc, char** argv) {
  SLIM_ASSIGN_OR_RETURN(Args a, Args::Parse(argc, argv, 2,
                                            {"model", "prompt", "max-tokens", "temperature", "top-k", "top-p",
                                             "seed", "device", "threads", "repetition-penalty", "context", "kv-dtype",
                                             "chat-template"},
                                            {"chat", "json"}));
  if (!a.Has("prompt")) return InvalidArgumentError("--prompt is required");
  SLIM_ASSIGN_OR_RETURN(auto engine, MakeEngine(a, 0));
  std::vector<int32_t> ids;
  if (a.Flag("chat")) {
    SLIM_ASSIGN_OR_RETURN(ids, engine->TokenizeChat({{"user", a.Str("prompt")}}));
  } else {
    SLIM_ASSIGN_OR_RETURN(ids, engine->Tokenize(a.Str("prompt"), false));
  }
  SamplingParams sp;
  SLIM_ASSIGN_OR_RETURN(double t, a.Float("temperature", 0.0, 0.0, 100.0));
  sp.temperature = static_cast<float>(t);
  SLIM_ASSIGN_OR_RETURN(int64_t k, a.Int("top-k", 0, 0, engine->config().vocab_size));
  sp.top_k = static_cast<int32_t>(k);
  SLIM_ASSIGN_OR_RETURN(double p, a.Float("top-p", 1.0, 1e-6, 1.0));
  sp.top_p = static_cast<float>(p);
  SLIM_ASSIGN_OR_RETURN(double rp, a.Float("repetition-penalty", 1.0, 1e-3, 10.0));
  sp.repetition_penalty = static_cast<float>(rp);
  SLIM_ASSIGN_OR_RETURN(int64_t seed, a.Int("seed", 0, 0, INT64_MAX));
  sp.seed = static_cast<uint64_t>(seed);
  StopParams st;
  SLIM_ASSIGN_OR_RETURN(int64_t mt, a.Int("max-tokens", 64, 1, engine->context_length()));
  st.max_tokens = static_cast<int32_t>(mt);
  const bool as_json = a.Flag("json");
  SLIM_ASSIGN_OR_RETURN(GenerateResult r, engine->Generate(ids, sp, st, [&](const std::string& text) {
    if (!as_json) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    }
  }));
  if (as_json) {
    json j = {{"text", r.text}, {"token_ids", r.token_ids}, {"prompt_tokens", r.prompt_ids.size()},
              {"finish_reason", FinishReasonName(r.finish)}, {"ttft_ms", r.ttft_ms},
              {"decode_ms_per_token", r.decode_ms_per_token}};
    std::cout << j.dump() << "\n";
  } else {
    std::cout << std::endl;
    std::fprintf(stderr, "[%zu prompt tokens, %zu generated, finish %s, TTFT %.1f ms, decode %.2f ms/token]\n",
                 r.prompt_ids.size(), r.token_ids.size(), FinishReasonName(r.finish), r.ttft_ms,
                 r.decode_ms_per_token);
  }
  return OkStatus();
}

Status CmdTokenize(int argc, char** argv) {
  SLIM_ASSIGN_OR_RETURN(Args a, Args::Parse(argc, argv, 2, {"model", "text"}, {"json", "special", "chat", "lines"}));
  if (!a.Has("text") && !a.Flag("lines")) return InvalidArgumentError("--text (or --lines) is required");
  if (!a.Has("model")) return InvalidArgumentError("--model is required");
  // The tokenizer alone: no weights are loaded.
  SLIM_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(a.Str("model")));
  SLIM_ASSIGN_OR_RETURN(VocabData vocab, VocabFromGguf(*file));
  std::optional<ChatTemplate> chat;
  if (a.Flag("chat")) {
    SLIM_ASSIGN_OR_RETURN(chat, ChatTemplate::Create(vocab.chat_template, ChatTemplateOptionsFor(vocab)));
  }
  const bool add_bos = vocab.add_bos;
  SLIM_ASSIGN_OR_RETURN(auto tok, Tokenizer::Create(std::move(vocab)));
  auto encode = [&](const std::string& text) -> StatusOr<std::vector<int32_t>> {
    EncodeOptions eo;
    eo.add_bos = add_bos;
    eo.parse_special = a.Flag("special") || chat.has_value();
    if (chat) return EncodeChat(*tok, *chat, {{"user", text}});  // as Engine::TokenizeChat
    return tok->Encode(text, eo);
  };
  if (a.Flag("lines")) {
    // One JSON string per stdin line -> one {"n_tokens": N} per stdout line.
    std::string line;
    while (std::getline(std::cin, line)) {
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_string()) return InvalidArgumentError("--lines: each line must be a JSON string");
      SLIM_ASSIGN_OR_RETURN(std::vector<int32_t> ids, encode(j.get<std::string>()));
      std::cout << json{{"n_tokens", ids.size()}}.dump() << "\n";
    }
    return OkStatus();
  }
  SLIM_ASSIGN_OR_RETURN(std::vector<int32_t> ids, encode(a.Str("text")));
  if (a.Flag("json")) {
    std::cout << json{{"token_ids", ids}}.dump() << "\n";
  } else {
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
    std::cout << "\n";
  }
  return OkStatus();
}

// Real English text for benchmark prompts: --text-file, else the license texts every Debian
// and Ubuntu system ships.
StatusOr<std::string> BenchText(const Args& a) {
  std::vector<std::string> files;
  if (a.Has("text-file")) {
    files.push_back(a.Str("text-file"));
  } else {
    for (const char* f : {"GPL-3", "GPL-2", "LGPL-2.1", "Apache-2.0", "MPL-2.0", "GFDL-1.3", "Artistic", "LGPL-3", "BSD"})
      files.push_back(std::string("/usr/share/common-licenses/") + f);
  }
  std::string text;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      if (a.Has("text-file")) return NotFoundError("cannot read --text-file " + f);
      continue;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    text += ss.str() + "\n\n";
  }
  if (text.empty()) return NotFoundError("no benchmark text found (pass --text-file)");
  return text;
}

StatusOr<std::vector<int32_t>> ReadIdsFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError("cannot read " + path);
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return InvalidArgumentError(path + ": expected a JSON list of token ids");
  std::vector<int32_t> ids;
  for (const auto& v : j) {
    if (!v.is_number_integer()) return InvalidArgumentError(path + ": non-integer token id");
    ids.push_back(v.get<int32_t>());
  }
  return ids;
}

// Per-op times as JSON, divided by `per` (calls per token or per step); MatMul entries also get
// their achieved TFLOP/s.
json ProfileJson(const std::vector<OpTime>& ops, double per) {
  json out = json::array();
  for (const OpTime& t : ops) {
    json o = {{"op", t.op}, {"ms", t.ms / per}, {"calls", static_cast<double>(t.calls) / per}};
    long long n = 0, m = 0, k = 0;
    if ((std::sscanf(t.op.c_str(), "MatMul[%lldx%lldx%lld]", &n, &m, &k) == 3 ||
         std::sscanf(t.op.c_str(), "SwiGluMatMul[%lldx%lldx%lld]", &n, &m, &k) == 3) &&
        t.ms > 0) {
      o["tflops"] = 2.0 * double(n) * double(m) * double(k) * double(t.calls) / (t.ms * 1e-3) / 1e12;
    }
    out.push_back(std::move(o));
  }
  return out;
}

// Per-op device time (backends with timers: CUDA) of one extra prefill of `prompt` and of 16
// decode steps after it.
StatusOr<json> ProfileRun(Engine& engine, const std::vector<int32_t>& prompt, const PruningRequest& req) {
  Backend* be = engine.backend();
  const kv::SeqId seq = int64_t{1} << 40;
  be->SetProfiling(true);
  (void)be->TakeProfile();
  // Greedy sampling as in the timed runs, so the profile shows what a token costs end to end.
  Sampler sampler(SamplingParams{}, engine.config().vocab_size);
  auto pre = engine.PrefillAndSample(seq, prompt, SampleSpec{&sampler, prompt}, req);
  if (!pre.ok()) {
    be->SetProfiling(false);
    return pre.status();
  }
  const std::vector<OpTime> prefill = be->TakeProfile();
  constexpr int kSteps = 16;
  std::vector<SampleResult> sampled;
  Status s;
  for (int i = 0; i < kSteps && s.ok(); ++i) {
    DecodeItem it{seq, static_cast<int32_t>((7 + 13 * i) % engine.config().vocab_size)};
    const SampleSpec spec{&sampler, prompt};
    s = engine.DecodeAndSample({&it, 1}, {&spec, 1}, &sampled);
  }
  const std::vector<OpTime> decode = be->TakeProfile();
  be->SetProfiling(false);
  (void)engine.Release(seq);
  SLIM_RETURN_IF_ERROR(s);
  return json{{"prefill", ProfileJson(prefill, 1.0)}, {"decode_per_token", ProfileJson(decode, kSteps)}};
}

// What the decode KV budget chose between two readings of the engine's totals
// (engine/pruning/decode_selection.h), into row.
void AddSelectionStats(const DecodeSelectionStats& s0, const DecodeSelectionStats& s1, json* row) {
  const int64_t n = s1.selections - s0.selections;
  (*row)["selections"] = n;
  (*row)["kept_by_gamma"] = s1.kept_by_gamma - s0.kept_by_gamma;
  (*row)["blocks_entering_per_selection"] =
      n > 0 ? static_cast<double>(s1.blocks_swapped_in - s0.blocks_swapped_in) / static_cast<double>(n) : 0.0;
  const int64_t stored = s1.stored_block_layers - s0.stored_block_layers;
  (*row)["attended_over_stored_prompt_blocks"] =
      stored > 0 ? static_cast<double>(s1.attended_block_layers - s0.attended_block_layers) / static_cast<double>(stored)
                 : 1.0;
}

// One more prefill + greedy decode of `prompt`, step by step, reading the KV store around each
// step: decode step time, the compute stream's prefetch wait (KvStoreStats, measured on the
// device on CUDA), bytes fetched per step, the prompt's write-through to the host tier (d2h,
// issued at the end of prefill), and the sequence's gpu-tier KV after every step.
StatusOr<json> DecodeTierRun(Engine& e, std::span<const int32_t> prompt, const PruningRequest& req,
                             int64_t decode_tokens) {
  const kv::SeqId seq = 1 << 30;
  Sampler sampler(SamplingParams{}, e.config().vocab_size);
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  e.kv().Drain();  // copies of earlier runs counted before this one starts
  const kv::KvStoreStats s_start = e.kv().Stats();
  const DecodeSelectionStats sel_start = e.decode_selection_stats();
  SLIM_ASSIGN_OR_RETURN(PrefillResult p, e.PrefillAndSample(seq, prompt, SampleSpec{&sampler, history}, req));
  const kv::KvStoreStats s_pre = e.kv().Stats();
  const size_t gpu_after_prefill = e.GpuKvBytes(seq);
  std::vector<double> step_ms, wait_ms, h2d_mb;
  size_t gpu_peak = 0, gpu_last = 0;
  int32_t token = p.sampled.token;
  kv::KvStoreStats prev = s_pre;
  Status status;
  std::vector<SampleResult> next;
  for (int64_t i = 0; i < decode_tokens && status.ok(); ++i) {
    history.push_back(token);
    const DecodeItem item{seq, token};
    const SampleSpec spec{&sampler, history};
    const auto t0 = std::chrono::steady_clock::now();
    status = e.DecodeAndSample(std::span<const DecodeItem>(&item, 1), std::span<const SampleSpec>(&spec, 1), &next);
    step_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    if (!status.ok()) break;
    token = next[0].token;
    const kv::KvStoreStats now = e.kv().Stats();
    wait_ms.push_back(1e3 * (now.transfers.prefetch_stall_seconds - prev.transfers.prefetch_stall_seconds));
    h2d_mb.push_back(1e-6 * static_cast<double>(now.transfers.bytes[static_cast<int>(kv::CopyDir::kH2D)] -
                                                 prev.transfers.bytes[static_cast<int>(kv::CopyDir::kH2D)]));
    prev = now;
    gpu_last = e.GpuKvBytes(seq);
    gpu_peak = std::max(gpu_peak, gpu_last);
  }
  (void)e.Release(seq);
  SLIM_RETURN_IF_ERROR(status);
  e.kv().Drain();
  const kv::KvStoreStats s_end = e.kv().Stats();
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  const int h2d = static_cast<int>(kv::CopyDir::kH2D), d2h = static_cast<int>(kv::CopyDir::kD2H);
  const double steps = static_cast<double>(std::max<size_t>(1, step_ms.size()));
  const double step_p50 = median(step_ms), wait_p50 = median(wait_ms);
  const int64_t sel = s_end.selections - s_pre.selections;
  const DecodeSelectionStats& sel_end = e.decode_selection_stats();
  // Until the prompt's write-through has landed its blocks are not clean, so the steps keep every
  // block resident and fetch nothing; the steps from the first fetch on are the tiered steady state.
  // (Bytes are read as the copies finish, so a step's fetch may count in the next step.)
  size_t first_fetch = h2d_mb.size();
  for (size_t i = 0; i < h2d_mb.size(); ++i) {
    if (h2d_mb[i] > 0) {
      first_fetch = i;
      break;
    }
  }
  const std::vector<double> fetching_steps(step_ms.begin() + static_cast<std::ptrdiff_t>(first_fetch), step_ms.end());
  const std::vector<double> fetching_waits(wait_ms.begin() + static_cast<std::ptrdiff_t>(first_fetch), wait_ms.end());
  return json{{"steps", step_ms.size()},
              {"steps_before_first_fetch", first_fetch},
              {"fetching_step_ms_p50", median(fetching_steps)},
              {"fetching_prefetch_wait_ms_p50", median(fetching_waits)},
              {"h2d_mb_per_step", h2d_mb},
              // The engine thread's selection work (the scores' wait, the choice, the tier change)
              // and of it the wait for the scores, per step.
              {"selection_host_ms_per_step", 1e3 * (sel_end.host_seconds - sel_start.host_seconds) / steps},
              {"selection_score_wait_ms_per_step",
               1e3 * (sel_end.score_wait_seconds - sel_start.score_wait_seconds) / steps},
              {"step_ms", step_ms},
              {"step_ms_p50", step_p50},
              {"step_ms_mean", std::accumulate(step_ms.begin(), step_ms.end(), 0.0) / steps},
              {"prefetch_wait_ms_p50", wait_p50},
              {"prefetch_wait_ms_mean", std::accumulate(wait_ms.begin(), wait_ms.end(), 0.0) / steps},
              {"prefetch_wait_over_step_p50", step_p50 > 0 ? wait_p50 / step_p50 : 0.0},
              {"h2d_bytes_per_step", static_cast<double>(s_end.transfers.bytes[h2d] - s_pre.transfers.bytes[h2d]) / steps},
              {"d2h_bytes", s_end.transfers.bytes[d2h] - s_start.transfers.bytes[d2h]},
              {"prefetch_on_time", s_end.transfers.prefetch_on_time - s_pre.transfers.prefetch_on_time},
              {"prefetch_late", s_end.transfers.prefetch_late - s_pre.transfers.prefetch_late},
              {"prefetch_hit", s_end.prefetch_hit - s_pre.prefetch_hit},
              {"selections", sel},
              {"gamma_skip_rate",
               sel > 0 ? static_cast<double>(s_end.selections_kept - s_pre.selections_kept) / static_cast<double>(sel) : 0.0},
              {"gpu_kv_bytes_after_prefill", gpu_after_prefill},
              {"gpu_kv_bytes_last", gpu_last},
              {"gpu_kv_bytes_peak", gpu_peak}};
}

Status CmdEngine(int argc, char** argv) {
  SLIM_ASSIGN_OR_RETURN(Args a, Args::Parse(argc, argv, 2,
                                            {"model", "device", "lengths", "modes", "decode-tokens", "repeat",
                                             "text-file", "prompt-ids-dir", "threads", "schedule", "context",
                                             "cuda-attention", "kv-dtype", "cuda-gemv", "cuda-gemm-tune", "cuda-graphs",
                                             "cuda-pdl", "warm-up-tokens", "decode-kv-budget", "host-kv-gib",
                                             "decode-kv-score", "decode-kv-resident-layers"},
                                            {"json", "prune-after-attention", "profile", "decode-detail"}));
  SLIM_ASSIGN_OR_RETURN(std::vector<int64_t> lengths, a.IntList("lengths", "512,2048,8192"));
  const std::vector<std::string> modes = a.StrList("modes", "dense");
  for (const std::string& m : modes)
    if (m != "dense" && m != "pruned") return InvalidArgumentError("--modes: unknown mode '" + m + "' (known: dense, pruned)");
  SLIM_ASSIGN_OR_RETURN(int64_t decode_tokens, a.Int("decode-tokens", 32, 1, 4096));
  SLIM_ASSIGN_OR_RETURN(int64_t repeat, a.Int("repeat", 1, 1, 100));
  int64_t max_len = 0;
  for (int64_t l : lengths) max_len = std::max(max_len, l);
  SLIM_ASSIGN_OR_RETURN(auto engine, MakeEngine(a, max_len + decode_tokens + 64, max_len + decode_tokens + 1));
  const ModelConfig& c = engine->config();
  // A host tier is pinned in the background; the runs start once all of it is there (a
  // write-through the tier has no room for yet would leave the sequence all-resident).
  double host_pin_s = 0.0;
  if (engine->kv().HostCapacityBlocks() > 0) {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      const kv::KvStoreStats st = engine->kv().Stats();
      if (st.host.pool.total_blocks >= st.host.capacity_blocks) break;
      if (!st.host_error.empty()) return ResourceExhaustedError("--host-kv-gib: " + st.host_error);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    host_pin_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  double warm_up_s = 0.0;
  if (a.Has("warm-up-tokens")) {  // as the server's start-up does (Engine::WarmUp)
    SLIM_ASSIGN_OR_RETURN(int64_t w, a.Int("warm-up-tokens", 0, 0, engine->context_length()));
    const auto t0 = std::chrono::steady_clock::now();
    SLIM_RETURN_IF_ERROR(engine->WarmUp(w).WithPrefix("--warm-up-tokens"));
    warm_up_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  PruningRequest pruned;
  pruned.mode = PruningMode::kExplicit;
  pruned.config = engine->default_pruning();
  if (a.Has("schedule")) {
    SLIM_ASSIGN_OR_RETURN(pruned.config, PruningConfig::Parse(a.Str("schedule")));
    pruned.config.block_tokens = engine->kv().layout().block_tokens;
  }
  pruned.config.after_attention = a.Flag("prune-after-attention");
  SLIM_RETURN_IF_ERROR(pruned.config.Validate(c.n_layers));

  // One token stream long enough for every length: real text when the model has a tokenizer,
  // seeded random ids for synthetic weights.
  std::vector<int32_t> stream;
  if (engine->tokenizer() && !a.Has("prompt-ids-dir")) {
    SLIM_ASSIGN_OR_RETURN(std::string text, BenchText(a));
    SLIM_ASSIGN_OR_RETURN(stream, engine->Tokenize(text, false));
    const size_t base = stream.size();
    while (static_cast<int64_t>(stream.size()) < max_len) stream.insert(stream.end(), stream.begin(), stream.begin() + base);
  } else if (!a.Has("prompt-ids-dir")) {
    uint64_t x = 42;
    for (int64_t i = 0; i < max_len; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      stream.push_back(static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(c.vocab_size)));
    }
  }
  json rows = json::array();
  for (int64_t len : lengths) {
    if (len + decode_tokens + 1 > engine->context_length()) {
      return InvalidArgumentError("--lengths: " + std::to_string(len) + " + " + std::to_string(decode_tokens) +
                                  " decode tokens exceeds the context length " +
                                  std::to_string(engine->context_length()) + " (raise it with --context)");
    }
    std::vector<int32_t> prompt;
    if (a.Has("prompt-ids-dir")) {
      SLIM_ASSIGN_OR_RETURN(prompt, ReadIdsFile(a.Str("prompt-ids-dir") + "/prompt_" + std::to_string(len) + ".json"));
      if (static_cast<int64_t>(prompt.size()) != len) return InvalidArgumentError("prompt file length mismatch");
    } else {
      prompt.assign(stream.begin(), stream.begin() + len);
    }
    for (const std::string& mode : modes) {
      std::vector<double> ttft, decode;
      size_t kv_bytes = 0;
      PruningSummary summary;
      const PruningRequest req = mode == "pruned" ? pruned : PruningRequest{};
      const DecodeSelectionStats sel0 = engine->decode_selection_stats();
      for (int64_t r = 0; r < repeat; ++r) {
        SamplingParams sp;  // greedy
        StopParams st;
        st.max_tokens = static_cast<int32_t>(decode_tokens + 1);
        st.ignore_eos = true;
        SLIM_ASSIGN_OR_RETURN(GenerateResult g, engine->Generate(prompt, sp, st, nullptr, -1, req));
        summary = g.pruning;
        ttft.push_back(g.ttft_ms);
        decode.push_back(g.decode_ms_per_token);
        kv_bytes = g.kv_bytes;
        if (!a.Flag("json")) {
          std::fprintf(stderr, "%s len=%lld ttft=%.1f ms decode=%.2f ms/token\n", mode.c_str(),
                       static_cast<long long>(len), g.ttft_ms, g.decode_ms_per_token);
        }
      }
      json kept = json::array();
      for (const auto& st : summary.stages) kept.push_back({{"layer", st.layer}, {"tokens", st.tokens_kept}});
      std::sort(ttft.begin(), ttft.end());
      std::sort(decode.begin(), decode.end());
      json row = {{"mode", mode}, {"prompt_tokens", len}, {"ttft_ms", ttft[ttft.size() / 2]},
                  {"decode_ms_per_token", decode[decode.size() / 2]}, {"decode_tokens", decode_tokens},
                  {"kv_bytes", kv_bytes}, {"dense_kv_bytes", summary.dense_kv_bytes}, {"kept_tokens", kept},
                      {"past_trained_context", len + decode_tokens > c.context_length},
                  {"schedule", mode == "pruned" ? pruned.config.ToString() : ""}};
      if (engine->default_decode_kv_budget() > 0) {
        AddSelectionStats(sel0, engine->decode_selection_stats(), &row);
        row["decode_kv_budget"] = engine->default_decode_kv_budget();
      }
      if (engine->default_decode_kv_budget() > 0 || a.Flag("decode-detail")) {
        SLIM_ASSIGN_OR_RETURN(row["decode_tiers"], DecodeTierRun(*engine, prompt, req, decode_tokens));
      }
      if (a.Flag("profile")) {
        SLIM_ASSIGN_OR_RETURN(json prof, ProfileRun(*engine, prompt, req));
        row["profile"] = std::move(prof);
      }
      rows.push_back(std::move(row));
    }
  }
  json out = {{"engine", engine->Describe()}, {"model", c.name}, {"device", a.Str("device", "cpu")},
              {"repeat", repeat}, {"results", rows}};
  if (engine->kv().HostCapacityBlocks() > 0) {
    out["host_kv_bytes"] = engine->kv_capacity().host_bytes;
    out["host_pin_wait_s"] = host_pin_s;
  }
  if (a.Has("warm-up-tokens")) {
    out["warm_up_tokens"] = a.Str("warm-up-tokens");
    out["warm_up_s"] = warm_up_s;
  }
  std::cout << out.dump(a.Flag("json") ? -1 : 2) << "\n";
  return OkStatus();
}

// Decode step time at several batch sizes and context lengths against the bytes a step must
// read: the weights (less the embedding table when the LM head is its own matrix: decode reads
// one row of it per sequence) and every sequence's KV at every layer.
Status CmdDecodeBatch(int argc, char** argv) {
  SLIM_ASSIGN_OR_RETURN(Args a, Args::Parse(argc, argv, 2,
                                            {"model", "device", "batches", "contexts", "steps", "kv-tokens", "threads",
                                             "context", "kv-dtype", "cuda-attention", "cuda-gemv", "cuda-gemm-tune",
                                             "cuda-graphs", "cuda-pdl", "gpu-memory-fraction"},
                                            {"json", "profile"}));
  SLIM_ASSIGN_OR_RETURN(std::vector<int64_t> batches, a.IntList("batches", "1,8,32,64"));
  SLIM_ASSIGN_OR_RETURN(std::vector<int64_t> contexts, a.IntList("contexts", "4096,32768"));
  SLIM_ASSIGN_OR_RETURN(int64_t steps, a.Int("steps", 32, 1, 4096));
  SLIM_ASSIGN_OR_RETURN(int64_t kv_tokens, a.Int("kv-tokens", 0, 0, int64_t{1} << 40));
  int64_t max_ctx = 0, max_batch = 0;
  for (int64_t c : contexts) max_ctx = std::max(max_ctx, c);
  for (int64_t b : batches) max_batch = std::max(max_batch, b);
  if (max_ctx < 1 || max_batch < 1) return InvalidArgumentError("--batches and --contexts must be positive");
  const int64_t per_seq = max_ctx + steps * static_cast<int64_t>(batches.size()) + 64;
  // Without --kv-tokens: KV for the largest batch at the longest context, or with
  // --gpu-memory-fraction the device's free memory (combinations that do not fit are skipped).
  const bool by_fraction = a.Has("gpu-memory-fraction");
  SLIM_ASSIGN_OR_RETURN(auto engine, MakeEngine(a, kv_tokens > 0 ? kv_tokens : by_fraction ? 0 : max_batch * per_seq, per_seq));
  const ModelConfig& c = engine->config();
  const kv::KvLayout& L = engine->kv().layout();
  const size_t embd = c.tied_embeddings ? 0
                                        : static_cast<size_t>(c.vocab_size) * static_cast<size_t>(c.d_model) *
                                              (engine->backend()->device() == Device::kCpu ? 4 : 2);
  const double weight_read = static_cast<double>(engine->weight_bytes() - embd);
  json rows = json::array();
  kv::SeqId next = 1;
  for (int64_t ctx : contexts) {
    // The largest batch that fits this context; smaller batches use its first sequences.
    SLIM_ASSIGN_OR_RETURN(const int64_t seq_blocks,
                          engine->PrefillBlocks(ctx + steps * static_cast<int64_t>(batches.size()) + 1));
    const int64_t fit = engine->kv().TotalBlocks() / std::max<int64_t>(1, seq_blocks);
    const int64_t n = std::min(max_batch, fit);
    std::vector<kv::SeqId> seqs;
    std::vector<int32_t> last;
    uint64_t x = 99;
    for (int64_t i = 0; i < n; ++i) {
      std::vector<int32_t> prompt(static_cast<size_t>(ctx));
      for (int32_t& t : prompt) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        t = static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(c.vocab_size));
      }
      SLIM_ASSIGN_OR_RETURN(PrefillResult p, engine->Prefill(next, prompt));
      seqs.push_back(next++);
      last.push_back(prompt.back());
    }
    std::vector<Sampler> samplers;
    for (int64_t i = 0; i < n; ++i) samplers.emplace_back(SamplingParams{}, c.vocab_size);
    for (int64_t b : batches) {
      json row = {{"batch", b}, {"context", ctx}};
      if (b > n) {
        row["skipped"] = "the KV store holds " + std::to_string(n) + " sequences of this context";
        rows.push_back(row);
        continue;
      }
      std::vector<DecodeItem> items(static_cast<size_t>(b));
      std::vector<SampleSpec> specs(static_cast<size_t>(b));
      std::vector<SampleResult> sampled;
      auto step = [&]() -> Status {
        for (int64_t i = 0; i < b; ++i) {
          items[static_cast<size_t>(i)] = DecodeItem{seqs[static_cast<size_t>(i)], last[static_cast<size_t>(i)]};
          specs[static_cast<size_t>(i)] = SampleSpec{&samplers[static_cast<size_t>(i)], {}};
        }
        SLIM_RETURN_IF_ERROR(engine->DecodeAndSample(items, specs, &sampled));
        for (int64_t i = 0; i < b; ++i) last[static_cast<size_t>(i)] = sampled[static_cast<size_t>(i)].token;
        return OkStatus();
      };
      SLIM_RETURN_IF_ERROR(step());  // first use of this batch size
      double kv_read = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t s = 0; s < steps; ++s) {
        for (int64_t i = 0; i < b; ++i) kv_read += static_cast<double>(engine->SequenceLength(seqs[static_cast<size_t>(i)]) + 1);
        SLIM_RETURN_IF_ERROR(step());
      }
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
                        static_cast<double>(steps);
      kv_read *= static_cast<double>(L.TokenBytes()) * c.n_layers / static_cast<double>(steps);
      const double bytes = weight_read + kv_read;
      row["step_ms"] = ms;
      row["tokens_per_s"] = static_cast<double>(b) * 1e3 / ms;
      row["weight_bytes_per_step"] = weight_read;
      row["kv_bytes_per_step"] = kv_read;
      row["read_gb_per_s"] = bytes / (ms * 1e6);
      if (a.Flag("profile")) {
        // Per-op device time of 8 more steps (events around each op: a few us of overhead each).
        constexpr int kProfiled = 8;
        Backend* be = engine->backend();
        be->SetProfiling(true);
        (void)be->TakeProfile();
        Status ps;
        for (int s = 0; s < kProfiled && ps.ok(); ++s) ps = step();
        row["profile_per_step"] = ProfileJson(be->TakeProfile(), kProfiled);
        be->SetProfiling(false);
        SLIM_RETURN_IF_ERROR(ps);
      }
      if (!a.Flag("json")) {
        std::fprintf(stderr, "batch %lld context %lld: %.2f ms/step, %.0f GB/s\n", static_cast<long long>(b),
                     static_cast<long long>(ctx), ms, bytes / (ms * 1e6));
      }
      rows.push_back(row);
    }
    for (kv::SeqId s : seqs) SLIM_RETURN_IF_ERROR(engine->Release(s));
  }
  json out = {{"engine", engine->Describe()}, {"model", c.name}, {"steps", steps}, {"results", rows}};
  std::cout << out.dump(a.Flag("json") ? -1 : 2) << "\n";
  return OkStatus();
}

}  // namespace
}  // namespace slim::bench

int main(int argc, char** argv) {
  using namespace slim::bench;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  slim::Status s;
  if (cmd == "generate") s = CmdGenerate(argc, argv);
  else if (cmd == "tokenize") s = CmdTokenize(argc, argv);
  else if (cmd == "chat-template") s = CmdChatTemplate(argc, argv);
  else if (cmd == "engine") s = CmdEngine(argc, argv);
  else if (cmd == "kv-transfer") s = CmdKvTransfer(argc, argv);
  else if (cmd == "decode-batch") s = CmdDecodeBatch(argc, argv);
#ifdef SLIM_HAVE_GRPC_CLIENT
  else if (cmd == "server") s = CmdServer(argc, argv);
#endif
  else if (cmd == "quality") s = CmdQuality(argc, argv);
  else s = slim::InvalidArgumentError("unknown command '" + cmd + "'\n" + kUsage);
  if (!s.ok()) {
    std::fprintf(stderr, "sliminfer-bench %s: %s\n", cmd.c_str(), s.ToString().c_str());
    return 1;
  }
  return 0;
}
