// Does a thread issuing batched KV copies slow another thread's CUDA calls? Decode slows by about
// 5% while the KV store's host-to-device copies run, but a pre-queued chain of kernels beside
// copies does not (launch_probe.cu), and queueing one 1 GiB copy of 4096 scattered 256 KiB blocks
// as 32 cudaMemcpyBatchAsync calls takes the host about as long as the copy itself
// (bench/kv-store.md). Not part of the build:
//   nvcc -std=c++17 -O2 -arch=sm_90a -I../.. api_probe.cu -o api_probe -lcuda
//   ./api_probe [ranges_per_batch] [sources|-] [rates]
//
// 1. Host time of one cudaMemcpyBatchAsync call per range count, and of cudaMemcpyAsync per range.
// 2. A decode-like loop on the main thread: launch a graph of 256 short kernels (about 6 ms),
//    wait for it, repeat; median wall time per iteration alone, beside a thread that loops
//    batched scattered copies one way (each 1 GiB queued as batches of `ranges_per_batch`
//    ranges, then polled with 100 us sleeps, as the KV store's worker does), and beside the same
//    bytes as contiguous copies. Also the median and p99 host latency of cudaGraphLaunch and
//    cudaEventQuery on the main thread in each case.
// 3. With `sources` (a comma list of KIND:MIB, KIND one of mallochost, register, register-thp,
//    vmm): the loop alone and beside contiguous host-to-device copies that cycle through a
//    source of MIB MiB allocated that way (cudaMallocHost; malloc + cudaHostRegister, without
//    or with transparent huge pages; cuMemCreate on the host NUMA node, mapped with the
//    driver's granularity), and the loop with 8 graphs queued per wait. Whether the slowdown
//    depends on how much pinned memory the copies walk through and on its page size.
// 4. With `rates` (a comma list of DIR:GBS, DIR h2d, d2h or d2d, GBS 0 for unpaced): the loop alone
//    and beside contiguous copies of 8 MiB pieces queued at that rate, measured rate printed.
#include <cuda.h>
#include <cuda_runtime.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/probes/probe_check.h"

using Clock = std::chrono::steady_clock;
static double Us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

__global__ void ReadSlice(const float4* in, size_t n4, float* out) {
  float acc = 0.0f;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n4; i += size_t(gridDim.x) * blockDim.x) {
    const float4 v = in[i];
    acc += v.x + v.y + v.z + v.w;
  }
  if (acc == 12345.0f) out[blockIdx.x] = acc;
}

struct Pct {
  double p50, p99;
};
static Pct Percentiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

