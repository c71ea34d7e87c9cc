// sliminfer-bench kv-transfer (see kv_transfer.h).
#include "client/bench/kv_transfer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <regex>
#include <thread>

#include "client/bench/args.h"
#include "engine/backend/backend.h"
#include "engine/engine.h"
#include "kvstore/kv_store.h"

namespace slim::bench {
namespace {

using json = nlohmann::json;
using Batches = std::vector<std::vector<kv::CopyRange>>;

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Device time of `batches` queued back to back on `dir`'s copy stream (events on CUDA).
StatusOr<double> TimeCopies(kv::TierMemory& m, kv::CopyDir dir, const Batches& batches) {
  std::vector<kv::Marker> marks;
  SLIM_ASSIGN_OR_RETURN(const kv::Marker start, m.Mark(dir));
  marks.push_back(start);
  for (const auto& b : batches) {
    SLIM_ASSIGN_OR_RETURN(const kv::Marker mk, m.CopyBatch(dir, 0, b));
    marks.push_back(mk);
  }
  SLIM_RETURN_IF_ERROR(m.HostWait(marks.back()));
  const double s = m.Elapsed(start, marks.back());
  for (kv::Marker mk : marks) m.ReleaseMarker(mk);
  return s;
}

struct Layouts {
  Batches h2d, d2h;
  int64_t bytes = 0;
};

// The same N blocks as one contiguous range, one batch per block, `groups` batches, or one batch.
Layouts Arrange(uint8_t* gpu, uint8_t* host, const std::vector<int64_t>& gslot, const std::vector<int64_t>& hslot,
                size_t bb, const std::string& mode, int groups) {
  Layouts L;
  const size_t n = gslot.size();
  L.bytes = static_cast<int64_t>(n * bb);
  auto add = [&](size_t batch, kv::CopyRange h2d, kv::CopyRange d2h) {
    if (L.h2d.size() <= batch) {
      L.h2d.resize(batch + 1);
      L.d2h.resize(batch + 1);
    }
    L.h2d[batch].push_back(h2d);
    L.d2h[batch].push_back(d2h);
  };
  if (mode == "contiguous") {
    add(0, {gpu, host, n * bb}, {host, gpu, n * bb});
    return L;
  }
  for (size_t i = 0; i < n; ++i) {
    uint8_t* g = gpu + static_cast<size_t>(gslot[i]) * bb;
    uint8_t* h = host + static_cast<size_t>(hslot[i]) * bb;
    const size_t batch = mode == "per_block" ? i : mode == "grouped" ? i * static_cast<size_t>(groups) / n : 0;
    add(batch, {g, h, bb}, {h, g, bb});
  }
  return L;
}

StatusOr<json> CopyRates(kv::TierMemory& m, int64_t blocks, size_t bb, int repeat, int groups) {
  SLIM_ASSIGN_OR_RETURN(void* gpu_v, m.AllocGpu(static_cast<size_t>(2 * blocks) * bb));
  SLIM_ASSIGN_OR_RETURN(void* host_v, m.AllocHost(static_cast<size_t>(2 * blocks) * bb));
  auto* gpu = static_cast<uint8_t*>(gpu_v);
  auto* host = static_cast<uint8_t*>(host_v);
  m.Fill(false, host, static_cast<size_t>(2 * blocks) * bb, 0x3C);
  m.Fill(true, gpu, static_cast<size_t>(2 * blocks) * bb, 0x5A);
  (void)m.HostWait(*m.Mark(kv::CopyDir::kH2D));
  std::mt19937 rng(42);
  std::vector<int64_t> g(2 * blocks), h(2 * blocks);
  std::iota(g.begin(), g.end(), 0);
  std::iota(h.begin(), h.end(), 0);
  std::shuffle(g.begin(), g.end(), rng);
  std::shuffle(h.begin(), h.end(), rng);
  g.resize(blocks);
  h.resize(blocks);
  json out;
  for (const std::string mode : {"contiguous", "per_block", "grouped", "batched"}) {
    const Layouts L = Arrange(gpu, host, g, h, bb, mode, groups);
    std::vector<double> h2d, d2h, both;
    for (int r = 0; r <= repeat; ++r) {  // r = 0 warms up
      SLIM_ASSIGN_OR_RETURN(const double a, TimeCopies(m, kv::CopyDir::kH2D, L.h2d));
      SLIM_ASSIGN_OR_RETURN(const double b, TimeCopies(m, kv::CopyDir::kD2H, L.d2h));
      // Both ways at once: one thread per stream, wall time over the bytes of both.
      StatusOr<double> sa = 0.0, sb = 0.0;
      const auto t0 = std::chrono::steady_clock::now();
      std::thread ta([&] { sa = TimeCopies(m, kv::CopyDir::kH2D, L.h2d); });
      std::thread tb([&] { sb = TimeCopies(m, kv::CopyDir::kD2H, L.d2h); });
      ta.join();
      tb.join();
      const double wall = Seconds(t0);
      SLIM_RETURN_IF_ERROR(sa.status());
      SLIM_RETURN_IF_ERROR(sb.status());
      if (r == 0) continue;
      h2d.push_back(static_cast<double>(L.bytes) / a / 1e9);
      d2h.push_back(static_cast<double>(L.bytes) / b / 1e9);
      both.push_back(2.0 * static_cast<double>(L.bytes) / wall / 1e9);
    }
    out[mode] = {{"batches", L.h2d.size()}, {"h2d_gbs", Median(h2d)}, {"d2h_gbs", Median(d2h)},
                 {"both_gbs", Median(both)}};
  }
  m.FreeGpu(gpu);
  m.FreeHost(host);
  return out;
}

kv::KvLayout Layout8B() {
  kv::KvLayout l;
  l.n_layers = 32;
  l.n_kv_heads = 8;
  l.head_dim = 128;
  l.block_tokens = 64;
  l.elem_bytes = 2;
  return l;
}

// Whole sequences through the store: offload, prefetch, and an offload beside a prefetch.
StatusOr<json> StoreRates(kv::TierMemory& m, int64_t blocks) {
  kv::KvStoreOptions o;
  o.layout = Layout8B();
  o.memory = &m;
  o.gpu_blocks = 3 * blocks;
  o.host_blocks = 2 * blocks;
  o.poison_freed = false;
  SLIM_ASSIGN_OR_RETURN(auto kv, kv::KvStore::Create(o));
  const int64_t tokens = blocks * o.layout.block_tokens / o.layout.n_layers;
  for (kv::SeqId s : {0, 1}) SLIM_RETURN_IF_ERROR(kv->AddSequence(s));
  for (int l = 0; l < o.layout.n_layers; ++l) {
    for (kv::SeqId s : {0, 1}) {  // interleaved: each sequence's layers lie between the other's
      SLIM_RETURN_IF_ERROR(kv->Reserve(s, l, tokens));
      SLIM_RETURN_IF_ERROR(kv->Append(s, l, static_cast<int32_t>(tokens)));
    }
  }
  const double bytes = static_cast<double>(blocks) * static_cast<double>(o.layout.BlockBytes());
  auto timed = [&](auto&& op) -> StatusOr<double> {
    const auto t0 = std::chrono::steady_clock::now();
    SLIM_ASSIGN_OR_RETURN(const kv::TicketId t, op());
    SLIM_RETURN_IF_ERROR(kv->HostWait(t));
    return Seconds(t0);
  };
  SLIM_ASSIGN_OR_RETURN(const double off, timed([&] { return kv->Offload(0, true); }));
  SLIM_ASSIGN_OR_RETURN(const double pre, timed([&] { return kv->Prefetch(0); }));
  SLIM_ASSIGN_OR_RETURN(const kv::TicketId again, kv->Offload(0, true));  // clean: copies nothing
  SLIM_RETURN_IF_ERROR(kv->HostWait(again));
  const auto t0 = std::chrono::steady_clock::now();
  SLIM_ASSIGN_OR_RETURN(const kv::TicketId in, kv->Prefetch(0));
  SLIM_ASSIGN_OR_RETURN(const kv::TicketId out, kv->Offload(1, true));
  SLIM_RETURN_IF_ERROR(kv->HostWait(in));
  SLIM_RETURN_IF_ERROR(kv->HostWait(out));
  const double both = Seconds(t0);
  const kv::KvStoreStats st = kv->Stats();
  return json{{"sequence_bytes", bytes},
              {"offload_gbs", bytes / off / 1e9},
              {"prefetch_gbs", bytes / pre / 1e9},
              {"second_offload_copied", again != 0},
              {"both_gbs", 2 * bytes / both / 1e9},
              {"event_seconds_h2d", st.transfers.seconds[0]},
              {"event_seconds_d2h", st.transfers.seconds[1]},
              {"bytes_h2d", st.transfers.bytes[0]},
              {"bytes_d2h", st.transfers.bytes[1]}};
}

using DecodeRun = std::function<StatusOr<double>(bool copying, int64_t n, int64_t* copies)>;

// Raw copies of 1 GiB (32 batches of scattered blocks) looping on separate copy streams in one
// direction ("h2d", "d2h") or "both", while `run` decodes: which direction disturbs decode.
// Per-op device times per token (Backend::TakeProfile) and their sum: what the kernels took, so
// that a step's time beyond the sum is time the device spent between ops.
json OpsPerToken(const std::vector<OpTime>& ops, int64_t steps) {
  json list = json::array();
  double sum = 0.0;
  for (const OpTime& t : ops) {
    const double ms = t.ms / static_cast<double>(steps);
    sum += ms;
    list.push_back({{"op", t.op}, {"ms", ms}, {"calls", static_cast<double>(t.calls) / static_cast<double>(steps)}});
  }
  return json{{"op_sum_ms", sum}, {"ops", list}};
}

StatusOr<json> DecodeWithRawCopies(Engine& e, const std::string& dir, int64_t steps, const DecodeRun& run,
                                   bool profile) {
  int64_t copies = 0;
  SLIM_ASSIGN_OR_RETURN(auto mem, e.backend()->CreateKvMemory());
  const int64_t nb = 4096;
  const size_t bb = 256 << 10;
  SLIM_ASSIGN_OR_RETURN(void* g, mem->AllocGpu(static_cast<size_t>(2 * nb) * bb));
  SLIM_ASSIGN_OR_RETURN(void* h, mem->AllocHost(static_cast<size_t>(2 * nb) * bb));
  std::vector<int64_t> gs(2 * nb), hs(2 * nb);
  std::iota(gs.begin(), gs.end(), 0);
  std::iota(hs.begin(), hs.end(), 0);
  std::mt19937 rng(5);
  std::shuffle(gs.begin(), gs.end(), rng);
  std::shuffle(hs.begin(), hs.end(), rng);
  gs.resize(nb);
  hs.resize(nb);
  // "-contig": the same 1 GiB as one contiguous range per copy instead of 32 batches of 128
  // scattered blocks (one CUDA call per GiB instead of 32 of about 53 us each on the host).
  // "-gN": N batches of 4096 / N blocks each instead of 32 (shorter calls, more of them).
  const bool contig = dir.find("-contig") != std::string::npos;
  const size_t gpos = dir.find("-g");
  const int groups = gpos == std::string::npos ? 32 : std::atoi(dir.c_str() + gpos + 2);
  const Layouts L = Arrange(static_cast<uint8_t*>(g), static_cast<uint8_t*>(h), gs, hs, bb,
                            contig ? "contiguous" : "grouped", groups);
  std::atomic<bool> stop{false};
  auto loop = [&](kv::CopyDir d) {
    while (!stop) {
      if (!TimeCopies(*mem, d, d == kv::CopyDir::kH2D ? L.h2d : L.d2h).ok()) return;
    }
  };
  // "-queued": 40 GiB of copies (about 0.75 s at 55 GB/s) queued on this thread before the run
  // and waited for after it, so that no other thread calls into CUDA while decode runs (whether
  // the slowdown is the copies on the link or the copy threads' API calls beside the engine's).
  const bool queued = dir.find("-queued") != std::string::npos;
  const kv::CopyDir queued_dir = dir.starts_with("d2h") ? kv::CopyDir::kD2H : kv::CopyDir::kH2D;
  json queued_runs = json::array();
  auto run_queued = [&]() -> StatusOr<double> {
    std::vector<kv::Marker> marks;
    SLIM_ASSIGN_OR_RETURN(const kv::Marker start, mem->Mark(queued_dir));
    marks.push_back(start);
    const auto t0 = std::chrono::steady_clock::now();
    for (int rep = 0; rep < 40; ++rep) {
      for (const auto& b : queued_dir == kv::CopyDir::kH2D ? L.h2d : L.d2h) {
        SLIM_ASSIGN_OR_RETURN(const kv::Marker mk, mem->CopyBatch(queued_dir, 0, b));
        marks.push_back(mk);
      }
    }
    const double queue_s = Seconds(t0);
    const auto t1 = std::chrono::steady_clock::now();
    StatusOr<double> y = run(false, steps, &copies);
    const double decode_s = Seconds(t1);
    SLIM_RETURN_IF_ERROR(mem->HostWait(marks.back()));
    const double copy_s = mem->Elapsed(start, marks.back());
    for (kv::Marker mk : marks) mem->ReleaseMarker(mk);
    // The copies covered the run when they took longer than queueing them plus the run.
    queued_runs.push_back({{"queue_s", queue_s},
                           {"decode_s", decode_s},
                           {"copy_s", copy_s},
                           {"copies_covered_run", copy_s > queue_s + decode_s},
                           {"gbs", 40.0 * static_cast<double>(L.bytes) / copy_s / 1e9}});
    return y;
  };
  // One decode run while the copies loop on their own threads.
  auto run_copying = [&]() -> StatusOr<double> {
    if (queued) return run_queued();
    stop = false;
    std::vector<std::thread> threads;
    if (dir.starts_with("h2d") || dir.starts_with("both")) threads.emplace_back(loop, kv::CopyDir::kH2D);
    if (dir.starts_with("d2h") || dir.starts_with("both")) threads.emplace_back(loop, kv::CopyDir::kD2H);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    StatusOr<double> y = run(false, steps, &copies);
    stop = true;
    for (auto& t : threads) t.join();
    return y;
  };
  std::vector<double> alone, busy;
  for (int r = 0; r < 3; ++r) {
    SLIM_ASSIGN_OR_RETURN(const double x, run(false, steps, &copies));
    alone.push_back(x);
    SLIM_ASSIGN_OR_RETURN(const double y, run_copying());
    busy.push_back(y);
  }
  json prof;
  if (profile) {
    // One more pair with per-op device timing (which slows both alike): whether copies make the
    // kernels slower or the gaps between them longer.
    e.backend()->SetProfiling(true);
    SLIM_ASSIGN_OR_RETURN(const double pa, run(false, steps, &copies));
    const std::vector<OpTime> ops_alone = e.backend()->TakeProfile();
    const StatusOr<double> pb = run_copying();
    const std::vector<OpTime> ops_busy = e.backend()->TakeProfile();
    e.backend()->SetProfiling(false);
    if (!pb.ok()) return pb.status();
    prof = json{{"alone_ms_per_token", pa}, {"copying_ms_per_token", *pb}, {"alone", OpsPerToken(ops_alone, steps)},
                {"copying", OpsPerToken(ops_busy, steps)}};
  }
  mem->FreeGpu(g);
  mem->FreeHost(h);
  json out = {{"decode_ms_alone", Median(alone)}, {"decode_ms_while_copying", Median(busy)},
              {"slowdown", Median(busy) / Median(alone) - 1.0}, {"runs_copying", busy}};
  if (profile) out["profile"] = std::move(prof);
  if (queued) out["queued_copies"] = std::move(queued_runs);
  return out;
}

// Decode ms/token of one sequence, alone and while another sequence swaps out and in again
// (each copy started as soon as the last one finished).
StatusOr<json> DecodeWhileCopying(const Args& a) {
  EngineOptions o;
  o.model = a.Str("model", "synthetic:llama-3.1-8b");
  o.backend.device = a.Str("device", "cuda") == "cpu" ? Device::kCpu : Device::kCuda;
  SLIM_ASSIGN_OR_RETURN(o.backend.cuda_graphs, ParseToggle("cuda graphs mode", a.Str("cuda-graphs", "auto")));
  SLIM_ASSIGN_OR_RETURN(o.backend.cuda_pdl, ParseToggle("cuda PDL mode", a.Str("cuda-pdl", "auto")));
  SLIM_ASSIGN_OR_RETURN(const int64_t context, a.Int("context-tokens", 32768, 64, 1 << 20));
  SLIM_ASSIGN_OR_RETURN(const int64_t other, a.Int("swap-tokens", 8192, 64, 1 << 20));
  SLIM_ASSIGN_OR_RETURN(const int64_t steps, a.Int("decode-tokens", 64, 4, 4096));
  const std::vector<std::string> backgrounds = a.StrList("background", "");
  for (const std::string& dir : backgrounds) {
    static const std::regex kKnown(
        "(h2d|d2h|both)(-contig|-g(1|2|4|8|16|32|64|128|256|512|1024|2048|4096))?|"
        "(h2d|d2h)-contig-queued");
    if (!std::regex_match(dir, kKnown)) {
      return InvalidArgumentError("--background '" + dir +
                                  "' (known: h2d, d2h, both, each with -contig or -gN (N a power of two up to 4096), "
                                  "and h2d-contig-queued, d2h-contig-queued)");
    }
  }
  o.kv_tokens = context + other + 64 * steps + 1024;  // room for every run's decoded tokens
  o.host_kv_tokens = other + 256;
  SLIM_ASSIGN_OR_RETURN(auto e, Engine::Create(o));
  kv::KvStore& kv = e->kv();
  while (kv.HostFreeBlocks() < kv.HostCapacityBlocks()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto prompt = [&](int64_t n, uint32_t seed) {
    std::vector<int32_t> v(static_cast<size_t>(n));
    std::mt19937 rng(seed);
    for (int32_t& t : v) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(e->config().vocab_size));
    return v;
  };
  SLIM_RETURN_IF_ERROR(e->Prefill(1, prompt(context, 1)).status());
  SLIM_RETURN_IF_ERROR(e->Prefill(2, prompt(other, 2)).status());
  Sampler sampler(SamplingParams{}, e->config().vocab_size);
  std::vector<int32_t> history;
  std::vector<SampleResult> next(1);
  next[0].token = 1;
  DecodeRun run = [&](bool copying, int64_t n, int64_t* copies) -> StatusOr<double> {
    kv::TicketId t = 0;
    *copies = 0;
    SLIM_RETURN_IF_ERROR(e->backend()->Sync());
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n; ++i) {
      if (copying && kv.Done(t)) {
        SLIM_ASSIGN_OR_RETURN(t, kv.Resident(2) ? kv.Offload(2, true) : kv.Prefetch(2));
        ++*copies;
      }
      DecodeItem item{1, next[0].token};
      history.push_back(item.token);
      const SampleSpec spec{&sampler, history};
      SLIM_RETURN_IF_ERROR(e->DecodeAndSample(std::span<const DecodeItem>(&item, 1),
                                              std::span<const SampleSpec>(&spec, 1), &next));
    }
    SLIM_RETURN_IF_ERROR(e->backend()->Sync());
    const double ms = Seconds(t0) * 1e3 / static_cast<double>(n);
    SLIM_RETURN_IF_ERROR(kv.HostWait(t));
    return ms;
  };
  int64_t copies = 0;
  SLIM_ASSIGN_OR_RETURN(double warm, run(false, 8, &copies));
  (void)warm;
  json raw = json::object();
  for (const std::string& dir : backgrounds) {
    SLIM_ASSIGN_OR_RETURN(raw[dir], DecodeWithRawCopies(*e, dir, steps, run, a.Flag("profile")));
  }
  std::vector<double> alone, busy;
  int64_t total_copies = 0;
  const kv::KvStoreStats st0 = kv.Stats();
  double busy_s = 0.0;
  for (int r = 0; r < 3; ++r) {  // interleaved, so drift hits both alike
    SLIM_ASSIGN_OR_RETURN(const double x, run(false, steps, &copies));
    alone.push_back(x);
    SLIM_ASSIGN_OR_RETURN(const double y, run(true, steps, &copies));
    busy.push_back(y);
    busy_s += y * static_cast<double>(steps) / 1e3;
    total_copies += copies;
  }
  const kv::KvStoreStats st = kv.Stats();
  const double moved = static_cast<double>(st.transfers.bytes[0] - st0.transfers.bytes[0] + st.transfers.bytes[1] -
                                           st0.transfers.bytes[1]);
  const double engine_s =
      st.transfers.seconds[0] - st0.transfers.seconds[0] + st.transfers.seconds[1] - st0.transfers.seconds[1];
  return json{{"model", o.model},
              {"context_tokens", context},
              {"swap_tokens", other},
              {"decode_ms_alone", Median(alone)},
              {"decode_ms_while_copying", Median(busy)},
              {"slowdown", Median(busy) / Median(alone) - 1.0},
              {"copies", total_copies},
              {"copy_gbs_while_decoding", moved / busy_s / 1e9},
              {"copy_engine_gbs", moved / engine_s / 1e9},
              {"copy_batches", st.transfers.batch_bytes.counts.back() - st0.transfers.batch_bytes.counts.back()},
              {"runs_alone", alone},
              {"runs_copying", busy},
              {"raw_background", raw}};
}

}  // namespace

