// A single-layer GRU (and BRC, nBRC, MGU, below) over whole sequences on the CPU, forward and
// backward, for small batches.
//
// torch has no fused GRU kernel on the CPU: its composite loop dispatches about ten small ATen
// operations per time step (~20 us for 8 x 64 on one core), as does any loop of ATen calls. Here
// each step is one matrix product (ATen's addmm into a preallocated buffer) and one plain loop over
// the batch and units that the compiler vectorises. The forward saves the gates for the backward.
// Same equations as torch.nn.GRU:
//   r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r * gh_n),
//   h' = (1 - z) * n + z * h,  with gi = W_ih x + b_ih and gh = W_hh h + b_hh.
// Built at first use by rl_warmup/gru_ext.py (torch.utils.cpp_extension); results agree with
// torch.gru to float round-off, not bit for bit.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// One step of the gates. gi, gh: (B, 3H) rows; h_prev, h_out: (B, H); gates: (B, 4H) = r, z, n, gh_n.
template <typename T>
void step_forward(const T* gi, const T* gh, const T* h_prev, T* h_out, T* gates, int64_t batch, int64_t hidden,
                  int64_t gi_row) {
  for (int64_t b = 0; b < batch; ++b) {
    const T* gib = gi + b * gi_row;
    const T* ghb = gh + b * 3 * hidden;
    const T* hp = h_prev + b * hidden;
    T* ho = h_out + b * hidden;
    T* g = gates + b * 4 * hidden;
#pragma omp simd
    for (int64_t j = 0; j < hidden; ++j) {
      const T r = sigmoid(gib[j] + ghb[j]);
      const T z = sigmoid(gib[hidden + j] + ghb[hidden + j]);
      const T ghn = ghb[2 * hidden + j];
      const T n = std::tanh(gib[2 * hidden + j] + r * ghn);
      ho[j] = n + z * (hp[j] - n);
      g[j] = r;
      g[hidden + j] = z;
      g[2 * hidden + j] = n;
      g[3 * hidden + j] = ghn;
    }
  }
}

// One step of the backward. dh: (B, H) the total gradient of h_t (its output's plus the carry);
// writes d(pre-activations) of gi and gh, (B, 3H) each, and dh * z into carry (B, H).
template <typename T>
void step_backward(const T* dh, const T* gates, const T* h_prev, T* dgi, T* dgh, T* carry, int64_t batch,
                   int64_t hidden) {
  for (int64_t b = 0; b < batch; ++b) {
    const T* d = dh + b * hidden;
    const T* g = gates + b * 4 * hidden;
    const T* hp = h_prev + b * hidden;
    T* di = dgi + b * 3 * hidden;
    T* dg = dgh + b * 3 * hidden;
    T* c = carry + b * hidden;
#pragma omp simd
    for (int64_t j = 0; j < hidden; ++j) {
      const T r = g[j], z = g[hidden + j], n = g[2 * hidden + j], ghn = g[3 * hidden + j];
      const T d_pre_n = d[j] * (T(1) - z) * (T(1) - n * n);
      const T d_pre_z = d[j] * (hp[j] - n) * z * (T(1) - z);
      const T d_pre_r = d_pre_n * ghn * r * (T(1) - r);
      di[j] = d_pre_r;
      di[hidden + j] = d_pre_z;
      di[2 * hidden + j] = d_pre_n;
      dg[j] = d_pre_r;
      dg[hidden + j] = d_pre_z;
      dg[2 * hidden + j] = d_pre_n * r;
      c[j] = d[j] * z;
    }
  }
}

// acc (B, N) = bias (N) + a (B, K) @ wt (K, N), all row-major, or acc += a @ wt where bias is
// null; for the small products of one time step, where a library call costs more in dispatch
// than in arithmetic.
// blocked_tail: an odd last row is summed four rows of wt per pass as the pairs are (instead of
// one per pass, several times slower); the first version's kernels (GRU without active rows,
// BRC, nBRC, MGU) keep the per-row loop, whose sums they reproduce bit for bit.
template <typename T>
void small_addmm(const T* bias, const T* a, const T* wt, T* acc, int64_t batch, int64_t k_dim, int64_t n_dim,
                 bool blocked_tail = false) {
  int64_t b = 0;
  for (; b + 2 <= batch; b += 2) {  // two rows of acc per pass over wt: each load of wt used twice
    T* r0 = acc + b * n_dim;
    T* r1 = r0 + n_dim;
    const T* a0 = a + b * k_dim;
    const T* a1 = a0 + k_dim;
    if (bias != nullptr) {
#pragma omp simd
      for (int64_t n = 0; n < n_dim; ++n) r0[n] = r1[n] = bias[n];
    }
    int64_t k = 0;
    for (; k + 4 <= k_dim; k += 4) {  // four rows of wt per pass over acc
      const T *w0 = wt + k * n_dim, *w1 = w0 + n_dim, *w2 = w1 + n_dim, *w3 = w2 + n_dim;
      const T u0 = a0[k], u1 = a0[k + 1], u2 = a0[k + 2], u3 = a0[k + 3];
      const T v0 = a1[k], v1 = a1[k + 1], v2 = a1[k + 2], v3 = a1[k + 3];
#pragma omp simd
      for (int64_t n = 0; n < n_dim; ++n) {
        const T x0 = w0[n], x1 = w1[n], x2 = w2[n], x3 = w3[n];
        r0[n] += (u0 * x0 + u1 * x1) + (u2 * x2 + u3 * x3);
        r1[n] += (v0 * x0 + v1 * x1) + (v2 * x2 + v3 * x3);
      }
    }
    for (; k < k_dim; ++k) {
      const T* w = wt + k * n_dim;
      const T u = a0[k], v = a1[k];
#pragma omp simd
      for (int64_t n = 0; n < n_dim; ++n) {
        r0[n] += u * w[n];
        r1[n] += v * w[n];
      }
    }
  }
  for (; b < batch; ++b) {  // the odd last row: four rows of wt per pass (blocked_tail), or one
    T* row = acc + b * n_dim;
    const T* ab = a + b * k_dim;
    if (bias != nullptr) {
#pragma omp simd
      for (int64_t n = 0; n < n_dim; ++n) row[n] = bias[n];
    }
    int64_t k = 0;
    for (; blocked_tail && k + 4 <= k_dim; k += 4) {
      const T *w0 = wt + k * n_dim, *w1 = w0 + n_dim, *w2 = w1 + n_dim, *w3 = w2 + n_dim;
      const T u0 = ab[k], u1 = ab[k + 1], u2 = ab[k + 2], u3 = ab[k + 3];
#pragma omp simd
      for (int64_t n = 0; n < n_dim; ++n) row[n] += (u0 * w0[n] + u1 * w1[n]) + (u2 * w2[n] + u3 * w3[n]);
    }
    for (; k < k_dim; ++k) {
      const T v = ab[k];
      const T* w = wt + k * n_dim;
#pragma omp simd
      for (int64_t n = 0; n < n_dim; ++n) row[n] += v * w[n];
    }
  }
}

