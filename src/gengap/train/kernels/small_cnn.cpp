// One training step's forward and backward pass of a population of Small CNN Zoo networks
// (depth x [3x3 conv of 16 filters, stride 2, padding 1, bias; ReLU], global average pooling,
// dense layer), fused per network and example so that every activation stays in the core's
// cache. torch's kernels run this step as separate passes over activations far larger than the
// cache and wait on memory (see the README's population notes); here each example's whole
// forward and backward pass touches a few tens of kB.
//
// The 16 channels of an activation are one 16-float vector (GCC/Clang vector extensions): one
// AVX-512 register. Other targets build and compute the same, slowly (small_cnn_vectorized). Activations are kept
// channels-last with a zero border, so that a stride-2 convolution reads its 3x3 taps with no
// bounds checks. Called from Python through ctypes (gengap/train/fused_cnn.py); no torch headers.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr int C = 16;  // channels of every layer after the input (the network's width)
constexpr int BLOCK = 16;  // output pixels (rows x columns) summed at once, one register each

typedef float v16 __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t i16v __attribute__((vector_size(64), aligned(4), may_alias));

inline v16 load(const float* p) { return *reinterpret_cast<const v16*>(p); }
inline void store(float* p, v16 v) { *reinterpret_cast<v16*>(p) = v; }

// max(x, 0) as torch's ReLU takes it: NaN stays NaN (a diverging run must still diverge).
inline v16 relu(v16 x) {
  const v16 zero = {};
  return reinterpret_cast<v16>(~(x <= zero) & reinterpret_cast<i16v>(x));
}

// ReLU's backward: the gradient `grad` except where the ReLU's output `out` is <= 0, as torch
// takes it (a NaN output passes its gradient on).
inline v16 relu_backward(v16 out, v16 grad) {
  const v16 zero = {};
  return reinterpret_cast<v16>(~(out <= zero) & reinterpret_cast<i16v>(grad));
}

float sum(v16 x) {
  float s = 0.f;
  for (int i = 0; i < C; ++i) s += x[i];
  return s;
}

// Shapes of one convolution: its input (cin channels, h x w) held padded as hp x wp pixels
// (a zero border on every side), its output hout x wout x 16.
struct Layer {
  int cin, h, w, hout, wout, hp, wp, k;  // k = 9 * cin taps
  std::vector<int> off;  // tap j = (ky*3 + kx)*cin + ci -> its float offset from a pixel's corner

  Layer(int cin_, int h_, int w_) : cin(cin_), h(h_), w(w_) {
    hout = (h - 1) / 2 + 1;
    wout = (w - 1) / 2 + 1;
    hp = 2 * hout + 1;  // rows -1 .. 2*hout - 1 of the input: all a stride-2 3x3 window reads
    wp = 2 * wout + 1;
    k = 9 * cin;
    for (int ky = 0; ky < 3; ++ky)
      for (int kx = 0; kx < 3; ++kx)
        for (int ci = 0; ci < cin; ++ci) off.push_back((ky * wp + kx) * cin + ci);
  }
  int corner(int oy, int ox) const { return (2 * oy * wp + 2 * ox) * cin; }  // floats
  int padded() const { return hp * wp * cin; }
};

// acc[r*B + b] += sum_j src[r*row + b*step + off[j]] * w[j] for R rows of B output pixels: a
// convolution's output vectors, or (with the transposed weights) the gradient a tap sends back
// to its input. Rows are blocked too so that narrow layers still have enough independent sums
// in flight (a product takes four cycles; two start each cycle). STEP is `step` known at
// compile time (0: not known): then each pixel's tap is a fixed displacement from one address,
// where with a step known only at run time GCC 12 chained one address addition per pixel
// into the loop (seen in its assembly; the step's time did not measurably change).
template <int R, int B, int STEP>
inline void accumulate(const float* src, int row, int step, const int* off, const float* w,
                       int k, v16* acc) {
  if (STEP) step = STEP;
  for (int j = 0; j < k; ++j) {
    const v16 wv = load(w + j * C);
    const float* s = src + off[j];
    for (int r = 0; r < R; ++r)
      for (int b = 0; b < B; ++b) acc[r * B + b] += s[r * row + b * step] * wv;
  }
}

template <int R, int B, int STEP>
void forward_block(const float* src, int row, int step, const int* off, const float* w, int k,
                   const float* bias, float* dst, int dst_row, int dst_step) {
  v16 acc[R * B];
  const v16 bv = load(bias);
  for (int i = 0; i < R * B; ++i) acc[i] = bv;
  accumulate<R, B, STEP>(src, row, step, off, w, k, acc);
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < B; ++b) store(dst + r * dst_row + b * dst_step, relu(acc[r * B + b]));
}

