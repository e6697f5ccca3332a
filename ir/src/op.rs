//! The operations of the IR.
//!
//! The op set is small on purpose: an ONNX op that can be written with these is
//! lowered by the importer (Gemm, Split, Squeeze, Clip, Gelu, the quantisation
//! ops, ...). An op earns a place here by needing a kernel of its own or by
//! being something a rewrite must see. Every op has exactly one result.
//!
//! Attributes are plain data, and every op prints and parses through
//! [`Op::attrs`] and [`Op::from_parts`], so the text form and a future e-graph
//! language can mirror the enum one variant for one variant.

use crate::dim::Dim;
use crate::dtype::DType;
use crate::fused::{Activation, AttentionMask, Body, ScoreScale};
use crate::shape::Shape;
use crate::tensor::Tensor;
use std::fmt::Write;
use std::sync::Arc;

/// A constant tensor, with the name it had in the source model if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    /// The initializer's name in the source model, used when the value is too
    /// large to print.
    pub name: Option<String>,
    /// The value.
    pub value: Arc<Tensor>,
}

/// Elementwise ops of one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnaryOp {
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// Square root.
    Sqrt,
    /// `e^x`.
    Exp,
    /// Natural logarithm.
    Log,
    /// The error function.
    Erf,
    /// Hyperbolic tangent.
    Tanh,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `max(x, 0)`.
    Relu,
    /// `1 / x`.
    Reciprocal,
    /// Logical not (bool).
    Not,
    /// Round toward minus infinity.
    Floor,
    /// Round toward plus infinity.
    Ceil,
    /// Round half to even.
    Round,
    /// -1, 0 or 1.
    Sign,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// Tangent.
    Tan,
    /// Arcsine.
    Asin,
    /// Arccosine.
    Acos,
    /// Arctangent.
    Atan,
    /// Hyperbolic sine.
    Sinh,
    /// Hyperbolic cosine.
    Cosh,
    /// Inverse hyperbolic sine.
    Asinh,
    /// Inverse hyperbolic cosine.
    Acosh,
    /// Inverse hyperbolic tangent.
    Atanh,
    /// True where x is NaN (bool result).
    IsNaN,
}

impl UnaryOp {
    /// Every unary op.
    pub const ALL: [UnaryOp; 27] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Sqrt,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Erf,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Reciprocal,
        UnaryOp::Not,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Round,
        UnaryOp::Sign,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tan,
        UnaryOp::Asin,
        UnaryOp::Acos,
        UnaryOp::Atan,
        UnaryOp::Sinh,
        UnaryOp::Cosh,
        UnaryOp::Asinh,
        UnaryOp::Acosh,
        UnaryOp::Atanh,
        UnaryOp::IsNaN,
    ];

    /// Whether the op is a transcendental function (exp, log, erf, the trigonometric and
    /// hyperbolic ones and their inverses, sigmoid): tens of operations an element where the
    /// others take one, which cost models and thread splits weigh.
    pub fn is_transcendental(self) -> bool {
        matches!(
            self,
            UnaryOp::Exp
                | UnaryOp::Log
                | UnaryOp::Erf
                | UnaryOp::Tanh
                | UnaryOp::Sigmoid
                | UnaryOp::Sin
                | UnaryOp::Cos
                | UnaryOp::Tan
                | UnaryOp::Asin
                | UnaryOp::Acos
                | UnaryOp::Atan
                | UnaryOp::Sinh
                | UnaryOp::Cosh
                | UnaryOp::Asinh
                | UnaryOp::Acosh
                | UnaryOp::Atanh
        )
    }

    /// The text-form name.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Erf => "erf",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Relu => "relu",
            UnaryOp::Reciprocal => "reciprocal",
            UnaryOp::Not => "not",
            UnaryOp::Floor => "floor",
            UnaryOp::Ceil => "ceil",
            UnaryOp::Round => "round",
            UnaryOp::Sign => "sign",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
            UnaryOp::Tan => "tan",
            UnaryOp::Asin => "asin",
            UnaryOp::Acos => "acos",
            UnaryOp::Atan => "atan",
            UnaryOp::Sinh => "sinh",
            UnaryOp::Cosh => "cosh",
            UnaryOp::Asinh => "asinh",
            UnaryOp::Acosh => "acosh",
            UnaryOp::Atanh => "atanh",
            UnaryOp::IsNaN => "isnan",
        }
    }

    /// True if the op is only defined on floats.
    pub fn float_only(self) -> bool {
        !matches!(
            self,
            UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Not | UnaryOp::Sign | UnaryOp::Relu
        )
    }
}

/// Elementwise ops of two operands, with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`; integer division truncates toward zero.
    Div,
    /// `a ^ b`.
    Pow,
    /// Elementwise minimum (NaN wins).
    Min,
    /// Elementwise maximum (NaN wins).
    Max,
    /// Integer remainder with the sign of the divisor (Python's `%`).
    Mod,
    /// Remainder with the sign of the dividend (C's `fmod`).
    FMod,
    /// `a == b` (bool result).
    Equal,
    /// `a < b` (bool result).
    Less,
    /// `a <= b` (bool result).
    LessEqual,
    /// `a > b` (bool result).
    Greater,
    /// `a >= b` (bool result).
    GreaterEqual,
    /// Logical and (bool).
    And,
    /// Logical or (bool).
    Or,
    /// Logical exclusive or (bool).
    Xor,
}

