//! The fused ops' vocabulary and their meaning.
//!
//! A fused op ([`Op::Gemm`], [`Op::Attention`], [`Op::AddLayerNorm`], [`Op::RmsNorm`],
//! [`Op::Fused`], [`Op::PackedAttention`]) is what the optimiser rewrites a group of core ops
//! into and what code generation lowers to one kernel. Each means exactly its [`expand`]sion
//! into core ops: type inference and the reference interpreter both go through [`expand`], so
//! a fused op cannot mean anything its expansion does not, and a rewrite into it is checked by
//! evaluating both sides with the interpreter.
//!
//! This module also holds the attribute types the fused ops carry: the GEMM epilogue's
//! [`Activation`], attention's [`ScoreScale`], and the [`Body`] of a fused elementwise op,
//! an expression over its operands with a text form of its own
//! (`mul(add(erf($0), f32(1.0)), $1)`).

use crate::dtype::DType;
use crate::error::{invalid, Result};
use crate::op::{fmt_f32, split_top_level, BinaryOp, Op, ReduceKind, UnaryOp};
use crate::shape::Shape;
use crate::tensor::{Tensor, TensorData};
use crate::Dim;
use std::fmt;

/// The activation a GEMM applies to `A · B + bias` before it stores the result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activation {
    /// The identity.
    #[default]
    None,
    /// `relu(y)`.
    Relu,
    /// The exact GELU as TorchScript exports it: `(y * (erf(y / sqrt 2) + 1)) * 0.5`.
    GeluErf,
    /// The tanh GELU (GPT-2's `gelu_new`):
    /// `(y * 0.5) * (tanh((y + pow(y, 3) * 0.044715) * sqrt(2 / pi)) + 1)`.
    GeluTanh,
}

impl Activation {
    /// Every activation.
    pub const ALL: [Activation; 4] = [
        Activation::None,
        Activation::Relu,
        Activation::GeluErf,
        Activation::GeluTanh,
    ];

    /// The text-form name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::GeluErf => "gelu_erf",
            Activation::GeluTanh => "gelu_tanh",
        }
    }

    /// The activation named `name`.
    pub fn from_name(name: &str) -> Option<Activation> {
        Activation::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// `sqrt(2)` as the exporters write it (f32).
pub const SQRT_2: f32 = std::f32::consts::SQRT_2;
/// `sqrt(2 / pi)` as GPT-2 writes it (f32).
pub const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh GELU.
pub const GELU_TANH_CUBIC: f32 = 0.044715;

/// The mask attention applies to its scaled scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttentionMask {
    /// No mask.
    #[default]
    None,
    /// An additive float mask: `s + mask` (0 keeps a score, -inf or a large negative drops it).
    Add,
    /// A boolean mask: `where(mask, s, -inf)` (true keeps a score).
    Bool,
}

impl AttentionMask {
    /// Every mask kind.
    pub const ALL: [AttentionMask; 3] =
        [AttentionMask::None, AttentionMask::Add, AttentionMask::Bool];

    /// The text-form name.
    pub fn name(self) -> &'static str {
        match self {
            AttentionMask::None => "none",
            AttentionMask::Add => "add",
            AttentionMask::Bool => "bool",
        }
    }

    /// The mask kind named `name`.
    pub fn from_name(name: &str) -> Option<AttentionMask> {
        AttentionMask::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether there is a mask operand.
    pub fn is_some(self) -> bool {
        self != AttentionMask::None
    }
}

impl From<bool> for AttentionMask {
    /// `true` is an additive mask.
    fn from(additive: bool) -> AttentionMask {
        if additive {
            AttentionMask::Add
        } else {
            AttentionMask::None
        }
    }
}

/// How attention scales its scores `Q · K` before the mask and the softmax.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ScoreScale {
    /// Not scaled.
    #[default]
    None,
    /// `s * c`.
    Mul(f32),
    /// `s / c`.
    Div(f32),
}

