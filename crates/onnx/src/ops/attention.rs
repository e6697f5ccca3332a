//! `Attention` (opsets 23 to 25): what torch's dynamo exporter writes for
//! `scaled_dot_product_attention` from opset 23 on.
//!
//! It is lowered to the core ops of its definition (the ONNX reference
//! implementation), in its order, each rounding once in the input type as the
//! reference's numpy steps do: 3-D inputs split into heads; the key and value
//! caches concatenated; `Q` and `K` each scaled by `sqrt(scale)`; `Q·Kᵀ`; the
//! soft cap; the additive bias (the mask, padded to the keys' length, boolean
//! masks as `0` / `-inf`; the causal frontier and the sliding window, offset by
//! the cache or, per batch, by `nonpad_kv_seqlen`; the padding of
//! `nonpad_kv_seqlen`); the softmax (in `softmax_precision` if given); rows
//! whose bias is all `-inf` set to zero; `· V`; heads merged back for 3-D
//! inputs. Grouped-query attention repeats each key and value head in place.
//! The backend recognises the `Q·K → bias → softmax → guard → · V` chain and
//! runs it as one fused attention kernel.

use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use tcc_ir::{BinaryOp, DType, Dim, NodeId, Op, PadMode, ReduceKind, Shape, Tensor, UnaryOp};

/// Registers `Attention`.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "Attention", 23, attention);
}

/// `[b, s, heads * d]` to `[b, heads, s, d]`.
fn split_heads(c: &mut Ctx, x: NodeId, heads: i64, what: &str) -> Result<NodeId> {
    let dims = c.shape(x);
    if heads <= 0 {
        return Err(c.err(format!("{what} needs a positive head count, not {heads}")));
    }
    let hidden = dims[2].clone();
    if let Some(h) = hidden.as_const() {
        if h % heads != 0 {
            return Err(c.err(format!(
                "{what}'s hidden size {h} is not a multiple of its {heads} heads"
            )));
        }
    }
    let d = hidden.floor_div(&Dim::constant(heads));
    let r = c.reshape(
        x,
        vec![dims[0].clone(), dims[1].clone(), Dim::constant(heads), d],
    )?;
    c.add(
        Op::Transpose {
            perm: vec![0, 2, 1, 3],
        },
        &[r],
    )
}

/// An integer scalar tensor holding a dim.
fn dim_scalar(c: &mut Ctx, d: Dim) -> Result<NodeId> {
    c.add(
        Op::Dims {
            dtype: DType::I64,
            shape: vec![],
            values: vec![d],
        },
        &[],
    )
}

/// `0..n` as i64, reshaped to `shape` (one axis of size `n`, the others 1).
fn iota(c: &mut Ctx, n: Dim, shape: Vec<Dim>) -> Result<NodeId> {
    let r = c.add(
        Op::Range {
            dtype: DType::I64,
            start: Dim::constant(0),
            limit: n,
            delta: 1,
        },
        &[],
    )?;
    c.reshape(r, shape)
}

/// `where(allowed, 0, -inf)` in `dtype`.
fn bias_of(c: &mut Ctx, allowed: NodeId, dtype: DType) -> Result<NodeId> {
    let zero = c.scalar(0.0, dtype)?;
    let ninf = c.scalar(f64::NEG_INFINITY, dtype)?;
    c.add(Op::Where, &[allowed, zero, ninf])
}

