//! The `ConvInteger` importer on small hand-built models run through the
//! interpreter: the patchify lowering (im2col as a rearrangement and one
//! `MatMulInteger`) and the general f64 lowering, each checked against a
//! direct convolution loop written here from the ONNX spec; per-channel
//! weight zero points; a symbolic batch; and ONNX Runtime's x86 pair
//! saturation, checked by hand and against a second loop that saturates
//! pairs along the im2col order.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use tcc_ir::{Graph, Op, Tensor};
use tcc_onnx::proto::tensor_proto::DataType;
use tcc_onnx::{import_model_with, proto, ImportOptions, Int8MatMul};

// ----- Helpers -------------------------------------------------------------------

/// The geometry of one 2-D convolution: `pads = [top, left, bottom, right]`.
#[derive(Clone, Copy)]
struct Geo {
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
    group: usize,
}

impl Geo {
    /// Strides equal to the kernel, nothing else: a patchify convolution.
    fn patch(kh: usize, kw: usize) -> Geo {
        Geo {
            strides: [kh, kw],
            pads: [0; 4],
            dilations: [1, 1],
            group: 1,
        }
    }

    /// The node attributes that spell this geometry.
    fn attrs(&self) -> Vec<proto::AttributeProto> {
        let i = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
        vec![
            a_ints("strides", &i(&self.strides)),
            a_ints("pads", &i(&self.pads)),
            a_ints("dilations", &i(&self.dilations)),
            a_i("group", self.group as i64),
        ]
    }
}

/// A direct 2-D integer convolution, from the ONNX spec of `ConvInteger`:
/// `sum (x - x_zp) * (w - w_zp[o])` over the taps that fall inside the
/// input (padding contributes nothing). `w_zp` has one element or one per
/// output channel. Returns the result and its shape `[n, m, oh, ow]`.
fn conv_ref(
    x: &[i64],
    [n, c, h, w]: [usize; 4],
    wt: &[i64],
    [m, cg, kh, kw]: [usize; 4],
    x_zp: i64,
    w_zp: &[i64],
    g: Geo,
) -> (Vec<i64>, [usize; 4]) {
    assert_eq!(cg * g.group, c);
    let [sh, sw] = g.strides;
    let [dh, dw] = g.dilations;
    let oh = (h + g.pads[0] + g.pads[2] - dh * (kh - 1) - 1) / sh + 1;
    let ow = (w + g.pads[1] + g.pads[3] - dw * (kw - 1) - 1) / sw + 1;
    let mut y = Vec::with_capacity(n * m * oh * ow);
    for b in 0..n {
        for o in 0..m {
            let first = (o / (m / g.group)) * cg;
            let wz = if w_zp.len() == 1 { w_zp[0] } else { w_zp[o] };
            for i in 0..oh {
                for j in 0..ow {
                    let mut s = 0i64;
                    for ci in 0..cg {
                        for a in 0..kh {
                            for e in 0..kw {
                                let r = (i * sh + a * dh) as i64 - g.pads[0] as i64;
                                let q = (j * sw + e * dw) as i64 - g.pads[1] as i64;
                                if r < 0 || q < 0 || r as usize >= h || q as usize >= w {
                                    continue;
                                }
                                let xv =
                                    x[((b * c + first + ci) * h + r as usize) * w + q as usize];
                                let wv = wt[((o * cg + ci) * kh + a) * kw + e];
                                s += (xv - x_zp) * (wv - wz);
                            }
                        }
                    }
                    y.push(s);
                }
            }
        }
    }
    (y, [n, m, oh, ow])
}

