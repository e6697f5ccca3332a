//! The cost model: what a kernel costs on the target, in nanoseconds, at shape hints.
//!
//! Every op is one kernel (views aside), and a kernel costs
//!
//! ```text
//! time = max(flops / peak, bytes / bandwidth) + launch
//! ```
//!
//! - `flops`: floating-point operations of the op at the hinted sizes. A matrix product
//!   counts `2 m n k`; attention `2 s_q s_k (d + d_v)` per head plus 10 per score for the
//!   softmax, half that when causal (the kernel skips the keys a query block does not see),
//!   and packed attention the same per query row over its sequence's real keys (`tokens / b`
//!   of them, at most `s`, for `tokens` query rows per head); `pack` and `unpack` none (they
//!   only move bytes); an elementwise op 1 per element (4 for `/` and `sqrt`, 10 for the
//!   transcendental functions), a fused elementwise op the sum over its body; softmax 10 and
//!   the normalisations 8 per element; a convolution `2` per tap per channel of its group,
//!   times the vector lanes (codegen lowers it as a scalar loop); a `qgemm` `m n k / 2` (the
//!   int8 products at four times the f32 rate), 6 per element of `a` (its quantisation) and
//!   3 per result plus the activation's (dequantisation and bias).
//! - `bytes`: every distinct operand read once and the result written once, at its dtype's size; a
//!   fused op moves only its operands and result (attention's scores stay in cache, which is
//!   what it saves). A `reshape` is a view and costs nothing, nor do inputs and constants.
//! - `peak = cores * lanes * 2 (FMA) * 2 (FMA ports) * GHz` flops per ns, with the target's
//!   f32 vector lanes (16 with AVX-512, 8 with AVX2); `bandwidth` in bytes per ns (GB/s);
//!   `launch` is the cost of handing a kernel to the thread pool.
//!
//! The defaults ([`CostModel::default`]) describe the 2-core machines tcc is tuned on (a
//! Zen 3/Zen 5/Xeon VM at about 3 GHz, 20 GB/s of sustained memory bandwidth per socket share,
//! ~0.5 µs per kernel hand-off, measured with `tcc bench` on minilm-l6); symbols are valued by
//! the hints (`batch=1, seq=128` unless told), and a symbol without a hint counts as 128 (so
//! does a `pack`'s derived `tokens` symbol unless it is hinted by name).
//! The model ranks alternatives; it does not predict run times to better than a factor of two.

use std::collections::HashMap;
use tcc_ir::{fused::Body, Op, TensorType, UnaryOp};

/// The target and size assumptions that costs are evaluated at.
#[derive(Clone, Debug)]
pub struct CostModel {
    /// Symbol values (`batch`, `seq`).
    pub hints: HashMap<String, i64>,
    /// The value of a symbol without a hint.
    pub default_dim: i64,
    /// f32 lanes of the target's vectors.
    pub lanes: usize,
    /// Cores the model runs on.
    pub cores: usize,
    /// Clock, GHz.
    pub ghz: f64,
    /// Memory bandwidth, GB/s (bytes per ns).
    pub bandwidth: f64,
    /// Cost of one kernel hand-off, ns.
    pub launch_ns: f64,
}

impl Default for CostModel {
    fn default() -> CostModel {
        CostModel {
            hints: [("batch".to_string(), 1), ("seq".to_string(), 128)]
                .into_iter()
                .collect(),
            default_dim: 128,
            lanes: 16,
            cores: 2,
            ghz: 3.0,
            bandwidth: 20.0,
            launch_ns: 500.0,
        }
    }
}

impl CostModel {
    /// Peak f32 flops per ns.
    pub fn peak(&self) -> f64 {
        (self.cores * self.lanes * 4) as f64 * self.ghz
    }

    fn numel(&self, t: &TensorType) -> f64 {
        let env = |s: &str| Some(*self.hints.get(s).unwrap_or(&self.default_dim));
        match t.shape.eval(&env) {
            Ok(dims) => dims.iter().map(|&d| d as f64).product(),
            Err(_) => (self.default_dim as f64).powi(t.rank() as i32),
        }
    }

    fn dim(&self, t: &TensorType, axis: usize) -> f64 {
        let env = |s: &str| Some(*self.hints.get(s).unwrap_or(&self.default_dim));
        t.shape.dims()[axis]
            .eval(&env)
            .map(|d| d as f64)
            .unwrap_or(self.default_dim as f64)
    }

