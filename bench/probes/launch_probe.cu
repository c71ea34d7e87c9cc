// Does a busy host-to-device PCIe link slow a chain of small kernels, and does launching the
// chain as a CUDA graph avoid it? Decode runs about 250 short kernels per token; beside the KV
// store's host-to-device copies every one of them took a few microseconds longer
// (bench/kv-store.md). Not part of the build:
//   nvcc -std=c++17 -O2 -arch=sm_90a -I../.. launch_probe.cu -o launch_probe
//   ./launch_probe [kernels_per_chain] [kib_read_per_kernel] [mapped_every] [pdl]
//
// Times a chain of `kernels_per_chain` memory-bound kernels (each reads its own slice of a
// device buffer) launched one by one on a stream and as one captured graph, alone and beside
// a copy stream kept busy with host-to-device or device-to-host copies of pinned memory, in
// 64 MiB pieces. Prints the median chain time of each case in microseconds. With
// mapped_every N > 0, every Nth kernel of the chain also reads 1 KiB of pinned host memory
// through unified addressing (as the backend's staging copy kernel does). With pdl 1 the chain's
// kernels use programmatic dependent launch as the decode kernels do (each may start while the
// one before runs, and waits for it before reading).
//
// An earlier version made the chain wait for an event recorded after all the queued copies, so
// its "beside copies" cases ran after the copies had finished; what it showed then (no slowdown
// whatever the footprint, mapped reads or PDL) does not hold. api_probe.cu measures the same
// kind of chain beside running copies.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "engine/backend/cuda/device_common.cuh"  // the backend's PDL launch and wait

#include "bench/probes/probe_check.h"

__global__ void ReadSlice(const float4* in, size_t n4, float* out) {
  slim::cuda::PdlWait();
  slim::cuda::PdlTrigger();
  float acc = 0.0f;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n4; i += size_t(gridDim.x) * blockDim.x) {
    const float4 v = in[i];
    acc += v.x + v.y + v.z + v.w;
  }
  if (acc == 12345.0f) out[blockIdx.x] = acc;  // keeps the loads
}

// Holds the stream for `ns` nanoseconds, so that the host queues the whole chain behind it and
// the timing measures how fast the GPU consumes queued launches, not how fast the host makes them.
__global__ void Spin(long long ns) {
  const long long start = clock64();
  const long long cycles = ns * 2;  // >= ns at clocks up to 2 GHz
  while (clock64() - start < cycles) {
  }
}

__global__ void ReadMapped(const int4* host, int4* dev, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) dev[i] = host[i];
}