/// A patchify convolution as ONNX Runtime computes it on x86 without VNNI:
/// the raw products `x * w` of one patch, in im2col order (channel, kernel
/// row, kernel column), summed two at a time with each pair saturated to
/// i16, then the zero points taken off exactly (a per-tensor `w_zp`).
fn patchify_saturating_ref(
    x: &[i64],
    [n, c, h, w]: [usize; 4],
    wt: &[i64],
    [m, kh, kw]: [usize; 3],
    x_zp: i64,
    w_zp: i64,
) -> Vec<i64> {
    let (oh, ow) = (h / kh, w / kw);
    let mut y = Vec::new();
    for b in 0..n {
        for o in 0..m {
            for i in 0..oh {
                for j in 0..ow {
                    let (mut xs, mut ws) = (Vec::new(), Vec::new());
                    for ci in 0..c {
                        for a in 0..kh {
                            for e in 0..kw {
                                xs.push(x[((b * c + ci) * h + i * kh + a) * w + j * kw + e]);
                                ws.push(wt[((o * c + ci) * kh + a) * kw + e]);
                            }
                        }
                    }
                    let products: Vec<i64> = xs.iter().zip(&ws).map(|(a, b)| a * b).collect();
                    let pairs: i64 = products
                        .chunks(2)
                        .map(|p| p.iter().sum::<i64>().clamp(-32768, 32767))
                        .sum();
                    let k = xs.len() as i64;
                    let (sx, sw) = (xs.iter().sum::<i64>(), ws.iter().sum::<i64>());
                    y.push(pairs - x_zp * sw - w_zp * sx + k * x_zp * w_zp);
                }
            }
        }
    }
    y
}

/// Deterministic integers in `lo..=hi`.
fn ints(count: usize, seed: u64, lo: i64, hi: i64) -> Vec<i64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + ((s >> 33) % (hi - lo + 1) as u64) as i64
        })
        .collect()
}

fn u8s(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_vec(shape.to_vec(), v.iter().map(|&x| x as u8).collect()).unwrap()
}

fn i8s(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_vec(shape.to_vec(), v.iter().map(|&x| x as i8).collect()).unwrap()
}

/// An 8-bit integer initializer (ONNX stores those in `int32_data`).
fn t8(name: &str, dt: DataType, dims: &[i64], v: &[i64]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(dt as i32),
        int32_data: v.iter().map(|&x| x as i32).collect(),
        ..Default::default()
    }
}

/// What a test's `ConvInteger` node reads: `x` is always a graph input of
/// dims `x_dims`; the weights and zero points are initializers.
struct Case<'a> {
    x_dims: &'a [D],
    w: proto::TensorProto,
    x_zp: Option<proto::TensorProto>,
    w_zp: Option<proto::TensorProto>,
    x_type: DataType,
    attrs: Vec<proto::AttributeProto>,
}

impl Case<'_> {
    fn model(&self) -> proto::ModelProto {
        let mut names = vec!["x", "w"];
        let mut inits = vec![self.w.clone()];
        for (zp, name) in [(&self.x_zp, "xz"), (&self.w_zp, "wz")] {
            match zp {
                Some(t) => {
                    let mut t = t.clone();
                    t.name = Some(name.into());
                    inits.push(t);
                    names.push(name);
                }
                None => names.push(""),
            }
        }
        while names.last() == Some(&"") {
            names.pop();
        }
        model(
            vec![node(
                "ConvInteger",
                "ci",
                &names,
                &["y"],
                self.attrs.clone(),
            )],
            vec![vi("x", self.x_type, self.x_dims)],
            vec![out("y")],
            inits,
            10,
        )
    }

    fn import(&self, mode: Int8MatMul) -> tcc_onnx::Result<Graph> {
        let g = import_model_with(
            &self.model(),
            Path::new("."),
            &ImportOptions { int8_matmul: mode },
        )?;
        tcc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("the verifier rejects it: {e}"));
        Ok(g)
    }

    fn ok(&self, mode: Int8MatMul) -> Graph {
        self.import(mode)
            .unwrap_or_else(|e| panic!("import failed: {e}"))
    }
}

/// Runs `g` on `x`; returns the output's elements and shape.
fn run(g: &Graph, x: Tensor) -> (Vec<i64>, Vec<usize>) {
    let inputs = HashMap::from([("x".to_string(), x)]);
    let mut outs = tcc_ir::interp::run(g, &inputs).unwrap_or_else(|e| panic!("run failed: {e}"));
    let y = outs.remove(0).1;
    assert_eq!(y.dtype(), tcc_ir::DType::I32);
    let v = y.data().to_f64_vec().iter().map(|&v| v as i64).collect();
    (v, y.shape().to_vec())
}

