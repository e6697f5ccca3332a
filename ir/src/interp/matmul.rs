//! Batched matrix products, the interpreter's hot spot.
//!
//! The kernel is the textbook `i-k-j` loop (a row of the result accumulates a
//! scaled row of `b` for each `k`, so the inner loop is contiguous and
//! vectorises), blocked over `k` and `j` so that a tile of `b` stays in cache
//! while the rows of `a` stream past. The rows of the result (all batches
//! together) are split across `std::thread::available_parallelism()` threads.
//! Each element is summed in increasing `k`, whatever the split, so results
//! do not depend on the thread count.
//!
//! f32 accumulates in f32, as ONNX Runtime does; f64 in f64; f16 and bf16
//! compute in f64 and round once. Integers accumulate exactly with wrapping
//! (i32, the type of the quantisation lowering, natively; i64, i8 and u8 in
//! i64, then wrap to the element type). Leading batch dims broadcast.

use super::{broadcast_shapes, tensor, OpResult};
use crate::infer::bcast_index;
use crate::tensor::{Element, Tensor, TensorData};

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 18;
/// The `k` extent of a tile of `b`.
const KB: usize = 128;
/// The `j` extent of a tile of `b`.
const NB: usize = 512;

/// An element type the kernel accumulates in.
trait Num: Copy + Send + Sync + Default {
    /// `self + a * b`, wrapping for integers.
    fn mac(self, a: Self, b: Self) -> Self;
}

impl Num for f32 {
    #[inline(always)]
    fn mac(self, a: f32, b: f32) -> f32 {
        self + a * b
    }
}

impl Num for f64 {
    #[inline(always)]
    fn mac(self, a: f64, b: f64) -> f64 {
        self + a * b
    }
}

impl Num for i32 {
    #[inline(always)]
    fn mac(self, a: i32, b: i32) -> i32 {
        self.wrapping_add(a.wrapping_mul(b))
    }
}

impl Num for i64 {
    #[inline(always)]
    fn mac(self, a: i64, b: i64) -> i64 {
        self.wrapping_add(a.wrapping_mul(b))
    }
}

/// The layout of one batched product: `a` is `[batch_a.., m, k]` and `b` is
/// `[batch_b.., k, n]`; result batch `i` multiplies matrix `amap[i]` of `a` by
/// matrix `bmap[i]` of `b`.
struct Layout {
    amap: Vec<usize>,
    bmap: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
}

/// The operands of one batched product and their layout.
struct Problem<'a, T> {
    a: &'a [T],
    b: &'a [T],
    l: &'a Layout,
}

/// Computes every row of the result, splitting the rows across threads.
fn gemm<T: Num>(p: &Problem<'_, T>) -> Vec<T> {
    let l = p.l;
    let rows = l.amap.len() * l.m;
    let mut c = vec![T::default(); rows * l.n];
    if c.is_empty() {
        return c;
    }
    let work = rows * l.n * l.k;
    let threads = if work < PARALLEL_WORK {
        1
    } else {
        std::thread::available_parallelism()
            .map(|t| t.get())
            .unwrap_or(1)
            .min(rows)
    };
    let per = rows.div_ceil(threads);
    std::thread::scope(|s| {
        let mut chunks = c.chunks_mut(per * l.n).enumerate();
        // The calling thread takes the first chunk itself.
        let first = chunks.next();
        for (t, chunk) in chunks {
            s.spawn(move || rows_of(p, t * per, chunk));
        }
        if let Some((_, chunk)) = first {
            rows_of(p, 0, chunk);
        }
    });
    c
}

/// Computes the result rows `r0..` that `c` holds (global row indices over all
/// batches), in runs of rows that share one batch.
fn rows_of<T: Num>(p: &Problem<'_, T>, r0: usize, c: &mut [T]) {
    let l = p.l;
    let (m, k, n) = (l.m, l.k, l.n);
    let rows = c.len() / n;
    let mut r = 0;
    while r < rows {
        let (batch, i0) = ((r0 + r) / m, (r0 + r) % m);
        let run = (m - i0).min(rows - r);
        let a = &p.a[(l.amap[batch] * m + i0) * k..][..run * k];
        let b = &p.b[l.bmap[batch] * k * n..][..k * n];
        block(a, b, &mut c[r * n..(r + run) * n], k, n);
        r += run;
    }
}