// out = a + b, elementwise over n values.
template <typename T>
void add(const T* a, const T* b, T* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// Per step, the library's product (at::addmm_out) above this many multiply-adds.
constexpr int64_t kSmallProduct = 1 << 20;

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "gru_cpu: ", name, " must be on the CPU");
  TORCH_CHECK(t.is_contiguous(), "gru_cpu: ", name, " must be contiguous");
}


// Rows still running at step t of sequences sorted by decreasing length: active is empty (every
// row runs every step) or (T,) int64, non-increasing; rows >= active[t] have ended before step t.
inline int64_t rows_at(const at::Tensor& active, int64_t t, int64_t batch) {
  return active.numel() == 0 ? batch : active.data_ptr<int64_t>()[t];
}

// Rows whose last step is t: those from rows_after(t) to rows_at(t) (none run after the last step).
inline int64_t rows_after(const at::Tensor& active, int64_t t, int64_t steps, int64_t batch) {
  return t + 1 >= steps ? 0 : rows_at(active, t + 1, batch);
}

// a^T @ b for a (N, M), b (N, K): the weight gradients, summed over the N = steps * batch
// positions. The library's product is several times slower with a transposed left operand and
// a few columns on the right (M = 256, K = 2, N = 480: 144 us, against 43 us for (b^T a)^T), so
// a narrow b goes on the left; at K = 64 both orders cost the same.
at::Tensor t_mm(const at::Tensor& a, const at::Tensor& b) {
  if (b.size(1) < 16 && b.size(1) < a.size(1)) return at::mm(b.t(), a).t().contiguous();
  return at::mm(a.t(), b);
}

void check_active(const at::Tensor& active, int64_t steps, int64_t batch) {
  if (active.numel() == 0) return;
  TORCH_CHECK(active.dim() == 1 && active.size(0) == steps && active.scalar_type() == at::kLong &&
                  active.is_contiguous() && active.device().is_cpu(),
              "gru_cpu: active must be a contiguous (steps,) int64 CPU tensor");
  const int64_t* a = active.data_ptr<int64_t>();
  for (int64_t t = 0; t < steps; ++t) {
    TORCH_CHECK(a[t] >= 0 && a[t] <= batch && (t == 0 || a[t] <= a[t - 1]),
                "gru_cpu: active must be non-increasing, within 0 .. batch");
  }
}


// The state before each step, time-major (T, B, H): h0, then the outputs but the last.
at::Tensor states_before(const at::Tensor& h0, const at::Tensor& out) {
  return at::cat({h0.unsqueeze(0), out.transpose(0, 1).slice(0, 0, out.size(1) - 1)}, 0).contiguous();
}

// From the gradients of the input projection d_in and of the recurrent product d_rec, both
// (T, B, G) time-major: d_x (B, T, I) (undefined unless need_dx), d_w_ih and d_w_hh. first_version:
// the GRU's products of the kernel's first version (bit for bit the runs made with it).
std::vector<at::Tensor> input_and_weight_grads(const at::Tensor& d_in, const at::Tensor& d_rec, const at::Tensor& x,
                                               const at::Tensor& w_ih, const at::Tensor& prev, bool need_dx,
                                               bool first_version) {
  const int64_t steps = x.size(1), batch = x.size(0);
  auto d_in2 = d_in.view({steps * batch, d_in.size(2)});
  auto d_rec2 = d_rec.view({steps * batch, d_rec.size(2)});
  auto xt = x.transpose(0, 1).reshape({steps * batch, x.size(2)});
  auto prev2 = prev.view({steps * batch, prev.size(2)});
  at::Tensor d_x;
  if (need_dx) d_x = at::mm(d_in2, w_ih).view({steps, batch, x.size(2)}).transpose(0, 1);
  if (first_version) return {d_x, at::mm(d_in2.t(), xt), at::mm(d_rec2.t(), prev2)};
  return {d_x, t_mm(d_in2, xt), t_mm(d_rec2, prev2)};
}

}  // namespace