fn out_ty(g: &Graph) -> String {
    g.ty(g.outputs()[0].1).to_string()
}

/// The non-leaf ops of the graph, by name, in topological order.
fn op_names(g: &Graph) -> Vec<&'static str> {
    g.topo_order()
        .into_iter()
        .filter(|&i| !matches!(g.op(i), Op::Input { .. } | Op::Const(_)))
        .map(|i| g.op(i).name())
        .collect()
}

/// The `saturate_pairs` flags of the graph's `MatMulInteger` nodes.
fn saturation(g: &Graph) -> Vec<bool> {
    g.topo_order()
        .into_iter()
        .filter_map(|i| match g.op(i) {
            Op::MatMulInteger { saturate_pairs } => Some(*saturate_pairs),
            _ => None,
        })
        .collect()
}

fn fixed(d: &[usize]) -> Vec<D> {
    d.iter().map(|&v| D::V(v as i64)).collect()
}

// ----- Patchify ------------------------------------------------------------------

#[test]
fn patchify_is_one_matmul_integer_and_matches_a_direct_convolution() {
    // u8 x i8, 3 channels, 4 x 4 patches of an 8 x 12 image, 5 output channels.
    let (xs, ws) = ([2, 3, 8, 12], [5, 3, 4, 4]);
    let x = ints(2 * 3 * 8 * 12, 1, 0, 255);
    let w = ints(5 * 3 * 4 * 4, 2, -128, 127);
    let case = Case {
        x_dims: &fixed(&xs),
        w: t8("w", DataType::Int8, &[5, 3, 4, 4], &w),
        x_zp: Some(t8("", DataType::Uint8, &[], &[131])),
        w_zp: Some(t8("", DataType::Int8, &[1], &[-3])),
        x_type: DataType::Uint8,
        attrs: [
            vec![a_ints("kernel_shape", &[4, 4])],
            Geo::patch(4, 4).attrs(),
        ]
        .concat(),
    };
    let g = case.ok(Int8MatMul::Exact);
    assert_eq!(out_ty(&g), "i32[2, 5, 2, 3]");
    assert!(
        !op_names(&g).contains(&"conv"),
        "a patchify ConvInteger is no Conv: {:?}",
        op_names(&g)
    );
    assert_eq!(saturation(&g), [false]);
    let (got, shape) = run(&g, u8s(&xs, &x));
    let (want, wshape) = conv_ref(&x, xs, &w, ws, 131, &[-3], Geo::patch(4, 4));
    assert_eq!(shape, wshape);
    assert_eq!(got, want);
}

#[test]
fn patchify_drops_rows_and_columns_past_the_last_whole_patch() {
    // 7 x 8 by 3 x 3 patches: 2 x 2 of them, the last row and two columns unread.
    let (xs, ws) = ([1, 2, 7, 8], [3, 2, 3, 3]);
    let x = ints(2 * 7 * 8, 3, -128, 127);
    let w = ints(3 * 2 * 3 * 3, 4, -128, 127);
    let case = Case {
        x_dims: &fixed(&xs),
        w: t8("w", DataType::Int8, &[3, 2, 3, 3], &w),
        x_zp: Some(t8("", DataType::Int8, &[], &[5])),
        w_zp: None,
        x_type: DataType::Int8,
        attrs: Geo::patch(3, 3).attrs(),
    };
    // i8 x i8 never saturates, whatever the mode.
    let g = case.ok(Int8MatMul::OrtX86);
    assert_eq!(saturation(&g), [false]);
    assert_eq!(out_ty(&g), "i32[1, 3, 2, 2]");
    let (got, _) = run(&g, i8s(&xs, &x));
    let (want, _) = conv_ref(&x, xs, &w, ws, 5, &[0], Geo::patch(3, 3));
    assert_eq!(got, want);
}