/// `c += a * b` for `a` of shape `[rows, k]`, `b` of `[k, n]` and `c` of
/// `[rows, n]`, tiled over `j` and `k`. Rows go four at a time, so that each
/// element of `b` loaded serves four rows; every element of `c` still sums its
/// products in increasing `k`.
fn block<T: Num>(a: &[T], b: &[T], c: &mut [T], k: usize, n: usize) {
    let rows = c.len() / n;
    for j0 in (0..n).step_by(NB) {
        let j1 = (j0 + NB).min(n);
        for k0 in (0..k).step_by(KB) {
            let k1 = (k0 + KB).min(k);
            let mut i = 0;
            while i + 4 <= rows {
                let (c0, rest) = c[i * n..(i + 4) * n].split_at_mut(n);
                let (c1, rest) = rest.split_at_mut(n);
                let (c2, c3) = rest.split_at_mut(n);
                let (c0, c1, c2, c3) = (
                    &mut c0[j0..j1],
                    &mut c1[j0..j1],
                    &mut c2[j0..j1],
                    &mut c3[j0..j1],
                );
                for kk in k0..k1 {
                    let a0 = a[i * k + kk];
                    let a1 = a[(i + 1) * k + kk];
                    let a2 = a[(i + 2) * k + kk];
                    let a3 = a[(i + 3) * k + kk];
                    let brow = &b[kk * n + j0..kk * n + j1];
                    let cs = c0.iter_mut().zip(c1.iter_mut()).zip(c2.iter_mut());
                    for (((x0, x1), x2), (x3, &bv)) in cs.zip(c3.iter_mut().zip(brow)) {
                        *x0 = x0.mac(a0, bv);
                        *x1 = x1.mac(a1, bv);
                        *x2 = x2.mac(a2, bv);
                        *x3 = x3.mac(a3, bv);
                    }
                }
                i += 4;
            }
            for (crow, arow) in c[i * n..]
                .chunks_exact_mut(n)
                .zip(a[i * k..].chunks_exact(k))
            {
                let crow = &mut crow[j0..j1];
                for (kk, &av) in arow.iter().enumerate().take(k1).skip(k0) {
                    let brow = &b[kk * n + j0..kk * n + j1];
                    for (cv, &bv) in crow.iter_mut().zip(brow) {
                        *cv = cv.mac(av, bv);
                    }
                }
            }
        }
    }
}

/// Converts, multiplies in `W` and converts back.
fn via<T: Element, W: Num>(
    a: &[T],
    b: &[T],
    l: &Layout,
    to: fn(T) -> W,
    from: fn(W) -> T,
) -> Vec<T> {
    let a: Vec<W> = a.iter().map(|&x| to(x)).collect();
    let b: Vec<W> = b.iter().map(|&x| to(x)).collect();
    gemm(&Problem { a: &a, b: &b, l })
        .into_iter()
        .map(from)
        .collect()
}

/// The layout of the batched product of operands of shapes `ash`
/// (`[.., m, k]`) and `bsh` (`[.., k, n]`), with the broadcast batch dims.
fn layout(ash: &[usize], bsh: &[usize]) -> OpResult<(Vec<usize>, Layout)> {
    if ash.len() < 2 || bsh.len() < 2 {
        return Err(format!(
            "operands must have rank 2 or more, got {ash:?} and {bsh:?}"
        ));
    }
    let (ar, br) = (ash.len(), bsh.len());
    let (m, k, k2, n) = (ash[ar - 2], ash[ar - 1], bsh[br - 2], bsh[br - 1]);
    if k != k2 {
        return Err(format!("inner dims differ: {ash:?} and {bsh:?}"));
    }
    let batch = broadcast_shapes(&[&ash[..ar - 2], &bsh[..br - 2]])?;
    let l = Layout {
        amap: bcast_index(&batch, &ash[..ar - 2]),
        bmap: bcast_index(&batch, &bsh[..br - 2]),
        m,
        k,
        n,
    };
    Ok((batch, l))
}