impl fmt::Display for ScoreScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScoreScale::None => f.write_str("none"),
            ScoreScale::Mul(c) => write!(f, "mul({})", fmt_f32(*c)),
            ScoreScale::Div(c) => write!(f, "div({})", fmt_f32(*c)),
        }
    }
}

impl ScoreScale {
    /// The scale as a factor and a divisor, `s * factor / divisor`: `mul(c)` is the factor
    /// `c` (which a product's epilogue applies, rounded once as a separate multiply is),
    /// `div(c)` the divisor `c` (a division, which a factor `1 / c` would round otherwise).
    pub fn factor_and_divisor(self) -> (f32, Option<f32>) {
        match self {
            ScoreScale::None => (1.0, None),
            ScoreScale::Mul(c) => (c, None),
            ScoreScale::Div(c) => (1.0, Some(c)),
        }
    }

    /// Parses the text form (`none`, `mul(0.125)`, `div(8.0)`).
    pub fn parse(s: &str) -> std::result::Result<ScoreScale, String> {
        let s = s.trim();
        if s == "none" {
            return Ok(ScoreScale::None);
        }
        let arg = |p: &str| -> Option<std::result::Result<f32, String>> {
            let inner = s.strip_prefix(p)?.strip_prefix('(')?.strip_suffix(')')?;
            Some(inner.trim().parse::<f32>().map_err(|e| e.to_string()))
        };
        if let Some(c) = arg("mul") {
            return Ok(ScoreScale::Mul(c?));
        }
        if let Some(c) = arg("div") {
            return Ok(ScoreScale::Div(c?));
        }
        Err(format!(
            "bad scale `{s}`: expected `none`, `mul(C)` or `div(C)`"
        ))
    }
}

/// The body of a fused elementwise op: an expression over its operands (`$k` is operand
/// `k`), evaluated at every index of the result, where each operand is read broadcast to the
/// result's shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// Operand `k`.
    Leaf(usize),
    /// A rank-0 constant.
    Scalar(Tensor),
    /// A unary op.
    Unary(UnaryOp, Box<Body>),
    /// A binary op.
    Binary(BinaryOp, Box<Body>, Box<Body>),
    /// `where(c, a, b)`.
    Where(Box<[Body; 3]>),
    /// A conversion.
    Cast(DType, Box<Body>),
}

impl Body {
    /// The number of operands the body reads: one more than its largest leaf, 0 if none.
    pub fn operand_count(&self) -> usize {
        match self {
            Body::Leaf(k) => k.saturating_add(1),
            Body::Scalar(_) => 0,
            Body::Unary(_, x) | Body::Cast(_, x) => x.operand_count(),
            Body::Binary(_, x, y) => x.operand_count().max(y.operand_count()),
            Body::Where(p) => p.iter().map(Body::operand_count).max().unwrap_or(0),
        }
    }

    /// The number of ops in the body (leaves and scalars are not ops).
    pub fn op_count(&self) -> usize {
        match self {
            Body::Leaf(_) | Body::Scalar(_) => 0,
            Body::Unary(_, x) | Body::Cast(_, x) => 1 + x.op_count(),
            Body::Binary(_, x, y) => 1 + x.op_count() + y.op_count(),
            Body::Where(p) => 1 + p.iter().map(Body::op_count).sum::<usize>(),
        }
    }