int main(int argc, char** argv) {
  const int kernels = argc > 1 ? std::atoi(argv[1]) : 256;
  const size_t kib = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 2048;
  const size_t slice4 = kib * 1024 / sizeof(float4);
  const int mapped_every = argc > 3 ? std::atoi(argv[3]) : 0;
  const bool pdl = argc > 4 && std::atoi(argv[4]) != 0;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s, %d kernels per chain, %zu KiB read per kernel, a mapped 1 KiB read every %d, pdl %d\n",
              prop.name, kernels, kib, mapped_every, int(pdl));

  float4* buf;
  float* out;
  CK(cudaMalloc(&buf, slice4 * sizeof(float4) * kernels));
  CK(cudaMemset(buf, 0, slice4 * sizeof(float4) * kernels));
  CK(cudaMalloc(&out, 4096 * sizeof(float)));
  const size_t copy_bytes = size_t{64} << 20;
  void* host;
  void* dev_copy;
  CK(cudaMallocHost(&host, copy_bytes));
  CK(cudaMalloc(&dev_copy, copy_bytes));

  cudaStream_t compute, copy;
  CK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
  CK(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
  const int grid = prop.multiProcessorCount * 2;
  int4* pinned_small;
  int4* dev_small;
  CK(cudaMallocHost(&pinned_small, 1024));
  CK(cudaMalloc(&dev_small, 1024));
  auto chain = [&] {
    for (int k = 0; k < kernels; ++k) {
      if (pdl) {
        (void)slim::cuda::LaunchPdl(ReadSlice, dim3(grid), dim3(256), 0, compute, buf + slice4 * k, slice4, out);
      } else {
        ReadSlice<<<grid, 256, 0, compute>>>(buf + slice4 * k, slice4, out);
      }
      if (mapped_every > 0 && k % mapped_every == 0) ReadMapped<<<1, 64, 0, compute>>>(pinned_small, dev_small, 64);
    }
  };
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(compute, cudaStreamCaptureModeThreadLocal));
  chain();
  CK(cudaStreamEndCapture(compute, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  CK(cudaGraphUpload(exec, compute));
  CK(cudaStreamSynchronize(compute));

  cudaEvent_t t0, t1;
  CK(cudaEventCreate(&t0));
  CK(cudaEventCreate(&t1));
  // Queues `seconds` worth of copies (at ~55 GB/s) in pieces of `piece` bytes; records `first`
  // after the first piece.
  auto queue_copies = [&](int dir, size_t piece, double seconds, cudaEvent_t first) {
    const size_t total = static_cast<size_t>(seconds * 55e9);
    for (size_t done = 0; done < total; done += piece) {
      if (done == piece) CK(cudaEventRecord(first, copy));
      const size_t off = done % copy_bytes;
      const size_t n = std::min(piece, copy_bytes - off);
      if (dir == 0) {
        CK(cudaMemcpyAsync(static_cast<char*>(dev_copy) + off, static_cast<char*>(host) + off, n,
                           cudaMemcpyHostToDevice, copy));
      } else {
        CK(cudaMemcpyAsync(static_cast<char*>(host) + off, static_cast<char*>(dev_copy) + off, n,
                           cudaMemcpyDeviceToHost, copy));
      }
    }
  };
  auto time_chain = [&](bool as_graph) {
    std::vector<float> us;
    for (int rep = 0; rep < 40; ++rep) {
      Spin<<<1, 1, 0, compute>>>(3000000);
      CK(cudaEventRecord(t0, compute));
      if (as_graph) {
        CK(cudaGraphLaunch(exec, compute));
      } else {
        chain();
      }
      CK(cudaEventRecord(t1, compute));
      CK(cudaEventSynchronize(t1));
      float ms;
      CK(cudaEventElapsedTime(&ms, t0, t1));
      us.push_back(ms * 1000.0f);
    }
    std::sort(us.begin(), us.end());
    return us[us.size() / 2];
  };
  struct Bg {
    const char* name;
    int dir;  // -1 none, 0 h2d, 1 d2h
    size_t piece;
  };
  // (Copies of 256 KiB pieces cannot be queued faster than they run, so they would end before
  // the timing starts.)
  const Bg bgs[] = {{"alone", -1, 0}, {"h2d 64MiB", 0, copy_bytes}, {"d2h 64MiB", 1, copy_bytes}};
  for (int round = 0; round < 2; ++round) {
    for (const Bg& bg : bgs) {
      float res[2];
      for (int g = 0; g < 2; ++g) {
        (void)time_chain(g == 1);  // warm
        cudaEvent_t c0, c1;
        CK(cudaEventCreate(&c0));
        CK(cudaEventCreate(&c1));
        CK(cudaEventRecord(c0, copy));
        if (bg.dir >= 0) queue_copies(bg.dir, bg.piece, 0.8, c0);
        // c1: after the last copy. The chain starts once the first copy is done (the copy stream
        // is going) and the copies covered the timing if c1 is still pending when it ends.
        CK(cudaEventRecord(c1, copy));
        CK(cudaStreamWaitEvent(compute, c0));
        res[g] = time_chain(g == 1);
        const bool copies_still_running = bg.dir >= 0 && cudaEventQuery(c1) == cudaErrorNotReady;
        CK(cudaStreamSynchronize(copy));
        if (bg.dir >= 0 && !copies_still_running) std::printf("  (copies ended before the timing did)\n");
        CK(cudaEventDestroy(c0));
        CK(cudaEventDestroy(c1));
      }
      std::printf("round %d %-11s stream %8.1f us   graph %8.1f us\n", round, bg.name, res[0], res[1]);
    }
  }
  return 0;
}
