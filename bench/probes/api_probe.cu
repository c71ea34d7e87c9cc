// Does a thread issuing batched KV copies slow another thread's CUDA calls? Decode slows by about
// 5% while the KV store's host-to-device copies run, but a pre-queued chain of kernels beside
// copies does not (launch_probe.cu), and queueing one 1 GiB copy of 4096 scattered 256 KiB blocks
// as 32 cudaMemcpyBatchAsync calls takes the host about as long as the copy itself
// (bench/kv-store.md). Not part of the build:
//   nvcc -std=c++17 -O2 -arch=sm_90a api_probe.cu -o api_probe
//   ./api_probe [ranges_per_batch]
//
// 1. Host time of one cudaMemcpyBatchAsync call per range count, and of cudaMemcpyAsync per range.
// 2. A decode-like loop on the main thread: launch a graph of 256 short kernels (about 6 ms),
//    wait for it, repeat; median wall time per iteration alone, beside a thread that loops
//    batched scattered copies one way (each 1 GiB queued as batches of `ranges_per_batch`
//    ranges, then polled with 100 us sleeps, as the KV store's worker does), and beside the same
//    bytes as contiguous copies. Also the median and p99 host latency of cudaGraphLaunch and
//    cudaEventQuery on the main thread in each case.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#define CK(x)                                                                        \
  do {                                                                               \
    cudaError_t e = (x);                                                             \
    if (e != cudaSuccess) {                                                          \
      std::printf("%s failed: %s (line %d)\n", #x, cudaGetErrorString(e), __LINE__); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

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
  return 0;
}
