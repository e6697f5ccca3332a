//! `ConvInteger`: the convolution of 8-bit integers into i32,
//! `y = conv(x - x_zero_point, w - w_zero_point)`, lowered to core ops in one
//! of two ways.
//!
//! A "patchify" convolution (2-D, one group, dilations 1, no padding, strides
//! equal to the kernel: the patch embedding of a vision transformer) reads
//! each input element once, so its im2col is a pure rearrangement. It becomes
//! `Reshape` and `Transpose` of the input into one row of
//! `c * kh * kw` elements per patch, flattened in (channel, kernel row,
//! kernel column) order, which is ONNX Runtime's im2col order; one
//! `MatMulInteger` by the flattened weights; and a rearrangement of the
//! result back to `[n, m, oh, ow]`. The `MatMulInteger` saturates pairs
//! exactly when `quant.rs` makes an ONNX `MatMulInteger` saturate (u8
//! activations by i8 weights under [`Int8MatMul::OrtX86`]), pairing taps
//! along the im2col order; under [`Int8MatMul::Exact`] it is exact, as ONNX
//! Runtime is with VNNI (checked against it on a ViT's patch embedding).
//! That ONNX Runtime's `ConvInteger` on x86 without VNNI saturates the way
//! its `MatMulInteger` does is a model, not checked against ONNX Runtime.
//!
//! Any other convolution is computed exactly: both operands are cast to f64,
//! the zero points subtracted, the core `Conv` run in f64 and the result
//! cast to i32. Every product and partial sum is an integer below 2^53 in
//! magnitude for any practical kernel (each product is at most 2^16, so
//! 2^37 taps would be needed to lose exactness), so f64 is exact. Under
//! [`Int8MatMul::OrtX86`] this general form still does not saturate,
//! whereas ONNX Runtime without VNNI would saturate pairs along its im2col
//! order; such models match ONNX Runtime on VNNI machines (and the ONNX
//! specification), not on older x86 CPUs.
//!
//! No lowering rounds a float, so none needs [`Ctx::widened`].

use super::conv::{geometry, Geometry};
use super::{reg, Registry};
use crate::context::Ctx;
use crate::error::Result;
use crate::import::Int8MatMul;
use tcc_ir::{BinaryOp, DType, Dim, NodeId, Op};

/// Registers `ConvInteger`.
pub(crate) fn register(r: &mut Registry) {
    reg(r, "ConvInteger", 10, conv_integer);
}

/// `ConvInteger(x, w, x_zero_point?, w_zero_point?)`: `x` is
/// `[n, c, spatial..]` and `w` is `[m, c / group, kernel..]`, each u8 or i8;
/// `x_zero_point` is a scalar of `x`'s dtype and `w_zero_point` a scalar or
/// one per output channel (`[m]`) of `w`'s dtype. The attributes are those of
/// `Conv`, read by [`geometry`].
fn conv_integer(c: &mut Ctx) -> Result<Vec<NodeId>> {
    let (x, w) = (c.req(0)?, c.req(1)?);
    for (k, v) in [x, w].into_iter().enumerate() {
        if !matches!(c.dtype(v), DType::I8 | DType::U8) {
            return Err(c.err(format!("input {k} must be i8 or u8, got {}", c.ty(v))));
        }
    }
    let g = geometry(c, x, w)?;
    let x_zp = match c.input(2) {
        None => None,
        Some(z) => Some(zero_point(c, z, x, "x_zero_point")?),
    };
    let w_zp = match c.input(3) {
        None => None,
        Some(z) => {
            let z = zero_point(c, z, w, "w_zero_point")?;
            if c.rank(z) == 1 {
                let (zs, m) = (c.shape(z), c.shape(w)[0].clone());
                if let (Some(a), Some(b)) = (zs[0].as_const(), m.as_const()) {
                    if a != b {
                        return Err(c.err(format!(
                            "w_zero_point has {a} elements for {b} output channels"
                        )));
                    }
                }
            }
            Some(z)
        }
    };
    let y = if is_patchify(c, &g, x) {
        patchify(c, &g, x, w, x_zp, w_zp)?
    } else {
        general(c, &g, x, w, x_zp, w_zp)?
    };
    Ok(vec![y])
}

/// Checks a zero point's dtype against its operand's and reduces it to a
/// scalar if it has one element; only `w_zero_point` may instead be 1-D.
fn zero_point(c: &mut Ctx, z: NodeId, of: NodeId, what: &str) -> Result<NodeId> {
    if c.dtype(z) != c.dtype(of) {
        return Err(c.err(format!(
            "{what} must have its operand's dtype {}, got {}",
            c.dtype(of),
            c.ty(z)
        )));
    }
    let zs = c.shape(z);
    if zs.iter().all(|d| d.is(1)) {
        return c.reshape(z, vec![]);
    }
    if what == "w_zero_point" && zs.len() == 1 {
        return Ok(z);
    }
    Err(c.err(format!(
        "{what} must be a scalar{}, got {}",
        if what == "w_zero_point" {
            " or one per output channel"
        } else {
            ""
        },
        c.ty(z)
    )))
}