Status CmdKvTransfer(int argc, char** argv) {
  SLIM_ASSIGN_OR_RETURN(Args a,
                        Args::Parse(argc, argv, 2,
                                    {"device", "blocks", "block-kib", "repeat", "groups", "model", "context-tokens",
                                     "swap-tokens", "decode-tokens", "parts", "background", "cuda-graphs", "cuda-pdl"},
                                    {"json", "profile"}));
  BackendOptions bo;
  bo.device = a.Str("device", "cuda") == "cpu" ? Device::kCpu : Device::kCuda;
  SLIM_ASSIGN_OR_RETURN(const int64_t blocks, a.Int("blocks", 4096, 1, 1 << 20));
  SLIM_ASSIGN_OR_RETURN(const int64_t kib, a.Int("block-kib", 256, 1, 1 << 16));
  SLIM_ASSIGN_OR_RETURN(const int64_t repeat, a.Int("repeat", 5, 1, 100));
  SLIM_ASSIGN_OR_RETURN(const int64_t groups, a.Int("groups", 32, 1, 4096));
  const std::vector<std::string> parts = a.StrList("parts", "copies,store,decode");
  json out;
  out["block_bytes"] = kib * 1024;
  out["blocks"] = blocks;
  {
    SLIM_ASSIGN_OR_RETURN(auto backend, CreateBackend(bo));
    out["device"] = backend->Describe();
    SLIM_ASSIGN_OR_RETURN(auto memory, backend->CreateKvMemory());
    for (const std::string& p : parts) {
      if (p == "copies") {
        SLIM_ASSIGN_OR_RETURN(out["copies"], CopyRates(*memory, blocks, static_cast<size_t>(kib) * 1024,
                                                       static_cast<int>(repeat), static_cast<int>(groups)));
      } else if (p == "store") {
        SLIM_ASSIGN_OR_RETURN(out["store"], StoreRates(*memory, blocks));
      } else if (p != "decode") {
        return InvalidArgumentError("--parts: unknown part '" + p + "' (known: copies, store, decode)");
      }
    }
  }
  if (std::find(parts.begin(), parts.end(), "decode") != parts.end()) {
    SLIM_ASSIGN_OR_RETURN(out["decode"], DecodeWhileCopying(a));
  }
  std::cout << out.dump(a.Flag("json") ? -1 : 2) << std::endl;
  return OkStatus();
}

}  // namespace slim::bench