#[test]
fn patchify_u8_by_i8_saturates_pairs_in_im2col_order_on_ort_x86() {
    // One 2 x 2 patch of two channels, one output channel. In im2col order
    // (channel, row, column) the taps are x = [255, 255, 3, 4, 5, 6, 7, 8]
    // and w = [127, 127, -2, 1, 1, -1, 2, -3]; the raw products are
    // [32385, 32385, -6, 4, 5, -6, 14, -24].
    let x = [255, 255, 3, 4, 5, 6, 7, 8];
    let w = [127, 127, -2, 1, 1, -1, 2, -3];
    let case = Case {
        x_dims: &fixed(&[1, 2, 2, 2]),
        w: t8("w", DataType::Int8, &[1, 2, 2, 2], &w),
        x_zp: Some(t8("", DataType::Uint8, &[], &[3])),
        w_zp: None,
        x_type: DataType::Uint8,
        attrs: Geo::patch(2, 2).attrs(),
    };
    let sat = case.ok(Int8MatMul::OrtX86);
    assert_eq!(saturation(&sat), [true]);
    let (got, _) = run(&sat, u8s(&[1, 2, 2, 2], &x));
    // Pairs: 32385 + 32385 = 64770 saturates to 32767; then -2, -1 and -10:
    // 32754. Minus x_zp * sum(w) = 3 * 252 = 756: 31998. (Paired across
    // channels instead, as (kh, kw, c) order would, no pair overflows.)
    assert_eq!(got, [31998]);
    assert_eq!(
        got,
        patchify_saturating_ref(&x, [1, 2, 2, 2], &w, [1, 2, 2], 3, 0)
    );

    let exact = case.ok(Int8MatMul::Exact);
    assert_eq!(saturation(&exact), [false]);
    let (got, _) = run(&exact, u8s(&[1, 2, 2, 2], &x));
    // Exactly: 252 * 127 * 2 + 0 * -2 + 1 * 1 + 2 * 1 + 3 * -1 + 4 * 2
    // + 5 * -3 = 64008 - 7 = 64001.
    assert_eq!(got, [64001]);
    let (want, _) = conv_ref(
        &x,
        [1, 2, 2, 2],
        &w,
        [1, 2, 2, 2],
        3,
        &[0],
        Geo::patch(2, 2),
    );
    assert_eq!(got, want);
}

#[test]
fn patchify_saturation_matches_a_pairwise_loop_on_full_range_data() {
    // Full-range values: many pairs overflow, and an odd K (3 * 3 * 3 = 27)
    // leaves the last product alone.
    let (xs, ws) = ([2, 3, 6, 9], [4, 3, 3, 3]);
    let x = ints(2 * 3 * 6 * 9, 5, 0, 255);
    let w = ints(4 * 3 * 3 * 3, 6, -128, 127);
    let case = Case {
        x_dims: &fixed(&xs),
        w: t8("w", DataType::Int8, &[4, 3, 3, 3], &w),
        x_zp: Some(t8("", DataType::Uint8, &[], &[100])),
        w_zp: Some(t8("", DataType::Int8, &[], &[7])),
        x_type: DataType::Uint8,
        attrs: Geo::patch(3, 3).attrs(),
    };
    let (got, _) = run(&case.ok(Int8MatMul::OrtX86), u8s(&xs, &x));
    let want = patchify_saturating_ref(&x, xs, &w, [4, 3, 3], 100, 7);
    assert_eq!(got, want);
    // The data does saturate: the exact result differs.
    let (exact, _) = conv_ref(&x, xs, &w, ws, 100, &[7], Geo::patch(3, 3));
    assert_ne!(got, exact);
}

// ----- The general form ----------------------------------------------------------