// x: (B, T, I) batch-first; h0: (B, H); active: see rows_at (empty: every row runs every step).
// Returns out (B, T, H) (zeros after each row's last step), each row's final state h_n (B, H)
// (its state after its last step) and gates (T, B, 4H) for the backward.
std::vector<at::Tensor> gru_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
                                    const at::Tensor& w_hh, const at::Tensor& b_ih, const at::Tensor& b_hh,
                                    const at::Tensor& active) {
  at::NoGradGuard no_grad;
  const int64_t batch = x.size(0), steps = x.size(1), hidden = h0.size(1);
  check_active(active, steps, batch);
  auto h0c = h0.contiguous();
  // input projection of every step at once, time-major: (T, B, 3H)
  auto gi = at::addmm(b_ih, x.transpose(0, 1).reshape({steps * batch, x.size(2)}), w_ih.t()).view(
      {steps, batch, 3 * hidden});
  // rows that have ended read as zeros (filled step by step: the backward's products over every
  // position need finite values there); their gates are never read
  auto out = at::empty({steps, batch, hidden}, x.options());
  auto gates = at::empty({steps, batch, 4 * hidden}, x.options());
  auto h_n = at::empty({batch, hidden}, x.options());
  auto gh = at::empty({batch, 3 * hidden}, x.options());
  auto w_hh_t = w_hh.t().contiguous();  // (H, 3H)
  auto b_hh_c = b_hh.contiguous();
  check(gi, "input projection");
  const bool small = batch * hidden * 3 * hidden <= kSmallProduct;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_forward", [&] {
    const int64_t bh = batch * hidden;
    const scalar_t* gi_p = gi.data_ptr<scalar_t>();
    const scalar_t* w_p = w_hh_t.data_ptr<scalar_t>();
    const scalar_t* bias_p = b_hh_c.data_ptr<scalar_t>();
    scalar_t* out_p = out.data_ptr<scalar_t>();
    scalar_t* gates_p = gates.data_ptr<scalar_t>();
    scalar_t* gh_p = gh.data_ptr<scalar_t>();
    scalar_t* hn_p = h_n.data_ptr<scalar_t>();
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t rows = rows_at(active, t, batch);
      const scalar_t* prev_p = t == 0 ? h0c.data_ptr<scalar_t>() : out_p + (t - 1) * bh;
      if (small) {
        small_addmm<scalar_t>(bias_p, prev_p, w_p, gh_p, rows, hidden, 3 * hidden, active.numel() > 0);
      } else {
        auto gh_rows = gh.narrow(0, 0, rows);
        at::addmm_out(gh_rows, b_hh_c, (t == 0 ? h0c : out[t - 1]).narrow(0, 0, rows), w_hh_t);
      }
      step_forward<scalar_t>(gi_p + t * 3 * bh, gh_p, prev_p, out_p + t * bh, gates_p + t * 4 * bh, rows, hidden,
                             3 * hidden);
      std::fill(out_p + t * bh + rows * hidden, out_p + (t + 1) * bh, scalar_t(0));  // rows that have ended
      const int64_t ending = rows_after(active, t, steps, batch);  // rows ending here: ending .. rows
      std::copy(out_p + t * bh + ending * hidden, out_p + t * bh + rows * hidden, hn_p + ending * hidden);
    }
  });
  return {out.transpose(0, 1).contiguous(), h_n, gates};
}

// grads: (T, B, H) the gradient of each step's output, time-major; g_hn: (B, H) that of each row's
// final state (zeros when unused); active as in gru_forward. Returns d_x (B, T, I), d_h0 (B, H),
// d_w_ih, d_w_hh, d_b_ih, d_b_hh.
std::vector<at::Tensor> gru_backward(const at::Tensor& grads, const at::Tensor& g_hn, const at::Tensor& x,
                                     const at::Tensor& h0, const at::Tensor& out, const at::Tensor& gates,
                                     const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& active,
                                     bool need_dx) {
  at::NoGradGuard no_grad;
  const int64_t batch = out.size(0), steps = out.size(1), hidden = out.size(2);
  check(grads, "grads");
  check(gates, "gates");
  check_active(active, steps, batch);
  auto prev = states_before(h0, out);
  // rows that have ended get zero gradients (filled step by step), so the weight gradients sum over
  // running rows only
  auto dgi = at::empty({steps, batch, 3 * hidden}, grads.options());
  auto dgh = at::empty({steps, batch, 3 * hidden}, grads.options());
  auto carry = at::empty({batch, hidden}, grads.options());
  auto dh = at::empty({batch, hidden}, grads.options());
  auto rec = at::zeros({batch, hidden}, grads.options());  // what flows into h_t from later steps
  auto g_last = g_hn.contiguous();
  auto w_hh_c = w_hh.contiguous();  // (3H, H)
  auto zero_bias = at::zeros({hidden}, grads.options());
  const bool small = batch * hidden * 3 * hidden <= kSmallProduct;
  AT_DISPATCH_FLOATING_TYPES(grads.scalar_type(), "gru_backward", [&] {
    const int64_t bh = batch * hidden;
    const scalar_t* g_p = grads.data_ptr<scalar_t>();
    const scalar_t* gl_p = g_last.data_ptr<scalar_t>();
    const scalar_t* gates_p = gates.data_ptr<scalar_t>();
    const scalar_t* prev_p = prev.data_ptr<scalar_t>();
    const scalar_t* w_p = w_hh_c.data_ptr<scalar_t>();
    scalar_t* dgi_p = dgi.data_ptr<scalar_t>();
    scalar_t* dgh_p = dgh.data_ptr<scalar_t>();
    scalar_t* rec_p = rec.data_ptr<scalar_t>();
    scalar_t* dh_p = dh.data_ptr<scalar_t>();
    scalar_t* carry_p = carry.data_ptr<scalar_t>();
    for (int64_t t = steps - 1; t >= 0; --t) {
      const int64_t rows = rows_at(active, t, batch);
      const int64_t ending = rows_after(active, t, steps, batch);
      // the final state's gradient enters at each row's last step
      add<scalar_t>(rec_p + ending * hidden, gl_p + ending * hidden, rec_p + ending * hidden, (rows - ending) * hidden);
      add<scalar_t>(g_p + t * bh, rec_p, dh_p, rows * hidden);
      step_backward<scalar_t>(dh_p, gates_p + t * 4 * bh, prev_p + t * bh, dgi_p + t * 3 * bh, dgh_p + t * 3 * bh,
                              carry_p, rows, hidden);
      std::fill(dgi_p + t * 3 * bh + rows * 3 * hidden, dgi_p + (t + 1) * 3 * bh, scalar_t(0));  // ended rows
      std::fill(dgh_p + t * 3 * bh + rows * 3 * hidden, dgh_p + (t + 1) * 3 * bh, scalar_t(0));
      if (small) {
        small_addmm<scalar_t>(zero_bias.data_ptr<scalar_t>(), dgh_p + t * 3 * bh, w_p, rec_p, rows, 3 * hidden,
                              hidden, active.numel() > 0);
        add<scalar_t>(rec_p, carry_p, rec_p, rows * hidden);
      } else {
        auto rec_rows = rec.narrow(0, 0, rows);
        at::addmm_out(rec_rows, carry.narrow(0, 0, rows), dgh[t].narrow(0, 0, rows), w_hh_c);
      }
    }
  });
  // without active rows, the first version's products (GRU warmups and runs made with it reproduce)
  auto grads_x_w = input_and_weight_grads(dgi, dgh, x, w_ih, prev, need_dx, active.numel() == 0);
  return {grads_x_w[0], rec, grads_x_w[1], grads_x_w[2], dgi.sum({0, 1}), dgh.sum({0, 1})};
}