    /// Parses the text form that [`Body`]'s `Display` writes.
    pub fn parse(s: &str) -> std::result::Result<Body, String> {
        let s = s.trim();
        if let Some(k) = s.strip_prefix('$') {
            return k
                .parse::<usize>()
                .map(Body::Leaf)
                .map_err(|e| format!("bad operand `{s}`: {e}"));
        }
        let open = s
            .find('(')
            .ok_or_else(|| format!("bad fused body `{s}`: expected `$k` or `op(..)`"))?;
        let inner = s[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| format!("bad fused body `{s}`: unbalanced parentheses"))?;
        let mut depth = 0i32;
        for c in inner.chars() {
            depth += match c {
                '(' => 1,
                ')' => -1,
                _ => 0,
            };
            if depth < 0 {
                break;
            }
        }
        if depth != 0 {
            return Err(format!("bad fused body `{s}`: unbalanced parentheses"));
        }
        let head = s[..open].trim();
        let args = split_top_level(inner);
        let want = |n: usize| -> std::result::Result<(), String> {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "`{head}` in a fused body takes {n} arguments, got {}",
                    args.len()
                ))
            }
        };
        if let Some(d) = DType::from_name(head) {
            want(1)?;
            let v = args[0];
            let data = if d == DType::Bool {
                TensorData::Bool(vec![v
                    .parse::<bool>()
                    .map_err(|e| format!("bad bool `{v}`: {e}"))?])
            } else if d.is_float() {
                TensorData::from_f64(
                    d,
                    [v.parse::<f64>()
                        .map_err(|e| format!("bad float `{v}`: {e}"))?],
                )
            } else {
                let n = v
                    .parse::<i64>()
                    .map_err(|e| format!("bad integer `{v}`: {e}"))?;
                let data = TensorData::from_i64(d, [n]);
                if data.to_i64_vec()[0] != n {
                    return Err(format!("bad {d} scalar `{v}`: out of range"));
                }
                data
            };
            return Ok(Body::Scalar(Tensor::new(vec![], data)?));
        }
        if head == "cast" {
            want(2)?;
            let to = DType::from_name(args[0])
                .ok_or_else(|| format!("unknown dtype `{}` in a fused cast", args[0]))?;
            return Ok(Body::Cast(to, Box::new(Body::parse(args[1])?)));
        }
        if head == "where" {
            want(3)?;
            return Ok(Body::Where(Box::new([
                Body::parse(args[0])?,
                Body::parse(args[1])?,
                Body::parse(args[2])?,
            ])));
        }
        if let Some(u) = UnaryOp::ALL.into_iter().find(|u| u.name() == head) {
            want(1)?;
            return Ok(Body::Unary(u, Box::new(Body::parse(args[0])?)));
        }
        if let Some(b) = BinaryOp::ALL.into_iter().find(|b| b.name() == head) {
            want(2)?;
            return Ok(Body::Binary(
                b,
                Box::new(Body::parse(args[0])?),
                Box::new(Body::parse(args[1])?),
            ));
        }
        Err(format!("unknown op `{head}` in a fused body"))
    }
}

impl fmt::Display for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Leaf(k) => write!(f, "${k}"),
            Body::Scalar(t) => {
                let d = t.dtype();
                match t.data() {
                    TensorData::F32(v) => write!(f, "{d}({})", fmt_f32(v[0])),
                    TensorData::F64(v) => write!(f, "{d}({:?})", v[0]),
                    TensorData::Bool(v) => write!(f, "{d}({})", v[0]),
                    data if d.is_float() => write!(f, "{d}({:?})", data.to_f64_vec()[0]),
                    data => write!(f, "{d}({})", data.to_i64_vec()[0]),
                }
            }
            Body::Unary(u, x) => write!(f, "{}({x})", u.name()),
            Body::Binary(b, x, y) => write!(f, "{}({x}, {y})", b.name()),
            Body::Where(p) => write!(f, "where({}, {}, {})", p[0], p[1], p[2]),
            Body::Cast(to, x) => write!(f, "cast({to}, {x})"),
        }
    }
}

/// What [`expand`] writes core ops into: a graph, a set of types, concrete tensors.
pub trait Builder {
    /// A value: a node, a type, a tensor.
    type Value: Clone;
    /// The value of the core op `op` on `args`.
    fn op(&mut self, op: Op, args: &[Self::Value]) -> Result<Self::Value>;
    /// A constant.
    fn constant(&mut self, value: Tensor) -> Result<Self::Value>;
    /// The rank of a value.
    fn rank(&self, value: &Self::Value) -> usize;
    /// The dims of a value.
    fn dims(&self, value: &Self::Value) -> Vec<Dim>;
}

/// A rank-0 constant of `dtype` with the value `v` (rounded once to `dtype`).
pub fn scalar(dtype: DType, v: f64) -> Tensor {
    Tensor::new(vec![], TensorData::from_f64(dtype, [v])).expect("one element, rank 0")
}