int main(int argc, char** argv) {
  const int per_batch = argc > 1 ? std::atoi(argv[1]) : 128;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s, %d ranges per batch\n", prop.name, per_batch);
  const size_t block = size_t{256} << 10;
  const int blocks = 4096;  // 1 GiB a copy
  char *host, *dev;
  CK(cudaMallocHost(&host, 2 * blocks * block));
  CK(cudaMalloc(&dev, 2 * blocks * block));
  std::vector<int> hs(2 * blocks), ds(2 * blocks);
  std::iota(hs.begin(), hs.end(), 0);
  std::iota(ds.begin(), ds.end(), 0);
  std::mt19937 rng(5);
  std::shuffle(hs.begin(), hs.end(), rng);
  std::shuffle(ds.begin(), ds.end(), rng);
  std::vector<void*> dst(blocks);
  std::vector<const void*> src(blocks);
  std::vector<size_t> sizes(blocks, block);
  for (int i = 0; i < blocks; ++i) {
    dst[i] = dev + size_t(ds[i]) * block;
    src[i] = host + size_t(hs[i]) * block;
  }
  cudaStream_t copy, compute;
  CK(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
  CK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
  cudaMemcpyAttributes attr{};
  attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
  attr.flags = cudaMemcpyFlagPreferOverlapWithCompute;
  size_t attr_idx = 0;
  auto batch = [&](int first, int n) {
    CK(cudaMemcpyBatchAsync(dst.data() + first, src.data() + first, sizes.data() + first, n, &attr, &attr_idx, 1,
                            copy));
  };

  // 1. Host cost of one call.
  for (int n : {1, 8, 32, 128, 512}) {
    std::vector<double> us;
    for (int rep = 0; rep < 20; ++rep) {
      const auto t0 = Clock::now();
      batch(0, n);
      us.push_back(Us(t0, Clock::now()));
      CK(cudaStreamSynchronize(copy));
    }
    std::printf("cudaMemcpyBatchAsync %4d ranges: host %8.1f us (%.2f us a range)\n", n, Percentiles(us).p50,
                Percentiles(us).p50 / n);
  }
  {
    std::vector<double> us;
    for (int rep = 0; rep < 20; ++rep) {
      const auto t0 = Clock::now();
      for (int i = 0; i < 128; ++i) CK(cudaMemcpyAsync(dst[i], src[i], block, cudaMemcpyHostToDevice, copy));
      us.push_back(Us(t0, Clock::now()));
      CK(cudaStreamSynchronize(copy));
    }
    std::printf("cudaMemcpyAsync x128: host %8.1f us (%.2f us a range)\n", Percentiles(us).p50,
                Percentiles(us).p50 / 128);
  }

  // 2. The decode-like loop.
  const int kernels = 256;
  const size_t slice4 = (size_t{64} << 20) / sizeof(float4);  // 64 MiB a kernel: ~25 us
  float4* buf;
  float* out;
  CK(cudaMalloc(&buf, slice4 * sizeof(float4) * 16));
  CK(cudaMemset(buf, 0, slice4 * sizeof(float4) * 16));
  CK(cudaMalloc(&out, 4096 * sizeof(float)));
  const int grid = prop.multiProcessorCount * 2;
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(compute, cudaStreamCaptureModeThreadLocal));
  for (int k = 0; k < kernels; ++k) ReadSlice<<<grid, 256, 0, compute>>>(buf + slice4 * (k % 16), slice4, out);
  CK(cudaStreamEndCapture(compute, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t ev;
  CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  // Median wall time of one graph pass over `waits` waits, each after `queued` launched passes.
  auto pass_median = [&](int waits, int queued) {
    std::vector<double> per_pass;
    for (int w = 0; w < waits; ++w) {
      const auto t0 = Clock::now();
      for (int q = 0; q < queued; ++q) CK(cudaGraphLaunch(exec, compute));
      CK(cudaEventRecord(ev, compute));
      while (cudaEventQuery(ev) == cudaErrorNotReady) {
      }
      per_pass.push_back(Us(t0, Clock::now()) / queued);
    }
    return Percentiles(per_pass).p50;
  };

  std::atomic<int> mode{0};  // 0 idle, 1 batched scattered, 2 contiguous
  std::atomic<bool> quit{false};
  std::thread worker([&] {
    cudaEvent_t done;
    CK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    while (!quit) {
      const int m = mode;
      if (m == 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
      if (m == 1) {
        for (int first = 0; first < blocks; first += per_batch) batch(first, std::min(per_batch, blocks - first));
      } else {
        CK(cudaMemcpyAsync(dev, host, blocks * block, cudaMemcpyHostToDevice, copy));
      }
      CK(cudaEventRecord(done, copy));
      while (cudaEventQuery(done) == cudaErrorNotReady) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  const char* names[] = {"alone", "batched scattered h2d", "contiguous h2d"};
  for (int round = 0; round < 2; ++round) {
    for (int m : {0, 1, 2}) {
      mode = m;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      std::vector<double> iter, launch, query;
      for (int it = 0; it < 60; ++it) {
        const auto t0 = Clock::now();
        CK(cudaGraphLaunch(exec, compute));
        const auto t1 = Clock::now();
        CK(cudaEventRecord(ev, compute));
        for (;;) {
          const auto q0 = Clock::now();
          const cudaError_t r = cudaEventQuery(ev);
          query.push_back(Us(q0, Clock::now()));
          if (r == cudaSuccess) break;
          if (r != cudaErrorNotReady) CK(r);
        }
        iter.push_back(Us(t0, Clock::now()));
        launch.push_back(Us(t0, t1));
      }
      const Pct a = Percentiles(iter), b = Percentiles(launch), c = Percentiles(query);
      std::printf(
          "round %d %-22s iteration %8.1f us (p99 %8.1f)  graph launch %6.1f us (p99 %7.1f)  "
          "event query %5.2f us (p99 %7.1f)\n",
          round, names[m], a.p50, a.p99, b.p50, b.p99, c.p50, c.p99);
    }
  }
  mode = 0;
  quit = true;
  worker.join();

  // 4. Rates and directions (run first; section 3 follows).
  if (argc > 3) {
    std::stringstream rl(argv[3]);
    std::string it;
    while (std::getline(rl, it, ',')) {
      const size_t colon = it.find(':');
      const std::string dir = it.substr(0, colon);
      const bool h2d = dir == "h2d", d2d = dir == "d2d";
      const double gbs = std::atof(it.c_str() + colon + 1);
      const size_t piece = size_t{8} << 20, span = size_t{2} * blocks * block;
      std::atomic<bool> run{false}, stop{false};
      std::atomic<double> moved_gbs{0.0};
      std::thread copier([&] {
        cudaEvent_t done;
        CK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
        while (!stop) {
          if (!run) {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            continue;
          }
          const auto t0 = Clock::now();
          size_t bytes = 0;
          for (size_t off = 0; off < span && run; off += piece) {
            if (d2d) {  // the copy engine writing device memory as fast as h2d does, without PCIe
              const size_t half = span / 2, o = off % half;
              CK(cudaMemcpyAsync(dev + half + o, dev + o, piece, cudaMemcpyDeviceToDevice, copy));
            } else if (h2d) {
              CK(cudaMemcpyAsync(dev + off, host + off, piece, cudaMemcpyHostToDevice, copy));
            } else {
              CK(cudaMemcpyAsync(host + off, dev + off, piece, cudaMemcpyDeviceToHost, copy));
            }
            bytes += piece;
            if (gbs > 0) std::this_thread::sleep_until(t0 + std::chrono::nanoseconds(int64_t(bytes / gbs)));
          }
          CK(cudaEventRecord(done, copy));
          while (cudaEventQuery(done) == cudaErrorNotReady) std::this_thread::sleep_for(std::chrono::microseconds(50));
          moved_gbs = bytes / (Us(t0, Clock::now()) * 1e3);
        }
      });
      for (int round = 0; round < 2; ++round) {
        double med[2];
        for (int busy = 0; busy < 2; ++busy) {
          run = busy == 1;
          std::this_thread::sleep_for(std::chrono::milliseconds(30));
          med[busy] = pass_median(40, 1);
        }
        run = false;
        std::this_thread::sleep_for(std::chrono::milliseconds(60));
        std::printf("rate %-9s round %d: copies at %5.1f GB/s; alone %8.1f us, beside %8.1f us (%+.2f%%)\n", it.c_str(),
                    round, moved_gbs.load(), med[0], med[1], 100.0 * (med[1] / med[0] - 1.0));
      }
      stop = true;
      copier.join();
    }
  }

  // 3. Sources of copies: size and kind of pinned memory.
  if (argc <= 2 || std::string(argv[2]) == "-") return 0;
  std::stringstream list(argv[2]);
  std::string item;
  while (std::getline(list, item, ',')) {
    const size_t colon = item.find(':');
    const std::string kind = item.substr(0, colon);
    const size_t bytes = std::strtoull(item.c_str() + colon + 1, nullptr, 10) << 20;
    char* src = nullptr;
    char* raw = nullptr;
    CUmemGenericAllocationHandle handle{};
    CUdeviceptr va = 0;
    if (kind == "mallochost") {
      CK(cudaMallocHost(&src, bytes));
    } else if (kind == "register" || kind == "register-thp") {
      raw = static_cast<char*>(std::aligned_alloc(size_t{2} << 20, bytes));
      if (kind == "register-thp" && madvise(raw, bytes, MADV_HUGEPAGE) != 0) std::printf("madvise failed\n");
      std::memset(raw, 1, bytes);
      CK(cudaHostRegister(raw, bytes, cudaHostRegisterDefault));
      src = raw;
    } else if (kind == "vmm") {
      CUmemAllocationProp prop{};
      prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
      prop.location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
      prop.location.id = 0;
      size_t gran = 0;
      if (cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) != CUDA_SUCCESS ||
          cuMemCreate(&handle, bytes, &prop, 0) != CUDA_SUCCESS ||
          cuMemAddressReserve(&va, bytes, 0, 0, 0) != CUDA_SUCCESS || cuMemMap(va, bytes, 0, handle, 0) != CUDA_SUCCESS) {
        std::printf("%s: vmm host allocation failed\n", item.c_str());
        continue;
      }
      CUmemAccessDesc acc[2]{};
      acc[0].location.type = CU_MEM_LOCATION_TYPE_DEVICE;
      acc[0].location.id = 0;
      acc[0].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
      acc[1].location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
      acc[1].location.id = 0;
      acc[1].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
      if (cuMemSetAccess(va, bytes, acc, 2) != CUDA_SUCCESS) {
        std::printf("%s: cuMemSetAccess failed\n", item.c_str());
        continue;
      }
      std::printf("vmm granularity %zu KiB\n", gran >> 10);
      src = reinterpret_cast<char*>(va);
    } else {
      std::printf("unknown kind %s\n", kind.c_str());
      continue;
    }
    char* dst2;
    CK(cudaMalloc(&dst2, bytes));
    std::atomic<bool> run{false}, stop{false};
    std::thread copier([&] {
      cudaEvent_t done;
      CK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
      const size_t piece = std::min(bytes, size_t{64} << 20);
      while (!stop) {
        if (!run) {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          continue;
        }
        for (size_t off = 0; off < bytes; off += piece)
          CK(cudaMemcpyAsync(dst2 + off, src + off, std::min(piece, bytes - off), cudaMemcpyHostToDevice, copy));
        CK(cudaEventRecord(done, copy));
        while (cudaEventQuery(done) == cudaErrorNotReady) std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    });
    for (int queued : {1, 8}) {
      for (int round = 0; round < 2; ++round) {
        double med[2];
        for (int busy = 0; busy < 2; ++busy) {
          run = busy == 1;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          med[busy] = pass_median(48 / queued, queued);
        }
        run = false;
        std::printf("source %-18s graphs per wait %d round %d: alone %8.1f us, beside h2d copies %8.1f us (%+.1f%%)\n",
                    item.c_str(), queued, round, med[0], med[1], 100.0 * (med[1] / med[0] - 1.0));
      }
    }
    stop = true;
    copier.join();
    CK(cudaFree(dst2));
    if (kind == "mallochost") CK(cudaFreeHost(src));
    if (raw != nullptr) {
      CK(cudaHostUnregister(raw));
      std::free(raw);
    }
    if (va != 0) {
      cuMemUnmap(va, bytes);
      cuMemAddressFree(va, bytes);
      cuMemRelease(handle);
    }
  }
  return 0;
}