// dst[r*dst_row + b*2C] += the gradient tap `wt` sends from output pixels src[r*row + b*C].
template <int R, int B>
void backward_block(const float* src, int row, const int* identity, const float* wt,
                    float* dst, int dst_row) {
  v16 acc[R * B];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < B; ++b) acc[r * B + b] = load(dst + r * dst_row + b * 2 * C);
  accumulate<R, B, C>(src, row, C, identity, wt, C, acc);
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < B; ++b) store(dst + r * dst_row + b * 2 * C, acc[r * B + b]);
}

// gw[j] += sum over output pixels of src[corner + off[j]] * dz[pixel], for NK taps at once.
template <int NK, bool CONTIGUOUS>
void weight_block(const Layer& g, const float* src, const int* off, const float* dz, float* gw) {
  v16 acc[NK];
  for (int j = 0; j < NK; ++j) acc[j] = load(gw + j * C);
  for (int oy = 0; oy < g.hout; ++oy) {
    for (int ox = 0; ox < g.wout; ++ox) {
      const float* s = src + g.corner(oy, ox);
      const v16 d = load(dz + (oy * g.wout + ox) * C);
      for (int j = 0; j < NK; ++j) acc[j] += (CONTIGUOUS ? s[off[0] + j] : s[off[j]]) * d;
    }
  }
  for (int j = 0; j < NK; ++j) store(gw + j * C, acc[j]);
}

typedef void (*Forward)(const float*, int, int, const int*, const float*, int, const float*,
                        float*, int, int);
typedef void (*Backward)(const float*, int, const int*, const float*, float*, int);
typedef void (*Weight)(const Layer&, const float*, const int*, const float*, float*);

template <int R, int... B>
struct Blocks {
  static constexpr Forward forward[] = {nullptr, &forward_block<R, B, 0>...};
  static constexpr Forward forward_c1[] = {nullptr, &forward_block<R, B, 2>...};  // 1 channel
  static constexpr Forward forward_c16[] = {nullptr, &forward_block<R, B, 2 * C>...};
  static constexpr Backward backward[] = {nullptr, &backward_block<R, B>...};
  static constexpr Weight weight[] = {nullptr, &weight_block<B, false>...};
};
typedef Blocks<1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16> Row;
typedef Blocks<2, 1, 2, 3, 4, 5, 6, 7, 8> TwoRows;
typedef Blocks<4, 1, 2, 3, 4> FourRows;

// Rows per block for an output `wout` pixels wide with `left` rows to go: at most 16 sums.
int rows_per_block(int wout, int left) {
  if (wout <= 4 && left >= 4) return 4;
  if (wout <= 8 && left >= 2) return 2;
  return 1;
}

Forward forward_for(int rows, int cols, int cin) {
  if (rows == 4)
    return (cin == C ? FourRows::forward_c16 : cin == 1 ? FourRows::forward_c1
                                                         : FourRows::forward)[cols];
  if (rows == 2)
    return (cin == C ? TwoRows::forward_c16 : cin == 1 ? TwoRows::forward_c1
                                                        : TwoRows::forward)[cols];
  return (cin == C ? Row::forward_c16 : cin == 1 ? Row::forward_c1 : Row::forward)[cols];
}

Backward backward_for(int rows, int cols) {
  return rows == 4 ? FourRows::backward[cols]
         : rows == 2 ? TwoRows::backward[cols] : Row::backward[cols];
}

void conv_forward(const Layer& g, const float* in, const float* w, const float* bias, float* out,
                  int out_row, int out_col, int out_corner) {
  for (int oy = 0; oy < g.hout;) {
    const int rows = rows_per_block(g.wout, g.hout - oy);
    for (int ox = 0; ox < g.wout; ox += BLOCK / rows) {
      const int cols = std::min(BLOCK / rows, g.wout - ox);
      forward_for(rows, cols, g.cin)(in + g.corner(oy, ox), 2 * g.wp * g.cin, 2 * g.cin,
                                     g.off.data(), w, g.k, bias,
                                     out + out_corner + oy * out_row + ox * out_col, out_row,
                                     out_col);
    }
    oy += rows;
  }
}