impl BinaryOp {
    /// Every binary op.
    pub const ALL: [BinaryOp; 17] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Min,
        BinaryOp::Max,
        BinaryOp::Mod,
        BinaryOp::FMod,
        BinaryOp::Equal,
        BinaryOp::Less,
        BinaryOp::LessEqual,
        BinaryOp::Greater,
        BinaryOp::GreaterEqual,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Xor,
    ];

    /// The text-form name.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Min => "min",
            BinaryOp::Max => "max",
            BinaryOp::Mod => "mod",
            BinaryOp::FMod => "fmod",
            BinaryOp::Equal => "equal",
            BinaryOp::Less => "less",
            BinaryOp::LessEqual => "less_equal",
            BinaryOp::Greater => "greater",
            BinaryOp::GreaterEqual => "greater_equal",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Xor => "xor",
        }
    }

    /// True for comparisons, whose result is bool.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::LessEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterEqual
        )
    }

    /// True for the logical ops, defined on bool only.
    pub fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }
}

/// Reductions over a set of axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReduceKind {
    /// Sum.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Product.
    Prod,
}

impl ReduceKind {
    /// Every reduction.
    pub const ALL: [ReduceKind; 5] = [
        ReduceKind::Sum,
        ReduceKind::Mean,
        ReduceKind::Max,
        ReduceKind::Min,
        ReduceKind::Prod,
    ];

    /// The text-form name (`reduce_sum`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "reduce_sum",
            ReduceKind::Mean => "reduce_mean",
            ReduceKind::Max => "reduce_max",
            ReduceKind::Min => "reduce_min",
            ReduceKind::Prod => "reduce_prod",
        }
    }
}

/// How `Pad` fills the new elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PadMode {
    /// A constant value, the op's second operand.
    Constant,
    /// Mirror without repeating the edge element: `[1, 2, 3]` padded by 2 at
    /// the end is `[1, 2, 3, 2, 1]`.
    Reflect,
    /// Repeat the edge element.
    Edge,
    /// Continue periodically from the other end.
    Wrap,
}

impl PadMode {
    /// Every pad mode.
    pub const ALL: [PadMode; 4] = [
        PadMode::Constant,
        PadMode::Reflect,
        PadMode::Edge,
        PadMode::Wrap,
    ];