// ---------------------------------------------------------------------------------------------
// LSTM over whole sequences, the same way (torch.nn.LSTM's equations and gate order i, f, g, o):
//   i = sigmoid(p_i), f = sigmoid(p_f), g = tanh(p_g), o = sigmoid(p_o),
//   c' = f * c + i * g,  h' = o * tanh(c'),  with p = W_ih x + b_ih + W_hh h + b_hh.
// ---------------------------------------------------------------------------------------------
namespace {

// One step. pre: (B, 4H) the pre-activations; c_prev, c_out, h_out: (B, H); gates: (B, 5H) =
// i, f, g, o, tanh(c').
template <typename T>
void lstm_step_forward(const T* pre, const T* c_prev, T* c_out, T* h_out, T* gates, int64_t batch, int64_t hidden) {
  for (int64_t b = 0; b < batch; ++b) {
    const T* p = pre + b * 4 * hidden;
    const T* cp = c_prev + b * hidden;
    T* co = c_out + b * hidden;
    T* ho = h_out + b * hidden;
    T* g = gates + b * 5 * hidden;
#pragma omp simd
    for (int64_t j = 0; j < hidden; ++j) {
      const T i = sigmoid(p[j]), f = sigmoid(p[hidden + j]), gg = std::tanh(p[2 * hidden + j]),
              o = sigmoid(p[3 * hidden + j]);
      const T c = f * cp[j] + i * gg;
      const T tc = std::tanh(c);
      co[j] = c;
      ho[j] = o * tc;
      g[j] = i;
      g[hidden + j] = f;
      g[2 * hidden + j] = gg;
      g[3 * hidden + j] = o;
      g[4 * hidden + j] = tc;
    }
  }
}

// One step of the backward. dh: (B, H) the total gradient of h_t; dc: (B, H) that of c_t from
// later steps, replaced by the gradient flowing into c_{t-1}; writes d(pre-activations) (B, 4H).
template <typename T>
void lstm_step_backward(const T* dh, T* dc, const T* gates, const T* c_prev, T* dpre, int64_t batch, int64_t hidden) {
  for (int64_t b = 0; b < batch; ++b) {
    const T* d = dh + b * hidden;
    T* dcb = dc + b * hidden;
    const T* g = gates + b * 5 * hidden;
    const T* cp = c_prev + b * hidden;
    T* dp = dpre + b * 4 * hidden;
#pragma omp simd
    for (int64_t j = 0; j < hidden; ++j) {
      const T i = g[j], f = g[hidden + j], gg = g[2 * hidden + j], o = g[3 * hidden + j], tc = g[4 * hidden + j];
      const T dct = dcb[j] + d[j] * o * (T(1) - tc * tc);
      dp[j] = dct * gg * i * (T(1) - i);
      dp[hidden + j] = dct * cp[j] * f * (T(1) - f);
      dp[2 * hidden + j] = dct * i * (T(1) - gg * gg);
      dp[3 * hidden + j] = d[j] * tc * o * (T(1) - o);
      dcb[j] = dct * f;
    }
  }
}

}  // namespace

// x: (B, T, I) batch-first; h0, c0: (B, H); active as in gru_forward. Returns out (B, T, H) (zeros
// after each row's last step), each row's final h_n and c_n (B, H), every step's cell state
// (T, B, H) and gates (T, B, 5H) for the backward.
std::vector<at::Tensor> lstm_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                                     const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& b_ih,
                                     const at::Tensor& b_hh, const at::Tensor& active) {
  at::NoGradGuard no_grad;
  const int64_t batch = x.size(0), steps = x.size(1), hidden = h0.size(1);
  check_active(active, steps, batch);
  auto h0c = h0.contiguous();
  auto c0c = c0.contiguous();
  // input projection and both biases for every step at once, time-major: (T, B, 4H); each step
  // adds its recurrent product into it
  auto pre = at::addmm(b_ih + b_hh, x.transpose(0, 1).reshape({steps * batch, x.size(2)}), w_ih.t())
                 .view({steps, batch, 4 * hidden});
  // as in gru_forward: zeros where rows have ended in the outputs (filled step by step), the
  // rest never read there
  auto out = at::empty({steps, batch, hidden}, x.options());
  auto cs = at::empty({steps, batch, hidden}, x.options());
  auto gates = at::empty({steps, batch, 5 * hidden}, x.options());
  auto h_n = at::empty({batch, hidden}, x.options());
  auto c_n = at::empty({batch, hidden}, x.options());
  auto w_hh_t = w_hh.t().contiguous();  // (H, 4H)
  check(pre, "input projection");
  const bool small = batch * hidden * 4 * hidden <= kSmallProduct;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_forward", [&] {
    const int64_t bh = batch * hidden;
    const scalar_t* w_p = w_hh_t.data_ptr<scalar_t>();
    scalar_t* pre_p = pre.data_ptr<scalar_t>();
    scalar_t* out_p = out.data_ptr<scalar_t>();
    scalar_t* cs_p = cs.data_ptr<scalar_t>();
    scalar_t* gates_p = gates.data_ptr<scalar_t>();
    scalar_t* hn_p = h_n.data_ptr<scalar_t>();
    scalar_t* cn_p = c_n.data_ptr<scalar_t>();
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t rows = rows_at(active, t, batch);
      const scalar_t* h_prev = t == 0 ? h0c.data_ptr<scalar_t>() : out_p + (t - 1) * bh;
      const scalar_t* c_prev = t == 0 ? c0c.data_ptr<scalar_t>() : cs_p + (t - 1) * bh;
      scalar_t* pre_t = pre_p + t * 4 * bh;
      if (small) {
        small_addmm<scalar_t>(nullptr, h_prev, w_p, pre_t, rows, hidden, 4 * hidden, true);
      } else {
        auto pre_rows = pre[t].narrow(0, 0, rows);
        pre_rows.addmm_((t == 0 ? h0c : out[t - 1]).narrow(0, 0, rows), w_hh_t);
      }
      lstm_step_forward<scalar_t>(pre_t, c_prev, cs_p + t * bh, out_p + t * bh, gates_p + t * 5 * bh, rows, hidden);
      std::fill(out_p + t * bh + rows * hidden, out_p + (t + 1) * bh, scalar_t(0));  // rows that have ended
      const int64_t ending = rows_after(active, t, steps, batch);
      std::copy(out_p + t * bh + ending * hidden, out_p + t * bh + rows * hidden, hn_p + ending * hidden);
      std::copy(cs_p + t * bh + ending * hidden, cs_p + t * bh + rows * hidden, cn_p + ending * hidden);
    }
  });
  return {out.transpose(0, 1).contiguous(), h_n, c_n, cs, gates};
}