#[test]
fn general_padded_stride_one_matches_a_direct_convolution_in_both_modes() {
    let (xs, ws) = ([2, 2, 5, 6], [3, 2, 3, 3]);
    let geo = Geo {
        strides: [1, 1],
        pads: [1, 0, 2, 1],
        dilations: [1, 1],
        group: 1,
    };
    let x = ints(2 * 2 * 5 * 6, 7, 0, 255);
    let w = ints(3 * 2 * 3 * 3, 8, -128, 127);
    let case = Case {
        x_dims: &fixed(&xs),
        w: t8("w", DataType::Int8, &[3, 2, 3, 3], &w),
        x_zp: Some(t8("", DataType::Uint8, &[], &[17])),
        w_zp: Some(t8("", DataType::Int8, &[], &[-9])),
        x_type: DataType::Uint8,
        attrs: geo.attrs(),
    };
    let (want, wshape) = conv_ref(&x, xs, &w, ws, 17, &[-9], geo);
    // In OrtX86 mode too the general form is exact (see the importer's doc).
    for mode in [Int8MatMul::Exact, Int8MatMul::OrtX86] {
        let g = case.ok(mode);
        assert!(op_names(&g).contains(&"conv"), "{:?}", op_names(&g));
        assert!(saturation(&g).is_empty());
        let (got, shape) = run(&g, u8s(&xs, &x));
        assert_eq!(shape, wshape);
        assert_eq!(got, want, "{mode:?}");
    }
}

#[test]
fn general_strided_dilated_grouped_with_auto_pad_matches_a_direct_convolution() {
    // Four input channels in two groups, six output channels; SAME_UPPER
    // with stride 2 on a 7 x 7 input and a dilated 2 x 2 kernel (reach 3):
    // out 4, total pad (4 - 1) * 2 + 3 - 7 = 2, one each side.
    let (xs, ws) = ([1, 4, 7, 7], [6, 2, 2, 2]);
    let geo = Geo {
        strides: [2, 2],
        pads: [1, 1, 1, 1],
        dilations: [2, 2],
        group: 2,
    };
    let x = ints(4 * 7 * 7, 9, 0, 255);
    let w = ints(6 * 2 * 2 * 2, 10, 0, 255);
    let case = Case {
        x_dims: &fixed(&xs),
        w: t8("w", DataType::Uint8, &[6, 2, 2, 2], &w),
        x_zp: None,
        w_zp: Some(t8("", DataType::Uint8, &[], &[128])),
        x_type: DataType::Uint8,
        attrs: vec![
            a_s("auto_pad", "SAME_UPPER"),
            a_ints("strides", &[2, 2]),
            a_ints("dilations", &[2, 2]),
            a_i("group", 2),
        ],
    };
    let g = case.ok(Int8MatMul::OrtX86);
    assert_eq!(out_ty(&g), "i32[1, 6, 4, 4]");
    let (got, _) = run(&g, u8s(&xs, &x));
    let (want, _) = conv_ref(&x, xs, &w, ws, 0, &[128], geo);
    assert_eq!(got, want);
}

// ----- Per-channel weight zero points and a symbolic batch -----------------------

#[test]
fn per_channel_weight_zero_points_in_both_lowerings() {
    let (xs, ws) = ([1, 3, 4, 4], [4, 3, 2, 2]);
    let x = ints(3 * 4 * 4, 11, 0, 255);
    let w = ints(4 * 3 * 2 * 2, 12, -128, 127);
    let wz = [-5, 0, 12, 100];
    let padded = Geo {
        strides: [1, 1],
        pads: [1, 1, 1, 1],
        dilations: [1, 1],
        group: 1,
    };
    for (geo, conv) in [(Geo::patch(2, 2), false), (padded, true)] {
        let case = Case {
            x_dims: &fixed(&xs),
            w: t8("w", DataType::Int8, &[4, 3, 2, 2], &w),
            x_zp: Some(t8("", DataType::Uint8, &[1], &[60])),
            w_zp: Some(t8("", DataType::Int8, &[4], &wz)),
            x_type: DataType::Uint8,
            attrs: geo.attrs(),
        };
        let g = case.ok(Int8MatMul::Exact);
        assert_eq!(op_names(&g).contains(&"conv"), conv, "{:?}", op_names(&g));
        let (got, _) = run(&g, u8s(&xs, &x));
        let (want, _) = conv_ref(&x, xs, &w, ws, 60, &wz, geo);
        assert_eq!(got, want, "conv lowering: {conv}");
    }
}

