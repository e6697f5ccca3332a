//! Convolution: a convolution whose kernel equals its stride (ViT's patch embedding, a
//! strided Conv1d) reads each input element once, so it is a rearrangement of the input and
//! one matrix product with the weights as a constant `B`.

use super::{data, nodes, rule, var, Ctx, Exactness::*, Gemm, Rule};
use egg::Id;
use tcc_ir::{DType, Dim, Op, Shape, Tensor};

/// The convolution rules.
pub fn rules() -> Vec<Rule> {
    vec![rule(
        "conv-patch-gemm",
        Exact,
        "conv(x, w) = transpose(reshape(gemm(reshape(transpose(reshape(x, [n, c, o1, k1, ..]), [0, 2, .., 1, 3, ..]), [n o1 .., c k1 ..]), w'), [n, o1 .., m]), [0, s+1, 1, ..]) for kernel = stride, no padding or dilation, one group, w' = reshape(w, [m, c k1 ..])^T; the product sums channel-major, taps row-major, as conv does",
        "(conv ?x ?w)",
        |c, root, s| {
            let (x, w) = (var(s, "?x"), var(s, "?w"));
            let (fx, fw) = (c.eg.find(x), c.eg.find(w));
            let convs: Vec<Op> = nodes(c.eg, root)
                .filter(|n| {
                    matches!(n.op(), Op::Conv { .. })
                        && n.args().len() == 2
                        && c.eg.find(n.args()[0]) == fx
                        && c.eg.find(n.args()[1]) == fw
                })
                .map(|n| n.op().clone())
                .collect();
            let mut out = Vec::new();
            for op in convs {
                out.extend(patch_gemm(c, &op, x, w));
            }
            out
        },
    )]
}

/// The GEMM form of `op` on `x` and `w`, if it is a patch convolution.
fn patch_gemm(c: &mut Ctx, op: &Op, x: Id, w: Id) -> Option<Id> {
    let Op::Conv {
        strides,
        pads_begin,
        pads_end,
        dilations,
        group,
    } = op
    else {
        return None;
    };
    let (xt, wt) = (data(c.eg, x).ty.clone(), data(c.eg, w).ty.clone());
    let wv = data(c.eg, w).value.clone()?;
    if *group != 1 || xt.dtype != DType::F32 || wt.dtype != DType::F32 {
        return None;
    }
    if !data(c.eg, w).graph_constant {
        return None;
    }
    let sp = strides.len();
    let xd = xt.shape.dims();
    let wd = wt.shape.as_fixed()?;
    if xd.len() != sp + 2 || wd.len() != sp + 2 || sp == 0 {
        return None;
    }
    let zero = |d: &Dim| d.as_const() == Some(0);
    if !pads_begin.iter().all(zero) || !pads_end.iter().all(zero) {
        return None;
    }
    if dilations.iter().any(|&d| d != 1) || (0..sp).any(|a| strides[a] != wd[a + 2]) {
        return None;
    }
    // Every spatial size a constant multiple of its stride: the patches tile the input.
    let mut outs = Vec::with_capacity(sp);
    for a in 0..sp {
        let size = usize::try_from(xd[a + 2].as_const()?).ok()?;
        if size == 0 || size % strides[a] != 0 {
            return None;
        }
        outs.push(size / strides[a]);
    }
    let (m, ch) = (wd[0], wd[1]);
    let taps: usize = wd[2..].iter().product();
    let k = ch * taps;
    let n = xd[0].clone();
    let konst = |v: usize| Dim::constant(v as i64);
    // reshape x to [n, c, o1, k1, o2, k2, ..].
    let mut split = vec![n.clone(), xd[1].clone()];
    for a in 0..sp {
        split.push(konst(outs[a]));
        split.push(konst(strides[a]));
    }
    let r1 = c.add(
        Op::Reshape {
            shape: Shape::from(split),
        },
        vec![x],
    )?;
    // transpose to [n, o1, o2, .., c, k1, k2, ..].
    let mut perm = vec![0];
    perm.extend((0..sp).map(|a| 2 + 2 * a));
    perm.push(1);
    perm.extend((0..sp).map(|a| 3 + 2 * a));
    let t = c.add(Op::Transpose { perm }, vec![r1])?;
    let positions: usize = outs.iter().product();
    let rows = n.mul(&konst(positions));
    let a = c.add(
        Op::Reshape {
            shape: Shape::from(vec![rows, konst(k)]),
        },
        vec![t],
    )?;
    // w' = reshape(w, [m, k])^T, [k, m].
    let wf = wv.as_slice::<f32>()?;
    let mut wtv = vec![0.0f32; k * m];
    for (o, row) in wf.chunks_exact(k).enumerate() {
        for (kk, &v) in row.iter().enumerate() {
            wtv[kk * m + o] = v;
        }
    }
    let wid = c.eg.find(w);
    let wprime = c.derived_constant(
        format!("patch({wid})"),
        Tensor::from_vec(vec![k, m], wtv).ok()?,
    );
    let g = c.add(Gemm::plain(vec![a, wprime]).op(), vec![a, wprime])?;
    let mut ydims = vec![n];
    ydims.extend(outs.iter().map(|&o| konst(o)));
    ydims.push(konst(m));
    let y = c.add(
        Op::Reshape {
            shape: Shape::from(ydims),
        },
        vec![g],
    )?;
    let mut back = vec![0, sp + 1];
    back.extend(1..=sp);
    c.add(Op::Transpose { perm: back }, vec![y])
}