/// The batched matrix product of `a` (`[.., m, k]`) and `b` (`[.., k, n]`).
pub(super) fn matmul(a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    if a.dtype() != b.dtype() {
        return Err(format!(
            "operand dtypes differ: {} and {}",
            a.dtype(),
            b.dtype()
        ));
    }
    let (batch, l) = layout(a.shape(), b.shape())?;
    let (m, n) = (l.m, l.n);
    let l = &l;
    let data = match (a.data(), b.data()) {
        (TensorData::F32(a), TensorData::F32(b)) => TensorData::F32(gemm(&Problem { a, b, l })),
        (TensorData::F64(a), TensorData::F64(b)) => TensorData::F64(gemm(&Problem { a, b, l })),
        (TensorData::I32(a), TensorData::I32(b)) => TensorData::I32(gemm(&Problem { a, b, l })),
        (TensorData::I64(a), TensorData::I64(b)) => TensorData::I64(gemm(&Problem { a, b, l })),
        (TensorData::F16(a), TensorData::F16(b)) => {
            TensorData::F16(via(a, b, l, Element::to_f64, Element::from_f64))
        }
        (TensorData::BF16(a), TensorData::BF16(b)) => {
            TensorData::BF16(via(a, b, l, Element::to_f64, Element::from_f64))
        }
        (TensorData::I8(a), TensorData::I8(b)) => {
            TensorData::I8(via(a, b, l, Element::to_i64, Element::from_i64))
        }
        (TensorData::U8(a), TensorData::U8(b)) => {
            TensorData::U8(via(a, b, l, Element::to_i64, Element::from_i64))
        }
        _ => return Err(format!("is not defined on {}", a.dtype())),
    };
    let mut shape = batch;
    shape.extend([m, n]);
    tensor(shape, data)
}

/// ONNX `MatMulInteger` of `[a, b, a_zp, b_zp]`, exactly or with the pair
/// saturation of x86's `vpmaddubsw` (see `Op::MatMulInteger`).
pub(super) fn matmul_integer(x: &[&Tensor], saturate_pairs: bool) -> OpResult<Tensor> {
    let (a, b, az, bz) = (x[0], x[1], x[2], x[3]);
    let (ash, bsh) = (a.shape(), b.shape());
    let (batch, l) = layout(ash, bsh)?;
    let (
        Layout {
            amap,
            bmap,
            m,
            k,
            n,
        },
        ar,
        br,
    ) = (l, ash.len(), bsh.len());
    let ints = |t: &Tensor| -> Vec<i32> {
        t.data()
            .to_i64_vec()
            .into_iter()
            .map(|v| v as i32)
            .collect()
    };
    let (av, bv) = (ints(a), ints(b));
    // Zero points, broadcast to one per row of `a` and one per column of `b`.
    let mut a_rows = ash.to_vec();
    a_rows[ar - 1] = 1;
    let mut b_cols = bsh.to_vec();
    b_cols[br - 2] = 1;
    let (azv, bzv) = (ints(az), ints(bz));
    let azp: Vec<i32> = broadcast_to(az.shape(), &a_rows)?
        .into_iter()
        .map(|i| azv[i])
        .collect();
    let bzp: Vec<i32> = broadcast_to(bz.shape(), &b_cols)?
        .into_iter()
        .map(|i| bzv[i])
        .collect();
    let mut out = Vec::with_capacity(amap.len() * m * n);
    for (&ia, &ib) in amap.iter().zip(&bmap) {
        let am = &av[ia * m * k..][..m * k];
        let bm = &bv[ib * k * n..][..k * n];
        // `b` transposed, so that both operands of a dot product are contiguous.
        let bt: Vec<i32> = (0..n * k).map(|i| bm[(i % k) * n + i / k]).collect();
        for i in 0..m {
            let arow = &am[i * k..][..k];
            let za = azp[ia * m + i];
            let asum: i32 = arow.iter().fold(0i32, |s, &v| s.wrapping_add(v));
            for j in 0..n {
                let bcol = &bt[j * k..][..k];
                let zb = bzp[ib * n + j];
                let acc = if saturate_pairs {
                    let bsum: i32 = bcol.iter().fold(0i32, |s, &v| s.wrapping_add(v));
                    let pairs = arow.chunks(2).zip(bcol.chunks(2)).fold(0i32, |s, (x, y)| {
                        let p: i32 = x.iter().zip(y).map(|(u, v)| u * v).sum();
                        s.wrapping_add(p.clamp(i16::MIN as i32, i16::MAX as i32))
                    });
                    pairs
                        .wrapping_sub(za.wrapping_mul(bsum))
                        .wrapping_sub(zb.wrapping_mul(asum))
                        .wrapping_add((k as i32).wrapping_mul(za).wrapping_mul(zb))
                } else {
                    arow.iter().zip(bcol).fold(0i32, |s, (&u, &v)| {
                        s.wrapping_add((u - za).wrapping_mul(v - zb))
                    })
                };
                out.push(acc);
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    tensor(shape, TensorData::I32(out))
}

/// For each element of `target`, the flat index into a tensor of shape `from`
/// that broadcasting reads; fails if `from` does not broadcast to `target`.
fn broadcast_to(from: &[usize], target: &[usize]) -> OpResult<Vec<usize>> {
    if broadcast_shapes(&[from, target])? != target {
        return Err(format!(
            "zero point of shape {from:?} does not broadcast to {target:?}"
        ));
    }
    Ok(bcast_index(target, from))
}