/// True if the convolution cuts the input into non-overlapping patches that
/// it reads whole: 2-D, one group, dilations 1, no padding, and strides equal
/// to a constant kernel.
fn is_patchify(c: &Ctx, g: &Geometry, x: NodeId) -> bool {
    c.rank(x) == 4
        && g.group == 1
        && g.dilations.iter().all(|&d| d == 1)
        && g.pads_begin.iter().chain(&g.pads_end).all(|p| p.is(0))
        && g.kernel
            .iter()
            .zip(&g.strides)
            .all(|(k, &s)| k.as_const() == Some(s as i64))
}

/// The patchify lowering: im2col as `Reshape` and `Transpose`, one
/// `MatMulInteger`, and the result rearranged to `[n, m, oh, ow]`.
fn patchify(
    c: &mut Ctx,
    g: &Geometry,
    x: NodeId,
    w: NodeId,
    x_zp: Option<NodeId>,
    w_zp: Option<NodeId>,
) -> Result<NodeId> {
    let xs = c.shape(x);
    let (n, ch) = (xs[0].clone(), xs[1].clone());
    let (kh, kw) = (g.kernel[0].clone(), g.kernel[1].clone());
    let (oh, ow) = (xs[2].floor_div(&kh), xs[3].floor_div(&kw));
    let (hh, ww) = (oh.mul(&kh), ow.mul(&kw));
    // Rows and columns past the last whole patch are never read.
    let mut x = x;
    if hh != xs[2] || ww != xs[3] {
        x = c.add(
            Op::Slice {
                axes: vec![2, 3],
                starts: vec![Dim::constant(0), Dim::constant(0)],
                ends: vec![hh, ww],
                steps: vec![1, 1],
            },
            &[x],
        )?;
    }
    // [n, c, oh * kh, ow * kw] -> [n, c, oh, kh, ow, kw] -> [n, oh, ow, c, kh, kw]
    // -> [n, oh * ow, c * kh * kw]: one row per patch, in ONNX Runtime's
    // im2col order (channel, kernel row, kernel column).
    let x6 = c.reshape(
        x,
        vec![
            n.clone(),
            ch.clone(),
            oh.clone(),
            kh.clone(),
            ow.clone(),
            kw.clone(),
        ],
    )?;
    let xt = c.add(
        Op::Transpose {
            perm: vec![0, 2, 4, 1, 3, 5],
        },
        &[x6],
    )?;
    let patches = oh.mul(&ow);
    let k = ch.mul(&kh).mul(&kw);
    let a = c.reshape(xt, vec![n.clone(), patches.clone(), k.clone()])?;
    // [m, c, kh, kw] -> [m, c * kh * kw] -> [c * kh * kw, m].
    let m = c.shape(w)[0].clone();
    let wk = c.reshape(w, vec![m.clone(), k])?;
    let b = c.add(Op::Transpose { perm: vec![1, 0] }, &[wk])?;
    let az = match x_zp {
        Some(z) => z,
        None => c.scalar(0.0, c.dtype(x))?,
    };
    // A per-channel `[m]` zero point is one per column of `b`.
    let bz = match w_zp {
        Some(z) => z,
        None => c.scalar(0.0, c.dtype(w))?,
    };
    let saturate_pairs = c.options().int8_matmul == Int8MatMul::OrtX86
        && (c.dtype(x), c.dtype(w)) == (DType::U8, DType::I8);
    let y = c.add(Op::MatMulInteger { saturate_pairs }, &[a, b, az, bz])?;
    // [n, oh * ow, m] -> [n, m, oh * ow] -> [n, m, oh, ow].
    let yt = c.add(
        Op::Transpose {
            perm: vec![0, 2, 1],
        },
        &[y],
    )?;
    c.reshape(yt, vec![n, m, oh, ow])
}

/// The general lowering: `cast(conv(f64(x) - x_zp, f64(w) - w_zp), i32)`.
fn general(
    c: &mut Ctx,
    g: &Geometry,
    x: NodeId,
    w: NodeId,
    x_zp: Option<NodeId>,
    w_zp: Option<NodeId>,
) -> Result<NodeId> {
    let mut xf = c.cast(x, DType::F64)?;
    if let Some(z) = x_zp {
        let zf = c.cast(z, DType::F64)?;
        xf = c.binary(BinaryOp::Sub, xf, zf)?;
    }
    let mut wf = c.cast(w, DType::F64)?;
    if let Some(z) = w_zp {
        // `[m]` becomes `[m, 1, ..]`, which broadcasts over `[m, c / group, kernel..]`.
        let mut dims = c.shape(z);
        if dims.len() == 1 {
            dims.extend(std::iter::repeat_n(Dim::constant(1), c.rank(w) - 1));
        }
        let z = c.reshape(z, dims)?;
        let zf = c.cast(z, DType::F64)?;
        wf = c.binary(BinaryOp::Sub, wf, zf)?;
    }
    let y = c.add(g.op(), &[xf, wf])?;
    c.cast(y, DType::I32)
}