// grads: (T, B, H) the gradient of each step's output, time-major; g_hn, g_cn: (B, H) those of each
// row's final states (zeros when unused); cs, gates from lstm_forward. Returns d_x (B, T, I), d_h0,
// d_c0 (B, H), d_w_ih, d_w_hh, d_b (the gradient of b_ih and of b_hh).
std::vector<at::Tensor> lstm_backward(const at::Tensor& grads, const at::Tensor& g_hn, const at::Tensor& g_cn,
                                      const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
                                      const at::Tensor& out, const at::Tensor& cs, const at::Tensor& gates,
                                      const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& active,
                                      bool need_dx) {
  at::NoGradGuard no_grad;
  const int64_t batch = out.size(0), steps = out.size(1), hidden = out.size(2);
  check(grads, "grads");
  check(gates, "gates");
  check(cs, "cell states");
  check_active(active, steps, batch);
  auto prev = states_before(h0, out);
  auto c0c = c0.contiguous();
  auto dpre = at::empty({steps, batch, 4 * hidden}, grads.options());
  auto dh = at::empty({batch, hidden}, grads.options());
  auto rec = at::zeros({batch, hidden}, grads.options());  // what flows into h_t from later steps
  auto dc = at::zeros({batch, hidden}, grads.options());   // and into c_t
  auto gh_last = g_hn.contiguous();
  auto gc_last = g_cn.contiguous();
  auto w_hh_c = w_hh.contiguous();  // (4H, H)
  auto zero_bias = at::zeros({hidden}, grads.options());
  const bool small = batch * hidden * 4 * hidden <= kSmallProduct;
  AT_DISPATCH_FLOATING_TYPES(grads.scalar_type(), "lstm_backward", [&] {
    const int64_t bh = batch * hidden;
    const scalar_t* g_p = grads.data_ptr<scalar_t>();
    const scalar_t* gh_p = gh_last.data_ptr<scalar_t>();
    const scalar_t* gc_p = gc_last.data_ptr<scalar_t>();
    const scalar_t* gates_p = gates.data_ptr<scalar_t>();
    const scalar_t* cs_p = cs.data_ptr<scalar_t>();
    const scalar_t* w_p = w_hh_c.data_ptr<scalar_t>();
    scalar_t* dpre_p = dpre.data_ptr<scalar_t>();
    scalar_t* rec_p = rec.data_ptr<scalar_t>();
    scalar_t* dc_p = dc.data_ptr<scalar_t>();
    scalar_t* dh_p = dh.data_ptr<scalar_t>();
    for (int64_t t = steps - 1; t >= 0; --t) {
      const int64_t rows = rows_at(active, t, batch);
      const int64_t ending = rows_after(active, t, steps, batch);
      const int64_t from = ending * hidden, n_end = (rows - ending) * hidden;
      add<scalar_t>(rec_p + from, gh_p + from, rec_p + from, n_end);
      add<scalar_t>(dc_p + from, gc_p + from, dc_p + from, n_end);
      add<scalar_t>(g_p + t * bh, rec_p, dh_p, rows * hidden);
      const scalar_t* c_prev = t == 0 ? c0c.data_ptr<scalar_t>() : cs_p + (t - 1) * bh;
      lstm_step_backward<scalar_t>(dh_p, dc_p, gates_p + t * 5 * bh, c_prev, dpre_p + t * 4 * bh, rows, hidden);
      std::fill(dpre_p + t * 4 * bh + rows * 4 * hidden, dpre_p + (t + 1) * 4 * bh, scalar_t(0));  // ended rows
      if (small) {
        small_addmm<scalar_t>(zero_bias.data_ptr<scalar_t>(), dpre_p + t * 4 * bh, w_p, rec_p, rows, 4 * hidden,
                              hidden, true);
      } else {
        auto rec_rows = rec.narrow(0, 0, rows);
        at::mm_out(rec_rows, dpre[t].narrow(0, 0, rows), w_hh_c);
      }
    }
  });
  auto grads_x_w = input_and_weight_grads(dpre, dpre, x, w_ih, prev, need_dx, false);
  return {grads_x_w[0], rec, dc, grads_x_w[1], grads_x_w[2], dpre.sum({0, 1})};
}

// ---------------------------------------------------------------------------------------------
// Bistable recurrent cells (Vecoven et al. 2021) over whole sequences: BRC (per-neuron feedback
// w_a, w_c) and nBRC (full feedback W_hh = [W_a; W_c]). With h_in = h * (1 - start_t):
//   a = 1 + tanh(p_a + r_a), c = sigmoid(p_c + r_c), n = tanh(p_x + a * h_in),
//   h' = c * h_in + (1 - c) * n,  r = w ⊙ h_in (BRC) or W h_in (nBRC).
// proj: (B, T, 3H) the input projections; starts: (B, T) episode starts or an empty tensor.
// ---------------------------------------------------------------------------------------------
namespace {

template <typename T>
void bistable_step_forward(const T* p, const T* r, const T* h_in, T* h_out, T* gates, int64_t batch, int64_t hidden,
                           int64_t p_row) {
  for (int64_t b = 0; b < batch; ++b) {
    const T* pb = p + b * p_row;
    const T* rb = r + b * 2 * hidden;
    const T* hp = h_in + b * hidden;
    T* ho = h_out + b * hidden;
    T* g = gates + b * 3 * hidden;
#pragma omp simd
    for (int64_t j = 0; j < hidden; ++j) {
      const T a = T(1) + std::tanh(pb[j] + rb[j]);
      const T c = sigmoid(pb[hidden + j] + rb[hidden + j]);
      const T n = std::tanh(pb[2 * hidden + j] + a * hp[j]);
      ho[j] = n + c * (hp[j] - n);
      g[j] = a;
      g[hidden + j] = c;
      g[2 * hidden + j] = n;
    }
  }
}

// r (B, 2H) = [w_a ⊙ h, w_c ⊙ h] for the BRC
template <typename T>
void brc_feedback(const T* w, const T* h, T* r, int64_t batch, int64_t hidden) {
  for (int64_t b = 0; b < batch; ++b) {
    const T* hb = h + b * hidden;
    T* rb = r + b * 2 * hidden;
#pragma omp simd
    for (int64_t j = 0; j < hidden; ++j) {
      rb[j] = w[j] * hb[j];
      rb[hidden + j] = w[hidden + j] * hb[j];
    }
  }
}

// h_in (B, H) = h * (1 - start[:, t]); a copy of h where there are no episode starts (nullptr)
template <typename T>
void mask_state(const T* h, const T* starts, int64_t t, int64_t steps, T* h_in, int64_t batch, int64_t hidden) {
  if (starts == nullptr) {
    std::copy(h, h + batch * hidden, h_in);
    return;
  }
  for (int64_t b = 0; b < batch; ++b) {
    const T keep = T(1) - starts[b * steps + t];
    const T* hb = h + b * hidden;
    T* o = h_in + b * hidden;
#pragma omp simd
    for (int64_t j = 0; j < hidden; ++j) o[j] = hb[j] * keep;
  }
}

}  // namespace

