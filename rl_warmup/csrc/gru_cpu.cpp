// A single-layer GRU over whole sequences on the CPU, forward and backward, for small batches.
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

// acc (B, N) = bias (N) + a (B, K) @ wt (K, N), all row-major; for the small products of one time
// step, where a library call costs more in dispatch than in arithmetic.
template <typename T>
void small_addmm(const T* bias, const T* a, const T* wt, T* acc, int64_t batch, int64_t k_dim, int64_t n_dim) {
  int64_t b = 0;
  for (; b + 2 <= batch; b += 2) {  // two rows of acc per pass over wt: each load of wt used twice
    T* r0 = acc + b * n_dim;
    T* r1 = r0 + n_dim;
    const T* a0 = a + b * k_dim;
    const T* a1 = a0 + k_dim;
#pragma omp simd
    for (int64_t n = 0; n < n_dim; ++n) r0[n] = r1[n] = bias[n];
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
  for (; b < batch; ++b) {
    T* row = acc + b * n_dim;
    const T* ab = a + b * k_dim;
#pragma omp simd
    for (int64_t n = 0; n < n_dim; ++n) row[n] = bias[n];
    for (int64_t k = 0; k < k_dim; ++k) {
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

}  // namespace

// x: (B, T, I) batch-first; h0: (B, H). Returns out (B, T, H), gates (T, B, 4H) for the backward.
std::vector<at::Tensor> gru_forward(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
                                    const at::Tensor& w_hh, const at::Tensor& b_ih, const at::Tensor& b_hh) {
  at::NoGradGuard no_grad;
  const int64_t batch = x.size(0), steps = x.size(1), hidden = h0.size(1);
  auto h0c = h0.contiguous();
  // input projection of every step at once, time-major: (T, B, 3H)
  auto gi = at::addmm(b_ih, x.transpose(0, 1).reshape({steps * batch, x.size(2)}), w_ih.t()).view(
      {steps, batch, 3 * hidden});
  auto out = at::empty({steps, batch, hidden}, x.options());
  auto gates = at::empty({steps, batch, 4 * hidden}, x.options());
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
    for (int64_t t = 0; t < steps; ++t) {
      const scalar_t* prev_p = t == 0 ? h0c.data_ptr<scalar_t>() : out_p + (t - 1) * bh;
      if (small) {
        small_addmm<scalar_t>(bias_p, prev_p, w_p, gh_p, batch, hidden, 3 * hidden);
      } else {
        at::addmm_out(gh, b_hh_c, t == 0 ? h0c : out[t - 1], w_hh_t);
      }
      step_forward<scalar_t>(gi_p + t * 3 * bh, gh_p, prev_p, out_p + t * bh, gates_p + t * 4 * bh, batch, hidden,
                             3 * hidden);
    }
  });
  return {out.transpose(0, 1).contiguous(), gates};
}

// grads: (T, B, H) the gradient of each step's output, time-major; g_hn: (B, H) that of the last
// state (zeros when unused). Returns d_x (B, T, I), d_h0 (B, H), d_w_ih, d_w_hh, d_b_ih, d_b_hh.
std::vector<at::Tensor> gru_backward(const at::Tensor& grads, const at::Tensor& g_hn, const at::Tensor& x,
                                     const at::Tensor& h0, const at::Tensor& out, const at::Tensor& gates,
                                     const at::Tensor& w_ih, const at::Tensor& w_hh, bool need_dx) {
  at::NoGradGuard no_grad;
  const int64_t batch = out.size(0), steps = out.size(1), hidden = out.size(2);
  check(grads, "grads");
  check(gates, "gates");
  // the state before each step, time-major: (T, B, H)
  auto prev = at::cat({h0.unsqueeze(0), out.transpose(0, 1).slice(0, 0, steps - 1)}, 0).contiguous();
  auto dgi = at::empty({steps, batch, 3 * hidden}, grads.options());
  auto dgh = at::empty({steps, batch, 3 * hidden}, grads.options());
  auto carry = at::empty({batch, hidden}, grads.options());
  auto dh = at::empty({batch, hidden}, grads.options());
  auto rec = g_hn.contiguous().clone();  // what flows into h_t from later steps
  auto w_hh_c = w_hh.contiguous();         // (3H, H)
  auto zero_bias = at::zeros({hidden}, grads.options());
  const bool small = batch * hidden * 3 * hidden <= kSmallProduct;
  AT_DISPATCH_FLOATING_TYPES(grads.scalar_type(), "gru_backward", [&] {
    const int64_t bh = batch * hidden;
    const scalar_t* g_p = grads.data_ptr<scalar_t>();
    const scalar_t* gates_p = gates.data_ptr<scalar_t>();
    const scalar_t* prev_p = prev.data_ptr<scalar_t>();
    const scalar_t* w_p = w_hh_c.data_ptr<scalar_t>();
    scalar_t* dgi_p = dgi.data_ptr<scalar_t>();
    scalar_t* dgh_p = dgh.data_ptr<scalar_t>();
    scalar_t* rec_p = rec.data_ptr<scalar_t>();
    scalar_t* dh_p = dh.data_ptr<scalar_t>();
    scalar_t* carry_p = carry.data_ptr<scalar_t>();
    for (int64_t t = steps - 1; t >= 0; --t) {
      const scalar_t* g_t = g_p + t * bh;
      add<scalar_t>(g_t, rec_p, dh_p, bh);
      step_backward<scalar_t>(dh_p, gates_p + t * 4 * bh, prev_p + t * bh, dgi_p + t * 3 * bh, dgh_p + t * 3 * bh,
                              carry_p, batch, hidden);
      if (small) {
        small_addmm<scalar_t>(zero_bias.data_ptr<scalar_t>(), dgh_p + t * 3 * bh, w_p, rec_p, batch, 3 * hidden,
                              hidden);
        add<scalar_t>(rec_p, carry_p, rec_p, bh);
      } else {
        at::addmm_out(rec, carry, dgh[t], w_hh_c);
      }
    }
  });
  auto dgi2 = dgi.view({steps * batch, 3 * hidden});
  auto dgh2 = dgh.view({steps * batch, 3 * hidden});
  auto xt = x.transpose(0, 1).reshape({steps * batch, x.size(2)});
  at::Tensor d_x;
  if (need_dx) d_x = at::mm(dgi2, w_ih).view({steps, batch, x.size(2)}).transpose(0, 1);
  return {d_x, rec, at::mm(dgi2.t(), xt), at::mm(dgh2.t(), prev.view({steps * batch, hidden})), dgi2.sum(0),
          dgh2.sum(0)};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_forward", &gru_forward, "GRU over whole sequences (CPU), saving its gates");
  m.def("gru_backward", &gru_backward, "the backward of gru_forward");
}