    /// The cost in ns of one kernel computing `op` on operands of types `args` into `out`;
    /// `repeats[i]` says that operand `i` is an earlier operand again (`x * x` reads `x`
    /// once).
    pub fn op_cost(
        &self,
        op: &Op,
        args: &[&TensorType],
        repeats: &[bool],
        out: &TensorType,
    ) -> f64 {
        let bytes_of = |t: &TensorType| self.numel(t) * t.dtype.size_bytes() as f64;
        let n = self.numel(out);
        let flops = match op {
            Op::Input { .. } | Op::Const(_) | Op::Dims { .. } | Op::Reshape { .. } => return 0.0,
            Op::MatMul | Op::MatMulInteger { .. } => {
                let a = args[0];
                2.0 * n * self.dim(a, a.rank() - 1)
            }
            Op::Gemm {
                activation, perm_a, ..
            } => {
                let a = args[0];
                let k_axis = match perm_a {
                    Some(p) => p[a.rank() - 1],
                    None => a.rank() - 1,
                };
                let act = match activation {
                    tcc_ir::Activation::None => 0.0,
                    tcc_ir::Activation::Relu => 1.0,
                    _ => 15.0,
                };
                2.0 * n * self.dim(a, k_axis) + act * n + if args.len() > 2 { n } else { 0.0 }
            }
            Op::QGemm { activation, .. } => {
                // The int8 products at four times the f32 rate (four u8 x s8 products per i32
                // lane and instruction), the quantisation of `a` (about 6 per element), the
                // dequantisation and bias (3 per result) and the activation.
                let a = args[0];
                let act = match activation {
                    tcc_ir::Activation::None => 0.0,
                    tcc_ir::Activation::Relu => 1.0,
                    _ => 15.0,
                };
                0.5 * n * self.dim(a, a.rank() - 1) + 6.0 * self.numel(a) + (3.0 + act) * n
            }
            Op::Attention { perm_k, causal, .. } => {
                // scores = rows of Q times keys; d from Q's last axis, d_v from the result.
                // Causal: about half the keys, which the kernel skips.
                let (q, kt) = (args[0], args[1]);
                let keys_axis = match perm_k {
                    Some(p) => p[kt.rank() - 1],
                    None => kt.rank() - 1,
                };
                let keys = self.dim(kt, keys_axis);
                let d = self.numel(q) / self.numel(out).max(1.0) * self.dim(out, out.rank() - 1);
                let rows = self.numel(q) / d.max(1.0);
                let dv = n / rows.max(1.0);
                let seen = if *causal { 0.5 } else { 1.0 };
                seen * rows * keys * (2.0 * (d + dv) + 10.0)
            }
            Op::PackedAttention { .. } => {
                // q is [tokens, h, d]: tokens * h query rows, each scoring the real keys of its
                // sequence, tokens / b of them on average (at most s, from the [b, s] mask).
                let (q, mask) = (args[0], args[3]);
                let tokens = self.dim(q, 0);
                let rows = tokens * self.dim(q, 1);
                let keys = (tokens / self.dim(mask, 0).max(1.0)).min(self.dim(mask, 1));
                let (d, dv) = (self.dim(q, 2), self.dim(out, 2));
                rows * keys * (2.0 * (d + dv) + 10.0)
            }
            // Padding elimination's moves: bytes only.
            Op::Pack { .. } | Op::Unpack => 0.0,
            Op::Conv { .. } => {
                // 2 flops per tap per input channel of the group (w is [m, c / group, k..]);
                // codegen's convolution is a scalar loop, so it runs at one lane's rate.
                let w = args[1];
                let taps: f64 = (1..w.rank()).map(|a| self.dim(w, a)).product();
                2.0 * n * taps * self.lanes as f64
            }
            Op::Unary(u) => n * unary_flops(*u),
            Op::Binary(b) => {
                n * match b {
                    tcc_ir::BinaryOp::Div | tcc_ir::BinaryOp::Pow => 4.0,
                    _ => 1.0,
                }
            }
            Op::Fused { body } => n * body_flops(body),
            Op::Softmax { .. } | Op::LogSoftmax { .. } => 10.0 * n,
            Op::LayerNorm { .. } | Op::AddLayerNorm { .. } | Op::RmsNorm { .. } => 8.0 * n,
            Op::Reduce { .. } => args.first().map(|a| self.numel(a)).unwrap_or(n),
            _ => n,
        };
        let bytes: f64 = args
            .iter()
            .zip(repeats.iter().chain(std::iter::repeat(&false)))
            .filter(|(_, &again)| !again)
            .map(|(a, _)| bytes_of(a))
            .sum::<f64>()
            + bytes_of(out);
        (flops / self.peak()).max(bytes / self.bandwidth) + self.launch_ns
    }
}

/// Per operand, whether an earlier operand is the same value.
pub fn repeats<T: PartialEq>(operands: &[T]) -> Vec<bool> {
    operands
        .iter()
        .enumerate()
        .map(|(i, o)| operands[..i].contains(o))
        .collect()
}

fn unary_flops(u: UnaryOp) -> f64 {
    match u {
        _ if u.is_transcendental() => 10.0,
        UnaryOp::Sqrt | UnaryOp::Reciprocal => 4.0,
        _ => 1.0,
    }
}

fn body_flops(b: &Body) -> f64 {
    match b {
        Body::Leaf(_) | Body::Scalar(_) => 0.0,
        Body::Unary(u, x) => unary_flops(*u) + body_flops(x),
        Body::Cast(_, x) => 1.0 + body_flops(x),
        Body::Binary(op, x, y) => {
            let own = match op {
                tcc_ir::BinaryOp::Div | tcc_ir::BinaryOp::Pow => 4.0,
                _ => 1.0,
            };
            own + body_flops(x) + body_flops(y)
        }
        Body::Where(p) => 1.0 + p.iter().map(body_flops).sum::<f64>(),
    }
}