// full: nBRC (w: (2H, H)); else BRC (w: (2H,) = cat(w_a, w_c)). Returns out (B, T, H), h_in
// (T, B, H) the masked state before each step, gates (T, B, 3H) = a, c, n.
std::vector<at::Tensor> bistable_forward(const at::Tensor& proj, const at::Tensor& h0, const at::Tensor& starts,
                                         const at::Tensor& w, bool full) {
  at::NoGradGuard no_grad;
  const int64_t batch = proj.size(0), steps = proj.size(1), hidden = h0.size(1);
  auto p_tm = proj.transpose(0, 1).contiguous();  // (T, B, 3H)
  auto h0c = h0.contiguous();
  auto st = starts.numel() ? starts.contiguous().to(proj.scalar_type()) : starts;
  auto out = at::empty({steps, batch, hidden}, proj.options());
  auto h_in = at::empty({steps, batch, hidden}, proj.options());
  auto gates = at::empty({steps, batch, 3 * hidden}, proj.options());
  auto r = at::empty({batch, 2 * hidden}, proj.options());
  auto wt = full ? w.t().contiguous() : w.contiguous();  // nBRC: (H, 2H)
  auto zero_bias = at::zeros({2 * hidden}, proj.options());
  AT_DISPATCH_FLOATING_TYPES(proj.scalar_type(), "bistable_forward", [&] {
    const int64_t bh = batch * hidden;
    const scalar_t* st_p = st.numel() ? st.data_ptr<scalar_t>() : nullptr;  // no episode starts
    const scalar_t* p_p = p_tm.data_ptr<scalar_t>();
    const scalar_t* w_p = wt.data_ptr<scalar_t>();
    scalar_t* out_p = out.data_ptr<scalar_t>();
    scalar_t* hin_p = h_in.data_ptr<scalar_t>();
    scalar_t* g_p = gates.data_ptr<scalar_t>();
    scalar_t* r_p = r.data_ptr<scalar_t>();
    for (int64_t t = 0; t < steps; ++t) {
      const scalar_t* prev = t == 0 ? h0c.data_ptr<scalar_t>() : out_p + (t - 1) * bh;
      scalar_t* hin = hin_p + t * bh;
      mask_state<scalar_t>(prev, st_p, t, steps, hin, batch, hidden);
      if (full) {
        small_addmm<scalar_t>(zero_bias.data_ptr<scalar_t>(), hin, w_p, r_p, batch, hidden, 2 * hidden);
      } else {
        brc_feedback<scalar_t>(w_p, hin, r_p, batch, hidden);
      }
      bistable_step_forward<scalar_t>(p_p + t * 3 * bh, r_p, hin, out_p + t * bh, g_p + t * 3 * bh, batch, hidden,
                                      3 * hidden);
    }
  });
  return {out.transpose(0, 1).contiguous(), h_in, gates};
}