fn attention(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let (mut q, mut k, mut v) = (c.req(0)?, c.req(1)?, c.req(2)?);
    let mask = c.input(3);
    let (past_key, past_value) = (c.input(4), c.input(5));
    let nonpad = c.input(6);
    let dtype = c.dtype(q);
    if !dtype.is_float() {
        return Err(c.err(format!("Q is {dtype}; Attention needs floats")));
    }
    let rank = c.rank(q);
    if c.rank(k) != rank || c.rank(v) != rank || !(rank == 3 || rank == 4) {
        return Err(c.err(format!(
            "Q, K and V must all be 3-D or all 4-D, not of ranks {}, {} and {}",
            rank,
            c.rank(k),
            c.rank(v)
        )));
    }
    if past_key.is_some() != past_value.is_some() {
        return Err(c.err("past_key and past_value must be given together"));
    }
    if nonpad.is_some() && past_key.is_some() {
        return Err(c.err("nonpad_kv_seqlen cannot be combined with past_key and past_value"));
    }
    let is_causal = c.attr_bool("is_causal", false)?;
    let q_heads_attr = c.attr_opt_i("q_num_heads")?;
    let kv_heads_attr = c.attr_opt_i("kv_num_heads")?;
    let softcap = c.attr_f("softcap", 0.0)?;
    let mode = c.attr_i("qk_matmul_output_mode", 0)?;
    if !(0..=3).contains(&mode) {
        return Err(c.attr_err(
            "qk_matmul_output_mode",
            format!("{mode} is not 0, 1, 2 or 3"),
        ));
    }
    let softmax_dtype = c.attr_dtype("softmax_precision")?;
    let left = c.attr_i("left_window_size", -1)?;
    let right = c.attr_i("right_window_size", -1)?;
    if left < -1 || right < -1 {
        return Err(c.err("left_window_size and right_window_size must be -1 or at least 0"));
    }
    if rank == 3 {
        let (Some(qh), Some(kvh)) = (q_heads_attr, kv_heads_attr) else {
            return Err(c.err("3-D inputs need the q_num_heads and kv_num_heads attributes"));
        };
        q = split_heads(c, q, qh, "Q")?;
        k = split_heads(c, k, kvh, "K")?;
        v = split_heads(c, v, kvh, "V")?;
    } else if c.opset() >= 25 && (q_heads_attr.is_some() || kv_heads_attr.is_some()) {
        return Err(c.err("q_num_heads and kv_num_heads must not be given for 4-D inputs"));
    }
    let qd = c.shape(q);
    let (batch, q_len, head) = (qd[0].clone(), qd[2].clone(), qd[3].clone());

    // sqrt(scale), rounded to the input type, applied to Q and K each.
    let scale = match c.attr_opt_f("scale")? {
        Some(s) => f64::from(s),
        None => {
            let Some(d) = head.as_const() else {
                return Err(c.err(format!(
                    "the default scale needs a known head size, not `{head}`"
                )));
            };
            1.0 / (d as f64).sqrt()
        }
    };
    let root = c.scalar(scale.sqrt(), dtype)?;

    // The caches.
    let present_key = match past_key {
        Some(p) => c.add(Op::Concat { axis: 2 }, &[p, k])?,
        None => k,
    };
    let present_value = match past_value {
        Some(p) => c.add(Op::Concat { axis: 2 }, &[p, v])?,
        None => v,
    };
    let (k, v) = (present_key, present_value);
    let kv_len = c.shape(k)[2].clone();
    let past_len = past_key.map(|p| c.shape(p)[2].clone());

    // The additive bias, [q, kv] broadcast with the masks.
    let zeros_qk = c.constant(Tensor::zeros(dtype, vec![1, 1]))?;
    let zeros_qk = c.add(
        Op::Expand {
            shape: Shape::from(vec![q_len.clone(), kv_len.clone()]),
        },
        &[zeros_qk],
    )?;
    let mask = match mask {
        None => None,
        Some(m) => {
            let md = c.shape(m);
            let last = md
                .len()
                .checked_sub(1)
                .ok_or_else(|| c.err("attn_mask is a scalar"))?;
            let mut m = m;
            if md[last] != kv_len {
                let pad = kv_len.sub(&md[last]);
                let begin = vec![Dim::constant(0); md.len()];
                let mut end = begin.clone();
                end[last] = pad;
                let fill = if c.dtype(m) == DType::Bool {
                    c.constant(Tensor::from_vec(vec![], vec![false]).map_err(|e| c.err(e))?)?
                } else {
                    c.scalar(f64::NEG_INFINITY, c.dtype(m))?
                };
                m = c.add(
                    Op::Pad {
                        mode: PadMode::Constant,
                        pads_begin: begin,
                        pads_end: end,
                    },
                    &[m, fill],
                )?;
            }
            Some(if c.dtype(m) == DType::Bool {
                bias_of(c, m, dtype)?
            } else {
                m
            })
        }
    };
    let windowed = left >= 0 || right >= 0;
    // Per-batch offsets for the causal frontier and the window: nonpad - q_len, [b, 1, 1].
    let offset = match (nonpad, past_len) {
        (Some(n), _) => {
            let ql = dim_scalar(c, q_len.clone())?;
            let n = c.cast(n, DType::I64)?;
            let o = c.binary(BinaryOp::Sub, n, ql)?;
            Some((
                c.reshape(o, vec![batch.clone(), Dim::constant(1), Dim::constant(1)])?,
                true,
            ))
        }
        (None, Some(p)) => Some((dim_scalar(c, p)?, false)),
        (None, None) => None,
    };
    let i_idx = iota(c, q_len.clone(), vec![q_len.clone(), Dim::constant(1)])?;
    let j_idx = iota(c, kv_len.clone(), vec![Dim::constant(1), kv_len.clone()])?;
    // i + offset: [q, 1], or [b, q, 1] per batch.
    let frontier = match &offset {
        Some((o, _)) => c.binary(BinaryOp::Add, i_idx, *o)?,
        None => i_idx,
    };
    let per_batch = offset.as_ref().is_some_and(|(_, p)| *p);
    // A [q, kv] or [b, q, kv] bias, made [b, 1, q, kv] per batch.
    let shape_bias = |c: &mut Ctx, allowed: NodeId| -> Result<NodeId> {
        let b = bias_of(c, allowed, dtype)?;
        if per_batch {
            c.reshape(
                b,
                vec![
                    batch.clone(),
                    Dim::constant(1),
                    q_len.clone(),
                    kv_len.clone(),
                ],
            )
        } else {
            Ok(b)
        }
    };
    let mut bias = if is_causal {
        let mut base = mask.unwrap_or(zeros_qk);
        if windowed {
            base = c.binary(BinaryOp::Add, zeros_qk, base)?;
        }
        let allowed = c.binary(BinaryOp::LessEqual, j_idx, frontier)?;
        let causal = shape_bias(c, allowed)?;
        c.binary(BinaryOp::Add, base, causal)?
    } else if let Some(m) = mask {
        c.binary(BinaryOp::Add, zeros_qk, m)?
    } else {
        zeros_qk
    };
    if windowed {
        bias = c.binary(BinaryOp::Add, zeros_qk, bias)?;
        let diff = c.binary(BinaryOp::Sub, frontier, j_idx)?;
        let mut allowed: Option<NodeId> = None;
        if left >= 0 {
            let l = c.scalar(left as f64, DType::I64)?;
            allowed = Some(c.binary(BinaryOp::LessEqual, diff, l)?);
        }
        if right >= 0 {
            let r = c.scalar(right as f64, DType::I64)?;
            let neg = c.unary(UnaryOp::Neg, diff)?;
            let ok = c.binary(BinaryOp::LessEqual, neg, r)?;
            allowed = Some(match allowed {
                Some(a) => c.binary(BinaryOp::And, a, ok)?,
                None => ok,
            });
        }
        if let Some(a) = allowed {
            let w = shape_bias(c, a)?;
            bias = c.binary(BinaryOp::Add, bias, w)?;
        }
    }
    if let Some(n) = nonpad {
        let n = c.cast(n, DType::I64)?;
        let n = c.reshape(n, vec![batch.clone(), Dim::constant(1)])?;
        let j = iota(c, kv_len.clone(), vec![Dim::constant(1), kv_len.clone()])?;
        let inside = c.binary(BinaryOp::Less, j, n)?;
        let inside = c.reshape(
            inside,
            vec![
                batch.clone(),
                Dim::constant(1),
                Dim::constant(1),
                kv_len.clone(),
            ],
        )?;
        let pad = bias_of(c, inside, dtype)?;
        bias = c.binary(BinaryOp::Add, bias, pad)?;
    }
    let masked = mask.is_some() || is_causal || windowed || nonpad.is_some();

    // Grouped-query attention: each key and value head repeated in place.
    let q_heads = qd[1].clone();
    let kv_heads = c.shape(k)[1].clone();
    let (k, v) = match (q_heads.as_const(), kv_heads.as_const()) {
        (Some(qh), Some(kh)) if qh != kh && kh > 0 && qh % kh == 0 && c.shape(v)[1] == kv_heads => {
            let rep = qh / kh;
            let mut out = Vec::new();
            for x in [k, v] {
                let d = c.shape(x);
                let u = c.reshape(
                    x,
                    vec![
                        d[0].clone(),
                        d[1].clone(),
                        Dim::constant(1),
                        d[2].clone(),
                        d[3].clone(),
                    ],
                )?;
                let e = c.add(
                    Op::Expand {
                        shape: Shape::from(vec![
                            d[0].clone(),
                            d[1].clone(),
                            Dim::constant(rep),
                            d[2].clone(),
                            d[3].clone(),
                        ]),
                    },
                    &[u],
                )?;
                out.push(c.reshape(
                    e,
                    vec![d[0].clone(), Dim::constant(qh), d[2].clone(), d[3].clone()],
                )?);
            }
            (out[0], out[1])
        }
        _ => (k, v),
    };

    let qs = c.binary(BinaryOp::Mul, q, root)?;
    let kt = c.add(
        Op::Transpose {
            perm: vec![0, 1, 3, 2],
        },
        &[k],
    )?;
    let ks = c.binary(BinaryOp::Mul, kt, root)?;
    let mut qk = c.add(Op::MatMul, &[qs, ks])?;
    if softcap > 0.0 {
        let cap = c.scalar(f64::from(softcap), dtype)?;
        let d = c.binary(BinaryOp::Div, qk, cap)?;
        let t = c.unary(UnaryOp::Tanh, d)?;
        qk = c.binary(BinaryOp::Mul, t, cap)?;
    }
    let with_bias = c.binary(BinaryOp::Add, qk, bias)?;
    let logits = match softmax_dtype {
        Some(t) if t != dtype => c.cast(with_bias, t)?,
        _ => with_bias,
    };
    let last = c.rank(logits) - 1;
    let mut probs = c.add(Op::Softmax { axis: last }, &[logits])?;
    if masked {
        // Rows with no attendable key: the bias is all -inf there.
        let bmax = c.add(
            Op::Reduce {
                kind: ReduceKind::Max,
                axes: vec![c.rank(bias) - 1],
                keep_dims: true,
            },
            &[bias],
        )?;
        let ninf = c.scalar(f64::NEG_INFINITY, dtype)?;
        let empty = c.binary(BinaryOp::Equal, bmax, ninf)?;
        let zero = c.scalar(0.0, c.dtype(probs))?;
        probs = c.add(Op::Where, &[empty, zero, probs])?;
    }
    let probs_t = c.cast(probs, dtype)?;
    let qk_out = match mode {
        2 => with_bias,
        3 => probs_t,
        _ => qk,
    };
    let mut y = c.add(Op::MatMul, &[probs_t, v])?;
    if rank == 3 {
        let t = c.add(
            Op::Transpose {
                perm: vec![0, 2, 1, 3],
            },
            &[y],
        )?;
        let d = c.shape(t);
        let merged = d[2].mul(&d[3]);
        y = c.reshape(t, vec![d[0].clone(), d[1].clone(), merged])?;
    }
    let mut outputs = vec![y, present_key, present_value, qk_out];
    outputs.truncate(c.n_outputs().max(1));
    Ok(outputs)
}