// The input gradient of a layer with 16 input channels, added into the padded buffer `din`,
// tap by tap: tap (ky, kx) of output pixel (oy, ox) reads padded input pixel (2oy+ky, 2ox+kx).
void conv_backward_input(const Layer& g, const float* dz, const float* wt, const int* identity,
                         float* din) {
  for (int t = 0; t < 9; ++t) {
    const int ky = t / 3, kx = t % 3;
    for (int oy = 0; oy < g.hout;) {
      const int rows = rows_per_block(g.wout, g.hout - oy);
      for (int ox = 0; ox < g.wout; ox += BLOCK / rows) {
        const int cols = std::min(BLOCK / rows, g.wout - ox);
        backward_for(rows, cols)(dz + (oy * g.wout + ox) * C, g.wout * C, identity,
                                 wt + t * C * C, din + ((2 * oy + ky) * g.wp + 2 * ox + kx) * C,
                                 2 * g.wp * C);
      }
      oy += rows;
    }
  }
}

void conv_backward_weight(const Layer& g, const float* in, const float* dz, float* gw,
                          float* gb) {
  v16 bias = load(gb);
  for (int p = 0; p < g.hout * g.wout; ++p) bias += load(dz + p * C);
  store(gb, bias);
  for (int j = 0; j < g.k; j += C) {
    const int n = std::min(C, g.k - j);
    if (n == C && g.cin % C == 0)
      weight_block<C, true>(g, in, g.off.data() + j, dz, gw + j * C);
    else
      Row::weight[n](g, in, g.off.data() + j, dz, gw + j * C);
  }
}

struct Network {
  std::vector<Layer> layers;
  int classes;
  int64_t size;  // floats of one network's parameters
};

// One network's parameters rearranged for the kernels, and its gradient in that arrangement.
struct Weights {
  std::vector<std::vector<float>> w, wt, b;  // per layer: [tap][co], [tap][co][ci], [co]
  std::vector<float> dense, dense_bias;      // [class][16], [class]

  // `transposed`: also the transposed weights, which only the backward pass reads (a
  // gradient has none).
  Weights(const Network& net, bool transposed) {
    for (const Layer& g : net.layers) {
      w.emplace_back(g.k * C, 0.f);
      wt.emplace_back(transposed && g.cin == C ? 9 * C * C : 0, 0.f);
      b.emplace_back(C, 0.f);
    }
    dense.assign(net.classes * C, 0.f);
    dense_bias.assign(net.classes, 0.f);
  }

  void zero() {
    for (auto* group : {&w, &wt, &b})
      for (std::vector<float>& values : *group) std::fill(values.begin(), values.end(), 0.f);
    std::fill(dense.begin(), dense.end(), 0.f);
    std::fill(dense_bias.begin(), dense_bias.end(), 0.f);
  }

  // Reads (read) or writes (!read) a flat row in torch's order: per layer the weight
  // (out, in, 3, 3) and the bias, then the dense weight (classes, 16) and bias.
  void convert(const Network& net, float* row, bool read) {
    for (size_t l = 0; l < net.layers.size(); ++l) {
      const Layer& g = net.layers[l];
      for (int co = 0; co < C; ++co)
        for (int ci = 0; ci < g.cin; ++ci)
          for (int t = 0; t < 9; ++t) {
            float& torch_value = row[(co * g.cin + ci) * 9 + t];
            float& ours = w[l][(t * g.cin + ci) * C + co];
            if (read) {
              ours = torch_value;
              if (!wt[l].empty()) wt[l][(t * C + co) * C + ci] = torch_value;
            } else {
              torch_value = ours;
            }
          }
      row += g.k * C;
      for (int co = 0; co < C; ++co) read ? (b[l][co] = row[co]) : (row[co] = b[l][co]);
      row += C;
    }
    for (size_t i = 0; i < dense.size(); ++i) read ? (dense[i] = row[i]) : (row[i] = dense[i]);
    row += dense.size();
    for (int c = 0; c < net.classes; ++c)
      read ? (dense_bias[c] = row[c]) : (row[c] = dense_bias[c]);
  }
};

// Per-thread buffers of one example: each layer's padded input, its output gradient, and the
// padded gradient its input receives.
struct Scratch {
  std::vector<std::vector<float>> input, dz, din;
  std::vector<float> last, logits;

  Scratch(const Network& net) {
    for (const Layer& g : net.layers) {
      input.emplace_back(g.padded(), 0.f);  // the border stays zero: only the interior is written
      dz.emplace_back(g.hout * g.wout * C, 0.f);
      din.emplace_back(g.cin == C ? g.padded() : 0, 0.f);
    }
    last.assign(net.layers.back().hout * net.layers.back().wout * C, 0.f);
    logits.assign(net.classes, 0.f);
  }
};