// grads: (T, B, H) of each output, time-major. Returns d_proj (B, T, 3H), d_h0 (B, H), d_w (the
// shape of w).
std::vector<at::Tensor> bistable_backward(const at::Tensor& grads, const at::Tensor& starts,
                                          const at::Tensor& h_in, const at::Tensor& gates, const at::Tensor& w,
                                          bool full) {
  at::NoGradGuard no_grad;
  const int64_t steps = grads.size(0), batch = grads.size(1), hidden = grads.size(2);
  check(grads, "grads");
  auto st = starts.numel() ? starts.contiguous().to(grads.scalar_type()) : starts;
  auto d_pre = at::empty({steps, batch, 3 * hidden}, grads.options());  // d(p_a, p_c, p_x)
  auto rec = at::zeros({batch, hidden}, grads.options());  // what flows into h_t from later steps
  auto dh = at::empty({batch, hidden}, grads.options());
  auto dhin = at::empty({batch, hidden}, grads.options());
  auto wc = w.contiguous();  // nBRC: (2H, H) row-major, so d_h_in += d_r @ W
  auto zero_bias = at::zeros({hidden}, grads.options());
  auto tmp = at::empty({batch, hidden}, grads.options());
  auto dw_diag = at::zeros({2 * hidden}, grads.options());
  AT_DISPATCH_FLOATING_TYPES(grads.scalar_type(), "bistable_backward", [&] {
    const int64_t bh = batch * hidden;
    const scalar_t* st_p = st.numel() ? st.data_ptr<scalar_t>() : nullptr;  // no episode starts
    const scalar_t* g_p = grads.data_ptr<scalar_t>();
    const scalar_t* hin_p = h_in.data_ptr<scalar_t>();
    const scalar_t* gt_p = gates.data_ptr<scalar_t>();
    const scalar_t* w_p = wc.data_ptr<scalar_t>();
    scalar_t* dp_p = d_pre.data_ptr<scalar_t>();
    scalar_t* rec_p = rec.data_ptr<scalar_t>();
    scalar_t* dh_p = dh.data_ptr<scalar_t>();
    scalar_t* dhin_p = dhin.data_ptr<scalar_t>();
    scalar_t* tmp_p = tmp.data_ptr<scalar_t>();
    std::vector<double> dwd(full ? 0 : 2 * hidden, 0.0);  // BRC: dw summed over T * B terms, in double
    double* dwd_p = dwd.data();
    std::vector<scalar_t> dr(2 * bh);  // d(r_a, r_c) per row, (B, 2H)
    for (int64_t t = steps - 1; t >= 0; --t) {
      add<scalar_t>(g_p + t * bh, rec_p, dh_p, bh);
      const scalar_t* hin = hin_p + t * bh;
      const scalar_t* g = gt_p + t * 3 * bh;
      scalar_t* dp = dp_p + t * 3 * bh;
      for (int64_t b = 0; b < batch; ++b) {
        const scalar_t* d = dh_p + b * hidden;
        const scalar_t* hb = hin + b * hidden;
        const scalar_t* gb = g + b * 3 * hidden;
        scalar_t* dpb = dp + b * 3 * hidden;
        scalar_t* drb = dr.data() + b * 2 * hidden;
        scalar_t* o = dhin_p + b * hidden;
        for (int64_t j = 0; j < hidden; ++j) {
          const scalar_t a = gb[j], c = gb[hidden + j], n = gb[2 * hidden + j];
          const scalar_t d_gx = d[j] * (scalar_t(1) - c) * (scalar_t(1) - n * n);
          const scalar_t d_gc = d[j] * (hb[j] - n) * c * (scalar_t(1) - c);
          const scalar_t am1 = a - scalar_t(1);
          const scalar_t d_ga = d_gx * hb[j] * (scalar_t(1) - am1 * am1);
          dpb[j] = d_ga;
          dpb[hidden + j] = d_gc;
          dpb[2 * hidden + j] = d_gx;
          drb[j] = d_ga;
          drb[hidden + j] = d_gc;
          o[j] = d[j] * c + d_gx * a;
          if (!full) {
            o[j] += w_p[j] * d_ga + w_p[hidden + j] * d_gc;
            dwd_p[j] += double(d_ga * hb[j]);
            dwd_p[hidden + j] += double(d_gc * hb[j]);
          }
        }
      }
      if (full) {  // d_h_in += d_r @ W  (B, 2H) @ (2H, H)
        small_addmm<scalar_t>(zero_bias.data_ptr<scalar_t>(), dr.data(), w_p, tmp_p, batch, 2 * hidden, hidden);
        add<scalar_t>(dhin_p, tmp_p, dhin_p, bh);
      }
      mask_state<scalar_t>(dhin_p, st_p, t, steps, rec_p, batch, hidden);
    }
    scalar_t* out_w = dw_diag.data_ptr<scalar_t>();
    for (size_t i = 0; i < dwd.size(); ++i) out_w[i] = scalar_t(dwd[i]);
  });
  at::Tensor d_w;
  if (full) {  // dW = sum_t d_r_t^T h_in_t: (2H, T B) @ (T B, H), d_r = the first 2H of d_pre
    auto d_r = d_pre.view({steps * batch, 3 * hidden}).slice(1, 0, 2 * hidden);
    d_w = at::mm(d_r.t(), h_in.view({steps * batch, hidden}));
  } else {
    d_w = dw_diag;
  }
  return {d_pre.transpose(0, 1).contiguous(), rec, d_w};
}

// ---------------------------------------------------------------------------------------------
// MGU (Zhou et al. 2016) over whole sequences: with h_in = h * (1 - start_t),
//   f = sigmoid(p_f + W_f h_in), n = tanh(p_h + W_h (f * h_in)), h' = (1 - f) * h_in + f * n.
// proj: (B, T, 2H); w_f, w_h: (H, H).
// ---------------------------------------------------------------------------------------------
// Returns out (B, T, H), h_in (T, B, H), gates (T, B, 2H) = f, n.
std::vector<at::Tensor> mgu_forward(const at::Tensor& proj, const at::Tensor& h0, const at::Tensor& starts,
                                    const at::Tensor& w_f, const at::Tensor& w_h) {
  at::NoGradGuard no_grad;
  const int64_t batch = proj.size(0), steps = proj.size(1), hidden = h0.size(1);
  auto p_tm = proj.transpose(0, 1).contiguous();  // (T, B, 2H)
  auto h0c = h0.contiguous();
  auto st = starts.numel() ? starts.contiguous().to(proj.scalar_type()) : starts;
  auto out = at::empty({steps, batch, hidden}, proj.options());
  auto h_in = at::empty({steps, batch, hidden}, proj.options());
  auto gates = at::empty({steps, batch, 2 * hidden}, proj.options());
  auto gf = at::empty({batch, hidden}, proj.options());
  auto gh = at::empty({batch, hidden}, proj.options());
  auto fh = at::empty({batch, hidden}, proj.options());
  auto wf_t = w_f.t().contiguous();
  auto wh_t = w_h.t().contiguous();
  AT_DISPATCH_FLOATING_TYPES(proj.scalar_type(), "mgu_forward", [&] {
    const int64_t bh = batch * hidden;
    const scalar_t* st_p = st.numel() ? st.data_ptr<scalar_t>() : nullptr;  // no episode starts
    const scalar_t* p_p = p_tm.data_ptr<scalar_t>();
    scalar_t* out_p = out.data_ptr<scalar_t>();
    scalar_t* hin_p = h_in.data_ptr<scalar_t>();
    scalar_t* g_p = gates.data_ptr<scalar_t>();
    scalar_t* gf_p = gf.data_ptr<scalar_t>();
    scalar_t* gh_p = gh.data_ptr<scalar_t>();
    scalar_t* fh_p = fh.data_ptr<scalar_t>();
    for (int64_t t = 0; t < steps; ++t) {
      const scalar_t* prev = t == 0 ? h0c.data_ptr<scalar_t>() : out_p + (t - 1) * bh;
      scalar_t* hin = hin_p + t * bh;
      mask_state<scalar_t>(prev, st_p, t, steps, hin, batch, hidden);
      const scalar_t* pt = p_p + t * 2 * bh;
      scalar_t* g = g_p + t * 2 * bh;
      // f = sigmoid(p_f + W_f h_in); the bias of the product is the projection's row
      for (int64_t b = 0; b < batch; ++b) {
        small_addmm<scalar_t>(pt + b * 2 * hidden, hin + b * hidden, wf_t.data_ptr<scalar_t>(), gf_p + b * hidden, 1,
                              hidden, hidden);
      }
      for (int64_t i = 0; i < bh; ++i) {
        const scalar_t f = sigmoid(gf_p[i]);
        gf_p[i] = f;
        fh_p[i] = f * hin[i];
      }
      for (int64_t b = 0; b < batch; ++b) {
        small_addmm<scalar_t>(pt + b * 2 * hidden + hidden, fh_p + b * hidden, wh_t.data_ptr<scalar_t>(),
                              gh_p + b * hidden, 1, hidden, hidden);
      }
      scalar_t* o = out_p + t * bh;
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t j = 0; j < hidden; ++j) {
          const int64_t i = b * hidden + j;
          const scalar_t f = gf_p[i], n = std::tanh(gh_p[i]);
          o[i] = hin[i] + f * (n - hin[i]);
          g[b * 2 * hidden + j] = f;
          g[b * 2 * hidden + hidden + j] = n;
        }
      }
    }
  });
  return {out.transpose(0, 1).contiguous(), h_in, gates};
}

