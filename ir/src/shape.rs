//! Shapes made of symbolic dims, and tensor types.

use crate::dim::Dim;
use crate::dtype::DType;
use std::fmt;

/// The number of elements of concrete sizes, or `None` if it overflows
/// `usize`: sizes read from a file may be anything, so their product is
/// checked wherever it decides an allocation.
pub fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// The shape of a tensor: one [`Dim`] per axis. Rank 0 is a scalar.
#[derive(Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// A shape of constant dims.
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::from(d)).collect())
    }

    /// The scalar shape `[]`.
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The dims.
    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// The number of elements, as a dim.
    pub fn numel(&self) -> Dim {
        self.0.iter().fold(Dim::constant(1), |acc, d| acc.mul(d))
    }

    /// The dims as sizes if every dim is a non-negative constant.
    pub fn as_fixed(&self) -> Option<Vec<usize>> {
        self.0
            .iter()
            .map(|d| d.as_const().and_then(|v| usize::try_from(v).ok()))
            .collect()
    }

    /// Evaluates every dim with `env`; fails on an unbound symbol or a negative size.
    pub fn eval(&self, env: &dyn Fn(&str) -> Option<i64>) -> Result<Vec<usize>, String> {
        self.0
            .iter()
            .map(|d| {
                let v = d.eval(env)?;
                usize::try_from(v)
                    .map_err(|_| format!("dim `{d}` evaluates to {v}, which is negative"))
            })
            .collect()
    }
}

impl From<Vec<Dim>> for Shape {
    fn from(v: Vec<Dim>) -> Shape {
        Shape(v)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// The type of a tensor value: element type and shape.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Shape,
}

impl TensorType {
    /// A tensor type.
    pub fn new(dtype: DType, shape: impl Into<Shape>) -> TensorType {
        TensorType {
            dtype,
            shape: shape.into(),
        }
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }
}

impl fmt::Display for TensorType {
    /// `f32[batch, seq, 128]`; a scalar is `f32[]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

impl fmt::Debug for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Numpy-style broadcasting of two shapes.
///
/// Dims are matched from the right. Equal dims stay; a constant 1 yields the
/// other dim; two different constants (neither 1) cannot agree. A symbol against
/// a constant other than 1 yields the constant, and two different symbolic
/// dims yield their `max`: both are what the result must be whenever the
/// shapes broadcast at run time, where the interpreter checks them.
pub fn broadcast(a: &Shape, b: &Shape) -> Result<Shape, String> {
    let rank = a.rank().max(b.rank());
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = (i + a.rank()).checked_sub(rank).map(|j| &a.0[j]);
        let db = (i + b.rank()).checked_sub(rank).map(|j| &b.0[j]);
        let d = match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) => broadcast_dim(x, y)
                .ok_or_else(|| format!("shapes {a} and {b} cannot be broadcast"))?,
            (None, None) => unreachable!("index below the larger rank"),
        };
        out.push(d);
    }
    Ok(Shape(out))
}

fn broadcast_dim(x: &Dim, y: &Dim) -> Option<Dim> {
    if x == y {
        return Some(x.clone());
    }
    match (x.as_const(), y.as_const()) {
        (Some(1), _) => Some(y.clone()),
        (_, Some(1)) => Some(x.clone()),
        (Some(_), Some(_)) => None,
        (Some(_), None) => Some(x.clone()),
        (None, Some(_)) => Some(y.clone()),
        (None, None) => Some(x.max_dim(y)),
    }
}
