//! Symbolic dims in generated code: LLVM `i64` arithmetic for any [`Dim`].
//!
//! A dim is a polynomial over atoms (symbols, `floordiv`, `mod`, `min`, `max`); generated code
//! reads the symbols from the `symbols` array the runtime passes (symbol `k` is the `k`-th of
//! `Graph::input_symbols`) and evaluates the polynomial with wrapping `i64` arithmetic, as
//! [`Dim::eval`] does. Constants fold to LLVM constants, so a fixed stride stays a constant that
//! LLVM can vectorise on.

use std::sync::Arc;

use inkwell::builder::Builder;
use inkwell::context::ContextRef;
use inkwell::values::{IntValue, PointerValue};
use inkwell::IntPredicate;
use tcc_ir::dim::Atom;
use tcc_ir::Dim;

use crate::error::{Error, Result};

/// Emits dims as `i64` values with a builder, reading symbols from a `const int64_t *`.
pub struct DimEmitter<'a, 'ctx> {
    context: ContextRef<'ctx>,
    builder: &'a Builder<'ctx>,
    symbols: PointerValue<'ctx>,
    names: &'a [Arc<str>],
    function: &'a str,
}

impl<'a, 'ctx> DimEmitter<'a, 'ctx> {
    /// An emitter that inserts at the builder's position; `names` numbers the symbols.
    pub fn new(
        builder: &'a Builder<'ctx>,
        symbols: PointerValue<'ctx>,
        names: &'a [Arc<str>],
        function: &'a str,
    ) -> Self {
        let context = symbols.get_type().get_context();
        DimEmitter {
            context,
            builder,
            symbols,
            names,
            function,
        }
    }

    fn err(&self) -> impl FnOnce(inkwell::builder::BuilderError) -> Error + '_ {
        Error::builder(self.function)
    }

    /// The `i64` constant `v`.
    pub fn constant(&self, v: i64) -> IntValue<'ctx> {
        self.context.i64_type().const_int(v as u64, true)
    }

    /// The value of symbol `name`.
    pub fn symbol(&self, name: &str) -> Result<IntValue<'ctx>> {
        let k = self
            .names
            .iter()
            .position(|s| &**s == name)
            .ok_or_else(|| Error::Internal {
                function: self.function.to_owned(),
                message: "a dim names a symbol that no input binds",
            })?;
        let i64t = self.context.i64_type();
        // SAFETY: `k` is below the number of symbols, the length of the runtime's array.
        let ptr = unsafe {
            self.builder
                .build_in_bounds_gep(i64t, self.symbols, &[self.constant(k as i64)], "sym.ptr")
                .map_err(self.err())?
        };
        Ok(self
            .builder
            .build_load(i64t, ptr, name)
            .map_err(self.err())?
            .into_int_value())
    }

    /// The value of `dim`.
    pub fn dim(&self, dim: &Dim) -> Result<IntValue<'ctx>> {
        if let Some(c) = dim.as_const() {
            return Ok(self.constant(c));
        }
        let b = self.builder;
        let mut total: Option<IntValue<'ctx>> = None;
        for (monomial, coefficient) in dim.terms() {
            let mut term: Option<IntValue<'ctx>> = None;
            for atom in monomial {
                let v = self.atom(atom)?;
                term = Some(match term {
                    None => v,
                    Some(t) => b.build_int_mul(t, v, "dim.mul").map_err(self.err())?,
                });
            }
            let term = match (term, coefficient) {
                (None, c) => self.constant(c),
                (Some(t), 1) => t,
                (Some(t), c) => b
                    .build_int_mul(t, self.constant(c), "dim.scale")
                    .map_err(self.err())?,
            };
            total = Some(match total {
                None => term,
                Some(s) => b.build_int_add(s, term, "dim.add").map_err(self.err())?,
            });
        }
        Ok(total.unwrap_or_else(|| self.constant(0)))
    }

    fn atom(&self, atom: &Atom) -> Result<IntValue<'ctx>> {
        match atom {
            Atom::Sym(name) => self.symbol(name),
            Atom::FloorDiv(x, y) => {
                let (x, y) = (self.dim(x)?, self.dim(y)?);
                self.floor_div(x, y)
            }
            Atom::Mod(x, y) => {
                let (x, y) = (self.dim(x)?, self.dim(y)?);
                self.floor_mod(x, y)
            }
            Atom::Min(x, y) => {
                let (x, y) = (self.dim(x)?, self.dim(y)?);
                self.select(IntPredicate::SLT, x, y)
            }
            Atom::Max(x, y) => {
                let (x, y) = (self.dim(x)?, self.dim(y)?);
                self.select(IntPredicate::SGT, x, y)
            }
        }
    }

    fn select(
        &self,
        predicate: IntPredicate,
        x: IntValue<'ctx>,
        y: IntValue<'ctx>,
    ) -> Result<IntValue<'ctx>> {
        let b = self.builder;
        let c = b
            .build_int_compare(predicate, x, y, "dim.cmp")
            .map_err(self.err())?;
        Ok(b.build_select(c, x, y, "dim.sel")
            .map_err(self.err())?
            .into_int_value())
    }

    /// A divisor that is never zero: zero becomes one (dims divide by positive sizes; this only
    /// keeps a corrupt symbol from trapping).
    fn safe_divisor(&self, y: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        let b = self.builder;
        let zero = b
            .build_int_compare(IntPredicate::EQ, y, self.constant(0), "dim.zero")
            .map_err(self.err())?;
        Ok(b.build_select(zero, self.constant(1), y, "dim.div")
            .map_err(self.err())?
            .into_int_value())
    }

    /// `floor(x / y)`.
    pub fn floor_div(&self, x: IntValue<'ctx>, y: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        let b = self.builder;
        let y = self.safe_divisor(y)?;
        let q = b.build_int_signed_div(x, y, "dim.q").map_err(self.err())?;
        let r = b.build_int_signed_rem(x, y, "dim.r").map_err(self.err())?;
        let adjust = self.sign_differs(r, y)?;
        let one = b
            .build_int_z_extend(adjust, self.context.i64_type(), "dim.adj")
            .map_err(self.err())?;
        b.build_int_sub(q, one, "dim.floor").map_err(self.err())
    }

    /// `x mod y` with the sign of `y`.
    pub fn floor_mod(&self, x: IntValue<'ctx>, y: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        let b = self.builder;
        let y = self.safe_divisor(y)?;
        let r = b.build_int_signed_rem(x, y, "dim.r").map_err(self.err())?;
        let adjust = self.sign_differs(r, y)?;
        let plus = b.build_int_add(r, y, "dim.r2").map_err(self.err())?;
        Ok(b.build_select(adjust, plus, r, "dim.mod")
            .map_err(self.err())?
            .into_int_value())
    }

    /// `r != 0 && (r < 0) != (y < 0)`.
    fn sign_differs(&self, r: IntValue<'ctx>, y: IntValue<'ctx>) -> Result<IntValue<'ctx>> {
        let b = self.builder;
        let zero = self.constant(0);
        let nz = b
            .build_int_compare(IntPredicate::NE, r, zero, "dim.nz")
            .map_err(self.err())?;
        let rn = b
            .build_int_compare(IntPredicate::SLT, r, zero, "dim.rn")
            .map_err(self.err())?;
        let yn = b
            .build_int_compare(IntPredicate::SLT, y, zero, "dim.yn")
            .map_err(self.err())?;
        let differ = b.build_xor(rn, yn, "dim.differ").map_err(self.err())?;
        b.build_and(nz, differ, "dim.adjust").map_err(self.err())
    }
}