    /// The text-form name, which is also the ONNX `mode` string.
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
            PadMode::Wrap => "wrap",
        }
    }

    /// The mode named `name`.
    pub fn from_name(name: &str) -> Option<PadMode> {
        PadMode::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// An operation. Operands are the node's inputs, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph input, by name. No operands.
    Input {
        /// The input's name.
        name: String,
    },
    /// A constant. No operands.
    Const(Constant),
    /// An integer tensor whose elements are symbolic dims, evaluated when the
    /// symbols are bound: what `Shape` and its arithmetic fold into. No operands.
    Dims {
        /// Element type (an integer type).
        dtype: DType,
        /// Concrete shape of the tensor (rank 0 or 1 in practice).
        shape: Vec<usize>,
        /// The elements, row-major.
        values: Vec<Dim>,
    },
    /// Elementwise op of one operand.
    Unary(UnaryOp),
    /// Elementwise op of two broadcast operands.
    Binary(BinaryOp),
    /// `where(cond, a, b)`, broadcast over all three.
    Where,
    /// Converts elements to `to`, as ONNX `Cast` does.
    Cast {
        /// Target element type.
        to: DType,
    },
    /// Batched matrix product of operands of rank 2 or more; the leading
    /// (batch) dims broadcast.
    MatMul,
    /// ONNX `MatMulInteger`: the batched product of 8-bit integer matrices
    /// into i32, `sum_k (a - a_zp) * (b - b_zp)`. Operands: `a` (`u8` or `i8`,
    /// `[.., m, k]`), `b` (`u8` or `i8`, `[.., k, n]`), `a_zp` (a's dtype,
    /// broadcastable to `[.., m, 1]`) and `b_zp` (b's dtype, broadcastable to
    /// `[.., 1, n]`).
    ///
    /// With `saturate_pairs` (only for `u8` times `i8`), the raw products are
    /// summed two at a time along `k` (`k = 2p, 2p + 1`; an odd last one alone)
    /// and each pair sum saturates to the i16 range before the exact i32
    /// accumulation; the zero points are then taken off exactly:
    /// `sum_p sat16(..) - a_zp * sum_k b - b_zp * sum_k a + k * a_zp * b_zp`.
    /// That is what x86's `vpmaddubsw` computes, and so what ONNX Runtime's
    /// u8 x s8 kernels give on CPUs without VNNI.
    MatMulInteger {
        /// Saturate pair sums to i16, as `vpmaddubsw` does.
        saturate_pairs: bool,
    },
    /// N-D convolution (cross-correlation, as ONNX `Conv`) of `x`
    /// (`[n, c, spatial..]`) with weights `w` (`[m, c / group, kernel..]`),
    /// both of one float dtype; the result is `[n, m, out..]` with
    /// `out = floor((in + pad_begin + pad_end - dilation * (kernel - 1) - 1)
    /// / stride) + 1` per spatial axis. Padding reads zeros. The channels split
    /// into `group` groups: output channel `o` sees input channels
    /// `(o / (m / group)) * (c / group)..` onwards, `c / group` of them. A bias
    /// is a separate broadcast `Add`. Operands: `x`, `w`.
    Conv {
        /// Step per spatial axis, at least 1.
        strides: Vec<usize>,
        /// Zeros added before each spatial axis (non-negative).
        pads_begin: Vec<Dim>,
        /// Zeros added after each spatial axis (non-negative).
        pads_end: Vec<Dim>,
        /// Spacing of the kernel taps per spatial axis, at least 1.
        dilations: Vec<usize>,
        /// Number of channel groups, at least 1; divides `c` and `m`.
        group: usize,
    },
    /// Pads (or, with negative amounts, crops) every axis: axis `i` loses
    /// `-pads_begin[i]` leading elements if that is negative, then gains
    /// `pads_begin[i]` new ones if positive, and likewise at the end. Cropping
    /// happens first, so `Reflect`, `Edge` and `Wrap` read the cropped
    /// tensor; amounts beyond its size repeat the pattern (periodic, as numpy
    /// does). Operands: `x`, and for [`PadMode::Constant`] a scalar of `x`'s
    /// dtype, the fill value.
    Pad {
        /// How new elements are filled.
        mode: PadMode,
        /// Elements added (or, if negative, removed) before each axis.
        pads_begin: Vec<Dim>,
        /// Elements added (or, if negative, removed) after each axis.
        pads_end: Vec<Dim>,
    },
    /// Softmax along `axis`.
    Softmax {
        /// The axis normalised over.
        axis: usize,
    },
    /// Log of softmax along `axis`.
    LogSoftmax {
        /// The axis normalised over.
        axis: usize,
    },
    /// Layer normalisation over the axes `axis..rank`, then `* scale + bias`.
    /// Operands: x, scale, bias.
    LayerNorm {
        /// The first normalised axis.
        axis: usize,
        /// Added to the variance.
        epsilon: f32,
    },
    /// Reduction over `axes` (sorted, distinct).
    Reduce {
        /// Which reduction.
        kind: ReduceKind,
        /// The reduced axes.
        axes: Vec<usize>,
        /// Keep reduced axes as size 1.
        keep_dims: bool,
    },
    /// Index of the maximum (`max: true`) or minimum along `axis`, as i64.
    ArgReduce {
        /// Maximum or minimum.
        max: bool,
        /// The reduced axis.
        axis: usize,
        /// Keep the axis as size 1.
        keep_dims: bool,
        /// On ties, take the last index.
        select_last: bool,
    },
    /// Cumulative sum along `axis`.
    CumSum {
        /// The axis.
        axis: usize,
        /// Exclude the current element.
        exclusive: bool,
        /// Sum from the end.
        reverse: bool,
    },
    /// Same elements, new shape of the same element count.
    Reshape {
        /// The result's shape, fully explicit (no 0 or -1).
        shape: Shape,
    },
    /// Permutes axes: result axis `i` is operand axis `perm[i]`.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Broadcasts the operand to `shape` (numpy rules, both ways as ONNX does).
    Expand {
        /// The shape broadcast against.
        shape: Shape,
    },
    /// Joins operands along `axis`.
    Concat {
        /// The joined axis.
        axis: usize,
    },
    /// Strided slice along `axes`.
    ///
    /// For a positive step, `start` and `end` lie in `0..=dim` and the result
    /// has `max(0, ceil((end - start) / step))` elements; for a negative step
    /// they lie in `-1..dim` and it has `max(0, ceil((start - end) / -step))`.
    Slice {
        /// Sliced axes, distinct.
        axes: Vec<usize>,
        /// First index per axis.
        starts: Vec<Dim>,
        /// One past the last index per axis (in the step's direction).
        ends: Vec<Dim>,
        /// Step per axis, non-zero.
        steps: Vec<i64>,
    },
    /// Takes slices along `axis` at the indices in the second operand
    /// (negative indices count from the end).
    Gather {
        /// The indexed axis.
        axis: usize,
    },
    /// ONNX `GatherElements` along `axis`.
    GatherElements {
        /// The indexed axis.
        axis: usize,
    },
    /// ONNX `GatherND`.
    GatherNd {
        /// Leading dims shared by data and indices.
        batch_dims: usize,
    },
    /// Repeats the operand `repeats[i]` times along axis `i`.
    Tile {
        /// Repeats per axis.
        repeats: Vec<Dim>,
    },
    /// `start, start + delta, ...` up to `limit` (exclusive). No operands.
    Range {
        /// Element type (integer).
        dtype: DType,
        /// First value.
        start: Dim,
        /// Bound, exclusive.
        limit: Dim,
        /// Step, non-zero.
        delta: i64,
    },
    /// The operand's dims `start..end` as an i64 vector.
    ShapeOf {
        /// First dim.
        start: usize,
        /// One past the last dim.
        end: usize,
    },
    /// Keeps the upper (or lower) triangle of the last two axes, offset by `k`;
    /// zeros elsewhere.
    Trilu {
        /// Upper triangle if true.
        upper: bool,
        /// Diagonal offset.
        k: i64,
    },
    /// Fused: a matrix product and its epilogue, one kernel,
    /// `perm_out(act(perm_a(a) · perm_b(b) + bias))`, where `perm_x(t)` is `t` transposed by
    /// `perm_x` if given (read or written in place, never copied). Operands: `a`, `b`, and
    /// `bias` (broadcast to the product) if `bias` is set. See [`crate::fused::expand`].
    Gemm {
        /// The activation of the epilogue.
        activation: Activation,
        /// Whether operand 2, added to the product, is there.
        bias: bool,
        /// The permutation that makes the product's `A` from operand 0.
        perm_a: Option<Vec<usize>>,
        /// The permutation that makes the product's `B` from operand 1.
        perm_b: Option<Vec<usize>>,
        /// The permutation applied to the result.
        perm_out: Option<Vec<usize>>,
    },
    /// Fused: a quantised matrix product, its dequantisation and epilogue, one kernel, as
    /// dynamic int8 quantisation computes it (ONNX Runtime's `quantize_dynamic` graphs, and
    /// `tcc compile --quantize int8`):
    /// `act(f32(matmul_integer(q, w, za, 0)) * (sa * sw) + bias)` where
    /// `q = u8(min(max(round(a / sa) + f32(za), 0), 255))` quantises the f32 `a` with the
    /// scale `sa` and zero point `za` (one for the whole tensor, or one per row), each
    /// product rounds once to f32 in that order, and the product is exact in i32, or saturates
    /// its pair sums as `matmul_integer` does with `saturate_pairs`. Operands: `a`
    /// (`f32[.., m, k]`), `sa` (f32, broadcast to `[.., m, 1]`), `za` (`u8`, `sa`'s shape),
    /// the weights `w` (`i8[k, n]`), their scales `sw` (f32, broadcast to `[n]`) and the
    /// `bias` (f32, broadcast to the product) if `bias` is set. See [`crate::fused::expand`].
    QGemm {
        /// The activation of the epilogue.
        activation: Activation,
        /// Whether operand 5, added to the dequantised product, is there.
        bias: bool,
        /// Saturate pair sums to i16, as `vpmaddubsw` does (see [`Op::MatMulInteger`]).
        saturate_pairs: bool,
    },
    /// Fused: scaled dot-product attention, one kernel whose scores never reach memory:
    /// `perm_out(filter(softmax(causal(mask(scale(Q · Kt))))) · V)` with the softmax over the last
    /// axis, `Q = perm_q(q)`, `Kt = perm_k(kt)` (`[.., d, keys]`: `K` transposed, as a
    /// `matmul` takes it) and `V = perm_v(v)`; `filter` is torch's `where(isnan(p), 0, p)`
    /// when `nan_filter` is set, then `where(c, 0, p)` when `zero_where` is (as the ONNX
    /// `Attention` op's expansion zeroes rows whose keys are all masked). Operands: `q`, `kt`,
    /// `v`, the `mask` (additive or boolean, broadcast to the scores) unless `mask` is `none`,
    /// and the condition `c` (bool, broadcast to the scores) if `zero_where`. See
    /// [`crate::fused::expand`].
    Attention {
        /// How the scores are scaled.
        scale: ScoreScale,
        /// The mask, operand 3 if any: added to the scaled scores, or a boolean that keeps a
        /// score where true (`where(mask, s, -inf)`), broadcast to the scores.
        mask: AttentionMask,
        /// Whether NaN probabilities (rows masked whole) become 0.
        nan_filter: bool,
        /// Whether the probabilities are zeroed where the last operand, a bool, is true.
        zero_where: bool,
        /// Whether query `i` sees only keys `j <= i + keys - queries` (causal, aligned to the
        /// last query row as a KV cache needs; `j <= i` when there are as many keys as
        /// queries): the others score `-inf` after the mask, so a row that sees no key is
        /// NaN before the filters.
        causal: bool,
        /// With `causal`, the keys a query does not see score `f32::MIN` (torch's
        /// `finfo.min`) instead of `-inf`, and a row whose seen scores are all `f32::MIN` or
        /// less (`-inf` included; or that sees none, when there are keys) scores `f32::MIN` at
        /// every key: the softmax weighs every key equally, as the additive `finfo.min` mask it
        /// replaces does (the dynamo exporter's causal and padding mask); other rows are as
        /// with `-inf`.
        causal_min: bool,
        /// The permutation that makes `Q` from operand 0.
        perm_q: Option<Vec<usize>>,
        /// The permutation that makes `Kt` from operand 1.
        perm_k: Option<Vec<usize>>,
        /// The permutation that makes `V` from operand 2.
        perm_v: Option<Vec<usize>>,
        /// The permutation applied to the result.
        perm_out: Option<Vec<usize>>,
    },
    /// Fused: a residual add and layer normalisation, `layer_norm(x + r, scale, bias)`.
    /// Operands: `x`, `r`, `scale`, `bias`.
    AddLayerNorm {
        /// The first normalised axis.
        axis: usize,
        /// Added to the variance.
        epsilon: f32,
    },
    /// Fused: RMS normalisation over the axes `axis..rank`,
    /// `x / sqrt(mean(x * x) + epsilon) * scale`. Operands: `x`, `scale`.
    RmsNorm {
        /// The first normalised axis.
        axis: usize,
        /// Added to the mean square.
        epsilon: f32,
    },
    /// Fused: an elementwise expression over the operands, one loop; `body` reads operand
    /// `k` as `$k`, broadcast to the result's shape (the broadcast of all operands).
    Fused {
        /// The expression.
        body: Arc<Body>,
    },
    /// Padding elimination: the real tokens of a padded batch, packed. Operands: `x`
    /// (`[b, s, r..]`, rank 2 or more, any dtype) and the key-padding `mask` (`[b, s]`, bool
    /// or an integer type; nonzero marks a real token). The result (`[tokens, r..]`) stacks
    /// the rows `x[i, j, ..]` with `mask[i, j] != 0` in row-major `(i, j)` order on a new
    /// first axis, whose size is the symbol `tokens`: a *derived* symbol, bound at run time by
    /// the number of nonzero mask entries, never by an input's dims (see [`crate::verify`]
    /// for the rules that keep it meaningful). Later passes move token-wise ops after a
    /// `pack` so that they run on real tokens only.
    Pack {
        /// The name of the derived symbol that sizes the result's first axis.
        tokens: Arc<str>,
    },
    /// Padding elimination: the inverse of [`Op::Pack`]. Operands: `y` (`[tokens, r..]`)
    /// and the `mask` (`[b, s]`, as `pack` takes it). The result (`[b, s, r..]`) holds row
    /// `k` of `y` at the `k`-th nonzero position of the mask (row-major) and zeros (`false`
    /// for bool) at the others, so `unpack(pack(x, m), m)` is `x` where `m` is nonzero and 0
    /// elsewhere, and `pack(unpack(y, m), m)` is `y`. `y` must have exactly as many rows as
    /// the mask has nonzero entries (checked at run time).
    Unpack,
    /// Fused: attention over packed tokens, each sequence's real tokens attending only to
    /// that sequence's real tokens (no causal mask). Operands: `q` (`[tokens, h, d]`), `k`
    /// (`[tokens, h, d]`), `v` (`[tokens, h, dv]`) and the `mask` (`[b, s]`) they were packed
    /// by; the result is `[tokens, h, dv]`. It means
    /// `pack(attention<scale, mask=bool>(unpack(q, m), unpack(k, m), unpack(v, m), km), m)`
    /// with `km = reshape(cast<to=bool>(m), [b, 1, 1, s])` and the permutations that make
    /// `[b, h, s, d]` heads of the unpacked `[b, s, h, d]` (see [`crate::fused::expand`]).
    PackedAttention {
        /// How the scores are scaled, as [`Op::Attention`]'s `scale`.
        scale: ScoreScale,
    },
}