#[test]
fn symbolic_batch_in_both_lowerings() {
    let ws = [2, 3, 2, 2];
    let w = ints(2 * 3 * 2 * 2, 13, -128, 127);
    let padded = Geo {
        strides: [1, 1],
        pads: [0, 1, 0, 1],
        dilations: [1, 1],
        group: 1,
    };
    for (geo, ty) in [
        (Geo::patch(2, 2), "i32[batch, 2, 2, 3]"),
        (padded, "i32[batch, 2, 3, 7]"),
    ] {
        let case = Case {
            x_dims: &[D::P("batch"), D::V(3), D::V(4), D::V(6)],
            w: t8("w", DataType::Int8, &[2, 3, 2, 2], &w),
            x_zp: Some(t8("", DataType::Uint8, &[], &[9])),
            w_zp: Some(t8("", DataType::Int8, &[2], &[1, -1])),
            x_type: DataType::Uint8,
            attrs: geo.attrs(),
        };
        let g = case.ok(Int8MatMul::Exact);
        assert_eq!(out_ty(&g), ty);
        for n in [1, 3] {
            let xs = [n, 3, 4, 6];
            let x = ints(n * 3 * 4 * 6, 14 + n as u64, 0, 255);
            let (got, shape) = run(&g, u8s(&xs, &x));
            let (want, wshape) = conv_ref(&x, xs, &w, ws, 9, &[1, -1], geo);
            assert_eq!(shape, wshape);
            assert_eq!(got, want, "batch {n}, {ty}");
        }
    }
}

// ----- Errors --------------------------------------------------------------------

#[test]
fn bad_operands_are_errors_naming_the_node() {
    let w = t8("w", DataType::Int8, &[1, 1, 2, 2], &[1, 2, 3, 4]);
    let float_x = Case {
        x_dims: &fixed(&[1, 1, 2, 2]),
        w: w.clone(),
        x_zp: None,
        w_zp: None,
        x_type: DataType::Float,
        attrs: vec![],
    };
    let e = float_x.import(Int8MatMul::Exact).unwrap_err().to_string();
    assert!(e.contains("ci") && e.contains("i8 or u8"), "{e}");

    let vector_x_zp = Case {
        x_dims: &fixed(&[1, 1, 2, 2]),
        w: w.clone(),
        x_zp: Some(t8("", DataType::Uint8, &[2], &[1, 2])),
        w_zp: None,
        x_type: DataType::Uint8,
        attrs: vec![],
    };
    let e = vector_x_zp
        .import(Int8MatMul::Exact)
        .unwrap_err()
        .to_string();
    assert!(e.contains("x_zero_point must be a scalar"), "{e}");

    let wrong_count = Case {
        x_dims: &fixed(&[1, 1, 2, 2]),
        w,
        x_zp: None,
        w_zp: Some(t8("", DataType::Int8, &[3], &[1, 2, 3])),
        x_type: DataType::Uint8,
        attrs: vec![],
    };
    let e = wrong_count
        .import(Int8MatMul::Exact)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 elements for 1 output channels"), "{e}");
}

#[test]
fn patchify_with_symbolic_spatial_sizes() {
    let ws = [2, 2, 3, 3];
    let w = ints(2 * 2 * 3 * 3, 20, -128, 127);
    let case = Case {
        x_dims: &[D::V(1), D::V(2), D::P("h"), D::P("w")],
        w: t8("w", DataType::Int8, &[2, 2, 3, 3], &w),
        x_zp: Some(t8("", DataType::Uint8, &[], &[40])),
        w_zp: None,
        x_type: DataType::Uint8,
        attrs: Geo::patch(3, 3).attrs(),
    };
    let g = case.ok(Int8MatMul::Exact);
    assert!(!op_names(&g).contains(&"conv"), "{:?}", op_names(&g));
    // Whole patches only (9 x 6), and a remainder that is never read (7 x 11).
    for (h, wd) in [(9, 6), (7, 11)] {
        let xs = [1, 2, h, wd];
        let x = ints(2 * h * wd, 21 + h as u64, 0, 255);
        let (got, shape) = run(&g, u8s(&xs, &x));
        let (want, wshape) = conv_ref(&x, xs, &w, ws, 40, &[0], Geo::patch(3, 3));
        assert_eq!(shape, wshape);
        assert_eq!(got, want, "{h} x {wd}");
    }
}