// One network's forward pass on one example: its logits into s.logits; returns the pooled
// features.
v16 forward(const Network& net, const Weights& p, Scratch& s, const float* x) {
  const int depth = static_cast<int>(net.layers.size());
  const Layer& first = net.layers[0];
  float* in0 = s.input[0].data();
  for (int c = 0; c < first.cin; ++c)  // NCHW example -> padded channels-last interior
    for (int i = 0; i < first.h; ++i)
      for (int j = 0; j < first.w; ++j)
        in0[((i + 1) * first.wp + j + 1) * first.cin + c] = x[(c * first.h + i) * first.w + j];

  for (int l = 0; l < depth; ++l) {
    const Layer& g = net.layers[l];
    if (l + 1 < depth) {  // into the next layer's padded input, one pixel in from the corner
      const Layer& next = net.layers[l + 1];
      conv_forward(g, s.input[l].data(), p.w[l].data(), p.b[l].data(), s.input[l + 1].data(),
                   next.wp * C, C, (next.wp + 1) * C);
    } else {
      conv_forward(g, s.input[l].data(), p.w[l].data(), p.b[l].data(), s.last.data(),
                   g.wout * C, C, 0);
    }
  }
  const Layer& top = net.layers[depth - 1];
  const int pixels = top.hout * top.wout;
  v16 pooled = {};
  for (int q = 0; q < pixels; ++q) pooled += load(s.last.data() + q * C);
  pooled /= static_cast<float>(pixels);
  for (int c = 0; c < net.classes; ++c)
    s.logits[c] = sum(load(p.dense.data() + c * C) * pooled) + p.dense_bias[c];
  return pooled;
}

// The forward and backward pass of one network on one example; returns its cross-entropy.
float example(const Network& net, const Weights& p, Weights& grad, Scratch& s, const float* x,
              int64_t label, float scale, const int* identity) {
  const v16 pooled = forward(net, p, s, x);
  const int depth = static_cast<int>(net.layers.size());
  const Layer& top = net.layers[depth - 1];
  const int pixels = top.hout * top.wout;
  float peak = s.logits[0];  // NaN-proof: a NaN logit reaches `total` through exp
  for (int c = 1; c < net.classes; ++c) peak = s.logits[c] > peak ? s.logits[c] : peak;
  float total = 0.f;
  for (int c = 0; c < net.classes; ++c) total += std::exp(s.logits[c] - peak);
  const float ce = peak + std::log(total) - s.logits[label];

  // d(mean loss)/d logits = (softmax - onehot) * scale, scale = 1 / batch size.
  v16 dpooled = {};
  for (int c = 0; c < net.classes; ++c) {
    const float dl = (std::exp(s.logits[c] - peak) / total - (c == label)) * scale;
    store(grad.dense.data() + c * C, load(grad.dense.data() + c * C) + dl * pooled);
    grad.dense_bias[c] += dl;
    dpooled += dl * load(p.dense.data() + c * C);
  }
  dpooled /= static_cast<float>(pixels);
  float* dz = s.dz[depth - 1].data();
  for (int q = 0; q < pixels; ++q)
    store(dz + q * C, relu_backward(load(s.last.data() + q * C), dpooled));

  for (int l = depth - 1; l >= 0; --l) {
    const Layer& g = net.layers[l];
    conv_backward_weight(g, s.input[l].data(), s.dz[l].data(), grad.w[l].data(),
                         grad.b[l].data());
    if (l == 0) break;
    float* din = s.din[l].data();
    std::memset(din, 0, sizeof(float) * g.padded());
    conv_backward_input(g, s.dz[l].data(), p.wt[l].data(), identity, din);
    float* below = s.dz[l - 1].data();  // the layer below's output gradient, through its ReLU
    const float* act = s.input[l].data();
    for (int i = 0; i < g.h; ++i)
      for (int j = 0; j < g.w; ++j) {
        const int at = ((i + 1) * g.wp + j + 1) * C;
        store(below + (i * g.w + j) * C, relu_backward(load(act + at), load(din + at)));
      }
  }
  return ce;
}