/// True for the fused ops, which [`expand`] writes as core ops.
pub fn is_fused(op: &Op) -> bool {
    matches!(
        op,
        Op::Gemm { .. }
            | Op::QGemm { .. }
            | Op::Attention { .. }
            | Op::AddLayerNorm { .. }
            | Op::RmsNorm { .. }
            | Op::Fused { .. }
            | Op::PackedAttention { .. }
    )
}

/// The name [`expand`] gives the `pack` that ends a [`Op::PackedAttention`]'s expansion when
/// `q`'s first dim is not a bare symbol (in the interpreter, where every dim is a number).
/// The packed rows are `q`'s rows either way, and type inference states the result's first
/// dim as `q`'s; the name is never bound by a run.
pub const PACKED_ATTENTION_TOKENS: &str = "packed_attention_tokens";

/// `y` through the activation `act` of a GEMM epilogue, as core ops (see [`Activation`]).
fn activate<B: Builder>(b: &mut B, y: B::Value, act: Activation, dtype: DType) -> Result<B::Value> {
    let k = |b: &mut B, v: f64| b.constant(scalar(dtype, v));
    let bin = |b: &mut B, op: BinaryOp, x: &B::Value, y: &B::Value| {
        b.op(Op::Binary(op), &[x.clone(), y.clone()])
    };
    let un = |b: &mut B, op: UnaryOp, x: &B::Value| b.op(Op::Unary(op), std::slice::from_ref(x));
    Ok(match act {
        Activation::None => y,
        Activation::Relu => un(b, UnaryOp::Relu, &y)?,
        Activation::GeluErf => {
            let s2 = k(b, f64::from(SQRT_2))?;
            let t = bin(b, BinaryOp::Div, &y, &s2)?;
            let e = un(b, UnaryOp::Erf, &t)?;
            let one = k(b, 1.0)?;
            let p = bin(b, BinaryOp::Add, &e, &one)?;
            let m = bin(b, BinaryOp::Mul, &y, &p)?;
            let half = k(b, 0.5)?;
            bin(b, BinaryOp::Mul, &m, &half)?
        }
        Activation::GeluTanh => {
            let half = k(b, 0.5)?;
            let h = bin(b, BinaryOp::Mul, &y, &half)?;
            let three = k(b, 3.0)?;
            let cube = bin(b, BinaryOp::Pow, &y, &three)?;
            let c = k(b, f64::from(GELU_TANH_CUBIC))?;
            let sc = bin(b, BinaryOp::Mul, &cube, &c)?;
            let inner = bin(b, BinaryOp::Add, &y, &sc)?;
            let r = k(b, f64::from(SQRT_2_OVER_PI))?;
            let arg = bin(b, BinaryOp::Mul, &inner, &r)?;
            let t = un(b, UnaryOp::Tanh, &arg)?;
            let one = k(b, 1.0)?;
            let p = bin(b, BinaryOp::Add, &t, &one)?;
            bin(b, BinaryOp::Mul, &h, &p)?
        }
    })
}