// grads: (T, B, H) of each output. Returns d_proj (B, T, 2H), d_h0 (B, H), d_w_f, d_w_h.
std::vector<at::Tensor> mgu_backward(const at::Tensor& grads, const at::Tensor& starts, const at::Tensor& h_in,
                                     const at::Tensor& gates, const at::Tensor& w_f, const at::Tensor& w_h) {
  at::NoGradGuard no_grad;
  const int64_t steps = grads.size(0), batch = grads.size(1), hidden = grads.size(2);
  check(grads, "grads");
  auto st = starts.numel() ? starts.contiguous().to(grads.scalar_type()) : starts;
  auto d_pre = at::empty({steps, batch, 2 * hidden}, grads.options());  // d(pre-activations of f, n)
  auto fh_all = at::empty({steps, batch, hidden}, grads.options());     // f * h_in, for d W_h
  auto rec = at::zeros({batch, hidden}, grads.options());
  auto dh = at::empty({batch, hidden}, grads.options());
  auto dfh = at::empty({batch, hidden}, grads.options());
  auto dhin = at::empty({batch, hidden}, grads.options());
  auto wfc = w_f.contiguous();  // (H, H) row-major: d_h_in += d_gf @ W_f
  auto whc = w_h.contiguous();
  auto zero_bias = at::zeros({hidden}, grads.options());
  AT_DISPATCH_FLOATING_TYPES(grads.scalar_type(), "mgu_backward", [&] {
    const int64_t bh = batch * hidden;
    const scalar_t* st_p = st.numel() ? st.data_ptr<scalar_t>() : nullptr;  // no episode starts
    const scalar_t* g_p = grads.data_ptr<scalar_t>();
    const scalar_t* hin_p = h_in.data_ptr<scalar_t>();
    const scalar_t* gt_p = gates.data_ptr<scalar_t>();
    scalar_t* dp_p = d_pre.data_ptr<scalar_t>();
    scalar_t* fh_p = fh_all.data_ptr<scalar_t>();
    scalar_t* rec_p = rec.data_ptr<scalar_t>();
    scalar_t* dh_p = dh.data_ptr<scalar_t>();
    scalar_t* dfh_p = dfh.data_ptr<scalar_t>();
    scalar_t* dhin_p = dhin.data_ptr<scalar_t>();
    std::vector<scalar_t> d_gh(bh), d_gf(bh);
    for (int64_t t = steps - 1; t >= 0; --t) {
      add<scalar_t>(g_p + t * bh, rec_p, dh_p, bh);
      const scalar_t* hin = hin_p + t * bh;
      const scalar_t* g = gt_p + t * 2 * bh;
      scalar_t* dp = dp_p + t * 2 * bh;
      scalar_t* fh = fh_p + t * bh;
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t j = 0; j < hidden; ++j) {
          const int64_t i = b * hidden + j;
          const scalar_t f = g[b * 2 * hidden + j], n = g[b * 2 * hidden + hidden + j];
          d_gh[i] = dh_p[i] * f * (scalar_t(1) - n * n);
          fh[i] = f * hin[i];
          dp[b * 2 * hidden + hidden + j] = d_gh[i];
        }
      }
      // d(f * h_in) = d_gh @ W_h
      small_addmm<scalar_t>(zero_bias.data_ptr<scalar_t>(), d_gh.data(), whc.data_ptr<scalar_t>(), dfh_p, batch, hidden,
                            hidden);
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t j = 0; j < hidden; ++j) {
          const int64_t i = b * hidden + j;
          const scalar_t f = g[b * 2 * hidden + j], n = g[b * 2 * hidden + hidden + j];
          const scalar_t df = dh_p[i] * (n - hin[i]) + dfh_p[i] * hin[i];
          d_gf[i] = df * f * (scalar_t(1) - f);
          dp[b * 2 * hidden + j] = d_gf[i];
          dhin_p[i] = dh_p[i] * (scalar_t(1) - f) + dfh_p[i] * f;
        }
      }
      // d_h_in += d_gf @ W_f
      small_addmm<scalar_t>(zero_bias.data_ptr<scalar_t>(), d_gf.data(), wfc.data_ptr<scalar_t>(), dh_p, batch, hidden,
                            hidden);
      add<scalar_t>(dhin_p, dh_p, dhin_p, bh);
      mask_state<scalar_t>(dhin_p, st_p, t, steps, rec_p, batch, hidden);
    }
  });
  auto d2 = d_pre.view({steps * batch, 2 * hidden});
  auto d_w_f = at::mm(d2.slice(1, 0, hidden).t(), h_in.view({steps * batch, hidden}));
  auto d_w_h = at::mm(d2.slice(1, hidden, 2 * hidden).t(), fh_all.view({steps * batch, hidden}));
  return {d_pre.transpose(0, 1).contiguous(), rec, d_w_f, d_w_h};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_forward", &gru_forward, "GRU over whole sequences (CPU), saving its gates");
  m.def("gru_backward", &gru_backward, "the backward of gru_forward");
  m.def("lstm_forward", &lstm_forward, "LSTM over whole sequences (CPU), saving its gates and cell states");
  m.def("lstm_backward", &lstm_backward, "the backward of lstm_forward");
  m.def("bistable_forward", &bistable_forward, "BRC / nBRC over whole sequences (CPU), saving its gates");
  m.def("bistable_backward", &bistable_backward, "the backward of bistable_forward");
  m.def("mgu_forward", &mgu_forward, "MGU over whole sequences (CPU), saving its gates");
  m.def("mgu_backward", &mgu_backward, "the backward of mgu_forward");
}
