//! Elementwise kernels over `f32` buffers, vectorised to the target's width.
//!
//! [`emit_mul_add`] is the pattern the other elementwise kernels follow: declare the function
//! with a [`KernelBuilder`], read the parameters, and let [`KernelBuilder::vector_loop`] call a
//! body that loads, computes and stores one vector, full or masked.

use inkwell::module::Module;
use inkwell::values::FunctionValue;

use crate::error::Result;
use crate::kernels::{KernelBuilder, Param};
use crate::target::Target;

/// Emits `void name(const float* a, const float* b, float* out, int64_t n)` computing
/// `out[i] = a[i] * b[i] + a[i]` for `0 <= i < n`, with vectors of the target's width.
///
/// On a target with FMA the multiply-add is fused (rounded once, as C's `fmaf`); otherwise the
/// product and the sum are each rounded. Buffers need only 4-byte alignment. `out` may be the
/// same buffer as `a` or `b`; other overlaps are undefined. A non-positive `n` writes nothing.
pub fn emit_mul_add<'ctx>(
    module: &Module<'ctx>,
    target: &Target,
    name: &str,
) -> Result<FunctionValue<'ctx>> {
    emit_mul_add_with_lanes(module, target, name, target.f32_lanes())
}

/// [`emit_mul_add`] with vectors of `lanes` lanes instead of the target's width.
///
/// `lanes` must be at least 1; widths beyond the target's registers are legal LLVM and
/// are split by the backend.
pub fn emit_mul_add_with_lanes<'ctx>(
    module: &Module<'ctx>,
    target: &Target,
    name: &str,
    lanes: u32,
) -> Result<FunctionValue<'ctx>> {
    let params = [Param::Ptr, Param::Ptr, Param::Ptr, Param::I64];
    let kb = KernelBuilder::new(module, target, name, &params, lanes)?;
    let a = kb.ptr_param(0)?;
    let b = kb.ptr_param(1)?;
    let out = kb.ptr_param(2)?;
    let n = kb.int_param(3)?;
    kb.vector_loop(n, |kb, i, mask| {
        let va = kb.load_f32(a, i, mask)?;
        let vb = kb.load_f32(b, i, mask)?;
        let result = kb.mul_add(va, vb, va)?;
        kb.store_f32(out, i, result, mask)
    })?;
    Ok(kb.function())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use inkwell::context::Context;

    #[test]
    fn a_second_kernel_of_the_same_name_is_refused() {
        let target = Target::named("x86-64-v3").unwrap();
        let context = Context::create();
        let module = context.create_module("m");
        emit_mul_add(&module, &target, "k").unwrap();
        let err = emit_mul_add(&module, &target, "k").unwrap_err();
        assert!(
            matches!(&err, Error::Internal { function, .. } if function == "k"),
            "{err:?}"
        );
        assert!(module.get_function("k.1").is_none());
    }

    #[test]
    fn zero_lanes_are_refused() {
        let target = Target::named("x86-64-v3").unwrap();
        let context = Context::create();
        let module = context.create_module("m");
        let err = emit_mul_add_with_lanes(&module, &target, "k", 0).unwrap_err();
        assert!(matches!(err, Error::Internal { .. }), "{err:?}");
    }

    #[test]
    fn the_kernel_verifies_before_optimisation() {
        for cpu in ["x86-64", "x86-64-v3", "x86-64-v4"] {
            let target = Target::named(cpu).unwrap();
            let context = Context::create();
            let module = context.create_module("m");
            let function = emit_mul_add(&module, &target, "k").unwrap();
            assert!(function.verify(true), "{cpu}");
            crate::emit::verify(&module).unwrap();
            let vector = format!("<{} x float>", target.f32_lanes());
            assert!(
                module.print_to_string().to_string().contains(&vector),
                "{cpu}: no {vector}"
            );
        }
    }
}