// Networks first, first + stride, ... of `rows`: their cross-entropies into `out` (rows x n) and
// gradients, or (with no labels) their logits into `out` (rows x n x classes).
void train_rows(const Network& net, const float* x, const int64_t* y, int64_t n, int64_t batch,
                const float* params, int64_t first, int64_t stride, int64_t rows, float* out,
                float* grads) {
  int identity[C];
  for (int i = 0; i < C; ++i) identity[i] = i;
  const int64_t example_size = static_cast<int64_t>(net.layers[0].cin) * net.layers[0].h *
                               net.layers[0].w;
  Weights p(net, y != nullptr), grad(net, false);  // transposed weights: backward pass only
  Scratch s(net);
  for (int64_t r = first; r < rows; r += stride) {
    p.convert(net, const_cast<float*>(params + r * net.size), true);
    if (y == nullptr) {
      for (int64_t e = 0; e < n; ++e) {
        forward(net, p, s, x + e * example_size);
        std::copy(s.logits.begin(), s.logits.end(), out + (r * n + e) * net.classes);
      }
      continue;
    }
    grad.zero();
    for (int64_t e = 0; e < n; ++e)
      out[r * n + e] = example(net, p, grad, s, x + e * example_size, y[e], 1.f / batch,
                               identity);
    grad.convert(net, grads + r * net.size, false);
  }
}

int step(const float* x, const int64_t* y, int64_t n, int64_t cin, int64_t h, int64_t w,
         int64_t depth, int64_t classes, int64_t batch, const float* params, int64_t rows,
         int64_t size, float* ces, float* grads, int64_t threads) {
  for (int64_t e = 0; y != nullptr && e < n; ++e)
    if (y[e] < 0 || y[e] >= classes) return -1;
  Network net;
  net.classes = static_cast<int>(classes);
  int channels = static_cast<int>(cin), height = static_cast<int>(h), width = static_cast<int>(w);
  int64_t expected = 0;
  for (int64_t l = 0; l < depth; ++l) {
    net.layers.emplace_back(channels, height, width);
    expected += static_cast<int64_t>(net.layers.back().k) * C + C;
    channels = C;
    height = net.layers.back().hout;
    width = net.layers.back().wout;
  }
  expected += classes * C + classes;
  if (expected != size) return -2;
  net.size = size;
  const int64_t workers = std::max<int64_t>(1, std::min(threads, rows));
  std::atomic<bool> failed{false};
  auto work = [&](int64_t first, int64_t stride) {
    try {
      train_rows(net, x, y, n, batch, params, first, stride, rows, ces, grads);
    } catch (...) {
      failed = true;
    }
  };
  std::vector<std::thread> pool;
  int64_t started = 1;  // this thread takes row 0, 0 + workers, ...
  try {
    pool.reserve(workers - 1);
    for (; started < workers; ++started) pool.emplace_back(work, started, workers);
  } catch (...) {
    // fewer threads than asked (a container's limit): the rows of those not started run here
  }
  work(0, workers);
  for (int64_t t = started; t < workers; ++t) work(t, workers);
  for (std::thread& thread : pool) thread.join();
  return failed ? -3 : 0;
}

}  // namespace

extern "C" {

// Cross-entropies (rows x n) and mean-loss gradients (rows x size, torch's parameter order) of
// `rows` networks, each a row of `params`, on n examples x (n x cin x h x w, float32) with labels
// y; the loss is the mean over `batch` examples (n of them here). Returns 0, or -1 for a label
// out of range, -2 for a parameter row of the wrong size, -3 when memory or a thread could not
// be had (no C++ exception may cross into the caller). (With y null: the logits, below.)
int small_cnn_step(const float* x, const int64_t* y, int64_t n, int64_t cin, int64_t h,
                   int64_t w, int64_t depth, int64_t classes, int64_t batch, const float* params,
                   int64_t rows, int64_t size, float* ces, float* grads, int64_t threads) {
  try {
    return step(x, y, n, cin, h, w, depth, classes, batch, params, rows, size, ces, grads,
                threads);
  } catch (...) {  // the layers' tables could not be allocated
    return -3;
  }
}

// The logits (rows x n x classes) of the networks on x, in evaluation: the forward pass alone.
int small_cnn_logits(const float* x, int64_t n, int64_t cin, int64_t h, int64_t w,
                     int64_t depth, int64_t classes, const float* params, int64_t rows,
                     int64_t size, float* logits, int64_t threads) {
  return small_cnn_step(x, nullptr, n, cin, h, w, depth, classes, n, params, rows, size, logits,
                        nullptr, threads);
}

// 1 when this build holds a pixel's 16 channels in one register (AVX-512), where the kernel is
// fast; 0 otherwise: split over narrower registers its sums no longer fit in them, and a step
// (16 networks, batch 512) took 1.0-1.07 s built for AVX2, 0.09 s for AVX-512.
int small_cnn_vectorized() {
#if defined(__AVX512F__)
  return 1;
#else
  return 0;
#endif
}

}  // extern "C"