/// How many operands an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Exact(usize),
    /// At least this many.
    AtLeast(usize),
}

impl Op {
    /// The text-form name of the op.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Const(_) => "const",
            Op::Dims { .. } => "dims",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Where => "where",
            Op::Cast { .. } => "cast",
            Op::MatMul => "matmul",
            Op::MatMulInteger { .. } => "matmul_integer",
            Op::Conv { .. } => "conv",
            Op::Pad { .. } => "pad",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::LayerNorm { .. } => "layer_norm",
            Op::Reduce { kind, .. } => kind.name(),
            Op::ArgReduce { max: true, .. } => "argmax",
            Op::ArgReduce { max: false, .. } => "argmin",
            Op::CumSum { .. } => "cumsum",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Expand { .. } => "expand",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::Gather { .. } => "gather",
            Op::GatherElements { .. } => "gather_elements",
            Op::GatherNd { .. } => "gather_nd",
            Op::Tile { .. } => "tile",
            Op::Range { .. } => "range",
            Op::ShapeOf { .. } => "shape",
            Op::Trilu { .. } => "trilu",
            Op::Gemm { .. } => "gemm",
            Op::QGemm { .. } => "qgemm",
            Op::Attention { .. } => "attention",
            Op::AddLayerNorm { .. } => "add_layer_norm",
            Op::RmsNorm { .. } => "rms_norm",
            Op::Fused { .. } => "fused",
            Op::Pack { .. } => "pack",
            Op::Unpack => "unpack",
            Op::PackedAttention { .. } => "packed_attention",
        }
    }

    /// The op with the symbols in its attributes' dims (a reshape's or expand's shape, slice
    /// bounds, pads, tile repeats, a range's bounds, `dims` values) replaced as `map` says.
    pub fn substitute(&self, map: &dyn Fn(&str) -> Option<Dim>) -> Op {
        let d = |x: &Dim| x.substitute(map);
        let all = |xs: &[Dim]| xs.iter().map(d).collect::<Vec<Dim>>();
        let mut op = self.clone();
        match &mut op {
            Op::Dims { values, .. } => *values = all(values),
            Op::Conv {
                pads_begin,
                pads_end,
                ..
            }
            | Op::Pad {
                pads_begin,
                pads_end,
                ..
            } => {
                *pads_begin = all(pads_begin);
                *pads_end = all(pads_end);
            }
            Op::Reshape { shape } | Op::Expand { shape } => *shape = Shape(all(shape.dims())),
            Op::Slice { starts, ends, .. } => {
                *starts = all(starts);
                *ends = all(ends);
            }
            Op::Tile { repeats } => *repeats = all(repeats),
            Op::Range { start, limit, .. } => {
                *start = d(start);
                *limit = d(limit);
            }
            _ => {}
        }
        op
    }

    /// How many operands the op takes.
    pub fn arity(&self) -> Arity {
        match self {
            Op::Input { .. } | Op::Const(_) | Op::Dims { .. } | Op::Range { .. } => Arity::Exact(0),
            Op::Binary(_)
            | Op::MatMul
            | Op::Pack { .. }
            | Op::Unpack
            | Op::Gather { .. }
            | Op::GatherElements { .. }
            | Op::GatherNd { .. }
            | Op::Conv { .. }
            | Op::Pad {
                mode: PadMode::Constant,
                ..
            } => Arity::Exact(2),
            Op::Where | Op::LayerNorm { .. } => Arity::Exact(3),
            Op::MatMulInteger { .. } | Op::AddLayerNorm { .. } | Op::PackedAttention { .. } => {
                Arity::Exact(4)
            }
            Op::RmsNorm { .. } => Arity::Exact(2),
            Op::Gemm { bias, .. } => Arity::Exact(2 + usize::from(*bias)),
            Op::QGemm { bias, .. } => Arity::Exact(5 + usize::from(*bias)),
            Op::Attention {
                mask, zero_where, ..
            } => Arity::Exact(3 + usize::from(mask.is_some()) + usize::from(*zero_where)),
            Op::Fused { body } => Arity::Exact(body.operand_count()),
            Op::Concat { .. } => Arity::AtLeast(1),
            _ => Arity::Exact(1),
        }
    }

    /// The attributes as `(key, value)` text pairs, in a fixed order. `Input`
    /// and `Const` carry their data outside the attribute list.
    pub fn attrs(&self) -> Vec<(&'static str, String)> {
        fn list<T: std::fmt::Display>(xs: &[T]) -> String {
            let mut s = String::from("[");
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let _ = write!(s, "{x}");
            }
            s.push(']');
            s
        }
        match self {
            Op::Input { .. } | Op::Const(_) => vec![],
            Op::Dims {
                dtype,
                shape,
                values,
            } => {
                vec![
                    ("dtype", dtype.to_string()),
                    ("shape", list(shape)),
                    ("values", list(values)),
                ]
            }
            Op::Unary(_) | Op::Binary(_) | Op::Where | Op::MatMul | Op::Unpack => vec![],
            Op::Cast { to } => vec![("to", to.to_string())],
            Op::MatMulInteger { saturate_pairs } => {
                vec![("saturate_pairs", saturate_pairs.to_string())]
            }
            Op::Conv {
                strides,
                pads_begin,
                pads_end,
                dilations,
                group,
            } => vec![
                ("strides", list(strides)),
                ("pads_begin", list(pads_begin)),
                ("pads_end", list(pads_end)),
                ("dilations", list(dilations)),
                ("group", group.to_string()),
            ],
            Op::Pad {
                mode,
                pads_begin,
                pads_end,
            } => vec![
                ("mode", mode.name().to_string()),
                ("pads_begin", list(pads_begin)),
                ("pads_end", list(pads_end)),
            ],
            Op::Softmax { axis } | Op::LogSoftmax { axis } => vec![("axis", axis.to_string())],
            Op::LayerNorm { axis, epsilon } => {
                vec![("axis", axis.to_string()), ("epsilon", fmt_f32(*epsilon))]
            }
            Op::Reduce {
                axes, keep_dims, ..
            } => {
                vec![("axes", list(axes)), ("keep_dims", keep_dims.to_string())]
            }
            Op::ArgReduce {
                axis,
                keep_dims,
                select_last,
                ..
            } => vec![
                ("axis", axis.to_string()),
                ("keep_dims", keep_dims.to_string()),
                ("select_last", select_last.to_string()),
            ],
            Op::CumSum {
                axis,
                exclusive,
                reverse,
            } => vec![
                ("axis", axis.to_string()),
                ("exclusive", exclusive.to_string()),
                ("reverse", reverse.to_string()),
            ],
            Op::Reshape { shape } | Op::Expand { shape } => vec![("shape", shape.to_string())],
            Op::Transpose { perm } => vec![("perm", list(perm))],
            Op::Concat { axis } | Op::Gather { axis } | Op::GatherElements { axis } => {
                vec![("axis", axis.to_string())]
            }
            Op::Slice {
                axes,
                starts,
                ends,
                steps,
            } => vec![
                ("axes", list(axes)),
                ("starts", list(starts)),
                ("ends", list(ends)),
                ("steps", list(steps)),
            ],
            Op::GatherNd { batch_dims } => vec![("batch_dims", batch_dims.to_string())],
            Op::Tile { repeats } => vec![("repeats", list(repeats))],
            Op::Range {
                dtype,
                start,
                limit,
                delta,
            } => vec![
                ("dtype", dtype.to_string()),
                ("start", start.to_string()),
                ("limit", limit.to_string()),
                ("delta", delta.to_string()),
            ],
            Op::ShapeOf { start, end } => {
                vec![("start", start.to_string()), ("end", end.to_string())]
            }
            Op::Trilu { upper, k } => vec![("upper", upper.to_string()), ("k", k.to_string())],
            Op::Gemm {
                activation,
                bias,
                perm_a,
                perm_b,
                perm_out,
            } => {
                let mut v = vec![
                    ("activation", activation.name().to_string()),
                    ("bias", bias.to_string()),
                ];
                for (key, p) in [
                    ("perm_a", perm_a),
                    ("perm_b", perm_b),
                    ("perm_out", perm_out),
                ] {
                    if let Some(p) = p {
                        v.push((key, list(p)));
                    }
                }
                v
            }
            Op::QGemm {
                activation,
                bias,
                saturate_pairs,
            } => vec![
                ("activation", activation.name().to_string()),
                ("bias", bias.to_string()),
                ("saturate_pairs", saturate_pairs.to_string()),
            ],
            Op::Attention {
                scale,
                mask,
                nan_filter,
                zero_where,
                causal,
                causal_min,
                perm_q,
                perm_k,
                perm_v,
                perm_out,
            } => {
                let mut v = vec![
                    ("scale", scale.to_string()),
                    ("mask", mask.name().to_string()),
                    ("nan_filter", nan_filter.to_string()),
                ];
                if *zero_where {
                    v.push(("zero_where", "true".to_string()));
                }
                if *causal {
                    v.push(("causal", "true".to_string()));
                }
                if *causal_min {
                    v.push(("causal_min", "true".to_string()));
                }
                for (key, p) in [
                    ("perm_q", perm_q),
                    ("perm_k", perm_k),
                    ("perm_v", perm_v),
                    ("perm_out", perm_out),
                ] {
                    if let Some(p) = p {
                        v.push((key, list(p)));
                    }
                }
                v
            }
            Op::AddLayerNorm { axis, epsilon } | Op::RmsNorm { axis, epsilon } => {
                vec![("axis", axis.to_string()), ("epsilon", fmt_f32(*epsilon))]
            }
            Op::Fused { body } => vec![("body", body.to_string())],
            Op::Pack { tokens } => vec![("tokens", tokens.to_string())],
            Op::PackedAttention { scale } => vec![("scale", scale.to_string())],
        }
    }

    /// Builds an op from its text-form name and attributes, the inverse of
    /// [`Op::name`] and [`Op::attrs`] for every op but `input` and `const`.
    pub fn from_parts(name: &str, attrs: &[(String, String)]) -> Result<Op, String> {
        let a = Attrs { op: name, attrs };
        if let Some(u) = UnaryOp::ALL.into_iter().find(|u| u.name() == name) {
            a.none()?;
            return Ok(Op::Unary(u));
        }
        if let Some(b) = BinaryOp::ALL.into_iter().find(|b| b.name() == name) {
            a.none()?;
            return Ok(Op::Binary(b));
        }
        if let Some(kind) = ReduceKind::ALL.into_iter().find(|k| k.name() == name) {
            return Ok(Op::Reduce {
                kind,
                axes: a.usizes("axes")?,
                keep_dims: a.bool("keep_dims")?,
            });
        }
        Ok(match name {
            "dims" => Op::Dims {
                dtype: a.dtype("dtype")?,
                shape: a.usizes("shape")?,
                values: a.dims("values")?,
            },
            "where" => Op::Where,
            "matmul" => Op::MatMul,
            "matmul_integer" => Op::MatMulInteger {
                saturate_pairs: a.bool("saturate_pairs")?,
            },
            "cast" => Op::Cast { to: a.dtype("to")? },
            "conv" => Op::Conv {
                strides: a.usizes("strides")?,
                pads_begin: a.dims("pads_begin")?,
                pads_end: a.dims("pads_end")?,
                dilations: a.usizes("dilations")?,
                group: a.usize("group")?,
            },
            "pad" => Op::Pad {
                mode: {
                    let m = a.raw("mode")?;
                    PadMode::from_name(m)
                        .ok_or_else(|| format!("attribute `mode` of `pad`: unknown mode `{m}`"))?
                },
                pads_begin: a.dims("pads_begin")?,
                pads_end: a.dims("pads_end")?,
            },
            "softmax" => Op::Softmax {
                axis: a.usize("axis")?,
            },
            "log_softmax" => Op::LogSoftmax {
                axis: a.usize("axis")?,
            },
            "layer_norm" => Op::LayerNorm {
                axis: a.usize("axis")?,
                epsilon: a.parse("epsilon")?,
            },
            "argmax" | "argmin" => Op::ArgReduce {
                max: name == "argmax",
                axis: a.usize("axis")?,
                keep_dims: a.bool("keep_dims")?,
                select_last: a.bool("select_last")?,
            },
            "cumsum" => Op::CumSum {
                axis: a.usize("axis")?,
                exclusive: a.bool("exclusive")?,
                reverse: a.bool("reverse")?,
            },
            "reshape" => Op::Reshape {
                shape: Shape(a.dims("shape")?),
            },
            "expand" => Op::Expand {
                shape: Shape(a.dims("shape")?),
            },
            "transpose" => Op::Transpose {
                perm: a.usizes("perm")?,
            },
            "concat" => Op::Concat {
                axis: a.usize("axis")?,
            },
            "gather" => Op::Gather {
                axis: a.usize("axis")?,
            },
            "gather_elements" => Op::GatherElements {
                axis: a.usize("axis")?,
            },
            "gather_nd" => Op::GatherNd {
                batch_dims: a.usize("batch_dims")?,
            },
            "slice" => Op::Slice {
                axes: a.usizes("axes")?,
                starts: a.dims("starts")?,
                ends: a.dims("ends")?,
                steps: a
                    .list("steps")?
                    .iter()
                    .map(|s| s.parse::<i64>().map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()?,
            },
            "tile" => Op::Tile {
                repeats: a.dims("repeats")?,
            },
            "range" => Op::Range {
                dtype: a.dtype("dtype")?,
                start: a.dim("start")?,
                limit: a.dim("limit")?,
                delta: a.parse("delta")?,
            },
            "shape" => Op::ShapeOf {
                start: a.usize("start")?,
                end: a.usize("end")?,
            },
            "trilu" => Op::Trilu {
                upper: a.bool("upper")?,
                k: a.parse("k")?,
            },
            "gemm" => Op::Gemm {
                activation: {
                    let v = a.raw("activation")?;
                    Activation::from_name(v).ok_or_else(|| {
                        format!("attribute `activation` of `gemm`: unknown activation `{v}`")
                    })?
                },
                bias: a.bool("bias")?,
                perm_a: a.opt_usizes("perm_a")?,
                perm_b: a.opt_usizes("perm_b")?,
                perm_out: a.opt_usizes("perm_out")?,
            },
            "qgemm" => Op::QGemm {
                activation: {
                    let v = a.raw("activation")?;
                    Activation::from_name(v).ok_or_else(|| {
                        format!("attribute `activation` of `qgemm`: unknown activation `{v}`")
                    })?
                },
                bias: a.bool("bias")?,
                saturate_pairs: a.bool("saturate_pairs")?,
            },
            "attention" => Op::Attention {
                scale: ScoreScale::parse(a.raw("scale")?)
                    .map_err(|e| format!("attribute `scale` of `attention`: {e}"))?,
                mask: {
                    let v = a.raw("mask")?;
                    AttentionMask::from_name(v).ok_or_else(|| {
                        format!("attribute `mask` of `attention`: unknown mask `{v}` (none, add or bool)")
                    })?
                },
                nan_filter: a.bool("nan_filter")?,
                zero_where: a.opt_bool("zero_where")?.unwrap_or(false),
                causal: a.opt_bool("causal")?.unwrap_or(false),
                causal_min: a.opt_bool("causal_min")?.unwrap_or(false),
                perm_q: a.opt_usizes("perm_q")?,
                perm_k: a.opt_usizes("perm_k")?,
                perm_v: a.opt_usizes("perm_v")?,
                perm_out: a.opt_usizes("perm_out")?,
            },
            "add_layer_norm" => Op::AddLayerNorm {
                axis: a.usize("axis")?,
                epsilon: a.parse("epsilon")?,
            },
            "rms_norm" => Op::RmsNorm {
                axis: a.usize("axis")?,
                epsilon: a.parse("epsilon")?,
            },
            "fused" => Op::Fused {
                body: Arc::new(
                    Body::parse(a.raw("body")?)
                        .map_err(|e| format!("attribute `body` of `fused`: {e}"))?,
                ),
            },
            "pack" => Op::Pack {
                tokens: {
                    let v = a.raw("tokens")?;
                    if !crate::dim::is_symbol_name(v) {
                        return Err(format!(
                            "attribute `tokens` of `pack` must be a symbol name, got `{v}`"
                        ));
                    }
                    Arc::from(v)
                },
            },
            "unpack" => {
                a.none()?;
                Op::Unpack
            }
            "packed_attention" => Op::PackedAttention {
                scale: ScoreScale::parse(a.raw("scale")?)
                    .map_err(|e| format!("attribute `scale` of `packed_attention`: {e}"))?,
            },
            _ => return Err(format!("unknown op `{name}`")),
        })
    }
}