/// Writes the fused op `op` on `args` as core ops into `b` and returns the result.
///
/// `dtype` is the float type the op computes in (the dtype of its first operand): the
/// constants of the expansion are of that type. Fails for a core op, or when `args` do not
/// fit the op (through the builder's own checks).
pub fn expand<B: Builder>(op: &Op, args: &[B::Value], dtype: DType, b: &mut B) -> Result<B::Value> {
    let name = op.name();
    let want = |n: usize| -> Result<()> {
        if args.len() == n {
            Ok(())
        } else {
            Err(invalid(
                name,
                format!("takes {n} operands, got {}", args.len()),
            ))
        }
    };
    let permute = |b: &mut B, x: &B::Value, perm: &Option<Vec<usize>>| -> Result<B::Value> {
        match perm {
            Some(p) => b.op(Op::Transpose { perm: p.clone() }, std::slice::from_ref(x)),
            None => Ok(x.clone()),
        }
    };
    let k = |b: &mut B, v: f64| b.constant(scalar(dtype, v));
    let bin = |b: &mut B, op: BinaryOp, x: &B::Value, y: &B::Value| {
        b.op(Op::Binary(op), &[x.clone(), y.clone()])
    };
    let un = |b: &mut B, op: UnaryOp, x: &B::Value| b.op(Op::Unary(op), std::slice::from_ref(x));
    match op {
        Op::Gemm {
            activation,
            bias,
            perm_a,
            perm_b,
            perm_out,
        } => {
            want(2 + usize::from(*bias))?;
            let a = permute(b, &args[0], perm_a)?;
            let w = permute(b, &args[1], perm_b)?;
            let mut y = b.op(Op::MatMul, &[a, w])?;
            if *bias {
                // The bias broadcasts to the product: it cannot add axes to it.
                let (rb, ry) = (b.rank(&args[2]), b.rank(&y));
                if rb > ry {
                    return Err(invalid(
                        name,
                        format!("the bias has rank {rb}, more than the product's {ry}"),
                    ));
                }
                y = bin(b, BinaryOp::Add, &y, &args[2])?;
            }
            y = activate(b, y, *activation, dtype)?;
            permute(b, &y, perm_out)
        }
        Op::QGemm {
            activation,
            bias,
            saturate_pairs,
        } => {
            want(5 + usize::from(*bias))?;
            let (a, sa, za, w, sw) = (&args[0], &args[1], &args[2], &args[3], &args[4]);
            // The quantisation of `a`, as ONNX's QuantizeLinear to u8.
            let zf = b.op(Op::Cast { to: DType::F32 }, std::slice::from_ref(za))?;
            let d = bin(b, BinaryOp::Div, a, sa)?;
            let r = un(b, UnaryOp::Round, &d)?;
            let t = bin(b, BinaryOp::Add, &r, &zf)?;
            let lo = b.constant(scalar(DType::F32, 0.0))?;
            let t = bin(b, BinaryOp::Max, &t, &lo)?;
            let hi = b.constant(scalar(DType::F32, 255.0))?;
            let t = bin(b, BinaryOp::Min, &t, &hi)?;
            let q = b.op(Op::Cast { to: DType::U8 }, &[t])?;
            let zw = b.constant(scalar(DType::I8, 0.0))?;
            let acc = b.op(
                Op::MatMulInteger {
                    saturate_pairs: *saturate_pairs,
                },
                &[q, w.clone(), za.clone(), zw],
            )?;
            let accf = b.op(Op::Cast { to: DType::F32 }, &[acc])?;
            let s = bin(b, BinaryOp::Mul, sa, sw)?;
            let mut y = bin(b, BinaryOp::Mul, &accf, &s)?;
            if *bias {
                y = bin(b, BinaryOp::Add, &y, &args[5])?;
            }
            activate(b, y, *activation, DType::F32)
        }
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
            if *causal_min && !*causal {
                return Err(invalid(name, "causal_min without causal"));
            }
            let n_mask = usize::from(mask.is_some());
            want(3 + n_mask + usize::from(*zero_where))?;
            let q = permute(b, &args[0], perm_q)?;
            let kt = permute(b, &args[1], perm_k)?;
            let v = permute(b, &args[2], perm_v)?;
            let mut s = b.op(Op::MatMul, &[q, kt])?;
            match scale {
                ScoreScale::None => {}
                ScoreScale::Mul(c) => {
                    let c = k(b, f64::from(*c))?;
                    s = bin(b, BinaryOp::Mul, &s, &c)?;
                }
                ScoreScale::Div(c) => {
                    let c = k(b, f64::from(*c))?;
                    s = bin(b, BinaryOp::Div, &s, &c)?;
                }
            }
            if mask.is_some() {
                // The mask broadcasts to the scores: it cannot add axes to them.
                let (rm, rs) = (b.rank(&args[3]), b.rank(&s));
                if rm > rs {
                    return Err(invalid(
                        name,
                        format!("the mask has rank {rm}, more than the scores' {rs}"),
                    ));
                }
            }
            match mask {
                AttentionMask::None => {}
                AttentionMask::Add => s = bin(b, BinaryOp::Add, &s, &args[3])?,
                AttentionMask::Bool => {
                    let ninf = k(b, f64::NEG_INFINITY)?;
                    s = b.op(Op::Where, &[args[3].clone(), s, ninf])?;
                }
            }
            // With causal_min: the rows whose seen scores are all f32::MIN or less (or that see
            // no key, of some keys), which weigh every key equally.
            let mut blind = None;
            if *causal {
                // Query i (of m) sees key j (of n) where j <= i + n - m: the query positions
                // are n - m .. n, the key positions 0 .. n.
                let dims = b.dims(&s);
                let rank = dims.len();
                if rank < 2 {
                    return Err(invalid(name, "the scores have rank below 2"));
                }
                let (m, n) = (dims[rank - 2].clone(), dims[rank - 1].clone());
                let range = |start: Dim, limit: Dim| Op::Range {
                    dtype: DType::I64,
                    start,
                    limit,
                    delta: 1,
                };
                let keys = b.op(range(Dim::constant(0), n.clone()), &[])?;
                let queries = b.op(range(n.sub(&m), n.clone()), &[])?;
                let queries = b.op(
                    Op::Reshape {
                        shape: Shape::from(vec![m, Dim::constant(1)]),
                    },
                    &[queries],
                )?;
                let sees = b.op(Op::Binary(BinaryOp::LessEqual), &[keys, queries])?;
                if *causal_min {
                    let ninf = k(b, f64::NEG_INFINITY)?;
                    let seen = b.op(Op::Where, &[sees.clone(), s.clone(), ninf])?;
                    let top = b.op(
                        Op::Reduce {
                            kind: ReduceKind::Max,
                            axes: vec![rank - 1],
                            keep_dims: true,
                        },
                        &[seen],
                    )?;
                    let floor = k(b, f64::from(f32::MIN))?;
                    let low = b.op(Op::Binary(BinaryOp::LessEqual), &[top, floor])?;
                    // Without keys the product is 0, as without the flag (not a mean of none).
                    let count = b.op(
                        Op::Dims {
                            dtype: DType::I64,
                            shape: vec![],
                            values: vec![n.clone()],
                        },
                        &[],
                    )?;
                    let none = b.op(
                        Op::Dims {
                            dtype: DType::I64,
                            shape: vec![],
                            values: vec![Dim::constant(0)],
                        },
                        &[],
                    )?;
                    let keys = b.op(Op::Binary(BinaryOp::Greater), &[count, none])?;
                    blind = Some(b.op(Op::Binary(BinaryOp::And), &[low, keys])?);
                }
                let hidden = if *causal_min {
                    f64::from(f32::MIN)
                } else {
                    f64::NEG_INFINITY
                };
                let hidden = k(b, hidden)?;
                s = b.op(Op::Where, &[sees, s, hidden])?;
            }
            if let Some(blind) = blind {
                // Every key of such a row scores f32::MIN: the softmax weighs them equally, as
                // it does the row of an additive finfo.min mask that hides every key.
                let fill = k(b, f64::from(f32::MIN))?;
                s = b.op(Op::Where, &[blind, fill, s])?;
            }
            let axis = b.rank(&s).saturating_sub(1);
            let mut p = b.op(Op::Softmax { axis }, std::slice::from_ref(&s))?;
            if *nan_filter {
                let nan = un(b, UnaryOp::IsNaN, &p)?;
                let zero = k(b, 0.0)?;
                p = b.op(Op::Where, &[nan, zero, p])?;
            }
            if *zero_where {
                let zero = k(b, 0.0)?;
                p = b.op(Op::Where, &[args[3 + n_mask].clone(), zero, p])?;
            }
            let y = b.op(Op::MatMul, &[p, v])?;
            permute(b, &y, perm_out)
        }
        Op::AddLayerNorm { axis, epsilon } => {
            want(4)?;
            let x = bin(b, BinaryOp::Add, &args[0], &args[1])?;
            b.op(
                Op::LayerNorm {
                    axis: *axis,
                    epsilon: *epsilon,
                },
                &[x, args[2].clone(), args[3].clone()],
            )
        }
        Op::RmsNorm { axis, epsilon } => {
            want(2)?;
            let x = &args[0];
            if *axis >= b.rank(x) {
                return Err(invalid(
                    name,
                    format!("axis {axis} is out of range for rank {}", b.rank(x)),
                ));
            }
            let sq = bin(b, BinaryOp::Mul, x, x)?;
            let ms = b.op(
                Op::Reduce {
                    kind: ReduceKind::Mean,
                    axes: (*axis..b.rank(x)).collect(),
                    keep_dims: true,
                },
                &[sq],
            )?;
            let eps = k(b, f64::from(*epsilon))?;
            let ve = bin(b, BinaryOp::Add, &ms, &eps)?;
            let rms = un(b, UnaryOp::Sqrt, &ve)?;
            let y = bin(b, BinaryOp::Div, x, &rms)?;
            bin(b, BinaryOp::Mul, &y, &args[1])
        }
        Op::Fused { body } => {
            want(body.operand_count())?;
            eval_body(body, args, b)
        }
        Op::PackedAttention { scale } => {
            want(4)?;
            let m = &args[3];
            let mdims = b.dims(m);
            if mdims.len() != 2 {
                return Err(invalid(
                    name,
                    format!("the mask must be [b, s], got rank {}", mdims.len()),
                ));
            }
            // Each sequence's tokens in the padded layout, heads split: [b, s, h, d].
            let q = b.op(Op::Unpack, &[args[0].clone(), m.clone()])?;
            let k = b.op(Op::Unpack, &[args[1].clone(), m.clone()])?;
            let v = b.op(Op::Unpack, &[args[2].clone(), m.clone()])?;
            // The key mask, true for real keys, broadcast over heads and queries.
            let keep = b.op(Op::Cast { to: DType::Bool }, std::slice::from_ref(m))?;
            let one = Dim::constant(1);
            let km = b.op(
                Op::Reshape {
                    shape: Shape::from(vec![mdims[0].clone(), one.clone(), one, mdims[1].clone()]),
                },
                &[keep],
            )?;
            let heads = Some(vec![0, 2, 1, 3]);
            let y = b.op(
                Op::Attention {
                    scale: *scale,
                    mask: AttentionMask::Bool,
                    nan_filter: false,
                    zero_where: false,
                    causal: false,
                    causal_min: false,
                    perm_q: heads.clone(),
                    perm_k: Some(vec![0, 2, 3, 1]),
                    perm_v: heads.clone(),
                    perm_out: heads,
                },
                &[q, k, v, km],
            )?;
            let tokens = b
                .dims(&args[0])
                .first()
                .and_then(|d| d.as_sym().map(str::to_string))
                .unwrap_or_else(|| PACKED_ATTENTION_TOKENS.to_string());
            b.op(
                Op::Pack {
                    tokens: tokens.into(),
                },
                &[y, m.clone()],
            )
        }
        _ => Err(invalid(name, "is a core op: it has no expansion")),
    }
}

fn eval_body<B: Builder>(body: &Body, args: &[B::Value], b: &mut B) -> Result<B::Value> {
    Ok(match body {
        Body::Leaf(k) => args[*k].clone(),
        Body::Scalar(t) => b.constant(t.clone())?,
        Body::Unary(u, x) => {
            let x = eval_body(x, args, b)?;
            b.op(Op::Unary(*u), &[x])?
        }
        Body::Binary(op, x, y) => {
            let x = eval_body(x, args, b)?;
            let y = eval_body(y, args, b)?;
            b.op(Op::Binary(*op), &[x, y])?
        }
        Body::Where(p) => {
            let c = eval_body(&p[0], args, b)?;
            let x = eval_body(&p[1], args, b)?;
            let y = eval_body(&p[2], args, b)?;
            b.op(Op::Where, &[c, x, y])?
        }
        Body::Cast(to, x) => {
            let x = eval_body(x, args, b)?;
            b.op(Op::Cast { to: *to }, &[x])?
        }
    })
}