/// Formats an f32 so that it parses back to the same bits.
pub fn fmt_f32(x: f32) -> String {
    if x.is_finite() && x == x.trunc() && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x:?}")
    }
}

/// Splits `s` at commas that are not nested inside brackets or parentheses.
pub fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '[' | '(' | '<' => depth += 1,
            ']' | ')' | '>' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = s[start..].trim();
    if !last.is_empty() || !out.is_empty() {
        out.push(last);
    }
    out
}

struct Attrs<'a> {
    op: &'a str,
    attrs: &'a [(String, String)],
}

impl Attrs<'_> {
    fn none(&self) -> Result<(), String> {
        match self.attrs.first() {
            Some((k, _)) => Err(format!(
                "op `{}` takes no attribute, but `{k}` was given",
                self.op
            )),
            None => Ok(()),
        }
    }

    fn raw(&self, key: &str) -> Result<&str, String> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("op `{}` needs attribute `{key}`", self.op))
    }

    fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.raw(key)?;
        v.parse::<T>()
            .map_err(|e| format!("attribute `{key}` of `{}`: bad value `{v}`: {e}", self.op))
    }

    fn usize(&self, key: &str) -> Result<usize, String> {
        self.parse(key)
    }

    fn bool(&self, key: &str) -> Result<bool, String> {
        self.parse(key)
    }

    fn dtype(&self, key: &str) -> Result<DType, String> {
        let v = self.raw(key)?;
        DType::from_name(v)
            .ok_or_else(|| format!("attribute `{key}` of `{}`: unknown dtype `{v}`", self.op))
    }

    fn dim(&self, key: &str) -> Result<Dim, String> {
        Dim::parse(self.raw(key)?)
    }

    fn list(&self, key: &str) -> Result<Vec<&str>, String> {
        let v = self.raw(key)?.trim();
        let inner = v
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .ok_or_else(|| {
                format!(
                    "attribute `{key}` of `{}` must be a list `[..]`, got `{v}`",
                    self.op
                )
            })?;
        Ok(split_top_level(inner))
    }

    fn usizes(&self, key: &str) -> Result<Vec<usize>, String> {
        self.list(key)?
            .into_iter()
            .map(|s| {
                s.parse::<usize>()
                    .map_err(|e| format!("attribute `{key}` of `{}`: `{s}`: {e}", self.op))
            })
            .collect()
    }

    /// An optional bool: `None` if the key is absent.
    fn opt_bool(&self, key: &str) -> Result<Option<bool>, String> {
        if self.attrs.iter().any(|(k, _)| k == key) {
            self.bool(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An optional list: `None` if the key is absent.
    fn opt_usizes(&self, key: &str) -> Result<Option<Vec<usize>>, String> {
        if self.attrs.iter().any(|(k, _)| k == key) {
            self.usizes(key).map(Some)
        } else {
            Ok(None)
        }
    }

    fn dims(&self, key: &str) -> Result<Vec<Dim>, String> {
        self.list(key)?.into_iter().map(Dim::parse).collect()
    }
}
